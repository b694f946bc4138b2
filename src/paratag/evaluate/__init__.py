"""Evaluation of (parametric) taggers: metrics, parametric studies, plots and the report.

Everything works on plain numpy arrays and small callables, so it does not depend
on how a model is stored:

- :mod:`~paratag.evaluate.metrics`: weighted ROC/AUC, working points, bootstrap,
  KS test, final multi-class discriminant, Jensen–Shannon divergence.
- :mod:`~paratag.evaluate.studies`: parametric vs dedicated, interpolation and
  extrapolation, wrong hypothesis, AUC grid, seed stability, pileup.
- :mod:`~paratag.evaluate.decorrelation`: mass sculpting and 1/JSD vs 1/εB.
- :mod:`~paratag.evaluate.curves`: training curves from a run's ``metrics.csv``.
- :mod:`~paratag.evaluate.plots`: CMS-style figures (PNG + PDF).
- :mod:`~paratag.evaluate.results` / :mod:`~paratag.evaluate.report`:
  :func:`compute_results`, :func:`write_report` and the one-call :func:`build_report`.
"""

from __future__ import annotations

from paratag.evaluate.metrics import (
    binary_metrics,
    bootstrap_metrics,
    final_discriminant,
    jensen_shannon,
    ks_train_test,
    roc_auc,
    roc_curve,
    weighted_ks,
)
from paratag.evaluate.report import build_report, write_report
from paratag.evaluate.results import EvaluationResults, ScoredSample, compute_results
from paratag.evaluate.studies import (
    GraphArrays,
    ScoreFn,
    compare_to_dedicated,
    parametric_aucs,
    score_at_hypothesis,
    wrong_hypothesis,
)

__all__ = [
    "EvaluationResults",
    "GraphArrays",
    "ScoreFn",
    "ScoredSample",
    "binary_metrics",
    "bootstrap_metrics",
    "build_report",
    "compare_to_dedicated",
    "compute_results",
    "final_discriminant",
    "jensen_shannon",
    "ks_train_test",
    "parametric_aucs",
    "roc_auc",
    "roc_curve",
    "score_at_hypothesis",
    "weighted_ks",
    "write_report",
    "wrong_hypothesis",
]
