"""The base class of every paratag model: class count, condition names and normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from paratag.conditions import ConditionSpace
from paratag.config import ModelConfig
from paratag.errors import ConfigError, InvalidValueError

__all__ = ["ConditionedModel"]


class ConditionedModel(nn.Module):
    """Base of every paratag model: names, class count and condition normalisation.

    Attributes:
        condition_names: names of the condition parameters, e.g. ``("mHc", "mA")``.
        n_classes: number of output logits.
        condition_mean: buffer ``(K,)``; empty for an unconditioned model.
        condition_std: buffer ``(K,)``; empty for an unconditioned model.
    """

    condition_mean: Tensor
    condition_std: Tensor

    def __init__(
        self,
        n_classes: int,
        condition_names: Sequence[str] = (),
        condition_mean: Sequence[float] = (),
        condition_std: Sequence[float] = (),
    ) -> None:
        super().__init__()
        if n_classes < 2:
            raise ConfigError(f"n_classes must be >= 2, got {n_classes}")
        space = ConditionSpace.resolve(condition_names, condition_mean, condition_std)
        self.n_classes = int(n_classes)
        self.condition_names: tuple[str, ...] = space.names
        self.register_buffer("condition_mean", torch.tensor(space.mean, dtype=torch.float32))
        self.register_buffer("condition_std", torch.tensor(space.std, dtype=torch.float32))

    @property
    def condition_space(self) -> ConditionSpace:
        """Names and normalisation of the condition (:class:`~paratag.conditions.ConditionSpace`)."""
        return ConditionSpace(
            self.condition_names,
            tuple(self.condition_mean.tolist()),
            tuple(self.condition_std.tolist()),
        )

    @property
    def n_conditions(self) -> int:
        """Number K of condition parameters (0 when unconditioned)."""
        return len(self.condition_names)

    @property
    def uses_condition(self) -> bool:
        """Whether ``forward`` reads ``condition`` (False: it is accepted and ignored)."""
        return False

    def normalise_condition(self, physical: Tensor) -> Tensor:
        """Map physical masses ``(N, K)`` (GeV) to the normalised condition of ``forward``."""
        if physical.shape[-1] != self.n_conditions:
            raise InvalidValueError(
                f"condition has {physical.shape[-1]} columns, the model expects "
                f"{self.n_conditions} {list(self.condition_names)}"
            )
        return (physical.to(self.condition_mean.dtype) - self.condition_mean) / self.condition_std

    def denormalise_condition(self, normalised: Tensor) -> Tensor:
        """Inverse of :meth:`normalise_condition`."""
        return normalised * self.condition_std + self.condition_mean

    @staticmethod
    def condition_kwargs(cfg: ModelConfig) -> dict[str, object]:
        """The constructor arguments of this base class taken from a :class:`ModelConfig`."""
        return {
            "n_classes": cfg.n_classes,
            "condition_names": cfg.condition_names,
            "condition_mean": cfg.condition_mean,
            "condition_std": cfg.condition_std,
        }

    @staticmethod
    def no_secondary(cfg: ModelConfig, sv_dims: int) -> None:
        """Refuse a secondary cloud for a model that reads only the first one."""
        if sv_dims:
            raise ConfigError(
                f"model {cfg.name!r} takes no secondary-cloud input (sv_dims={sv_dims}): "
                "set data.use_sv: false"
            )
