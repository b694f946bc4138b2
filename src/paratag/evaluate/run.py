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
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from paratag.errors import ConfigError, InputFileError
from paratag.evaluate.inference import Scorer, compare_run, importance_of, per_point
from paratag.evaluate.points import (
    DedicatedTrainer,
    dedicated_aucs,
    dedicated_models,
    hypothesis_study_of,
    seed_aucs,
)
from paratag.evaluate.report import write_report
from paratag.evaluate.results import ScoredSample, compute_results
from paratag.evaluate.runs import (
    MASS_SPECTATORS,
    EvalSample,
    LoadedRun,
    load_run,
    parse_pileup,
)
from paratag.evaluate.scored import overall_sample, sculpting_sample, training_fold
from paratag.evaluate.studies import wrong_hypothesis_from_matrix
from paratag.runtime import select_device

__all__ = ["MASS_SPECTATORS", "SKIPPABLE", "evaluate_run", "parse_pileup"]

log = logging.getLogger(__name__)

Point = tuple[float, ...]
Selection = Literal["auto", "test_fold", "all"]
#: report sections of the mass-awareness study and the dedicated models' AUCs
_HYPOTHESIS_SECTIONS = (
    "parametric_vs_dedicated",
    "interp_extrap",
    "mass_awareness",
    "background_aucs",
)
#: studies ``evaluate_run(skip=...)`` can leave out -> the report sections each empties:
#: ``points`` scores every signal point at every hypothesis (per-point AUCs,
#: wrong-hypothesis matrix, seeds) and implies ``hypotheses``; ``overtraining`` is the
#: training fold scored for the KS test
SKIPPABLE: dict[str, tuple[str, ...]] = {
    "points": ("auc_grid", "wrong_hypothesis", "seed_stability", *_HYPOTHESIS_SECTIONS),
    "hypotheses": _HYPOTHESIS_SECTIONS,
    "overtraining": ("ks",),
}
_SPLIT = {
    "train": "train",
    "validation": "interp",
    "interpolation": "interp",
    "extrapolation": "extrap",
}


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
    skip: Collection[str] = (),
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
        inclusive_model: the unconditioned model (:func:`paratag.training.train_inclusive`).
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
        skip: studies to leave out (keys of :data:`SKIPPABLE`); their sections say so.
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
        frozenset(skip),
    )
    dev = select_device(device)
    run = load_run(run_dir, dev)
    out = Path(out_dir) if out_dir is not None else run.path / "evaluation"
    scorer = Scorer(run.cfg.data.signal_label, background_weights, batch_size, dev, progress)
    test = EvalSample(Path(test_shards), run, selection, mass_spectator)
    hyps = _hypotheses(run, test, test_shards)
    res, info = _results(run, scorer, test, hyps, out, opts, dev)
    md = write_report(res, out)
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
    skip: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = sorted(self.skip - set(SKIPPABLE))
        if unknown:
            raise ConfigError(f"skip={unknown}: unknown studies; choose from {sorted(SKIPPABLE)}")


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
    par_aucs, matrix, study, ded_src, why = _point_studies(
        run, scorer, test, hyps, out, opts, timed
    )
    test_sample = timed("test sample", overall_sample, run, scorer, test, "test")
    ded_aucs = dedicated_aucs(study, ded_src, names)
    splits = {p: _SPLIT[grid.role_of(p)] for p in hyps}
    wrong = (
        wrong_hypothesis_from_matrix(hyps, hyps, matrix, names)
        if len(hyps) > 1 and matrix is not None
        else None
    )
    wanted = test_sample is not None and "overtraining" not in opts.skip
    train_sample = timed("training fold", training_fold, run, scorer, test, skipped, wanted=wanted)
    seeds = opts.seeds_runs if par_aucs else ()
    by_seed = timed("seeds", seed_aucs, run, scorer, test, hyps, par_aucs, seeds, dev)
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
        seed_aucs=by_seed or None,
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
    for name in sorted(opts.skip):
        skipped.update(dict.fromkeys(SKIPPABLE[name], f"left out on request (skip={name!r})"))
    models, imp = _extras(run, scorer, test, hyps, opts, timed, skipped)
    res = dataclasses.replace(
        res, models=models, importance=imp, skipped={**res.skipped, **skipped}
    )
    info = _selection_info(run, test, hyps, splits, ded_src)
    info.update(seeds=sorted(by_seed), pileup={k: str(v) for k, v in opts.pileup_shards.items()})
    return res, {**info, "timings_s": timed.times}


def _point_studies(
    run: LoadedRun,
    scorer: Scorer,
    test: EvalSample,
    hyps: list[Point],
    out: Path,
    opts: _Options,
    timed: _Timer,
) -> tuple[
    dict[Point, float], np.ndarray | None, dict[str, Any], dict[Point, Path], dict[Point, str]
]:
    """Per-point AUCs, mean-score matrix, hypothesis study, dedicated models (unless skipped)."""
    if "points" in opts.skip:
        return {}, None, {}, {}, {}
    par_aucs, matrix, par_disc = timed(
        "per-point AUCs", per_point, scorer, run.model, test, hyps, "parametric"
    )
    if "hypotheses" in opts.skip:
        return par_aucs, matrix, {}, {}, {}
    ded_src, why = timed(
        "dedicated models", dedicated_models, run, hyps, out / "dedicated", opts.dedicated_trainer
    )
    study = timed(
        "hypothesis study",
        hypothesis_study_of,
        *(run, scorer, test, hyps, (par_disc, matrix), ded_src),
        *(opts.inclusive_model, opts.n_boot, opts.seed),
    )
    return par_aucs, matrix, study, ded_src, why


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
        "run_dir": str(run.path),
        "model_stage": run.model.info.get("stage"),  # "ratio": the hypothesis-ratio model
        "test_shards": str(test.store.path),
        "selection": test.selection,
        "events": test.counts(grid),
        "hypotheses": [grid.name(p) for p in hyps],
        "splits": {grid.name(p): s for p, s in splits.items()},
        "dedicated_models": {grid.name(p): str(f) for p, f in dedicated.items()},
        "mass_spectator": test.mass_name,
    }


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
