"""The three-stage parametric schedule as data, the curriculum and stage-2 weight averaging.

- **Stage 1** (:class:`Stage1Config`): one model per training mass point (or
  the ``points`` subset), its signal against all backgrounds, the condition
  fixed to the point. All points start from the same initial weights (only
  the data order differs), so their average in stage 2 is meaningful.
  Defaults: 20 epochs, Adam, lr 1e-3, batch 512.
- **Stage 2** (:class:`Stage2Config`): the parametric model starts from the
  average of the stage-1 weights (``uniform`` or ``auc_weighted``: weights
  proportional to ``AUC - 0.5`` of each stage-1 model on its validation fold,
  floored at 1e-3), then its condition pathways (mass encoder output, FiLM
  generators of the attention blocks and of the pooled representation, the
  head's condition input) are reset to the identity with
  ``reset_condition_modules_to_identity`` so the averaged network is
  reproduced exactly for every condition.
- **Stage 3** (:class:`Stage3Config`): joint fine-tuning on every training
  point. Defaults: 50 epochs, AdamW, lr 1e-4, weight decay 0.01, cosine
  schedule, batch 1024, early stopping (patience 10, counted in the last
  curriculum phase only) on ``monitor``.

Curriculum (:func:`curriculum_phases`): training points are ranked easiest
first by their stage-1 validation AUC (or, without stage-1 results, by the
relative mass gap ``(mHc - mA) / mHc``, largest first). ``easy`` is the first
third (rounded up), ``medium`` the first two thirds, ``all`` every point. The
default phases are 10 epochs easy, 20 medium, 20 all; when the phase epochs
do not add up to ``epochs`` the last phase absorbs the difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from paratag.errors import ConfigError
from paratag.run_config import CurriculumPhase, Stage1Config, Stage2Config, Stage3Config

__all__ = [
    "CurriculumPhase",
    "Stage1Config",
    "Stage2Config",
    "Stage3Config",
    "average_state_dicts",
    "averaging_weights",
    "curriculum_phases",
    "init_from_average",
    "rank_points",
]


def rank_points(
    points: Sequence[tuple[float, ...]],
    names: Sequence[str],
    stage1_auc: Mapping[tuple[float, ...], float] | None = None,
) -> list[tuple[float, ...]]:
    """Training points ordered easiest first (see the module docstring)."""

    def key(p: tuple[float, ...]) -> tuple[float, float]:
        auc = (stage1_auc or {}).get(p, float("nan"))
        if "mHc" in names and "mA" in names:
            m_hc, m_a = p[list(names).index("mHc")], p[list(names).index("mA")]
            gap = (m_hc - m_a) / m_hc
        else:
            gap = 0.0
        return (-auc if not math.isnan(auc) else 0.0, -gap)

    return sorted(points, key=key)


def curriculum_phases(
    config: Stage3Config, ranked: Sequence[tuple[float, ...]]
) -> list[tuple[int, list[tuple[float, ...]]]]:
    """``[(first_epoch, active points), ...]`` for stage 3 (one phase without curriculum)."""
    n = len(ranked)
    if not config.curriculum_enabled or not config.curriculum:
        return [(0, list(ranked))]
    sizes = {"easy": max(1, math.ceil(n / 3)), "medium": max(1, math.ceil(2 * n / 3)), "all": n}
    phases, start = [], 0
    for i, ph in enumerate(config.curriculum):
        last = i == len(config.curriculum) - 1
        if start >= config.epochs:
            break
        phases.append((start, list(ranked[: sizes[ph.masses]])))
        start += ph.epochs if not last else 0
    return phases


def averaging_weights(aucs: Sequence[float], method: str = "uniform") -> list[float]:
    """Normalised averaging weights of the stage-1 models."""
    if method == "uniform" or not aucs:
        return [1.0 / max(len(aucs), 1)] * len(aucs)
    if method == "auc_weighted":
        raw = [max((a if not math.isnan(a) else 0.5) - 0.5, 1e-3) for a in aucs]
        return [r / sum(raw) for r in raw]
    raise ConfigError(f"stage2.averaging {method!r} is unknown; use uniform or auc_weighted")


def average_state_dicts(
    state_dicts: Sequence[Mapping[str, Tensor]], weights: Sequence[float] | None = None
) -> dict[str, Tensor]:
    """Weighted average of floating-point entries; integer entries (counters) from the first."""
    if not state_dicts:
        raise ConfigError("stage 2 needs at least one stage-1 model to average; run stage 1 first")
    w = list(weights) if weights is not None else [1.0 / len(state_dicts)] * len(state_dicts)
    keys = list(state_dicts[0])
    for i, sd in enumerate(state_dicts[1:], 1):
        if list(sd) != keys or any(sd[k].shape != state_dicts[0][k].shape for k in keys):
            raise ConfigError(
                f"stage-1 model {i} has a different architecture; all stage-1 models must share "
                "model.options to be averaged (rerun stage 1)"
            )
    out = {}
    for k in keys:
        first = state_dicts[0][k]
        if first.is_floating_point():
            acc = torch.zeros_like(first, dtype=torch.float64)
            for wi, sd in zip(w, state_dicts, strict=True):
                acc += wi * sd[k].to(torch.float64)
            out[k] = acc.to(first.dtype)
        else:
            out[k] = first.clone()
    return out


def init_from_average(
    model: nn.Module,
    state_dicts: Sequence[Mapping[str, Tensor]],
    weights: Sequence[float] | None = None,
    *,
    attention_output_identity: bool = False,
) -> list[str]:
    """Load the averaged weights into ``model`` and reset its condition pathways.

    Returns the names of the parameters reset to the identity (empty for
    models without condition pathways).
    """
    model.load_state_dict(average_state_dicts(state_dicts, weights))
    reset = getattr(model, "reset_condition_modules_to_identity", None)
    if reset is None:
        return []
    reset(attention_output=attention_output_identity)
    names = getattr(model, "condition_parameter_names", None)
    return list(names()) if callable(names) else []
