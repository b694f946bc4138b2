"""Test and training samples scored as in training, and the separate sculpting sample.

Signal of the training points is scored at its true hypothesis; every background
event at one hypothesis drawn (fixed, like the validation draws of training) from
those points with the signal's weight fractions; weights are class- and
point-balanced like training (:func:`paratag.data.selection.balance_weights`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from paratag.conditions import draw_background_conditions
from paratag.data.selection import balance_weights
from paratag.errors import InputFileError
from paratag.evaluate.inference import Scorer
from paratag.evaluate.results import ScoredSample
from paratag.evaluate.runs import EvalSample, LoadedRun

__all__ = ["overall_sample", "sculpting_sample", "training_fold"]

Point = tuple[float, ...]


def _weighted_rows(run: LoadedRun, sample: EvalSample, points: list[Point]) -> tuple[Any, ...]:
    """Rows (signal of ``points``, then backgrounds), point index (-1: background), weights.

    Also each point's share of the signal weight: the odds of the background draws.
    """
    rows = np.concatenate([*(sample.points[p] for p in points), sample.background])
    group = np.concatenate(
        [np.full(len(sample.points[p]), i) for i, p in enumerate(points)]
        + [np.full(len(sample.background), -1)]
    )
    d = run.cfg.data
    w = balance_weights(
        sample.weight[rows],
        sample.label[rows],
        group if d.balance_points else None,
        balance_classes=d.balance_classes,
    )
    return rows, group, w, [float(w[group == i].sum()) for i in range(len(points))]


def overall_sample(
    run: LoadedRun, scorer: Scorer, sample: EvalSample, tag: str
) -> ScoredSample | None:
    """Signal of the training points at their true hypothesis + backgrounds, weighted as in training.

    Every background event is scored at one hypothesis drawn (fixed, like the
    validation draws of training) from those points with the signal's weight fractions.
    """
    points = [p for p in run.grid.train if p in sample.points]
    if not points or not len(sample.background):
        return None
    rows, group, w, fractions = _weighted_rows(run, sample, points)
    cond = np.asarray(points, np.float32)[np.maximum(group, 0)]
    cond[group < 0] = draw_background_conditions(
        sample.background, points, fractions, seed=run.cfg.seed, epoch=-1
    )
    probs = scorer.probs(run.model, sample, rows, [cond], f"{tag}: scoring")[:, 0]
    mass = None if sample.mass is None else sample.mass[rows]
    return ScoredSample(probs, sample.label[rows], w, mass)


def sculpting_sample(
    run: LoadedRun, scorer: Scorer, test: EvalSample, scored: ScoredSample, path: Path
) -> dict[str, ScoredSample]:
    """The test signal of ``scored`` with every background jet of the shards ``path``.

    ``scored`` is :func:`overall_sample` of ``test``. The cuts are set on the test signal (its scores are reused); the background mass
    shapes and efficiencies come from the separate sample, scored at hypotheses drawn
    like the test's.
    """
    points = [p for p in run.grid.train if p in test.points]
    extra = EvalSample(path, run, "all", test.mass_name)
    if not points or not len(extra.background) or extra.mass is None or test.mass is None:
        raise InputFileError(
            str(path),
            f"the sculpting sample needs background jets with spec_{test.mass_name} and the "
            f"test sample signal at a training point ({len(extra.background)} background jets)",
            "build it with the run's preset from a background-only fileset",
        )
    _, group, w, fractions = _weighted_rows(run, test, points)  # the rows of scored, in order
    sig = group >= 0
    bkg = extra.background
    bcond = draw_background_conditions(bkg, points, fractions, seed=run.cfg.seed, epoch=-1)
    s_bkg = scorer.probs(run.model, extra, bkg, [bcond], "sculpting: background")[:, 0]
    wb = extra.weight[bkg] * (w[sig].sum() / max(extra.weight[bkg].sum(), 1e-30))
    return {
        "model": ScoredSample(
            np.concatenate([np.asarray(scored.scores)[sig], s_bkg]),
            np.concatenate([np.asarray(scored.labels)[sig], extra.label[bkg]]),
            np.concatenate([w[sig], wb]),
            np.concatenate([np.asarray(scored.mass)[sig], extra.mass[bkg]]),
        )
    }


def training_fold(
    run: LoadedRun, scorer: Scorer, test: EvalSample, skipped: dict[str, str], *, wanted: bool
) -> ScoredSample | None:
    """The training fold scored like the test sample (for the KS test), or why not."""
    cfg = run.cfg
    train_path = Path(cfg.data.shards) if cfg.data.shards else None
    if train_path is None or not train_path.is_dir():
        skipped["ks"] = (
            f"training shards {cfg.data.shards!r} are not available to score the training fold"
        )
        return None
    if not wanted:
        return None
    tr = EvalSample(train_path, run, "train_fold", test.mass_name)
    return overall_sample(run, scorer, tr, "training fold")
