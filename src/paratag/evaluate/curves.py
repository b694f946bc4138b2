"""Training curves: read a run's ``metrics.csv`` and summarise it per stage.

The CSV has the columns ``stage,point,epoch,train_loss,val_loss,val_auc,lr,time_s``
(one row per epoch; ``point`` names the mass point of a stage-1 dedicated model and is
empty for joint stages). Empty cells are read as NaN.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paratag.errors import InputFileError

__all__ = ["METRICS_COLUMNS", "TrainingCurves", "read_metrics_csv"]

METRICS_COLUMNS = ("stage", "point", "epoch", "train_loss", "val_loss", "val_auc", "lr", "time_s")
_NUMERIC = METRICS_COLUMNS[2:]


@dataclass(frozen=True)
class TrainingCurves:
    """Columns of a metrics CSV as arrays (``stage`` and ``point`` as strings)."""

    stage: np.ndarray
    point: np.ndarray
    epoch: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    val_auc: np.ndarray
    lr: np.ndarray
    time_s: np.ndarray
    source: str = ""

    def stages(self) -> list[str]:
        """Stage names in order of first appearance."""
        return list(dict.fromkeys(self.stage.tolist()))

    def groups(self) -> list[tuple[str, str, np.ndarray]]:
        """(stage, point, row indices) for every curve, in file order."""
        keys = list(dict.fromkeys(zip(self.stage.tolist(), self.point.tolist(), strict=True)))
        return [(s, p, np.flatnonzero((self.stage == s) & (self.point == p))) for s, p in keys]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per stage: curves, epochs, final train/val loss, best val AUC, total time."""
        out: dict[str, dict[str, float]] = {}
        for s in self.stages():
            sel = self.stage == s
            last = np.flatnonzero(sel)[-1]
            auc = self.val_auc[sel]
            out[s] = {
                "n_curves": len({p for p in self.point[sel].tolist()}),
                "n_rows": int(sel.sum()),
                "final_train_loss": float(self.train_loss[last]),
                "final_val_loss": float(self.val_loss[last]),
                "best_val_auc": float(np.nanmax(auc)) if np.isfinite(auc).any() else float("nan"),
                "time_s": float(np.nansum(self.time_s[sel])),
            }
        return out


def _float(x: str) -> float:
    try:
        return float(x) if x.strip() else float("nan")
    except ValueError:
        return float("nan")


def read_metrics_csv(path: str | Path) -> TrainingCurves:
    """Read a training ``metrics.csv`` written by ``paratag.training``."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(str(p), "metrics CSV does not exist", "pass the run's metrics.csv")
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in METRICS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputFileError(
                str(p), f"missing columns {missing}", f"expected header {','.join(METRICS_COLUMNS)}"
            )
        rows = list(reader)
    if not rows:
        raise InputFileError(str(p), "metrics CSV has no rows", "train at least one epoch")
    cols = {c: np.array([_float(r[c]) for r in rows]) for c in _NUMERIC}
    return TrainingCurves(
        stage=np.array([r["stage"] for r in rows], dtype=str),
        point=np.array([r["point"] for r in rows], dtype=str),
        source=str(p),
        **cols,
    )
