"""Monitoring: the run's metrics CSV, TensorBoard scalars and tqdm progress bars.

``metrics.csv`` has the columns of :data:`CSV_COLUMNS`, one row per
(stage, point, epoch); stage-3 rows use point ``all`` for the joint metrics
plus one row per validation mass point carrying its ``val_auc``. TensorBoard
event files go to ``<run>/tensorboard/<stage>/<point>/``. Only the main DDP
rank writes. Progress bars are off when stderr is not a TTY or ``CI=true``.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paratag.runtime import progress, progress_enabled

_LOG = logging.getLogger("paratag.training")

__all__ = ["CSV_COLUMNS", "MetricsLogger", "progress", "progress_enabled"]

CSV_COLUMNS = ("stage", "point", "epoch", "train_loss", "val_loss", "val_auc", "lr", "time_s")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def epoch_line(
    stage: str,
    point: str,
    epoch: int,
    values: Mapping[str, Any],
    groups: Mapping[str, float] | None = None,
) -> str:
    """One log line per epoch: stage, point, losses, validation AUC (worst point), time."""

    def num(key: str, fmt: str) -> str:
        v = values.get(key)
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    line = (
        f"{stage} {point} epoch {epoch}: train_loss {num('train_loss', '.4f')} "
        f"val_loss {num('val_loss', '.4f')} val_auc {num('val_auc', '.4f')} "
        f"lr {num('lr', '.2g')} ({num('time_s', '.1f')} s)"
    )
    finite = {k: v for k, v in (groups or {}).items() if not math.isnan(v)}
    if finite:
        worst = min(finite, key=finite.__getitem__)
        line += f"; lowest point AUC {finite[worst]:.4f} at {worst}"
    return line


class MetricsLogger:
    """Append epoch metrics to ``metrics.csv`` and TensorBoard.

    Args:
        run_dir: the run directory (None: log nothing).
        tensorboard: also write TensorBoard scalars.
        enabled: False on non-main DDP ranks.
    """

    def __init__(
        self, run_dir: str | Path | None, *, tensorboard: bool = True, enabled: bool = True
    ) -> None:
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.enabled = enabled and self.run_dir is not None
        self.tensorboard = tensorboard
        self._writers: dict[tuple[str, str], Any] = {}
        if self.enabled:
            assert self.run_dir is not None
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.csv_path = self.run_dir / "metrics.csv"
            if not self.csv_path.exists():
                with self.csv_path.open("w", newline="") as f:
                    csv.writer(f).writerow(CSV_COLUMNS)

    def truncate(self, stage: str, point: str, after_epoch: int) -> None:
        """Drop rows of (stage, point) with epoch > ``after_epoch`` (before a resume or rerun).

        ``point`` ``all`` (a joint stage) or ``*`` drops the whole stage, per-point rows included.
        """
        if not self.enabled or not self.csv_path.exists():
            return
        with self.csv_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [
            r
            for r in rows
            if not (
                r["stage"] == stage
                and (point in ("*", "all") or r["point"] == point)
                and int(r["epoch"]) > after_epoch
            )
        ]
        with self.csv_path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            w.writeheader()
            w.writerows(keep)

    def log(
        self,
        stage: str,
        point: str,
        epoch: int,
        values: Mapping[str, Any],
        groups: Mapping[str, float] | None = None,
    ) -> None:
        """Write one epoch's metrics (and per-point validation AUCs)."""
        if not self.enabled:
            return
        _LOG.info(epoch_line(stage, point, epoch, values, groups))
        rows = [{"stage": stage, "point": point, "epoch": epoch, **values}]
        for name, auc in (groups or {}).items():
            rows.append({"stage": stage, "point": name, "epoch": epoch, "val_auc": auc})
        with self.csv_path.open("a", newline="") as f:
            w = csv.writer(f)
            for r in rows:
                w.writerow([_fmt(r.get(c)) for c in CSV_COLUMNS])
        if self.tensorboard:
            writer = self._writer(stage, point)
            for key in ("train_loss", "val_loss", "val_auc", "lr"):
                v = values.get(key)
                if v is not None and not (isinstance(v, float) and math.isnan(v)):
                    writer.add_scalar(key, float(v), epoch)
            for name, auc in (groups or {}).items():
                if not math.isnan(auc):
                    writer.add_scalar(f"val_auc/{name}", float(auc), epoch)
            writer.flush()

    def _writer(self, stage: str, point: str) -> Any:
        key = (stage, point)
        if key not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            assert self.run_dir is not None
            self._writers[key] = SummaryWriter(
                log_dir=str(self.run_dir / "tensorboard" / stage / point)
            )
        return self._writers[key]

    def close(self) -> None:
        """Close the TensorBoard writers."""
        for w in self._writers.values():
            w.close()
        self._writers.clear()
