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

import dataclasses
import json
import logging
import random
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from paratag.training import ddp
from paratag.training.checkpoint import load_checkpoint, save_checkpoint
from paratag.training.loop import FitResult, fit, softmax_score
from paratag.training.losses import LossConfig, make_loss
from paratag.training.monitor import MetricsLogger
from paratag.training.schedule import (
    Stage1Config,
    Stage2Config,
    Stage3Config,
    averaging_weights,
    curriculum_phases,
    init_from_average,
    rank_points,
)

from paratag.conditions import GridConfig, MassGrid
from paratag.config import ModelConfig, dump, from_dict, read_mapping, to_dict
from paratag.data.dataset import GraphDataset, ShardStore, make_loader
from paratag.data.sampler import EpochBatchSampler
from paratag.data.selection import DataConfig, SampleBuilder
from paratag.errors import ConfigError, InputFileError

__all__ = [
    "TrainConfig",
    "dedicated_config",
    "dedicated_trainer",
    "derive_seed",
    "load_train_config",
    "resolve_config",
    "seed_everything",
    "stage1_fingerprint",
    "train",
    "train_dedicated",
    "train_inclusive",
]


log = logging.getLogger("paratag.training")


def _default_model() -> ModelConfig:
    return ModelConfig(name="parametric_particlenet")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A whole training run (the train YAML).

    Attributes:
        data: shards, folds, weights (:class:`~paratag.data.selection.DataConfig`).
        grid: mass grid and splits (:class:`~paratag.conditions.GridConfig`).
        model: the model (``condition_names``/mean/std default to the grid's).
        loss: the loss (:class:`~paratag.training.losses.LossConfig`).
        stage1, stage2, stage3: the schedule (:mod:`paratag.training.schedule`).
        run_dir: output directory.
        seed: controls initialisation, data order and background condition draws.
        device: ``auto`` (CUDA if present), ``cpu`` or ``cuda``.
        progress: tqdm bars (only on a TTY, never with CI=true).
        tensorboard: write TensorBoard scalars.
        threads: torch CPU threads during the run (None: torch's default). Small
            graph models train fastest with 1 thread per process on busy machines.
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    grid: GridConfig = dataclasses.field(default_factory=GridConfig)
    model: ModelConfig = dataclasses.field(default_factory=_default_model)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    stage1: Stage1Config = dataclasses.field(default_factory=Stage1Config)
    stage2: Stage2Config = dataclasses.field(default_factory=Stage2Config)
    stage3: Stage3Config = dataclasses.field(default_factory=Stage3Config)
    run_dir: str = "runs/paratag"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = True
    tensorboard: bool = True
    threads: int | None = None


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a train YAML; ``path`` may also name a packaged config (``demo`` -> ``train_demo.yaml``).

    Keyword overrides (``shards``, ``run_dir``, ``device``, ``seed``) replace
    the file's values when not None.
    """
    p = Path(path)
    if not p.is_file():
        from importlib import resources

        packaged = resources.files("paratag") / "configs" / f"train_{path}.yaml"
        if not packaged.is_file():
            raise ConfigError(
                f"{p}: train config does not exist (nor a packaged config train_{path}.yaml)"
            )
        p = Path(str(packaged))
    cfg = from_dict(TrainConfig, read_mapping(p), where=str(p))
    if overrides.get("shards") is not None:
        cfg = dataclasses.replace(
            cfg, data=dataclasses.replace(cfg.data, shards=str(overrides["shards"]))
        )
    top: dict[str, Any] = {
        k: (str(v) if k == "run_dir" else v)
        for k, v in overrides.items()
        if k in ("run_dir", "device", "seed") and v is not None
    }
    return dataclasses.replace(cfg, **top) if top else cfg


def derive_seed(seed: int, *tags: object) -> int:
    """A stable sub-seed for a stage/point (crc32, identical in every process)."""
    return zlib.crc32(":".join(map(str, (seed, *tags))).encode()) & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - code outside paratag may use the global RNG
    torch.manual_seed(seed)


def resolve_config(
    cfg: TrainConfig, grid: MassGrid, preset: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Fill the model's condition names and normalisation from the grid.

    ``pair_kinematics: auto`` in the model options is resolved from ``preset``
    (the shards' preset) into channel indices, so the saved config is complete.
    """
    from paratag.conditions import CONDITION_DEFAULTS, ConditionSpace

    m = cfg.model
    names = m.condition_names or grid.names
    if tuple(names) != tuple(grid.names):
        raise ConfigError(
            f"model.condition_names {list(names)} differ from grid.names {list(grid.names)}"
        )
    mean, std = m.condition_mean, m.condition_std
    if not mean:
        if all(n in CONDITION_DEFAULTS for n in names):
            space = ConditionSpace.resolve(names)
            mean, std = space.mean, space.std
        else:
            mean, std = grid.normalisation()
    options = dict(m.options)
    if options.get("pair_kinematics") == "auto":
        if preset is None:
            raise ConfigError(
                "model.options.pair_kinematics: auto needs the shards' preset; pass the shards"
            )
        from paratag.presets import load_preset

        options["pair_kinematics"] = load_preset(preset).pair_kinematics()
    model = dataclasses.replace(
        m,
        condition_names=tuple(names),
        condition_mean=tuple(mean),
        condition_std=tuple(std),
        options=options,
    )
    return dataclasses.replace(cfg, model=model)


#: data settings that only stage 3 reads (a stage-1 model does not depend on them)
STAGE3_ONLY_DATA = ("wrong_mass_weight", "wrong_mass_label")


def stage1_fingerprint(cfg: TrainConfig) -> str:
    """Hash of everything a stage-1 (or inclusive) model depends on, of a resolved config.

    Data, training points (the loss normalises its difficulty over them), model,
    loss, stage-1 schedule and seed; not the run directory, device, stages 2-3 or
    the stage-3-only data settings.
    """
    d = to_dict(cfg)
    key = {
        "data": {k: v for k, v in d["data"].items() if k not in STAGE3_ONLY_DATA},
        "train_points": d["grid"]["train"],
        **{k: d[k] for k in ("model", "loss", "stage1", "seed")},
    }
    return (
        zlib.crc32(json.dumps(key, sort_keys=True, default=str).encode()).to_bytes(4, "big").hex()
    )


def _recorded_fingerprint(path: Path) -> str | None:
    """Stage-1 fingerprint of the config a run directory recorded (None if unreadable)."""
    if not path.is_file():
        return None
    try:
        return stage1_fingerprint(load_train_config(path))
    except (ConfigError, OSError, ValueError):
        return None


def _trained_with(path: Path, fingerprint: str, legacy: str | None) -> bool:
    """Whether the checkpoint at ``path`` exists and was trained with ``fingerprint``.

    A checkpoint written before fingerprints were recorded counts as trained with
    ``legacy`` (the fingerprint of the config its run directory recorded), if given.
    """
    if not path.is_file():
        return False
    recorded = load_checkpoint(path)["info"].get("fingerprint")
    return (legacy if recorded is None else recorded) == fingerprint


def dedicated_config(cfg: TrainConfig, point: Sequence[float], run_dir: str | Path) -> TrainConfig:
    """The run config of a dedicated model at ``point`` for the run ``cfg``: stage 1 at one point.

    The condition normalisation and the preset-derived options stay those of the
    full grid, so a model trained here (by ``paratag evaluate --train-dedicated``
    or ahead of time by ``paratag validate``) has the same fingerprint either way.
    """
    from paratag.shards import read_manifest

    grid = MassGrid.from_config(cfg.grid)
    preset = read_manifest(cfg.data.shards).get("preset") or None if cfg.data.shards else None
    resolved = resolve_config(cfg, grid, preset)
    return dataclasses.replace(
        resolved,
        grid=GridConfig(preset=None, names=grid.names, train=(tuple(float(v) for v in point),)),
        stage1=dataclasses.replace(resolved.stage1, points=None),
        run_dir=str(run_dir),
        tensorboard=False,
    )


def train_dedicated(
    cfg: TrainConfig, point: Sequence[float], out_dir: str | Path, *, progress: bool = False
) -> Path | str:
    """Train (or reuse) the dedicated model of run ``cfg`` at ``point`` in ``out_dir``.

    Returns the checkpoint, or why there is none (stage 1 disabled, training
    shards missing, training failed).
    """
    from paratag.errors import ParatagError

    if not cfg.stage1.enabled:
        return "stage 1 is disabled in the run config"
    if not cfg.data.shards or not Path(cfg.data.shards).is_dir():
        return f"training shards {cfg.data.shards!r} are not available"
    sub = dataclasses.replace(dedicated_config(cfg, point, out_dir), progress=progress)
    name = MassGrid.from_config(sub.grid).name(tuple(float(v) for v in point))
    path = Path(out_dir) / "stage1" / name / "model.pt"
    # cached: decided without opening the shards
    legacy = _recorded_fingerprint(Path(out_dir) / "config.yaml")
    if _trained_with(path, stage1_fingerprint(sub), legacy):
        log.info("%s: reusing the dedicated model %s", name, path)
        return path
    try:
        train(sub, stages=[1], reuse=True)
    except ParatagError as exc:
        return f"on-demand training failed: {exc}"
    return (
        path if path.is_file() else "on-demand training produced no model (no validation events?)"
    )


def dedicated_trainer(
    run_dir: str | Path, *, progress: bool = False
) -> Callable[[tuple[float, ...], Path], Path | str]:
    """``trainer(point, folder)`` for :func:`paratag.evaluate.run.evaluate_run`, from a run directory."""
    cfg = load_train_config(Path(run_dir) / "config.yaml")

    def trainer(point: tuple[float, ...], folder: Path) -> Path | str:
        return train_dedicated(cfg, point, folder, progress=progress)

    return trainer


class _Run:
    """State shared by the stages of one :func:`train` call.

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
        if cfg.data.use_sv:
            self.dims["sv_dims"] = int(shapes["sv_features"][0])
        self.main = ddp.is_main()
        self.reuse = reuse
        self.fingerprint = stage1_fingerprint(self.cfg)
        # runs written before fingerprints were recorded: the config they were trained with
        self.previous_fingerprint = _recorded_fingerprint(self.run_dir / "config.yaml")
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
            out["points"][name] = _result_summary(res)
        out["time_s"] = time.perf_counter() - t0
        return out

    def reusable(self, path: Path, *, legacy: bool = True) -> bool:
        """Whether ``reuse`` is on and the checkpoint at ``path`` was trained with this config.

        A stage-1 checkpoint written before fingerprints were recorded (``legacy``)
        is matched against the config the run directory recorded.
        """
        if not self.reuse or self.resume:
            return False
        return _trained_with(path, self.fingerprint, self.previous_fingerprint if legacy else None)

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

    def inclusive(self) -> dict[str, Any]:
        """Train the inclusive baseline into ``run_dir/inclusive`` (stage-1 settings)."""
        t0 = time.perf_counter()
        points = list(self.grid.train)
        self.builder.require(points, "train")
        condition = tuple(float(v) for v in self.cfg.model.condition_mean)
        # the hypothesis must not reach the inclusive network: no resonance windows or cascade
        options = {
            k: v for k, v in self.cfg.model.options.items() if k not in ("resonance", "cascade")
        }
        model_cfg = dataclasses.replace(self.cfg.model, options=options)
        seed_everything(derive_seed(self.cfg.seed, "stage1"))
        from paratag.models import build_model

        model = build_model(model_cfg, **self.dims)
        loaders = self.loaders(
            self.builder.inclusive(points, "train", condition),
            self.builder.inclusive(points, "validation", condition),
            self.cfg.stage1.batch_size,
            "inclusive",
        )
        res = self.fit(
            model,
            "inclusive",
            "all",
            self.cfg.stage1,
            *loaders,
            extra_info={
                "inclusive_condition": list(condition),
                "model_config": to_dict(model_cfg),
                "fingerprint": self.fingerprint,
            },
        )
        return {
            **_result_summary(res),
            "condition": list(condition),
            "time_s": time.perf_counter() - t0,
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
        out = _result_summary(res)
        out["initialised_from"] = initialised_from
        out["val_auc_per_point"] = {names[k]: v for k, v in res.best_group_auc.items()}
        out["roles"] = {n: self.grid.role_of(p) for n, p in zip(names, val_points, strict=True)}
        out["curriculum"] = [
            {"first_epoch": e, "points": [self.grid.name(p) for p in pts]} for e, pts in phases
        ]
        out["time_s"] = time.perf_counter() - t0
        return out


def _result_summary(res: FitResult) -> dict[str, Any]:
    best = res.history[res.best_epoch] if 0 <= res.best_epoch < len(res.history) else {}
    return {
        "best_epoch": res.best_epoch,
        "best_val_loss": best.get("val_loss"),
        "best_val_auc": best.get("val_auc"),
        "epochs_run": res.epochs_run,
        "stopped_early": res.stopped_early,
        "time_s": res.time_s,
    }


def train_inclusive(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Train the inclusive baseline of ``cfg``'s run; returns ``run_dir/inclusive/model.pt``.

    Same model, epochs and data as stage 1, but the signal of every training
    point together and one constant condition (the normalisation mean): the
    reference a parametric model must beat. Cached: an existing model trained
    with the same data, model and stage-1 settings is reused.
    """
    path = Path(cfg.run_dir) / "inclusive" / "model.pt"
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(max(1, cfg.threads))
    run = _Run(cfg, resume, (), reuse=True)
    try:
        if run.reusable(path, legacy=False):
            log.info("inclusive: reusing %s (same data, model and stage-1 settings)", path)
            return path
        run.summary["inclusive"] = run.inclusive()
        if run.main:
            (run.run_dir / "summary.json").write_text(
                json.dumps(run.summary, indent=2, default=float) + "\n"
            )
    finally:
        run.logger.close()
        torch.set_num_threads(threads)
    return path


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
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(max(1, cfg.threads))
    try:
        return _train(cfg, stages, resume, callbacks, reuse)
    finally:
        torch.set_num_threads(threads)


def _train(
    cfg: TrainConfig,
    stages: Sequence[int] | None,
    resume: bool,
    callbacks: Sequence[Callable[[int, dict[str, Any]], None]],
    reuse: bool,
) -> dict[str, Any]:
    run = _Run(cfg, resume, callbacks, reuse)
    chosen = (
        list(stages)
        if stages
        else [i for i, s in ((1, cfg.stage1), (2, cfg.stage2), (3, cfg.stage3)) if s.enabled]
    )
    if any(s not in (1, 2, 3) for s in chosen):
        raise ConfigError(f"stages must be among 1, 2, 3; got {chosen}")
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
