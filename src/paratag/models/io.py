"""Model files: checkpoints (weights plus what rebuilds the model) and the graph-model call.

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

Training writes checkpoints (:mod:`paratag.training`); evaluation, export and
scoring only read them, so this module is the one place both sides meet.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from paratag.errors import InputFileError, InvalidValueError
from paratag.presets import cloud_keys

__all__ = [
    "CHECKPOINT_FORMAT",
    "delivered_checkpoint",
    "file_checksum",
    "graph_forward",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "secondary_in",
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


def file_checksum(path: str | Path) -> str:
    """CRC-32 of a file's bytes, as 8 hex digits (which stage-3 model a ratio model embeds)."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def delivered_checkpoint(run_dir: str | Path) -> Path | None:
    """The model a training run delivers: ``ratio/model.pt`` if current, else ``stage3/model.pt``.

    The hypothesis-ratio model (:mod:`paratag.training.ratio`) embeds the stage-3
    model it was trained on and records its checksum (``info["stage3_checksum"]``);
    when stage 3 was retrained after it, it is stale and the stage-3 model is
    delivered. None when the run has neither.
    """
    run = Path(run_dir)
    stage3, ratio = run / "stage3" / "model.pt", run / "ratio" / "model.pt"
    if ratio.is_file():
        recorded = load_checkpoint(ratio)["info"].get("stage3_checksum")
        if not stage3.is_file() or recorded == file_checksum(stage3):
            return ratio
    return stage3 if stage3.is_file() else None


def secondary_in(batch: Mapping[str, Any]) -> str | None:
    """Name of the second cloud whose ``<name>_features`` a batch holds (None: no second cloud)."""
    names = [k[: -len("_features")] for k in batch if k.endswith("_features")]
    if len(names) > 1:
        raise InvalidValueError(
            f"batch holds several secondary clouds {sorted(names)}; graph models read one "
            "(gather only the preset's first and second cloud)"
        )
    return names[0] if names else None


def graph_forward(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """The graph-model call ``model(points, features, mask, condition[, sv_features, sv_mask])``.

    A second cloud in the batch (``<cloud>_features``, ``<cloud>_mask``: named by the
    preset, :func:`paratag.presets.cloud_keys`) feeds the model's ``sv_features`` and
    ``sv_mask`` keywords.
    """
    kwargs = {}
    name = secondary_in(batch)
    if name is not None:
        _, features, mask = cloud_keys(name, 1)
        kwargs = {"sv_features": batch[features], "sv_mask": batch[mask]}
    return model(  # type: ignore[no-any-return]
        batch["points"], batch["features"], batch["mask"], batch.get("condition"), **kwargs
    )
