"""Losses: weighted cross-entropy, the physics-informed difficulty weight, DisCo.

Every loss here is a *mean over the batch* of per-event terms multiplied by
the event's training weight (``mean(w * l)``, weights normalised to mean 1 over
the dataset). A mean over equal slices averages to the full-batch mean, so DDP
gradient averaging reproduces single-process training.

Physics-informed weighting (the analysis plan): harder mass points count more,

    difficulty = 1 / (mass_gap + offset),   mass_gap = (mHc - mA) / mHc,  offset = 0.1

(``formula: relative_gap``). When mA approaches mHc the W* from H+ -> W* A is
soft and signal looks more like background. ``formula: kinematic_margin`` uses
the W off-shellness instead: ``difficulty = 1 / (sigmoid((mHc - mA - m_W) / width)
+ offset)``, large when the W* is far off shell (every point of the default
grid) and ~1/(1 + offset) once the W can be on shell. ``formula: none`` disables
it. With ``normalise: true`` difficulties are divided by their mean over the
training points, so the loss keeps the scale of plain cross-entropy. Background
events use the condition they were assigned (see :mod:`paratag.conditions`).

Mass decorrelation (DisCo, Kasieczka & Shih, arXiv:2001.05310): the loss adds
``lambda * dCorr^2_w(score, m)`` between the signal score and a spectator mass,
on background events by default, so the score does not sculpt the mass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from paratag.errors import ConfigError
from paratag.run_config import M_W, LossConfig

__all__ = [
    "LossConfig",
    "LossFn",
    "difficulty",
    "distance_correlation",
    "make_loss",
    "weighted_cross_entropy",
]

#: ``loss_fn(outputs, batch) -> scalar``: the pluggable loss of :func:`paratag.training.loop.fit`.
LossFn = Callable[[Tensor, Mapping[str, Tensor]], Tensor]


def weighted_cross_entropy(logits: Tensor, label: Tensor, weight: Tensor | None = None) -> Tensor:
    """``mean(w * CE)`` over the batch (plain mean CE without weights)."""
    ce = F.cross_entropy(logits.float(), label, reduction="none")
    return (ce if weight is None else ce * weight.to(ce.dtype)).mean()


def difficulty(
    mass: Tensor,
    names: Sequence[str],
    formula: str = "relative_gap",
    *,
    offset: float = 0.1,
    m_w: float = M_W,
    width: float = 10.0,
) -> Tensor:
    """Per-event difficulty ``(B,)`` from physical masses ``(B, K)`` (see module docstring)."""
    if formula == "none":
        return torch.ones(mass.shape[0], dtype=mass.dtype, device=mass.device)
    if "mHc" not in names or "mA" not in names:
        raise ConfigError(
            f"loss.formula {formula!r} needs conditions mHc and mA, the grid has {list(names)}; "
            "use loss.formula: none or loss.kind: weighted_ce"
        )
    m_hc, m_a = mass[:, list(names).index("mHc")], mass[:, list(names).index("mA")]
    if formula == "relative_gap":
        return 1.0 / ((m_hc - m_a) / m_hc + offset)
    if formula == "kinematic_margin":
        return 1.0 / (torch.sigmoid((m_hc - m_a - m_w) / width) + offset)
    raise ConfigError(
        f"loss.formula {formula!r} is unknown; use relative_gap, kinematic_margin or none"
    )


def distance_correlation(
    x: Tensor, y: Tensor, weight: Tensor | None = None, power: int = 1
) -> Tensor:
    """Weighted squared distance correlation of 1-d ``x`` and ``y`` (DisCo, arXiv:2001.05310).

    0 for independent variables, 1 for identical ones (up to scale). Weights
    are renormalised to mean 1. Memory is O(N^2): use it on batches.
    """
    x, y = x.reshape(-1).float(), y.reshape(-1).float()
    w = torch.ones_like(x) if weight is None else weight.reshape(-1).float()
    w = w * (len(w) / w.sum().clamp(min=1e-12))

    def centred(v: Tensor) -> Tensor:
        a = (v[:, None] - v[None, :]).abs()
        row = (a * w[None, :]).mean(dim=1)
        return a - row[None, :] - row[:, None] + (row * w).mean()

    a, b = centred(x), centred(y)
    ab = ((a * b * w[None, :]).mean(dim=1) * w).mean()
    aa = ((a * a * w[None, :]).mean(dim=1) * w).mean()
    bb = ((b * b * w[None, :]).mean(dim=1) * w).mean()
    dcor = ab / torch.sqrt((aa * bb).clamp(min=1e-20))
    return dcor if power == 1 else dcor**power


def make_loss(
    config: LossConfig,
    condition_names: Sequence[str] = (),
    reference_points: Sequence[Sequence[float]] = (),
) -> LossFn:
    """The loss ``loss_fn(logits, batch)`` described by ``config``.

    Args:
        config: the loss config.
        condition_names: names of the ``mass`` columns of a batch.
        reference_points: training points (physical masses) used to normalise difficulties.
    """
    scale = 1.0
    use_difficulty = config.kind == "physics_informed" and config.formula != "none"
    kwargs = {"offset": config.offset, "m_w": config.m_w, "width": config.width}
    if use_difficulty:
        if config.normalise and reference_points:
            ref = torch.tensor([list(p) for p in reference_points], dtype=torch.float32)
            scale = float(difficulty(ref, condition_names, config.formula, **kwargs).mean())
        else:
            difficulty(
                torch.ones(1, len(condition_names)), condition_names, config.formula, **kwargs
            )

    def loss_fn(logits: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        label, weight = batch["label"], batch["weight"]
        ce = F.cross_entropy(logits.float(), label, reduction="none") * weight.float()
        if use_difficulty:
            ce = (
                ce
                * difficulty(batch["mass"].float(), condition_names, config.formula, **kwargs)
                / scale
            )
        loss = ce.mean()
        if config.disco_lambda > 0:
            if "spectator" not in batch:
                raise ConfigError(
                    f"DisCo needs the spectator {config.disco_spectator!r} in every batch; "
                    "set loss.disco_spectator so the dataset provides it"
                )
            score = torch.softmax(logits.float(), dim=1)[:, config.signal_index]
            sel = (
                label != config.signal_index
                if config.disco_background_only
                else torch.ones_like(label, dtype=torch.bool)
            )
            if int(sel.sum()) > 2:
                loss = loss + config.disco_lambda * distance_correlation(
                    score[sel], batch["spectator"][sel], weight[sel], config.disco_power
                )
        return loss

    return loss_fn
