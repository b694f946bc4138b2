"""The hypothesis-ratio stage: after stage 3, learn what the SM objective does not reward.

Trains a two-class copy of the stage-3 architecture on signal only
(:func:`paratag.data.ratio.hypothesis_ratio_dataset`: each training point's
signal against its partners', at its hypothesis), then writes the delivered
model ``RUN_DIR/ratio/model.pt``: a :class:`~paratag.models.ratio.HypothesisRatio`
holding the stage-3 model and the ratio model, whose signal odds are the
stage-3 odds times the learned ratio. The ratio
model alone (``ratio/net/model.pt``, best validation loss; ``last.pt`` its resume state).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

import torch
from paratag.training.config import derive_seed, seed_everything
from paratag.training.loop import fit, softmax_score

from paratag.config import ModelConfig, to_dict
from paratag.data.ratio import hypothesis_ratio_dataset, ratio_partners
from paratag.models.io import file_checksum, load_checkpoint, save_checkpoint
from paratag.run_config import RatioConfig

if TYPE_CHECKING:
    from paratag.training.run import RunState

__all__ = ["combined_config", "ratio_stage"]

log = logging.getLogger("paratag.training")


def combined_config(base: ModelConfig, cfg: RatioConfig) -> ModelConfig:
    """The :class:`ModelConfig` of the delivered ``hypothesis_ratio`` model."""
    part = {"name": base.name, "options": dict(base.options)}
    options = {"base": part, "ratio": part, "scale": cfg.scale, "self_weight": cfg.self_weight}
    if cfg.base_condition == "mean":
        options["base_fixed"] = list(cfg.vary)
    return dataclasses.replace(base, name="hypothesis_ratio", options=options)


def _init_from_stage3(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Copy every stage-3 tensor whose shape matches (all but the output layer); return the count."""
    own = model.state_dict()
    shared = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(shared, strict=False)
    return len(shared)


def ratio_stage(run: RunState) -> dict[str, Any]:
    """Train the ratio model of ``run`` and write the delivered combined model."""
    from paratag.models import build_model

    t0 = time.perf_counter()
    cfg, mcfg = run.cfg.ratio, run.cfg.model
    points = list(run.grid.train)
    if not any(ratio_partners(points, run.grid.names, cfg.vary).values()):
        why = f"no two training points differ only in {list(cfg.vary)}"
        log.warning("ratio stage skipped: %s; the run delivers its stage-3 model", why)
        if run.main:  # an earlier ratio model no longer matches this config
            (run.run_dir / "ratio" / "model.pt").unlink(missing_ok=True)
        return {"skipped": why, "time_s": time.perf_counter() - t0}
    train_ds = hypothesis_ratio_dataset(run.builder, points, "train", cfg.vary)
    val_ds = hypothesis_ratio_dataset(run.builder, points, "validation", cfg.vary)
    ratio_cfg = dataclasses.replace(mcfg, n_classes=2)
    seed_everything(derive_seed(run.cfg.seed, "ratio"))
    ratio = build_model(ratio_cfg, **run.dims)
    stage3_path = run.run_dir / "stage3" / "model.pt"
    stage3 = load_checkpoint(stage3_path)["model_state"]
    copied = _init_from_stage3(ratio, stage3) if cfg.init == "stage3" else 0
    loaders = run.loaders(train_ds, val_ds, cfg.batch_size, "ratio")
    if run.cfg.data.ragged:  # trimmed batches keep at least the model's kNN k + 1 slots
        from paratag.parity import min_particles

        for loader in loaders:
            loader.dataset.trim = min_particles(ratio)
    info = {
        **run.info("ratio", "all"),
        "model_config": to_dict(ratio_cfg),
        "class_names": ["right hypothesis", "partner signal"],
        "vary": list(cfg.vary),
    }
    res = fit(
        ratio,
        *loaders,
        cfg,
        score_fn=softmax_score(0),
        signal_label=0,
        device=run.device,
        checkpoint_dir=run.run_dir / "ratio" / "net",
        checkpoint_info=info,
        resume=run.resume,
        logger=run.logger,
        stage="ratio",
        point="all",
        group_names=[run.grid.name(p) for p in points],
        callbacks=run.callbacks,
        show_progress=run.cfg.progress,
    )
    best = res.history[res.best_epoch] if 0 <= res.best_epoch < len(res.history) else {}
    combined = build_model(combined_config(mcfg, cfg), **run.dims)
    combined.get_submodule("base").load_state_dict(stage3)
    combined.get_submodule("ratio").load_state_dict(ratio.cpu().state_dict())
    if run.main:
        save_checkpoint(
            run.run_dir / "ratio" / "model.pt",
            combined,
            {
                **run.info("ratio", "all"),
                "model_config": to_dict(combined_config(mcfg, cfg)),
                "metrics": {"ratio_val_auc": best.get("val_auc")},
                "stage3_checksum": file_checksum(stage3_path),
            },
        )
    return {
        "best_epoch": res.best_epoch,
        "best_val_loss": best.get("val_loss"),
        "best_val_auc": best.get("val_auc"),
        "epochs_run": res.epochs_run,
        "initialised_tensors": copied,
        "train_events": len(train_ds),
        "vary": list(cfg.vary),
        "time_s": time.perf_counter() - t0,
    }
