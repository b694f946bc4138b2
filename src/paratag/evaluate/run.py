"""``paratag evaluate``: score a trained run on test shards and write the evaluation report.

:func:`evaluate_run` loads the stage-3 parametric model and the stage-1
dedicated models of a run directory (see :mod:`paratag.training.run`), scores
the test shards at every mass hypothesis that has signal there, and hands the
numbers to :func:`~paratag.evaluate.report.build_report`'s studies:

- test events: when the test shards are the training shards (same directory
  or identical manifest), only the run's test fold (``event % n_folds ==
  fold``; the validation fold when ``n_folds == 2``); any other shard
  directory is a separate test sample and is used whole;
- per point: parametric AUC (signal of the point vs every background, both
  scored at that hypothesis), dedicated AUC (the stage-1 model of the point),
  split from the run's grid (validation points count as ``interp``);
- wrong hypothesis: every signal sample scored at every hypothesis;
- metrics, KS and sculpting: signal of the *training* points at their true
  hypothesis plus backgrounds at a hypothesis drawn from those points with the
  signal's weight fractions (as in training), weighted and class-balanced like
  training; the training fold is scored the same way for the KS test;
- seed stability over several run directories, pileup robustness over extra
  shard directories, training curves from ``metrics.csv``.

Sections that cannot run say why (``not run: ...``); ``evaluation.json`` next
to the report records the inputs, the event selection, the counts and the wall time
of each study (``timings_s``, each also logged).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from paratag.conditions import point_name
from paratag.errors import ConfigError, InputFileError
from paratag.evaluate.hypotheses import hypothesis_study
from paratag.evaluate.inference import (
    Scorer,
    compare_run,
    diagonal_aucs,
    importance_of,
    per_point,
)
from paratag.evaluate.reference import reference_from_preset
from paratag.evaluate.report import write_report
from paratag.evaluate.results import ScoredSample, compute_results
from paratag.evaluate.runs import (
    MASS_SPECTATORS,
    EvalSample,
    LoadedRun,
    load_model_for_eval,
    load_run,
    parse_pileup,
)
from paratag.evaluate.scored import overall_sample, sculpting_sample, training_fold
from paratag.evaluate.studies import point_label, wrong_hypothesis_from_matrix
from paratag.runtime import select_device

__all__ = ["MASS_SPECTATORS", "evaluate_run", "parse_pileup"]

log = logging.getLogger(__name__)

Point = tuple[float, ...]
#: ``trainer(point, folder) -> checkpoint or why not``: dedicated models on demand (workflow layer)
DedicatedTrainer = Callable[[Point, Path], "Path | str"]
Selection = Literal["auto", "test_fold", "all"]
_SPLIT = {
    "train": "train",
    "validation": "interp",
    "interpolation": "interp",
    "extrapolation": "extrap",
}


def _reference(sample: EvalSample, names: Sequence[str]) -> Any:
    """The shards' preset reference scorer (None when the preset declares none)."""
    from paratag.presets import builtin_presets, load_preset

    preset = sample.store.manifest.get("preset")
    if not preset:
        return None
    if not preset.get("reference") and preset.get("name") in builtin_presets():
        # shards built before presets declared references: take the packaged preset's
        preset = {**preset, "reference": dict(load_preset(preset["name"]).reference)}
    return reference_from_preset(load_preset(preset), names)


def evaluate_run(
    run_dir: str | Path,
    test_shards: str | Path,
    out_dir: str | Path | None = None,
    *,
    n_boot: int = 100,
    seed: int = 0,
    seeds_runs: Sequence[str | Path] = (),
    pileup_shards: Mapping[str, str | Path] | None = None,
    dedicated_trainer: DedicatedTrainer | None = None,
    inclusive_model: str | Path | None = None,
    compare: Mapping[str, str | Path] | None = None,
    importance: int = 0,
    selection: Selection = "auto",
    mass_spectator: str | None = None,
    sculpting_shards: str | Path | None = None,
    background_weights: Mapping[int, float] | Sequence[float] | None = None,
    thresholds: Mapping[str, float] | None = None,
    batch_size: int = 2048,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Score a run on test shards, write ``report.md``/``.html``/``results.json``; -> ``report.md``.

    Args:
        run_dir: run directory of ``paratag train`` (config.yaml, stage1/, stage3/, metrics.csv).
        test_shards: shard directory to evaluate on (see the module docstring for the fold used).
        out_dir: output directory (default ``RUN_DIR/evaluation``).
        n_boot: bootstrap replicas of the metrics (0 disables).
        seed: bootstrap seed.
        seeds_runs: further run directories of the same setup trained with other seeds.
        pileup_shards: ``{level: shard_dir}`` scored for the pileup study.
        dedicated_trainer: ``(point, folder) -> checkpoint or why not`` for the points with no
            dedicated model, e.g. :func:`paratag.training.dedicated_trainer` (models go to
            ``out_dir/dedicated``); None: those points get no dedicated AUC.
        inclusive_model: checkpoint of the inclusive (unconditioned) model
            (:func:`paratag.training.train_inclusive`) for the mass-awareness study.
        compare: ``{name: checkpoint}`` of further taggers (any architecture), scored on the
            same test events in the report's model-comparison table.
        importance: events (signal of the training points and backgrounds) for the
            permutation importance and saliency images of the parametric model (0: off).
        selection: ``auto``, ``test_fold`` (force the run's held-out fold) or ``all``.
        mass_spectator: spectator for sculpting (default: the DisCo spectator or the first
            of :data:`MASS_SPECTATORS` in the shards).
        sculpting_shards: background-only shards whose jets (all) give the sculpting mass
            shapes; the cuts still come from the test signal. None: the test background.
        background_weights: per-background weights of the multi-class discriminant.
        thresholds: ratio targets per split overriding the defaults.
        batch_size: inference batch size.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: tqdm bars (only on a TTY, never with CI=true).
    """
    t0 = time.perf_counter()
    opts = _Options(
        n_boot,
        seed,
        tuple(seeds_runs),
        dict(pileup_shards or {}),
        dedicated_trainer,
        inclusive_model,
        dict(compare or {}),
        importance,
        background_weights,
        thresholds,
        selection,
        None if sculpting_shards is None else Path(sculpting_shards),
    )
    dev = select_device(device)
    run = load_run(run_dir, dev)
    out = Path(out_dir) if out_dir is not None else run.path / "evaluation"
    scorer = Scorer(run.cfg.data.signal_label, background_weights, batch_size, dev, progress)
    test = EvalSample(Path(test_shards), run, selection, mass_spectator)
    hyps = _hypotheses(run, test, test_shards)
    res, info = _results(run, scorer, test, hyps, out, opts, dev)
    md = write_report(res, out)
    stage = run.model.info.get("stage")  # "ratio": the hypothesis-ratio model
    info = {"run_dir": str(run.path), "model_stage": stage, "test_shards": str(test_shards), **info}
    info |= {"device": str(dev), "time_s": time.perf_counter() - t0}
    (out / "evaluation.json").write_text(json.dumps(info, indent=1) + "\n")
    return md


@dataclasses.dataclass(frozen=True)
class _Options:
    """The optional studies of :func:`evaluate_run` (its keyword arguments of that name)."""

    n_boot: int
    seed: int
    seeds_runs: tuple[str | Path, ...]
    pileup_shards: dict[str, str | Path]
    dedicated_trainer: DedicatedTrainer | None
    inclusive_model: str | Path | None
    compare: dict[str, str | Path]
    importance: int
    background_weights: Mapping[int, float] | Sequence[float] | None
    thresholds: Mapping[str, float] | None
    selection: Selection
    sculpting_shards: Path | None


class _Timer:
    """Wall time of each evaluation step (``evaluation.json``'s ``timings_s``), logged."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, its wall time recorded under ``name``."""
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.times[name] = round(time.perf_counter() - t0, 2)
        log.info("evaluate: %s in %.1f s", name, self.times[name])
        return out


def _results(
    run: LoadedRun,
    scorer: Scorer,
    test: EvalSample,
    hyps: list[Point],
    out: Path,
    opts: _Options,
    dev: torch.device,
) -> tuple[Any, dict[str, Any]]:
    """Every study of the evaluation -> (``EvaluationResults``, the ``evaluation.json`` facts)."""
    grid, names = run.grid, run.grid.names
    skipped: dict[str, str] = {}
    timed = _Timer()
    par_aucs, matrix, par_disc = timed(
        "per-point AUCs", per_point, scorer, run.model, test, hyps, "parametric"
    )
    test_sample = timed("test sample", overall_sample, run, scorer, test, "test")
    ded_src, why = timed(
        "dedicated models", _dedicated_models, run, hyps, out / "dedicated", opts.dedicated_trainer
    )
    study = timed(
        "hypothesis study", _study, run, scorer, test, hyps, (par_disc, matrix), ded_src, opts
    )
    ded_aucs = _dedicated_aucs(study, ded_src, names)
    splits = {p: _SPLIT[grid.role_of(p)] for p in hyps}
    wrong = wrong_hypothesis_from_matrix(hyps, hyps, matrix, names) if len(hyps) > 1 else None
    train_sample = timed(
        "training fold", training_fold, run, scorer, test, skipped, wanted=test_sample is not None
    )
    seed_aucs = timed("seeds", _seed_aucs, run, scorer, test, hyps, par_aucs, opts.seeds_runs, dev)
    pileup = timed("pileup", _pileup, run, scorer, test, opts.selection, opts.pileup_shards)
    csv_path = run.path / "metrics.csv"
    res = timed(
        "metrics",
        compute_results,
        test=test_sample,
        train=train_sample,
        class_names=run.model.info.get("class_names") or ("signal", "background"),
        signal_index=run.cfg.data.signal_label,
        background_weights=opts.background_weights,
        condition_names=names,
        parametric_aucs=par_aucs,
        dedicated_aucs=ded_aucs or None,
        splits=splits,
        thresholds=opts.thresholds,
        wrong_hypothesis=wrong,
        seed_aucs=seed_aucs or None,
        pileup=pileup or None,
        metrics_csv=csv_path if csv_path.is_file() else None,
        n_boot=opts.n_boot,
        seed=opts.seed,
        hypotheses=study,
        sculpting_samples=(
            sculpting_sample(run, scorer, test, test_sample, opts.sculpting_shards)
            if opts.sculpting_shards is not None and test_sample is not None
            else None
        ),
    )
    skipped.update({f"dedicated {grid.name(p)}": v for p, v in why.items()})
    skipped.update(_reasons(res.skipped, run, test.selection, why))
    models, imp = _extras(run, scorer, test, hyps, opts, timed, skipped)
    res = dataclasses.replace(
        res, models=models, importance=imp, skipped={**res.skipped, **skipped}
    )
    info = _selection_info(run, test, hyps, splits, ded_src)
    info.update(seeds=sorted(seed_aucs), pileup={k: str(v) for k, v in opts.pileup_shards.items()})
    return res, {**info, "timings_s": timed.times}


def _dedicated_aucs(
    study: Mapping[str, Any], dedicated: Mapping[Point, Path], names: Sequence[str]
) -> dict[Point, float]:
    """Each dedicated model's AUC against every background, from the hypothesis study's scores."""
    out = {}
    for p in dedicated:
        entry = study["per_point"].get(point_name(p, names), {})
        if "dedicated" in entry:
            out[p] = float(entry["dedicated"]["all"]["auc"])
    return out


def _extras(
    run: LoadedRun,
    scorer: Scorer,
    test: EvalSample,
    hyps: list[Point],
    opts: _Options,
    timed: _Timer,
    skipped: dict[str, str],
) -> tuple[Any, Any]:
    """The optional model comparison and interpretability studies (None when not asked)."""
    dev = scorer.device
    models = timed(
        "model comparison",
        compare_run,
        *(run, scorer, test, hyps, opts.compare, dev, opts.n_boot, opts.seed),
    )
    if not opts.importance:
        return models, None
    imp = timed("interpretability", importance_of, run, test, opts.importance, opts.seed)
    if imp is None:
        skipped["interpretability"] = "the test sample lacks training-point signal or background"
    return models, imp


def _hypotheses(run: LoadedRun, test: EvalSample, where: str | Path) -> list[Point]:
    """The grid points with signal in the test sample (an error when there are none)."""
    grid = run.grid
    if not test.points:
        raise InputFileError(
            str(where),
            f"no signal events at any grid point in the {test.selection}",
            f"evaluate on shards with signal at {[grid.name(p) for p in grid.points()]}",
        )
    return [p for p in grid.points() if p in test.points]


def _study(
    run: LoadedRun,
    scorer: Scorer,
    test: EvalSample,
    hyps: list[Point],
    parametric: tuple[np.ndarray, np.ndarray],
    dedicated: Mapping[Point, Path],
    opts: _Options,
) -> dict[str, Any]:
    """The hypothesis study; ``parametric`` is the model's discriminant and mean-score matrix."""
    dev = scorer.device
    inclusive = None
    if opts.inclusive_model is not None:
        path = Path(opts.inclusive_model)
        inc = load_model_for_eval(path, dev)
        inclusive = (path, tuple(inc.info.get("inclusive_condition", hyps[0])))
    names = run.grid.names
    return hypothesis_study(
        hyps=hyps,
        names=names,
        test=test,
        scorer=scorer,
        parametric=run.model,
        parametric_disc=parametric[0],
        parametric_mean=parametric[1],
        dedicated=dedicated,
        inclusive=inclusive,
        reference=_reference(test, names),
        load=lambda path: load_model_for_eval(Path(path), dev),
        n_boot=opts.n_boot,
        seed=opts.seed,
    )


def _selection_info(
    run: LoadedRun,
    test: EvalSample,
    hyps: list[Point],
    splits: Mapping[Point, str],
    dedicated: Mapping[Point, Path],
) -> dict[str, Any]:
    """What was evaluated: the event selection, counts, hypotheses, splits, dedicated models."""
    grid = run.grid
    return {
        "selection": test.selection,
        "events": test.counts(grid),
        "hypotheses": [grid.name(p) for p in hyps],
        "splits": {grid.name(p): s for p, s in splits.items()},
        "dedicated_models": {grid.name(p): str(f) for p, f in dedicated.items()},
        "mass_spectator": test.mass_name,
    }


def _seed_aucs(
    run: LoadedRun,
    scorer: Scorer,
    test: EvalSample,
    hyps: list[Point],
    par_aucs: dict[Point, float],
    seeds_runs: Sequence[str | Path],
    dev: torch.device,
) -> dict[int, dict[Point, float]]:
    """Per-point parametric AUCs of this run and of runs trained with other seeds."""
    if not seeds_runs:
        return {}
    names = run.grid.names
    out = {int(run.cfg.seed): par_aucs}
    for other_dir in seeds_runs:
        other = load_run(other_dir, dev)
        if other.grid.names != names:
            raise ConfigError(
                f"{other_dir}: conditions {list(other.grid.names)} differ from {list(names)}"
            )
        if int(other.cfg.seed) in out:
            raise ConfigError(
                f"{other_dir}: seed {other.cfg.seed} is already used by another run; "
                "seed stability needs runs trained with different seeds"
            )
        tag = f"seed {other.cfg.seed}"
        out[int(other.cfg.seed)] = diagonal_aucs(scorer, other.model, test, hyps, tag)
    return out


def _pileup(
    run: LoadedRun,
    scorer: Scorer,
    test: EvalSample,
    selection: Selection,
    shards: Mapping[str, str | Path],
) -> dict[str, ScoredSample]:
    """The overall sample of every pileup level's shards."""
    out: dict[str, ScoredSample] = {}
    for level, pu_dir in shards.items():
        sample = EvalSample(Path(pu_dir), run, selection, test.mass_name)
        s = overall_sample(run, scorer, sample, f"pileup {level}")
        if s is None:
            raise InputFileError(
                str(pu_dir),
                "no signal at a training point or no background events",
                "build the pileup shards from the same processes as the test shards",
            )
        out[level] = s
    return out


def _dedicated_models(
    run: LoadedRun, hyps: list[Point], out: Path, trainer: DedicatedTrainer | None
) -> tuple[dict[Point, Path], dict[Point, str]]:
    """Checkpoint of a dedicated model per point, or why there is none."""
    src: dict[Point, Path] = {}
    why: dict[Point, str] = {}
    for p in hyps:
        label = point_label(p, run.grid.names)
        if p in run.dedicated:
            src[p] = run.dedicated[p]
        elif run.grid.role_of(p) == "train":
            why[p] = f"no dedicated model for {label} (no stage-1 model in {run.path / 'stage1'})"
        elif trainer is None:
            why[p] = (
                f"no dedicated model for {label} (pass --train-dedicated to train one on demand)"
            )
        else:
            got = trainer(p, out / run.grid.name(p))
            if isinstance(got, Path):
                src[p] = got
            else:
                why[p] = f"no dedicated model for {label} ({got})"
    return src, why


def _reasons(
    base: Mapping[str, str], run: LoadedRun, selection: str, why: Mapping[Point, str]
) -> dict[str, str]:
    """Run-specific reasons for the sections :func:`compute_results` skipped."""
    out = {
        "metrics": f"the {selection} has no signal at a training point or no background",
        "wrong_hypothesis": f"the {selection} has signal at only one mass point",
        "decorrelation": f"the shards have no mass spectator (looked for {list(MASS_SPECTATORS)}; "
        "pass mass_spectator=NAME)",
        "seed_stability": "one run given; pass runs trained with other seeds (--seed-run DIR)",
        "pileup": "no pileup shards were given (--pileup LEVEL=SHARD_DIR)",
        "training_curves": f"{run.path / 'metrics.csv'} does not exist",
    }
    for key, splits in (
        ("parametric_vs_dedicated", ("train",)),
        ("interp_extrap", ("interp", "extrap")),
    ):
        miss = [v for p, v in why.items() if _SPLIT[run.grid.role_of(p)] in splits]
        out[key] = "; ".join(miss) or f"the {selection} has no signal at a {'/'.join(splits)} point"
    return {k: v for k, v in out.items() if k in base}
