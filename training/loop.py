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
with a gradient scaler) is on by default; on CPU, ``cpu_amp=True`` autocasts to
bfloat16 (no scaler: bfloat16 has float32's range); ``compile=True`` uses
``torch.compile``. Under ``torchrun`` the model is wrapped in DDP.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

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
from paratag.training.evaluation import (
    Batch,
    EvalResult,
    ForwardFn,
    ScoreFn,
    autocast,
    default_loss,
    evaluate,
    set_epoch,
    to_device,
)
from paratag.training.monitor import MetricsLogger, progress
from paratag.training.optim import make_optimizer, make_scheduler
from torch import Tensor, nn

from paratag.models.io import graph_forward
from paratag.run_config import FitConfig

__all__ = [
    "EvalResult",
    "FitConfig",
    "FitResult",
    "FitState",
    "evaluate",
    "fit",
    "graph_forward",
    "make_optimizer",
    "make_scheduler",
    "softmax_score",
]


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


def softmax_score(index: int = 0) -> ScoreFn:
    """Score = softmax probability of class ``index``."""

    def score(outputs: Tensor) -> Tensor:
        return torch.softmax(outputs.float(), dim=1)[:, index]

    return score


#: Default score: softmax probability of class 0 (the signal).
_SIGNAL_SCORE = softmax_score(0)


def _better(value: float, best: float | None, monitor: str, min_delta: float) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if monitor != "val_auc" else value > best + min_delta


@dataclasses.dataclass
class FitState:
    """What :func:`fit` carries from epoch to epoch (and through ``last.pt`` on resume).

    Attributes:
        epoch: last finished epoch (-1 before the first).
        best: best monitored value so far (None before the first eligible epoch).
        best_epoch: epoch of ``best``.
        bad: eligible epochs since the last improvement (early stopping).
        stopped: early stopping triggered.
        history: one metrics row per finished epoch.
        best_group_auc: per-group validation AUC at ``best_epoch``.
        time_s: training time so far (over resumes).
    """

    epoch: int = -1
    best: float | None = None
    best_epoch: int = -1
    bad: int = 0
    stopped: bool = False
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best_group_auc: dict[int, float] = dataclasses.field(default_factory=dict)
    time_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class _Hooks:
    """What a :func:`fit` call plugs in: loss, forward and score functions, logs, checkpoints."""

    loss_fn: Callable[[Any, Batch], Tensor]
    forward_fn: ForwardFn
    score_fn: ScoreFn | None
    signal_label: int
    checkpoint_dir: str | Path | None
    checkpoint_info: Mapping[str, Any] | None
    logger: MetricsLogger | None
    stage: str
    point: str
    group_names: Sequence[str]
    early_stopping_from: int
    show_progress: bool


def _autocast_dtype(config: FitConfig, dev: torch.device) -> torch.dtype | None:
    """float16 for ``amp`` on CUDA, bfloat16 for ``cpu_amp`` on CPU, else None (float32)."""
    if dev.type == "cuda":
        return torch.float16 if config.amp else None
    if not config.cpu_amp or dev.type != "cpu":
        return None
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        warnings.warn(
            "cpu_amp: this CPU has no bfloat16 support in oneDNN (AVX512 needed); "
            "training in float32 instead",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return torch.bfloat16


class _Fit:
    """One :func:`fit` call: the model, optimiser, schedule, AMP scaler and checkpoints."""

    def __init__(
        self, model: nn.Module, config: FitConfig, dev: torch.device, hooks: _Hooks
    ) -> None:
        self.model, self.config, self.dev = model.to(dev), config, dev
        self.autocast_dtype = _autocast_dtype(config, dev)
        self.amp = self.autocast_dtype == torch.float16  # the gradient scaler is float16's
        self.opt = make_optimizer(model, config)
        self.sched = make_scheduler(self.opt, config)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.hooks = hooks
        self.ckpt = Path(hooks.checkpoint_dir) if hooks.checkpoint_dir is not None else None
        self.info = dict(hooks.checkpoint_info or {})
        self.main = ddp.is_main()
        self.state = FitState()
        self.best_state: dict[str, Tensor] | None = None
        self.train_model: nn.Module = model
        if ddp.is_distributed():
            self.train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[dev.index] if dev.type == "cuda" else None
            )
        if config.compile:
            self.train_model = torch.compile(self.train_model)  # type: ignore[assignment]

    def resume(self, resume: bool) -> None:
        """Continue from ``last.pt`` (model, optimiser, schedule, scaler, RNG, state)."""
        logger, stage, point = self.hooks.logger, self.hooks.stage, self.hooks.point
        if resume and self.ckpt is not None and (self.ckpt / "last.pt").is_file():
            payload = load_checkpoint(self.ckpt / "last.pt", map_location=self.dev)
            unwrap(self.model).load_state_dict(payload["model_state"])
            tr = payload["training"]
            self.opt.load_state_dict(tr["optimizer"])
            if self.sched is not None and tr.get("scheduler") is not None:
                self.sched.load_state_dict(tr["scheduler"])
            if tr.get("scaler"):
                self.scaler.load_state_dict(tr["scaler"])
            self.state = FitState(**tr["state"])
            restore_rng(tr["rng"])
            if logger is not None and self.main:
                logger.truncate(stage, point, self.state.epoch)
        elif logger is not None and self.main:
            logger.truncate(stage, point, -1)

    def train_epoch(self, loader: Iterable[Batch], epoch: int) -> float:
        """One pass over the training batches; the mean loss over all ranks."""
        h, dev, opt, scaler = self.hooks, self.dev, self.opt, self.scaler
        self.train_model.train()
        set_epoch(loader, epoch)
        total, count = 0.0, 0
        desc = f"{h.stage} {h.point} epoch {epoch}"
        bar = progress(loader, desc=desc, enabled=h.show_progress and self.main)
        for raw in bar:
            batch = to_device(raw, dev)
            with autocast(dev, self.autocast_dtype):
                loss = h.loss_fn(h.forward_fn(self.train_model, batch), batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{h.stage} {h.point}: non-finite training loss at epoch {epoch}; "
                    "lower the learning rate or check the inputs for extreme values"
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if self.config.grad_clip is not None:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            scaler.step(opt)
            scaler.update()
            n = len(batch["label"]) if "label" in batch else 1
            total += float(loss.detach()) * n
            count += n
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / count:.4f}")
        return ddp.all_reduce_mean(total / max(count, 1))

    def validate(
        self, loader: Iterable[Batch] | None, epoch: int, row: dict[str, Any]
    ) -> tuple[float, dict[int, float]]:
        """Validation loss and AUC into ``row``; returns (monitored value, per-group AUCs)."""
        h = self.hooks
        if loader is None:
            row.update(val_loss=float("nan"), val_auc=float("nan"))
            return row["train_loss"], {}
        ev = evaluate(
            unwrap(self.model),
            loader,
            loss_fn=h.loss_fn,
            forward_fn=h.forward_fn,
            score_fn=h.score_fn,
            signal_label=h.signal_label,
            device=self.dev,
            autocast_dtype=self.autocast_dtype,
            epoch=epoch,
        )
        row.update(val_loss=ev.loss, val_auc=ev.auc)
        return (ev.auc if self.config.monitor == "val_auc" else ev.loss), ev.group_auc

    def record(
        self, epoch: int, metric: float, groups: dict[int, float], row: dict[str, Any]
    ) -> None:
        """Best model, early stopping, ``last.pt`` and the metrics log after an epoch."""
        cfg, st, h = self.config, self.state, self.hooks
        # only epochs that train on every point may become the delivered model (curricula)
        eligible = epoch >= h.early_stopping_from
        improved = eligible and _better(metric, st.best, cfg.monitor, cfg.min_delta)
        if improved:
            st.best, st.best_epoch, st.best_group_auc = metric, epoch, groups
            self.save_best(epoch, row, groups)
        if eligible:
            st.bad = 0 if improved else st.bad + 1
        st.history.append(_clean(row))
        st.epoch = epoch
        if cfg.patience is not None and st.bad >= cfg.patience:
            st.stopped = True
        if self.ckpt is not None and self.main:
            save_checkpoint(
                self.ckpt / "last.pt",
                self.model,
                {**self.info, "epoch": epoch},
                {
                    "optimizer": self.opt.state_dict(),
                    "scheduler": self.sched.state_dict() if self.sched is not None else None,
                    "scaler": self.scaler.state_dict() if self.amp else None,
                    "state": dataclasses.asdict(st),
                    "rng": capture_rng(),
                },
            )
        if h.logger is not None and self.main:
            keys = ("train_loss", "val_loss", "val_auc", "lr", "time_s")
            h.logger.log(
                h.stage,
                h.point,
                epoch,
                {k: row.get(k) for k in keys},
                _named(groups, h.group_names),
            )

    def save_best(self, epoch: int, row: Mapping[str, Any], groups: Mapping[int, float]) -> None:
        """Keep the best weights: ``model.pt`` with checkpoints, else in memory."""
        if self.ckpt is None:
            self.best_state = {
                k: v.detach().clone() for k, v in unwrap(self.model).state_dict().items()
            }
        elif self.main:
            meta = {"epoch": epoch, "metrics": _clean(row)}
            meta["group_auc"] = _named(groups, self.hooks.group_names)
            save_checkpoint(self.ckpt / "model.pt", self.model, {**self.info, **meta})

    def epochs(
        self,
        train_loader: Iterable[Batch],
        val_loader: Iterable[Batch] | None,
        callbacks: Sequence[Callable[[int, dict[str, Any]], None]],
    ) -> FitResult:
        """The remaining epochs: train, validate, step the schedule, record; then the result."""
        t_start = time.perf_counter() - self.state.time_s
        for epoch in range(self.state.epoch + 1, self.config.epochs):
            if self.state.stopped:
                break
            t0 = time.perf_counter()
            row: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": self.train_epoch(train_loader, epoch),
                "lr": float(self.opt.param_groups[0]["lr"]),
            }
            metric, groups = self.validate(val_loader, epoch, row)
            if self.sched is not None:
                self.sched.step()
            row["time_s"] = time.perf_counter() - t0
            self.state.time_s = time.perf_counter() - t_start
            self.record(epoch, metric, groups, row)
            ddp.barrier()
            for cb in callbacks:
                cb(epoch, row)
        return self.result()

    def result(self) -> FitResult:
        """Load the best weights into the model and summarise the run."""
        st = self.state
        if self.best_state is not None:
            unwrap(self.model).load_state_dict(self.best_state)
        elif self.ckpt is not None and (self.ckpt / "model.pt").is_file() and st.best_epoch >= 0:
            ddp.barrier()
            payload = load_checkpoint(self.ckpt / "model.pt", map_location=self.dev)
            unwrap(self.model).load_state_dict(payload["model_state"])
        best = float("nan") if st.best is None else float(st.best)
        return FitResult(
            best,
            st.best_epoch,
            st.epoch + 1,
            st.stopped,
            list(st.history),
            st.time_s,
            dict(st.best_group_auc),
        )


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
    hooks = _Hooks(
        loss_fn=loss_fn,
        forward_fn=forward_fn,
        score_fn=score_fn,
        signal_label=signal_label,
        checkpoint_dir=checkpoint_dir,
        checkpoint_info=checkpoint_info,
        logger=logger,
        stage=stage,
        point=point,
        group_names=group_names,
        early_stopping_from=early_stopping_from,
        show_progress=show_progress,
    )
    run = _Fit(model, config, dev, hooks)
    run.resume(resume)
    return run.epochs(train_loader, val_loader, callbacks)


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in row.items()}


def _named(groups: Mapping[int, float], names: Sequence[str]) -> dict[str, float]:
    return {(names[k] if k < len(names) else str(k)): float(v) for k, v in groups.items()}
