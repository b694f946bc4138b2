"""Dedicated models: a run's stage-1 training at one mass point, on demand and cached.

The evaluation compares the parametric model at every point with a model
trained at that point alone; at points the run did not train on,
:func:`dedicated_trainer` gives the evaluation a trainer that trains (or reuses,
by fingerprint) such a model.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from paratag.training.config import (
    TrainConfig,
    load_train_config,
    recorded_fingerprint,
    resolve_config,
    stage1_fingerprint,
    trained_with,
)
from paratag.training.run import train

from paratag.conditions import GridConfig, MassGrid

__all__ = ["dedicated_config", "dedicated_trainer", "train_dedicated"]

log = logging.getLogger("paratag.training")


def dedicated_config(cfg: TrainConfig, point: Sequence[float], run_dir: str | Path) -> TrainConfig:
    """The run config of a dedicated model at ``point`` for the run ``cfg``: stage 1 at one point.

    The condition normalisation and the preset-derived options stay those of the
    full grid, so a model trained here (by ``paratag evaluate --train-dedicated``
    or ahead of time by ``paratag validate``) has the same fingerprint either way.
    """
    from paratag.shards import read_manifest

    grid = MassGrid.from_config(cfg.grid)
    preset = read_manifest(cfg.data.shards).get("preset") or None if cfg.data.shards else None
    resolved = resolve_config(cfg, grid, preset)
    return dataclasses.replace(
        resolved,
        grid=GridConfig(preset=None, names=grid.names, train=(tuple(float(v) for v in point),)),
        stage1=dataclasses.replace(resolved.stage1, points=None),
        run_dir=str(run_dir),
        tensorboard=False,
    )


def train_dedicated(
    cfg: TrainConfig, point: Sequence[float], out_dir: str | Path, *, progress: bool = False
) -> Path | str:
    """Train (or reuse) the dedicated model of run ``cfg`` at ``point`` in ``out_dir``.

    Returns the checkpoint, or why there is none (stage 1 disabled, training
    shards missing, training failed).
    """
    from paratag.errors import ParatagError

    if not cfg.stage1.enabled:
        return "stage 1 is disabled in the run config"
    if not cfg.data.shards or not Path(cfg.data.shards).is_dir():
        return f"training shards {cfg.data.shards!r} are not available"
    sub = dataclasses.replace(dedicated_config(cfg, point, out_dir), progress=progress)
    name = MassGrid.from_config(sub.grid).name(tuple(float(v) for v in point))
    path = Path(out_dir) / "stage1" / name / "model.pt"
    # cached: decided without opening the shards
    legacy = recorded_fingerprint(Path(out_dir) / "config.yaml")
    if trained_with(path, stage1_fingerprint(sub), legacy):
        log.info("%s: reusing the dedicated model %s", name, path)
        return path
    try:
        train(sub, stages=[1], reuse=True)
    except ParatagError as exc:
        return f"on-demand training failed: {exc}"
    return (
        path if path.is_file() else "on-demand training produced no model (no validation events?)"
    )


def dedicated_trainer(
    run_dir: str | Path, *, progress: bool = False
) -> Callable[[tuple[float, ...], Path], Path | str]:
    """``trainer(point, folder)`` for :func:`paratag.evaluate.run.evaluate_run`, from a run directory."""
    cfg = load_train_config(Path(run_dir) / "config.yaml")

    def trainer(point: tuple[float, ...], folder: Path) -> Path | str:
        return train_dedicated(cfg, point, folder, progress=progress)

    return trainer
