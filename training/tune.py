"""``paratag tune``: Optuna search over learning rate, k, widths and dropout.

Each trial is a stage-1-sized training (per-mass models on the ``points``
subset, ``epochs`` epochs) of the train config with the trial's
hyperparameters; its objective is the mean best validation AUC over those
points (maximised). The study lives in an SQLite database
(``RUN_DIR/tune/study.db`` by default), so an interrupted search resumes
where it stopped when run again; every trial's run directory is kept under
``RUN_DIR/tune/trial_<n>``. The best parameters are written to
``RUN_DIR/tune/best.yaml`` (a ``stage1``/``model`` overlay for the train
config) and all trials to ``RUN_DIR/tune/trials.csv``.

The origin analysis used a genetic algorithm; a TPE search with a study
database gives the same resumable, parallelisable search with less tuning.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from paratag.training.run import TrainConfig, train

from paratag.config import to_dict
from paratag.errors import ConfigError, require

__all__ = ["TuneConfig", "apply_params", "tune"]


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """Search settings (the ``tune:`` section of the YAML, or CLI options).

    Attributes:
        n_trials: trials to run in this call (the study keeps earlier ones).
        study_name: Optuna study name.
        storage: Optuna storage URL (default ``sqlite:///RUN_DIR/tune/study.db``).
        points: training points each trial pre-trains (default: the first training point).
        epochs: epochs per trial (default: ``stage1.epochs``).
        lr: log-uniform learning-rate range.
        k: integer range of the EdgeConv neighbour count.
        width_scale: choices multiplying every EdgeConv width.
        dropout: uniform range of the head dropout.
        sampler: ``tpe`` or ``random``.
        seed: sampler seed.
        timeout_s: stop starting trials after this many seconds (None: no limit).
    """

    n_trials: int = 20
    study_name: str = "paratag"
    storage: str | None = None
    points: tuple[tuple[float, ...], ...] | None = None
    epochs: int | None = None
    lr: tuple[float, float] = (1e-4, 1e-2)
    k: tuple[int, int] = (4, 16)
    width_scale: tuple[float, ...] = (0.5, 1.0, 2.0)
    dropout: tuple[float, float] = (0.0, 0.5)
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.n_trials < 1 or not self.lr[0] < self.lr[1] or not 1 <= self.k[0] <= self.k[1]:
            raise ConfigError(
                f"tune: invalid search settings n_trials={self.n_trials}, lr={self.lr}, k={self.k}"
            )


def _resolved_options(cfg: TrainConfig) -> dict[str, Any]:
    """The model's options with presets expanded (read from a built model's ``options``)."""
    from paratag.models import build_model

    probe = dataclasses.replace(
        cfg.model, condition_names=("mHc", "mA"), condition_mean=(), condition_std=()
    )
    model = build_model(probe, point_dims=2, feature_dims=2)
    opts = getattr(model, "options", None)
    return (
        dict(to_dict(opts))
        if opts is not None and dataclasses.is_dataclass(opts)
        else dict(cfg.model.options)
    )


def apply_params(
    cfg: TrainConfig, params: dict[str, Any], base_options: dict[str, Any]
) -> TrainConfig:
    """The train config with a trial's ``lr``, ``k``, ``width_scale`` and ``dropout`` applied."""
    opts = dict(base_options)
    if "conv_params" in opts:
        convs = []
        for k, widths in opts["conv_params"]:
            new_k = params.get("k", k)
            scale = params.get("width_scale", 1.0)
            heads = int(opts.get("attention_heads", 1))
            new_w = [max(heads, int(round(w * scale / heads)) * heads) for w in widths]
            convs.append([new_k, new_w])
        opts["conv_params"] = convs
    if "fc_params" in opts and "dropout" in params:
        opts["fc_params"] = [[w, params["dropout"]] for w, _ in opts["fc_params"]]
    model = dataclasses.replace(cfg.model, options=opts)
    stage1 = dataclasses.replace(cfg.stage1, lr=params.get("lr", cfg.stage1.lr))
    return dataclasses.replace(cfg, model=model, stage1=stage1)


def _write_trials(study: Any, path: Path) -> None:
    """One row per trial: number, state, value and its parameters."""
    with path.open("w", newline="") as f:
        keys = sorted({k for t in study.trials for k in t.params})
        w = csv.writer(f)
        w.writerow(["number", "state", "value", *keys])
        for t in study.trials:
            value = "" if t.value is None else t.value
            w.writerow([t.number, t.state.name, value, *(t.params.get(k, "") for k in keys)])


def tune(cfg: TrainConfig, tcfg: TuneConfig) -> dict[str, Any]:
    """Run (or resume) the search; return ``{"best_value", "best_params", "n_trials", "study_db"}``."""
    optuna: Any = require("optuna", "tune")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(cfg.run_dir) / "tune"
    out.mkdir(parents=True, exist_ok=True)
    storage = tcfg.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    sampler = (
        optuna.samplers.TPESampler(seed=tcfg.seed)
        if tcfg.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=tcfg.seed)
    )
    study = optuna.create_study(
        study_name=tcfg.study_name,
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        sampler=sampler,
    )
    base_options = _resolved_options(cfg)
    points = tcfg.points
    if points is None:
        from paratag.conditions import MassGrid

        points = (MassGrid.from_config(cfg.grid).train[0],)
    stage1 = dataclasses.replace(
        cfg.stage1, points=tuple(points), epochs=tcfg.epochs or cfg.stage1.epochs
    )
    base = dataclasses.replace(cfg, stage1=stage1, tensorboard=False)

    def objective(trial: Any) -> float:
        params = {
            "lr": trial.suggest_float("lr", *tcfg.lr, log=True),
            "k": trial.suggest_int("k", *tcfg.k),
            "width_scale": trial.suggest_categorical("width_scale", list(tcfg.width_scale)),
            "dropout": trial.suggest_float("dropout", *tcfg.dropout),
        }
        trial_cfg = dataclasses.replace(
            apply_params(base, params, base_options), run_dir=str(out / f"trial_{trial.number}")
        )
        summary = train(trial_cfg, stages=[1])
        aucs = [v.get("best_val_auc") for v in summary["stage1"]["points"].values()]
        aucs = [a for a in aucs if a is not None and not math.isnan(a)]
        return float(sum(aucs) / len(aucs)) if aucs else 0.0

    try:
        study.optimize(objective, n_trials=tcfg.n_trials, timeout=tcfg.timeout_s)
    except ValueError as exc:
        if "dynamic value space" not in str(exc):
            raise
        raise ConfigError(
            f"study {tcfg.study_name!r} in {storage} was created with other choices "
            f"(width_scale {list(tcfg.width_scale)} now); keep the search space or use a new study name"
        ) from exc
    best = study.best_trial
    best_cfg = apply_params(base, best.params, base_options)
    (out / "best.yaml").write_text(
        yaml.safe_dump(
            {
                "best_value": float(best.value),
                "params": dict(best.params),
                "stage1": {"lr": best_cfg.stage1.lr},
                "model": {"options": to_dict(best_cfg.model.options)},
            },
            sort_keys=False,
        )
    )
    _write_trials(study, out / "trials.csv")
    return {
        "best_value": float(best.value),
        "best_params": dict(best.params),
        "n_trials": len(study.trials),
        "study_db": storage,
    }
