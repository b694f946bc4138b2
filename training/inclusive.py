"""The inclusive baseline: one unconditioned model trained on every training point's signal.

The third network of Baldi et al. (arXiv:1601.07913): same backbone, data and
stage-1 schedule as the per-point models, one constant condition and no
hypothesis-dependent inputs. A parametric model must beat it at every point.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from paratag.training.config import TrainConfig, derive_seed, seed_everything
from paratag.training.run import RunState, fit_summary

from paratag.config import to_dict
from paratag.runtime import cpu_settings

__all__ = ["train_inclusive"]

log = logging.getLogger("paratag.training")


def train_inclusive(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Train the inclusive baseline of ``cfg``'s run; returns ``run_dir/inclusive/model.pt``.

    Same model, epochs and data as stage 1, but the signal of every training
    point together and one constant condition (the normalisation mean): the
    reference a parametric model must beat. Cached: an existing model trained
    with the same data, model and stage-1 settings is reused.
    """
    path = Path(cfg.run_dir) / "inclusive" / "model.pt"
    with cpu_settings(cfg.threads, cfg.heap):
        return _train_inclusive(cfg, path, resume)


def _train_inclusive(cfg: TrainConfig, path: Path, resume: bool) -> Path:
    run = RunState(cfg, resume, (), reuse=True)
    try:
        if run.reusable(path, legacy=False):
            log.info("inclusive: reusing %s (same data, model and stage-1 settings)", path)
            return path
        run.summary["inclusive"] = _fit_inclusive(run)
        if run.main:
            (run.run_dir / "summary.json").write_text(
                json.dumps(run.summary, indent=2, default=float) + "\n"
            )
    finally:
        run.logger.close()
    return path


def _fit_inclusive(run: RunState) -> dict[str, Any]:
    """Train the inclusive baseline into ``run_dir/inclusive`` (stage-1 settings)."""
    t0 = time.perf_counter()
    points = list(run.grid.train)
    run.builder.require(points, "train")
    condition = tuple(float(v) for v in run.cfg.model.condition_mean)
    # the hypothesis must not reach the inclusive network: no resonance windows or cascade
    options = {k: v for k, v in run.cfg.model.options.items() if k not in ("resonance", "cascade")}
    model_cfg = dataclasses.replace(run.cfg.model, options=options)
    seed_everything(derive_seed(run.cfg.seed, "stage1"))
    from paratag.models import build_model

    model = build_model(model_cfg, **run.dims)
    loaders = run.loaders(
        run.builder.inclusive(points, "train", condition),
        run.builder.inclusive(points, "validation", condition),
        run.cfg.stage1.batch_size,
        "inclusive",
    )
    res = run.fit(
        model,
        "inclusive",
        "all",
        run.cfg.stage1,
        *loaders,
        extra_info={
            "inclusive_condition": list(condition),
            "model_config": to_dict(model_cfg),
            "fingerprint": run.fingerprint,
        },
    )
    return {
        **fit_summary(res),
        "condition": list(condition),
        "time_s": time.perf_counter() - t0,
    }
