"""The optimiser and the per-epoch learning-rate schedule a :class:`~paratag.training.loop.FitConfig` names."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from paratag.errors import ConfigError

if TYPE_CHECKING:
    from paratag.training.loop import FitConfig

__all__ = ["make_optimizer", "make_scheduler"]


def make_optimizer(model: nn.Module, cfg: FitConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg`` over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    raise ConfigError(f"optimizer {cfg.optimizer!r} is unknown; use adam, adamw or sgd")


def make_scheduler(
    opt: torch.optim.Optimizer, cfg: FitConfig
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-epoch learning-rate schedule named by ``cfg`` (None for ``none``)."""
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(cfg.epochs, 1), eta_min=cfg.min_lr
        )
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    return None
