"""The train YAML (:class:`TrainConfig`), its resolution against the grid, seeds, fingerprints.

A stage-1 (or inclusive, or dedicated) model depends on the data settings, the
training points, the model, the loss, the stage-1 schedule and the seed;
:func:`stage1_fingerprint` hashes exactly those, and checkpoints record it, so a
later run reuses the models it would otherwise train again.
"""

from __future__ import annotations

import dataclasses
import json
import random
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from paratag.training.checkpoint import load_checkpoint

from paratag.conditions import MassGrid
from paratag.config import to_dict
from paratag.errors import ConfigError
from paratag.run_config import TrainConfig, load_train_config

__all__ = [
    "FINGERPRINT_DEFAULTS",
    "STAGE3_ONLY_DATA",
    "TrainConfig",
    "derive_seed",
    "load_train_config",
    "recorded_fingerprint",
    "resolve_config",
    "seed_everything",
    "stage1_fingerprint",
    "trained_with",
]


def derive_seed(seed: int, *tags: object) -> int:
    """A stable sub-seed for a stage/point (crc32, identical in every process)."""
    return zlib.crc32(":".join(map(str, (seed, *tags))).encode()) & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - code outside paratag may use the global RNG
    torch.manual_seed(seed)


def resolve_config(
    cfg: TrainConfig, grid: MassGrid, preset: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Fill the model's condition names and normalisation from the grid.

    ``pair_kinematics: auto`` in the model options is resolved from ``preset``
    (the shards' preset) into channel indices, so the saved config is complete.
    """
    m = cfg.model
    names = m.condition_names or grid.names
    if tuple(names) != tuple(grid.names):
        raise ConfigError(
            f"model.condition_names {list(names)} differ from grid.names {list(grid.names)}"
        )
    mean, std = m.condition_mean, m.condition_std
    if not mean:
        mean, std = grid.model_normalisation()
    options = dict(m.options)
    if options.get("pair_kinematics") == "auto":
        if preset is None:
            raise ConfigError(
                "model.options.pair_kinematics: auto needs the shards' preset; pass the shards"
            )
        from paratag.presets import load_preset

        options["pair_kinematics"] = load_preset(preset).pair_kinematics()
    model = dataclasses.replace(
        m,
        condition_names=tuple(names),
        condition_mean=tuple(mean),
        condition_std=tuple(std),
        options=options,
    )
    return dataclasses.replace(cfg, model=model)


#: data settings added after fingerprints were first recorded: left out of the fingerprint
#: while at these defaults, so models trained before they existed are still reused
FINGERPRINT_DEFAULTS: dict[str, Any] = {"ragged": False, "ragged_bucket": 16, "fit_fraction": 1.0}
_UNSET = object()

#: data settings that only stage 3 reads (a stage-1 model does not depend on them)
STAGE3_ONLY_DATA = ("wrong_mass_weight", "wrong_mass_label")


def stage1_fingerprint(cfg: TrainConfig) -> str:
    """Hash of everything a stage-1 (or inclusive) model depends on, of a resolved config.

    Data, training points (the loss normalises its difficulty over them), model,
    loss, stage-1 schedule and seed; not the run directory, device, stages 2-3 or
    the stage-3-only data settings.
    """
    d = to_dict(cfg)
    key = {
        "data": {
            k: v
            for k, v in d["data"].items()
            if k not in STAGE3_ONLY_DATA and FINGERPRINT_DEFAULTS.get(k, _UNSET) != v
        },
        "train_points": d["grid"]["train"],
        **{k: d[k] for k in ("model", "loss", "stage1", "seed")},
    }
    return (
        zlib.crc32(json.dumps(key, sort_keys=True, default=str).encode()).to_bytes(4, "big").hex()
    )


def recorded_fingerprint(path: Path) -> str | None:
    """Stage-1 fingerprint of the config a run directory recorded (None if unreadable)."""
    if not path.is_file():
        return None
    try:
        return stage1_fingerprint(load_train_config(path))
    except (ConfigError, OSError, ValueError):
        return None


def trained_with(path: Path, fingerprint: str, legacy: str | None) -> bool:
    """Whether the checkpoint at ``path`` exists and was trained with ``fingerprint``.

    A checkpoint written before fingerprints were recorded counts as trained with
    ``legacy`` (the fingerprint of the config its run directory recorded), if given.
    """
    if not path.is_file():
        return False
    recorded = load_checkpoint(path)["info"].get("fingerprint")
    return (legacy if recorded is None else recorded) == fingerprint
