"""One generic train/validate loop: AMP, checkpoint/resume, DDP, early stopping, monitoring.

:func:`fit` trains any ``nn.Module`` on batches that are ``dict[str, Tensor]``.
What the model is called with and what is minimised are pluggable, so the
same loop trains graph models, the ResNet-15 image baseline and the tabular
masked autoencoder::

    from paratag.training.loop import FitConfig, fit

    result = fit(
        model, train_loader, val_loader, FitConfig(epochs=10, lr=1e-3),
        forward_fn=lambda model, batch: model(batch["images"]),   # -> outputs
        loss_fn=lambda out, batch: F.cross_entropy(out, batch["label"]),  # -> scalar
        score_fn=lambda out: out.softmax(1)[:, 1],   # -> (N,) score for the AUC, or None
        signal_label=1,                              # which label is "signal" for the AUC
        checkpoint_dir="runs/resnet", resume=True,
    )
    result.best_metric, result.history             # the model holds the best weights

Contracts:

- ``forward_fn(model, batch) -> outputs``; default :func:`graph_forward`
  (``model(points, features, mask, condition)``, plus ``sv_features``/``sv_mask``).
- ``loss_fn(outputs, batch) -> scalar``; default weighted cross-entropy on
  ``batch["label"]`` and ``batch["weight"]`` (if present). Use a mean over
  events so DDP gradient averaging is exact.
- ``score_fn(outputs) -> (N,)`` signal score for the validation AUC
  (default: softmax probability of class 0); ``None`` skips the AUC. Labels
  equal to ``signal_label`` are signal. If batches carry ``group`` (int per
  event), an AUC is computed per group and ``val_auc`` is their mean.
- Loaders are any iterables of batches; if ``loader.sampler`` (or the loader
  itself) has ``set_epoch``, it is called every epoch (deterministic order).
- Batches are moved to the device; non-tensor values are passed through.

``checkpoint_dir`` receives ``model.pt`` (best by ``monitor``) and ``last.pt``
(model, optimizer, scheduler, AMP scaler, RNG states, epoch, early-stopping
state) after every epoch; ``resume=True`` continues from ``last.pt`` and gives
the same final weights as an uninterrupted run. ``checkpoint_info`` is stored
in both (see :mod:`paratag.training.checkpoint`). On CUDA, AMP (fp16 autocast
with a gradient scaler) is on by default; ``compile=True`` uses
``torch.compile``. Under ``torchrun`` the model is wrapped in DDP.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from paratag.training import ddp
from paratag.training.checkpoint import (
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    unwrap,
)
from paratag.training.losses import weighted_cross_entropy
from paratag.training.monitor import MetricsLogger, progress
from torch import Tensor, nn

from paratag.errors import ConfigError
from paratag.models.io import graph_forward

__all__ = [
    "EvalResult",
    "FitConfig",
    "FitResult",
    "evaluate",
    "fit",
    "graph_forward",
    "make_optimizer",
    "make_scheduler",
    "softmax_score",
]

Batch = Mapping[str, Any]
ForwardFn = Callable[[nn.Module, Batch], Any]
ScoreFn = Callable[[Any], Tensor]


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Optimisation settings of one training (one stage or one stage-1 point).

    Attributes:
        epochs: number of epochs.
        batch_size: global batch size (used by whoever builds the loaders).
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        lr: learning rate.
        weight_decay: weight decay (decoupled for AdamW).
        momentum: SGD momentum.
        scheduler: ``none``, ``cosine`` (annealed over ``epochs``) or ``step``.
        min_lr: final learning rate of the cosine schedule.
        step_size, gamma: step schedule.
        grad_clip: clip the gradient norm (None: off).
        patience: early-stopping patience in epochs (None: off).
        monitor: ``val_loss`` (lower is better) or ``val_auc`` (higher is better).
        min_delta: minimum improvement that resets the patience.
        amp: mixed precision on CUDA (ignored on CPU).
        compile: ``torch.compile`` the model.
    """

    epochs: int = 10
    batch_size: int = 512
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: Literal["none", "cosine", "step"] = "none"
    min_lr: float = 0.0
    step_size: int = 10
    gamma: float = 0.1
    grad_clip: float | None = None
    patience: int | None = None
    monitor: Literal["val_loss", "val_auc"] = "val_loss"
    min_delta: float = 0.0
    amp: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(
                f"epochs ({self.epochs}) must be >= 0, batch_size ({self.batch_size}) >= 1 and lr ({self.lr}) > 0"
            )


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


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns; the model holds the best weights (by ``monitor``)."""

    best_metric: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]]
    time_s: float
    best_group_auc: dict[int, float] = dataclasses.field(default_factory=dict)


def default_loss(outputs: Tensor, batch: Batch) -> Tensor:
    """Weighted cross-entropy on ``label`` and (optional) ``weight``."""
    return weighted_cross_entropy(outputs, batch["label"], batch.get("weight"))


def softmax_score(index: int = 0) -> ScoreFn:
    """Score = softmax probability of class ``index``."""

    def score(outputs: Tensor) -> Tensor:
        return torch.softmax(outputs.float(), dim=1)[:, index]

    return score


#: Default score: softmax probability of class 0 (the signal).
_SIGNAL_SCORE = softmax_score(0)


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


def _to_device(batch: Batch, device: torch.device) -> dict[str, Any]:
    nb = device.type == "cuda"
    return {
        k: v.to(device, non_blocking=nb) if isinstance(v, Tensor) else v for k, v in batch.items()
    }


def _set_epoch(loader: Any, epoch: int) -> None:
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if obj is not None and callable(getattr(obj, "set_epoch", None)):
            obj.set_epoch(epoch)
            return


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
    amp: bool = False,
    epoch: int = 0,
) -> EvalResult:
    """Weighted mean loss and (per-group) AUC of ``model`` over ``loader``."""
    device = device or next(model.parameters()).device
    model.eval()
    _set_epoch(loader, epoch)
    total, count = 0.0, 0
    scores, labels, weights, groups = [], [], [], []
    for raw in loader:
        batch = _to_device(raw, device)
        with torch.autocast(
            device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"
        ):
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


def _better(value: float, best: float | None, monitor: str, min_delta: float) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if monitor != "val_auc" else value > best + min_delta


def fit(
    model: nn.Module,
    train_loader: Iterable[Batch],
    val_loader: Iterable[Batch] | None,
    config: FitConfig,
    *,
    loss_fn: Callable[[Any, Batch], Tensor] = default_loss,
    forward_fn: ForwardFn = graph_forward,
    score_fn: ScoreFn | None = _SIGNAL_SCORE,
    signal_label: int = 0,
    device: torch.device | str | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_info: Mapping[str, Any] | None = None,
    resume: bool = False,
    logger: MetricsLogger | None = None,
    stage: str = "fit",
    point: str = "all",
    group_names: Sequence[str] = (),
    early_stopping_from: int = 0,
    callbacks: Sequence[Callable[[int, dict[str, Any]], None]] = (),
    show_progress: bool = True,
) -> FitResult:
    """Train ``model`` for ``config.epochs`` epochs; see the module docstring for the contracts.

    Args:
        model: the module (moved to ``device``).
        train_loader: iterable of training batches.
        val_loader: iterable of validation batches (None: monitor the training loss).
        config: optimisation settings.
        loss_fn: ``loss_fn(outputs, batch) -> scalar``.
        forward_fn: ``forward_fn(model, batch) -> outputs``.
        score_fn: ``score_fn(outputs) -> (N,)`` signal score for the AUC (None: no AUC).
        signal_label: label value counted as signal in the AUC.
        device: target device (default: CUDA if present, else CPU).
        checkpoint_dir: where ``model.pt`` and ``last.pt`` go (None: no checkpoints).
        checkpoint_info: rebuild info stored in every checkpoint.
        resume: continue from ``checkpoint_dir/last.pt`` if it exists.
        logger: metrics CSV/TensorBoard logger.
        stage: stage label for the logs.
        point: mass-point label for the logs.
        group_names: names of validation groups (for per-point logs).
        early_stopping_from: first epoch that counts towards the patience (curricula).
        callbacks: ``callback(epoch, metrics)`` after every epoch (after checkpointing).
        show_progress: draw a tqdm bar (only on a TTY, never in CI).
    """
    dev = ddp.select_device("auto") if device is None else torch.device(device)
    model.to(dev)
    amp = config.amp and dev.type == "cuda"
    opt = make_optimizer(model, config)
    sched = make_scheduler(opt, config)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    info = dict(checkpoint_info or {})
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    main = ddp.is_main()
    state: dict[str, Any] = {
        "epoch": -1,
        "best": None,
        "best_epoch": -1,
        "bad": 0,
        "stopped": False,
        "history": [],
        "best_group_auc": {},
        "time_s": 0.0,
    }
    if resume and ckpt is not None and (ckpt / "last.pt").is_file():
        payload = load_checkpoint(ckpt / "last.pt", map_location=dev)
        unwrap(model).load_state_dict(payload["model_state"])
        tr = payload["training"]
        opt.load_state_dict(tr["optimizer"])
        if sched is not None and tr.get("scheduler") is not None:
            sched.load_state_dict(tr["scheduler"])
        if tr.get("scaler"):
            scaler.load_state_dict(tr["scaler"])
        state.update(tr["state"])
        restore_rng(tr["rng"])
        if logger is not None and main:
            logger.truncate(stage, point, state["epoch"])
    elif logger is not None and main:
        logger.truncate(stage, point, -1)
    train_model: nn.Module = model
    if ddp.is_distributed():
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    if config.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    best_state: dict[str, Tensor] | None = None
    t_start = time.perf_counter() - float(state["time_s"])
    for epoch in range(int(state["epoch"]) + 1, config.epochs):
        if state["stopped"]:
            break
        t0 = time.perf_counter()
        train_model.train()
        _set_epoch(train_loader, epoch)
        total, count = 0.0, 0
        bar = progress(
            train_loader, desc=f"{stage} {point} epoch {epoch}", enabled=show_progress and main
        )
        for raw in bar:
            batch = _to_device(raw, dev)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
                out = forward_fn(train_model, batch)
                loss = loss_fn(out, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{stage} {point}: non-finite training loss at epoch {epoch}; lower the learning "
                    "rate or check the inputs for extreme values"
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(opt)
            scaler.update()
            n = len(batch["label"]) if "label" in batch else 1
            total += float(loss.detach()) * n
            count += n
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / count:.4f}")
        train_loss = ddp.all_reduce_mean(total / max(count, 1))
        lr = float(opt.param_groups[0]["lr"])
        row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "lr": lr}
        groups: dict[int, float] = {}
        if val_loader is not None:
            ev = evaluate(
                unwrap(model),
                val_loader,
                loss_fn=loss_fn,
                forward_fn=forward_fn,
                score_fn=score_fn,
                signal_label=signal_label,
                device=dev,
                amp=amp,
                epoch=epoch,
            )
            row.update(val_loss=ev.loss, val_auc=ev.auc)
            groups = ev.group_auc
            metric = ev.auc if config.monitor == "val_auc" else ev.loss
        else:
            row.update(val_loss=float("nan"), val_auc=float("nan"))
            metric = train_loss
        if sched is not None:
            sched.step()
        # only epochs that train on every point may become the delivered model (curricula)
        improved = epoch >= early_stopping_from and _better(
            metric, state["best"], config.monitor, config.min_delta
        )
        if improved:
            state.update(best=metric, best_epoch=epoch, best_group_auc=groups)
            if ckpt is None:
                best_state = {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}
            elif main:
                save_checkpoint(
                    ckpt / "model.pt",
                    model,
                    {
                        **info,
                        "epoch": epoch,
                        "metrics": _clean(row),
                        "group_auc": _named(groups, group_names),
                    },
                )
        if epoch >= early_stopping_from:
            state["bad"] = 0 if improved else state["bad"] + 1
        row["time_s"] = time.perf_counter() - t0
        state["history"].append(_clean(row))
        state["epoch"] = epoch
        if config.patience is not None and state["bad"] >= config.patience:
            state["stopped"] = True
        state["time_s"] = time.perf_counter() - t_start
        if ckpt is not None and main:
            save_checkpoint(
                ckpt / "last.pt",
                model,
                {**info, "epoch": epoch},
                {
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "scaler": scaler.state_dict() if amp else None,
                    "state": state,
                    "rng": capture_rng(),
                },
            )
        if logger is not None and main:
            logger.log(
                stage,
                point,
                epoch,
                {k: row.get(k) for k in ("train_loss", "val_loss", "val_auc", "lr", "time_s")},
                _named(groups, group_names),
            )
        ddp.barrier()
        for cb in callbacks:
            cb(epoch, row)
    if best_state is not None:
        unwrap(model).load_state_dict(best_state)
    elif ckpt is not None and (ckpt / "model.pt").is_file() and state["best_epoch"] >= 0:
        ddp.barrier()
        unwrap(model).load_state_dict(
            load_checkpoint(ckpt / "model.pt", map_location=dev)["model_state"]
        )
    best = float("nan") if state["best"] is None else float(state["best"])
    return FitResult(
        best,
        int(state["best_epoch"]),
        int(state["epoch"]) + 1,
        bool(state["stopped"]),
        list(state["history"]),
        float(state["time_s"]),
        dict(state["best_group_auc"]),
    )


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in row.items()}


def _named(groups: Mapping[int, float], names: Sequence[str]) -> dict[str, float]:
    return {(names[k] if k < len(names) else str(k)): float(v) for k, v in groups.items()}
