"""``paratag train``: run the three-stage schedule over GraphBuilder shards into a run directory.

Run directory layout::

    RUN_DIR/config.yaml               resolved TrainConfig (what actually ran)
    RUN_DIR/stage1/<point>/model.pt   best stage-1 model per training point (+ last.pt)
    RUN_DIR/stage2/model.pt           averaged initialisation of the parametric model
    RUN_DIR/stage3/model.pt           best joint model (+ last.pt, for resuming)
    RUN_DIR/metrics.csv               stage,point,epoch,train_loss,val_loss,val_auc,lr,time_s
    RUN_DIR/tensorboard/<stage>/<point>/
    RUN_DIR/summary.json              per stage: time, best AUC per point, curriculum, ...

Every stage reads its inputs from checkpoints of the previous one, so any
stage can be rerun alone (``train(cfg, stages=[3])``); ``resume=True``
continues interrupted stages from their ``last.pt``. The seed fixes model
initialisation, data order and background condition draws of every stage.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from paratag.training import ddp
from paratag.training.checkpoint import load_checkpoint, save_checkpoint
from paratag.training.config import (
    STAGE3_ONLY_DATA,
    TrainConfig,
    derive_seed,
    load_train_config,
    recorded_fingerprint,
    resolve_config,
    seed_everything,
    stage1_fingerprint,
    trained_with,
)
from paratag.training.loop import FitResult, fit, softmax_score
from paratag.training.losses import make_loss
from paratag.training.monitor import MetricsLogger
from paratag.training.schedule import (
    averaging_weights,
    curriculum_phases,
    init_from_average,
    rank_points,
)

from paratag.conditions import MassGrid
from paratag.config import dump, to_dict
from paratag.data.dataset import GraphDataset, ShardStore, make_loader
from paratag.data.sampler import EpochBatchSampler
from paratag.data.selection import SampleBuilder
from paratag.errors import ConfigError, InputFileError
from paratag.runtime import cpu_settings

__all__ = [
    "STAGE3_ONLY_DATA",
    "TrainConfig",
    "derive_seed",
    "load_train_config",
    "resolve_config",
    "seed_everything",
    "stage1_fingerprint",
    "train",
]


log = logging.getLogger("paratag.training")


class RunState:
    """State shared by the stages of one :func:`train` call (internal to paratag.training).

    ``reuse``: keep stage-1 (and inclusive) models whose fingerprint matches
    this config instead of training them again.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        resume: bool,
        callbacks: Sequence[Callable[..., None]],
        reuse: bool = False,
    ) -> None:
        if not cfg.data.shards:
            raise ConfigError("data.shards is empty: set it in the config or pass --shards DIR")
        self.device = ddp.select_device(cfg.device)
        ddp.init_distributed(self.device)
        self.grid = MassGrid.from_config(cfg.grid)
        specs = [s for s in (cfg.data.weight_column, cfg.loss.disco_spectator) if s]
        self.store = ShardStore(cfg.data.shards, cfg.data.cache_size, spectators=specs)
        self.cfg = resolve_config(cfg, self.grid, self.store.manifest.get("preset") or None)
        self.run_dir = Path(cfg.run_dir)
        self.resume, self.callbacks = resume, callbacks
        m = self.cfg.model
        self.builder = SampleBuilder(
            self.store,
            self.grid,
            cfg.data,
            mean=m.condition_mean,
            std=m.condition_std,
            seed=cfg.seed,
            spectator=cfg.loss.disco_spectator or None,
        )
        labels = np.unique(self.builder.label)
        if labels.min() < 0 or labels.max() >= m.n_classes:
            raise ConfigError(
                f"{self.store.path}: labels {labels.tolist()} do not fit model.n_classes={m.n_classes}; "
                f"set model.n_classes: {int(labels.max()) + 1}, or data.binary: true for signal vs background"
            )
        shapes = self.store.shapes
        self.dims = {
            "point_dims": int(shapes["points"][0]),
            "feature_dims": int(shapes["features"][0]),
        }
        if cfg.data.use_sv:  # the model's secondary input is the preset's second cloud
            self.dims["sv_dims"] = int(shapes[self.store.require_secondary()[1]][0])
        self.main = ddp.is_main()
        self.reuse = reuse
        self.fingerprint = stage1_fingerprint(self.cfg)
        # runs written before fingerprints were recorded: the config they were trained with
        self.previous_fingerprint = recorded_fingerprint(self.run_dir / "config.yaml")
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            dump(self.cfg, self.run_dir / "config.yaml")
        self.logger = MetricsLogger(self.run_dir, tensorboard=cfg.tensorboard, enabled=self.main)
        path = self.run_dir / "summary.json"
        self.summary: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        self.loss_fn = make_loss(cfg.loss, self.grid.names, self.grid.train)
        self.score_fn = softmax_score(cfg.loss.signal_index)

    def info(self, stage: str, point: str) -> dict[str, Any]:
        """Everything :func:`~paratag.training.checkpoint.load_model` needs, plus provenance."""
        from paratag import __version__

        labels = self.builder.label
        names = self.store.dataset_names()
        classes = []
        for c in range(self.cfg.model.n_classes):
            ds = sorted({names[d] for d in np.unique(self.store.table["dataset"][labels == c])})
            classes.append(
                "signal" if c == self.cfg.data.signal_label else "+".join(ds) or f"class{c}"
            )
        return {
            "model_config": to_dict(self.cfg.model),
            "input_dims": dict(self.dims),
            "preset": self.store.manifest.get("preset", {}),
            "condition_names": list(self.grid.names),
            "condition_mean": list(self.cfg.model.condition_mean),
            "condition_std": list(self.cfg.model.condition_std),
            "class_names": classes,
            "signal_label": self.cfg.data.signal_label,
            "grid": {
                r: [list(p) for p in self.grid.points(r)]
                for r in ("train", "validation", "interpolation", "extrapolation")
            },
            "n_folds": self.cfg.data.n_folds,
            "fold": self.cfg.data.fold,
            "seed": self.cfg.seed,
            "stage": stage,
            "point": point,
            "paratag_version": __version__,
        }

    def loaders(
        self,
        train: GraphDataset,
        val: GraphDataset,
        batch_size: int,
        tag: str,
        phases: Sequence[tuple[int, np.ndarray]] = (),
    ) -> tuple[Any, Any]:
        files = self.store.table["file"]
        d = self.cfg.data
        tr = EpochBatchSampler(
            len(train),
            batch_size,
            seed=derive_seed(self.cfg.seed, tag, "data"),
            files=files[train.rows],
            window=d.cache_size,
            rank=ddp.rank(),
            world_size=ddp.world_size(),
            phases=phases,
            lengths=self.store.lengths()[train.rows] if d.ragged else None,
            bucket=d.ragged_bucket if d.ragged else 0,
        )
        va = EpochBatchSampler(len(val), batch_size, shuffle=False)
        return (
            make_loader(train, tr, num_workers=d.num_workers, seed=self.cfg.seed),
            make_loader(val, va, num_workers=d.num_workers, seed=self.cfg.seed),
        )

    def new_model(self, seed: int) -> torch.nn.Module:
        from paratag.models import build_model

        seed_everything(seed)
        return build_model(self.cfg.model, **self.dims)

    def fit(
        self,
        model: torch.nn.Module,
        stage: str,
        point: str,
        fit_cfg: Any,
        train_loader: Any,
        val_loader: Any,
        extra_info: dict[str, Any] | None = None,
        **kw: Any,
    ) -> FitResult:
        if self.cfg.data.ragged:  # trimmed batches keep at least the model's kNN k + 1 slots
            from paratag.parity import min_particles

            for loader in (train_loader, val_loader):
                loader.dataset.trim = min_particles(model)
        return fit(
            model,
            train_loader,
            val_loader,
            fit_cfg,
            loss_fn=self.loss_fn,
            score_fn=self.score_fn,
            signal_label=self.cfg.data.signal_label,
            device=self.device,
            checkpoint_dir=self.run_dir / stage / (point if stage == "stage1" else ""),
            checkpoint_info={**self.info(stage, point), **(extra_info or {})},
            resume=self.resume,
            logger=self.logger,
            stage=stage,
            point=point,
            callbacks=self.callbacks,
            show_progress=self.cfg.progress,
            **kw,
        )

    # ------------------------------------------------------------------ stages
    def stage1_points(self) -> list[tuple[float, ...]]:
        pts = self.cfg.stage1.points
        chosen = (
            [tuple(float(v) for v in p) for p in pts] if pts is not None else list(self.grid.train)
        )
        for p in chosen:
            if p not in self.grid.train:
                raise ConfigError(
                    f"stage1.points: {self.grid.name(p)} is not a training point of the grid"
                )
        return chosen

    def stage1(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        points = self.stage1_points()
        self.builder.require(points, "train")
        out: dict[str, Any] = {"points": {}}
        for p in points:
            name = self.grid.name(p)
            if self.reusable(self.run_dir / "stage1" / name / "model.pt"):
                log.info(
                    "stage1 %s: reusing its model (same data, model and stage-1 settings)", name
                )
                out["points"][name] = (
                    self.summary.get("stage1", {}).get("points", {}).get(name, {"reused": True})
                )
                continue
            # one shared initialisation for every point: averaging networks is only meaningful
            # when they start from the same weights (no permutation ambiguity), as in model soups
            model = self.new_model(derive_seed(self.cfg.seed, "stage1"))
            loaders = self.loaders(
                self.builder.single_point(p, "train"),
                self.builder.single_point(p, "validation"),
                self.cfg.stage1.batch_size,
                f"stage1:{name}",
            )
            res = self.fit(
                model,
                "stage1",
                name,
                self.cfg.stage1,
                *loaders,
                extra_info={"fingerprint": self.fingerprint},
            )
            out["points"][name] = fit_summary(res)
        out["time_s"] = time.perf_counter() - t0
        return out

    def reusable(self, path: Path, *, legacy: bool = True) -> bool:
        """Whether ``reuse`` is on and the checkpoint at ``path`` was trained with this config.

        A stage-1 checkpoint written before fingerprints were recorded (``legacy``)
        is matched against the config the run directory recorded.
        """
        if not self.reuse or self.resume:
            return False
        return trained_with(path, self.fingerprint, self.previous_fingerprint if legacy else None)

    def stage1_aucs(self) -> dict[tuple[float, ...], float]:
        aucs = {}
        for p in self.grid.train:
            path = self.run_dir / "stage1" / self.grid.name(p) / "model.pt"
            if path.is_file():
                metrics = load_checkpoint(path)["info"].get("metrics", {})
                aucs[p] = float(metrics.get("val_auc", float("nan")))
        return aucs

    def stage2(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        points = [
            p
            for p in self.stage1_points()
            if (self.run_dir / "stage1" / self.grid.name(p) / "model.pt").is_file()
        ]
        if not points:
            raise InputFileError(
                str(self.run_dir / "stage1"),
                "no stage-1 models to average",
                "run stage 1 first (`paratag train CONFIG --stage 1`)",
            )
        payloads = [
            load_checkpoint(self.run_dir / "stage1" / self.grid.name(p) / "model.pt")
            for p in points
        ]
        aucs = self.stage1_aucs()
        weights = averaging_weights(
            [aucs.get(p, float("nan")) for p in points], self.cfg.stage2.averaging
        )
        model = self.new_model(derive_seed(self.cfg.seed, "stage2"))
        reset = init_from_average(
            model,
            [pl["model_state"] for pl in payloads],
            weights,
            attention_output_identity=self.cfg.stage2.attention_output_identity,
        )
        names = [self.grid.name(p) for p in points]
        info = {
            **self.info("stage2", "all"),
            "averaged": dict(zip(names, weights, strict=True)),
            "reset_parameters": reset,
        }
        if self.main:
            save_checkpoint(self.run_dir / "stage2" / "model.pt", model, info)
        ddp.barrier()
        return {
            "time_s": time.perf_counter() - t0,
            "averaging": self.cfg.stage2.averaging,
            "weights": dict(zip(names, weights, strict=True)),
            "reset_parameters": len(reset),
        }

    def stage3(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        cfg3 = self.cfg.stage3
        points = list(self.grid.train)
        self.builder.require(points, "train")
        model = self.new_model(derive_seed(self.cfg.seed, "stage3"))
        init = self.run_dir / "stage2" / "model.pt"
        initialised_from = "random"
        if self.cfg.stage2.enabled or init.is_file():
            model.load_state_dict(load_checkpoint(init)["model_state"])
            initialised_from = str(init)
        ranked = rank_points(points, self.grid.names, self.stage1_aucs())
        phases = curriculum_phases(cfg3, ranked)
        train_ds = self.builder.joint(points, "train", phases=phases)
        val_points = self.builder.available([*points, *self.grid.validation], "validation")
        val_ds = self.builder.grouped(val_points, "validation")
        loaders = self.loaders(
            train_ds,
            val_ds,
            cfg3.batch_size,
            "stage3",
            SampleBuilder.phase_positions(train_ds, points, phases),
        )
        names = [self.grid.name(p) for p in val_points]
        res = self.fit(
            model,
            "stage3",
            "all",
            cfg3,
            *loaders,
            extra_info={"initialised_from": initialised_from},
            group_names=names,
            early_stopping_from=phases[-1][0],
        )
        out = fit_summary(res)
        out["initialised_from"] = initialised_from
        out["val_auc_per_point"] = {names[k]: v for k, v in res.best_group_auc.items()}
        out["roles"] = {n: self.grid.role_of(p) for n, p in zip(names, val_points, strict=True)}
        out["curriculum"] = [
            {"first_epoch": e, "points": [self.grid.name(p) for p in pts]} for e, pts in phases
        ]
        out["time_s"] = time.perf_counter() - t0
        return out

    def stage4(self) -> dict[str, Any]:
        from paratag.training.ratio import ratio_stage

        return ratio_stage(self)


def fit_summary(res: FitResult) -> dict[str, Any]:
    best = res.history[res.best_epoch] if 0 <= res.best_epoch < len(res.history) else {}
    return {
        "best_epoch": res.best_epoch,
        "best_val_loss": best.get("val_loss"),
        "best_val_auc": best.get("val_auc"),
        "epochs_run": res.epochs_run,
        "stopped_early": res.stopped_early,
        "time_s": res.time_s,
    }


def train(
    cfg: TrainConfig,
    *,
    stages: Sequence[int] | None = None,
    resume: bool = False,
    callbacks: Sequence[Callable[[int, dict[str, Any]], None]] = (),
    reuse: bool = False,
) -> dict[str, Any]:
    """Run the enabled stages (or exactly ``stages``) and return the run summary.

    Args:
        cfg: the run config.
        stages: stages to run, e.g. ``[2, 3]``; None runs every enabled stage.
        resume: continue each stage from its ``last.pt`` when present.
        callbacks: ``callback(epoch, metrics)`` after every epoch of stages 1 and 3.
        reuse: keep stage-1 models already in ``run_dir`` that were trained with
            the same data, model, loss, stage-1 settings and seed
            (:func:`stage1_fingerprint`); stages 2 and 3 always run.
    """
    with cpu_settings(cfg.threads, cfg.heap):
        return _train(cfg, stages, resume, callbacks, reuse)


def _train(
    cfg: TrainConfig,
    stages: Sequence[int] | None,
    resume: bool,
    callbacks: Sequence[Callable[[int, dict[str, Any]], None]],
    reuse: bool,
) -> dict[str, Any]:
    run = RunState(cfg, resume, callbacks, reuse)
    chosen = (
        list(stages)
        if stages
        else [
            i
            for i, s in ((1, cfg.stage1), (2, cfg.stage2), (3, cfg.stage3), (4, cfg.ratio))
            if s.enabled
        ]
    )
    if any(s not in (1, 2, 3, 4) for s in chosen):
        raise ConfigError(
            f"stages must be among 1, 2, 3 and 4 (the hypothesis ratio); got {chosen}"
        )
    try:
        for s in sorted(chosen):
            run.summary[f"stage{s}"] = getattr(run, f"stage{s}")()
            run.summary.update(
                device=str(run.device),
                world_size=ddp.world_size(),
                run_dir=str(run.run_dir),
                seed=cfg.seed,
            )
            if run.main:
                (run.run_dir / "summary.json").write_text(
                    json.dumps(run.summary, indent=2, default=float) + "\n"
                )
    finally:
        run.logger.close()
    return run.summary
