"""A parametric tagger times a hypothesis ratio: the decomposed likelihood ratio.

The signal-versus-SM odds a tagger learns at hypothesis θ estimate
``p_θ(x) / p_SM(x)``. When the backgrounds barely depend on part of θ (mHc of
the charged-Higgs search: only mA makes a resonance), no signal-versus-SM
objective rewards that part, and the trained tagger estimates
``p̄(x) / p_SM(x)``, with ``p̄`` the signal mixed over it. The missing factor
is a ratio between *signals*::

    p_θ / p_SM = (p_θ / p̄) · (p̄ / p_SM)

(the decomposition of Cranmer, Pavez and Louppe, arXiv:1506.02169).
:class:`HypothesisRatio` holds two graph models of the registry: ``base``, the
signal-versus-SM tagger, and ``ratio``, a two-class model trained on signal
only (signal of θ at hypothesis θ against signal of the other training points
that share θ's fixed parameters, at the same hypothesis; see
:func:`paratag.data.ratio.hypothesis_ratio_dataset`). Its log-odds
``Δ = ratio₀ − ratio₁ = log R`` is turned into ``log p_θ / p̄`` (see
``self_weight``) and added to the base model's signal logit, which multiplies the
signal odds against every background class by that ratio::

    logits = base(x, θ) + scale · log(1 / (w + (1 − w) e^−Δ)) · e_signal

The base model stands for ``p̄ / p_SM``, which does not depend on the parameters
the ratio varies; ``base_fixed`` names those the base model then sees at their
training mean (normalised 0) whatever the hypothesis, so that only the ratio
moves the score along them.

One module, one forward: export, scoring and evaluation treat it like any
other graph model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from paratag.config import ModelConfig, from_dict
from paratag.errors import ConfigError
from paratag.models.base import ConditionedModel
from paratag.models.registry import build_model, register

__all__ = ["HypothesisRatio", "RatioOptions"]


@dataclasses.dataclass(frozen=True)
class RatioOptions:
    """``model.options`` of ``hypothesis_ratio``.

    Attributes:
        base: the signal-vs-SM model, ``{name: ..., options: {...}}`` (its
            ``n_classes`` and condition come from the outer config).
        ratio: the two-class signal-vs-signal model, same form; by default
            the base model's architecture.
        scale: factor on the ratio's log-odds (1: the exact decomposition).
        self_weight: share w of the hypothesis' own signal in the reference
            mixture: the ratio model estimates ``R = p_θ / p_partners``, the
            delivered factor is ``p_θ / (w p_θ + (1 − w) p_partners) =
            1 / (w + (1 − w) / R)``, at most ``1 / w`` (0: ``R`` itself).
        signal_index: the base model's signal class.
        base_fixed: condition parameters the base model sees at their training mean
            (normalised 0) at every hypothesis; () : the base sees the hypothesis.
    """

    base: dict[str, Any]
    ratio: dict[str, Any] = dataclasses.field(default_factory=dict)
    scale: float = 1.0
    self_weight: float = 0.0
    signal_index: int = 0
    base_fixed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key, part in (("base", self.base), ("ratio", self.ratio)):
            unknown = set(part) - {"name", "options"}
            if unknown:
                raise ConfigError(
                    f"model.options.{key} has unknown keys {sorted(unknown)}; "
                    "give {name: <registered model>, options: {...}}"
                )
        if "name" not in self.base:
            raise ConfigError("model.options.base needs a name (e.g. parametric_particlenet)")
        if self.scale < 0:
            raise ConfigError(f"model.options.scale must be >= 0, got {self.scale}")
        if not 0 <= self.self_weight < 1:
            raise ConfigError(
                f"model.options.self_weight must be in [0, 1), got {self.self_weight}"
            )

    def part_config(self, outer: ModelConfig, key: str) -> ModelConfig:
        """The :class:`ModelConfig` of ``base`` or ``ratio`` (condition from ``outer``)."""
        part = self.base if key == "base" or not self.ratio else self.ratio
        return ModelConfig(
            name=str(part["name"]),
            n_classes=outer.n_classes if key == "base" else 2,
            condition_names=outer.condition_names,
            condition_mean=outer.condition_mean,
            condition_std=outer.condition_std,
            options=dict(part.get("options", {})),
        )


@register("hypothesis_ratio")
class HypothesisRatio(ConditionedModel):
    """``base`` signal-vs-SM logits with ``ratio``'s signal-vs-signal log-odds on the signal.

    Attributes:
        base: the signal-vs-SM model (stage 3); ``ratio``: the two-class signal model.
        scale, self_weight, signal_index, base_fixed: as in :class:`RatioOptions`.
        base_mask: ``(K,)`` 0 at the ``base_fixed`` parameters, 1 elsewhere: the base
            model's (normalised) condition is ``condition * base_mask``.
        point_dims, feature_dims, sv_dims: the base model's input sizes.

    Shapes:
        points: ``(N, Cp, P)``; features: ``(N, Cf, P)``; mask: ``(N, 1, P)``;
        condition: ``(N, K)`` normalised; returns logits ``(N, n_classes)``.
    """

    signal_onehot: Tensor
    base_mask: Tensor

    def __init__(
        self,
        base: torch.nn.Module,
        ratio: torch.nn.Module,
        *,
        scale: float = 1.0,
        self_weight: float = 0.0,
        signal_index: int = 0,
        base_fixed: Sequence[str] = (),
        **condition: Any,
    ) -> None:
        super().__init__(**condition)
        if getattr(ratio, "n_classes", 2) != 2:
            raise ConfigError(f"the ratio model must have 2 classes, got {ratio.n_classes}")
        if not 0 <= signal_index < self.n_classes:
            raise ConfigError(f"signal_index {signal_index} is not a class of {self.n_classes}")
        self.base, self.ratio = base, ratio
        self.scale, self.signal_index = float(scale), int(signal_index)
        self.self_weight = float(self_weight)
        self.point_dims = int(getattr(base, "point_dims", 0))
        self.feature_dims = int(getattr(base, "feature_dims", 0))
        self.sv_dims = int(getattr(base, "sv_dims", 0))
        onehot = torch.zeros(self.n_classes)
        onehot[self.signal_index] = 1.0
        self.register_buffer("signal_onehot", onehot, persistent=False)
        unknown = sorted(set(base_fixed) - set(self.condition_names))
        if unknown:
            raise ConfigError(
                f"base_fixed {unknown} are not condition parameters {list(self.condition_names)}"
            )
        self.base_fixed = tuple(base_fixed)
        keep = [0.0 if n in self.base_fixed else 1.0 for n in self.condition_names]
        self.register_buffer("base_mask", torch.tensor(keep), persistent=False)

    @property
    def uses_condition(self) -> bool:
        """Always: the ratio is a function of the hypothesis."""
        return True

    @classmethod
    def from_config(cls, cfg: ModelConfig, **input_dims: int) -> HypothesisRatio:
        """Build both parts from ``cfg.options`` (:class:`RatioOptions`)."""
        opts = from_dict(RatioOptions, cfg.options, where="model.options (hypothesis_ratio)")
        if not cfg.condition_names:
            raise ConfigError("hypothesis_ratio needs a condition (grid.names)")
        base = build_model(opts.part_config(cfg, "base"), **input_dims)
        ratio = build_model(opts.part_config(cfg, "ratio"), **input_dims)
        return cls(
            base,
            ratio,
            scale=opts.scale,
            self_weight=opts.self_weight,
            signal_index=opts.signal_index,
            base_fixed=opts.base_fixed,
            **ConditionedModel.condition_kwargs(cfg),
        )

    def log_ratio(
        self, points: Tensor, features: Tensor, mask: Tensor, condition: Tensor, **kw: Tensor
    ) -> Tensor:
        """``log p_θ(x) / p̄(x)`` per event ``(N,)`` from the ratio model's log-odds."""
        r = self.ratio(points, features, mask, condition, **kw)
        delta = r[:, 0] - r[:, 1]
        if self.self_weight > 0:  # -log(w + (1 - w) exp(-delta)) = -log w - softplus(...)
            w = self.self_weight
            delta = -math.log(w) - torch.nn.functional.softplus(math.log((1 - w) / w) - delta)
        return delta  # type: ignore[no-any-return]

    def forward(
        self,
        points: Tensor,
        features: Tensor,
        mask: Tensor,
        condition: Tensor | None = None,
        **kw: Tensor,
    ) -> Tensor:
        """Logits ``(N, n_classes)``: the base model's, signal shifted by the log-ratio."""
        if condition is None:
            raise ConfigError("hypothesis_ratio needs the condition (the hypothesis to score at)")
        logits = self.base(points, features, mask, condition * self.base_mask, **kw)
        delta = self.log_ratio(points, features, mask, condition, **kw)
        return logits + self.scale * delta[:, None] * self.signal_onehot  # type: ignore[no-any-return]
