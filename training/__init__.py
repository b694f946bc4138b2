"""The three-stage parametric training schedule (``paratag.training``).

- :mod:`~paratag.training.schedule`: stage configs, curriculum, stage-2 weight averaging;
- :mod:`~paratag.training.losses`: weighted CE, physics-informed difficulty, DisCo;
- :mod:`~paratag.training.loop`: the generic :func:`fit` loop (reusable by any model);
- :mod:`~paratag.training.checkpoint`: RNG state (the checkpoint format is :mod:`paratag.models.io`);
- :mod:`~paratag.training.config`: :class:`TrainConfig` (the train YAML), seeds, fingerprints;
- :mod:`~paratag.training.run`: :func:`train`, the ``paratag train`` command;
- :mod:`~paratag.training.dedicated`: dedicated (one-point) models on demand, cached;
- :mod:`~paratag.training.inclusive`: the inclusive (all-masses, unconditioned) baseline;
- :mod:`~paratag.training.tune`: Optuna search, the ``paratag tune`` command;
- :mod:`~paratag.training.ddp`: torchrun/DDP set-up (device selection is :mod:`paratag.runtime`).

Names are imported lazily so ``import paratag.training`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from paratag.errors import require

require("torch", "train")  # training needs torch: a clear hint on a scoring-only install

_LAZY = {
    "FitConfig": "paratag.training.loop",
    "FitResult": "paratag.training.loop",
    "fit": "paratag.training.loop",
    "evaluate": "paratag.training.loop",
    "load_model": "paratag.training.checkpoint",
    "TrainConfig": "paratag.training.config",
    "load_train_config": "paratag.training.config",
    "train": "paratag.training.run",
    "train_inclusive": "paratag.training.inclusive",
    "train_dedicated": "paratag.training.dedicated",
    "dedicated_trainer": "paratag.training.dedicated",
    "TuneConfig": "paratag.training.tune",
    "tune": "paratag.training.tune",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import public names on first access."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'paratag.training' has no attribute {name!r}")
