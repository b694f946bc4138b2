"""Checkpoints: model weights plus everything needed to rebuild the model, and training state.

A checkpoint ``.pt`` is a dict (loadable with ``torch.load(weights_only=True)``)::

    {"format": "paratag-checkpoint/1",
     "model_state": state_dict,
     "info": {"model_config": {...},          # paratag.config.ModelConfig as a dict
              "input_dims": {"point_dims": 2, "feature_dims": 11, "sv_dims": 0},
              "preset": {...},                # preset dict from the shard manifest
              "condition_names": [...], "condition_mean": [...], "condition_std": [...],
              "class_names": [...], "grid": {...}, "stage": "stage3", "point": "all", ...},
     "training": {...}}                       # only in last.pt: optimizer, scheduler, RNG, epoch

:func:`load_model` rebuilds the model from ``info`` and loads its weights.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from paratag.errors import InputFileError

__all__ = [
    "CHECKPOINT_FORMAT",
    "capture_rng",
    "load_checkpoint",
    "load_model",
    "restore_rng",
    "save_checkpoint",
    "unwrap",
]

CHECKPOINT_FORMAT = "paratag-checkpoint/1"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and ``torch.compile`` wrappers."""
    while True:
        if isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) RNG states in a ``weights_only``-safe form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]  # noqa: NPY002
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore the RNG states written by :func:`capture_rng`."""
    random.setstate(_tuplify(state["python"]))
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(obj: Any) -> Any:
    return tuple(_tuplify(o) for o in obj) if isinstance(obj, list | tuple) else obj


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    info: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temp file + rename) and return its path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "model_state": unwrap(model).state_dict(),
        "info": dict(info),
    }
    if training is not None:
        payload["training"] = dict(training)
    tmp = p.with_name(p.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, p)
    return p


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only`` loading)."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(
            str(p), "checkpoint does not exist", "train the stage first (`paratag train`)"
        )
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/EOFError on bad files
        raise InputFileError(
            str(p),
            f"not a readable checkpoint ({type(exc).__name__}: {exc})",
            "re-run the stage that writes it",
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputFileError(
            str(p), "not a paratag checkpoint", "pass a model.pt written by `paratag train`"
        )
    return payload


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model stored in checkpoint ``path``; return ``(model in eval mode, info)``.

    ``info`` holds the ``ModelConfig`` dict, input dims, preset, condition names
    and normalisation, class names, grid, stage and validation metrics.
    """
    from paratag.config import ModelConfig, from_dict
    from paratag.models import build_model

    payload = load_checkpoint(path, map_location=device)
    info = payload["info"]
    cfg = from_dict(ModelConfig, info["model_config"], where=f"{path}: model_config")
    model = build_model(cfg, **info["input_dims"])
    model.load_state_dict(payload["model_state"])
    return model.to(device).eval(), info
