"""The validation pass of :func:`paratag.training.loop.fit`: weighted loss and (per-group) AUC.

Also the batch helpers both passes share (device transfer, per-epoch sampler order).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from paratag.training.losses import weighted_cross_entropy
from torch import Tensor, nn

from paratag.models.io import graph_forward

__all__ = ["EvalResult", "autocast", "default_loss", "evaluate", "set_epoch", "to_device"]

Batch = Mapping[str, Any]
ForwardFn = Callable[[nn.Module, Batch], Any]
ScoreFn = Callable[[Any], Tensor]


@dataclasses.dataclass
class EvalResult:
    """Validation outputs: weighted mean loss, AUC (mean over groups), per-group AUCs, arrays."""

    loss: float
    auc: float
    group_auc: dict[int, float]
    scores: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    groups: np.ndarray | None


def default_loss(outputs: Tensor, batch: Batch) -> Tensor:
    """Weighted cross-entropy on ``label`` and (optional) ``weight``."""
    return weighted_cross_entropy(outputs, batch["label"], batch.get("weight"))


def to_device(batch: Batch, device: torch.device) -> dict[str, Any]:
    """Tensors of ``batch`` on ``device`` (other values passed through)."""
    nb = device.type == "cuda"
    return {
        k: v.to(device, non_blocking=nb) if isinstance(v, Tensor) else v for k, v in batch.items()
    }


def set_epoch(loader: Any, epoch: int) -> None:
    """Call ``set_epoch`` on the loader or its sampler (deterministic per-epoch order)."""
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if obj is not None and callable(getattr(obj, "set_epoch", None)):
            obj.set_epoch(epoch)
            return


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; disabled when ``dtype`` is None."""
    return torch.autocast(
        device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None
    )


def _auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores, sample_weight=weights))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Batch],
    *,
    loss_fn: Callable[[Any, Batch], Tensor] = default_loss,
    forward_fn: ForwardFn = graph_forward,
    score_fn: ScoreFn | None = None,
    signal_label: int = 0,
    device: torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
    epoch: int = 0,
) -> EvalResult:
    """Weighted mean loss and (per-group) AUC of ``model`` over ``loader``.

    ``autocast_dtype``: run the forward pass under autocast to that dtype (None: off).
    """
    device = device or next(model.parameters()).device
    model.eval()
    set_epoch(loader, epoch)
    total, count = 0.0, 0
    scores, labels, weights, groups = [], [], [], []
    for raw in loader:
        batch = to_device(raw, device)
        with autocast(device, autocast_dtype):
            out = forward_fn(model, batch)
            loss = loss_fn(out, batch)
        n = len(batch["label"])
        total += float(loss) * n
        count += n
        if score_fn is not None:
            scores.append(score_fn(out).float().cpu().numpy())
            labels.append((raw["label"] == signal_label).numpy().astype(np.int64))
            weights.append(raw["weight"].numpy() if "weight" in raw else np.ones(n, np.float32))
            if "group" in raw:
                groups.append(raw["group"].numpy())
    s = np.concatenate(scores) if scores else np.zeros(0)
    y = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    w = np.concatenate(weights) if weights else np.zeros(0)
    g = np.concatenate(groups) if groups else None
    group_auc: dict[int, float] = {}
    auc = float("nan")
    if score_fn is not None and len(s):
        if g is not None:
            group_auc = {int(k): _auc(y[g == k], s[g == k], w[g == k]) for k in np.unique(g)}
            valid = [v for v in group_auc.values() if not math.isnan(v)]
            auc = float(np.mean(valid)) if valid else float("nan")
        else:
            auc = _auc(y, s, w)
    return EvalResult(total / max(count, 1), auc, group_auc, s, y, w, g)
