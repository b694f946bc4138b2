"""Collect every evaluation study into one :class:`EvaluationResults` from plain arrays.

:func:`compute_results` is the single place where the inputs of the report
(scored test/train samples, AUC dictionaries, a wrong-hypothesis matrix, seed
AUCs, pileup samples, a metrics CSV) are turned into result objects. Inputs
that are not given leave their section ``None`` with the reason in ``skipped``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paratag.errors import InvalidValueError
from paratag.evaluate.comparison import ModelComparison
from paratag.evaluate.curves import TrainingCurves, read_metrics_csv
from paratag.evaluate.decorrelation import SculptingResult, decorrelation_points, sculpting
from paratag.evaluate.importance import Importance
from paratag.evaluate.metrics import (
    DEFAULT_BKG_EFFS,
    DEFAULT_SIG_EFFS,
    BootstrapMetrics,
    KSResult,
    RocCurve,
    bootstrap_metrics,
    final_discriminant,
    ks_train_test,
    roc_curve,
)
from paratag.evaluate.studies import (
    AucGrid,
    PileupRobustness,
    PointComparison,
    SeedStability,
    WrongHypothesis,
    auc_grid,
    compare_to_dedicated,
    pileup_robustness,
    seed_stability,
)

__all__ = [
    "SECTIONS",
    "EvaluationResults",
    "ScoredSample",
    "WorkingPoints",
    "compute_results",
    "jsonable",
]

SECTIONS = (
    "metrics",
    "parametric_vs_dedicated",
    "interp_extrap",
    "wrong_hypothesis",
    "mass_awareness",
    "background_aucs",
    "auc_grid",
    "seed_stability",
    "decorrelation",
    "pileup",
    "model_comparison",
    "interpretability",
    "training_curves",
)


@dataclass(frozen=True)
class ScoredSample:
    """Model outputs on one sample: scores (N,) or (N, C), integer labels, weights, mass.

    Labels index the classes (``signal_index`` is the signal). ``mass`` is the spectator
    used for sculpting (jet mass or mA candidate mass).
    """

    scores: np.ndarray
    labels: np.ndarray
    weights: np.ndarray | None = None
    mass: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = np.asarray(self.labels).shape[0]
        for name in ("scores", "weights", "mass"):
            v = getattr(self, name)
            if v is not None and np.asarray(v).shape[0] != n:
                raise InvalidValueError(
                    f"ScoredSample.{name} has {np.asarray(v).shape[0]} rows but labels has {n}"
                )

    def w(self) -> np.ndarray:
        """Weights (ones if not given)."""
        n = np.asarray(self.labels).shape[0]
        return np.ones(n) if self.weights is None else np.asarray(self.weights, np.float64)

    def discriminant(self, signal_index: int = 0, background_weights=None) -> np.ndarray:
        """1-D signal score: the scores themselves if 1-D, else s0/(s0 + Σ w_i s_i)."""
        s = np.asarray(self.scores, np.float64)
        if s.ndim == 1 or s.shape[1] == 1:
            return s.reshape(-1)
        return final_discriminant(s, signal_index, background_weights)

    def is_signal(self, signal_index: int = 0) -> np.ndarray:
        """Binary labels (1 = signal class)."""
        return (np.asarray(self.labels).reshape(-1) == signal_index).astype(np.int64)


@dataclass(frozen=True)
class EvaluationResults:
    """Everything the report shows; sections absent from the inputs are ``None``."""

    class_names: tuple[str, ...] = ("signal", "background")
    condition_names: tuple[str, ...] = ("mHc", "mA")
    signal_index: int = 0
    metrics: BootstrapMetrics | None = None
    roc: dict[str, RocCurve] | None = None
    test: ScoredSample | None = None
    train: ScoredSample | None = None
    background_weights: Any = None
    ks: dict[str, KSResult] | None = None
    comparison: PointComparison | None = None
    wrong_hypothesis: WrongHypothesis | None = None
    auc_grid: AucGrid | None = None
    seeds: SeedStability | None = None
    sculpting: dict[str, SculptingResult] | None = None
    decorrelation_sig_eff: float = 0.5
    pileup: PileupRobustness | None = None
    training: TrainingCurves | None = None
    hypotheses: dict[str, Any] | None = None
    models: ModelComparison | None = None
    importance: Importance | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able summary of every number (no raw per-event arrays)."""
        d: dict[str, Any] = {
            "class_names": list(self.class_names),
            "condition_names": list(self.condition_names),
            "skipped": dict(self.skipped),
        }
        d["metrics"] = None if self.metrics is None else self.metrics.to_dict()
        d["ks"] = None if self.ks is None else {k: v.to_dict() for k, v in self.ks.items()}
        for key in ("comparison", "wrong_hypothesis", "auc_grid", "seeds", "pileup"):
            v = getattr(self, key)
            d[key] = None if v is None else v.to_dict()
        if self.sculpting is None:
            d["sculpting"] = d["decorrelation"] = None
        else:
            d["sculpting"] = {k: v.to_dict() for k, v in self.sculpting.items()}
            d["decorrelation"] = decorrelation_points(self.sculpting, self.decorrelation_sig_eff)
        d["training"] = None if self.training is None else self.training.summary()
        d["hypotheses"] = self.hypotheses
        d["model_comparison"] = None if self.models is None else self.models.to_dict()
        d["importance"] = None if self.importance is None else self.importance.to_dict()
        return jsonable(d)


def jsonable(obj: Any) -> Any:
    """Recursively convert numpy scalars/arrays; non-finite floats become "inf"/"-inf"/None."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        if math.isnan(f):
            return None
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    return obj


Binary = Callable[[ScoredSample], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _binary(
    s: ScoredSample, signal_index: int, weights: Mapping[int, float] | Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(is signal, final discriminant, weights) of a scored sample."""
    return s.is_signal(signal_index), s.discriminant(signal_index, weights), s.w()


def _pileup(
    pileup: Mapping[str, ScoredSample] | None,
    binary: Binary,
    n_boot: int,
    seed: int,
    wp: WorkingPoints,
) -> PileupRobustness | None:
    """The pileup study over the scored samples per level (None without any)."""
    pu: dict[str | float, Any] = {k: binary(v) for k, v in (pileup or {}).items()}
    return pileup_robustness(pu, n_boot, seed, wp.sig_effs, wp.bkg_effs) if pu else None


def _test_metrics(
    test: ScoredSample,
    train: ScoredSample | None,
    binary: Binary,
    class_names: Sequence[str],
    n_boot: int,
    seed: int,
    wp: WorkingPoints,
) -> dict[str, Any]:
    """Bootstrapped test metrics, ROC curves and (with a training sample) the KS check."""
    y, d, w = binary(test)
    metrics = bootstrap_metrics(y, d, w, n_boot, seed, wp.sig_effs, wp.bkg_effs)
    out: dict[str, Any] = {"metrics": metrics}
    roc = {"test": roc_curve(y, d, w)}
    if train is not None:
        ty, td, tw = binary(train)
        roc["train"] = roc_curve(ty, td, tw)
        out["ks"] = ks_train_test(
            td, train.labels, d, test.labels, tw, w, class_names=list(class_names)
        )
    out["roc"] = roc
    return out


def _comparison(
    kw: dict[str, Any],
    skipped: dict[str, str],
    parametric_aucs: Mapping[Any, float] | None,
    dedicated_aucs: Mapping[Any, float] | None,
    splits: Mapping[Any, str] | None,
    thresholds: Mapping[str, float] | None,
    condition_names: Sequence[str],
) -> None:
    """Parametric vs dedicated per split into ``kw``, or why not into ``skipped``."""
    if not (parametric_aucs and dedicated_aucs):
        why = "no parametric AUCs" if not parametric_aucs else "no dedicated-model AUCs"
        skipped["parametric_vs_dedicated"] = skipped["interp_extrap"] = f"{why} were given"
        return
    cmp = compare_to_dedicated(parametric_aucs, dedicated_aucs, splits, thresholds, condition_names)
    kw["comparison"] = cmp
    if "train" not in cmp.split:
        skipped["parametric_vs_dedicated"] = "no dedicated AUC at a training mass point"
    if not {"interp", "extrap"} & set(cmp.split):
        skipped["interp_extrap"] = "no dedicated AUC at an interpolation/extrapolation point"


def _sculpting(
    name: str, s: ScoredSample, binary: Binary, effs: Sequence[float], mass_bins: int | np.ndarray
) -> SculptingResult:
    """Background mass shapes after cuts at the signal efficiencies ``effs``."""
    if s.mass is None:
        raise InvalidValueError(f"sculpting sample {name!r} has no mass spectator")
    y, d, w = binary(s)
    sig, bkg = y == 1, y == 0
    return sculpting(np.asarray(s.mass)[bkg], d[bkg], d[sig], w[bkg], w[sig], effs, mass_bins)


def _sculpting_all(
    test: ScoredSample | None,
    samples: Mapping[str, ScoredSample] | None,
    binary: Binary,
    wp: WorkingPoints,
) -> dict[str, SculptingResult]:
    """Sculpting of every sample with a mass (default: the test sample, when it has one)."""
    chosen = dict(samples or {})
    if not chosen and test is not None and test.mass is not None:
        chosen = {"model": test}
    effs = sorted(set(wp.sculpting_sig_effs) | {wp.decorrelation_sig_eff}, reverse=True)
    return {name: _sculpting(name, s, binary, effs, wp.mass_bins) for name, s in chosen.items()}


@dataclass(frozen=True)
class WorkingPoints:
    """Where the report's efficiencies and sculpting cuts are taken.

    Attributes:
        sig_effs: signal efficiencies of the rejection working points.
        bkg_effs: background efficiencies of the signal-efficiency working points.
        sculpting_sig_effs: signal efficiencies of the sculpting cuts.
        decorrelation_sig_eff: signal efficiency of the JSD figure of merit.
        mass_bins: bins of the sculpting mass histograms.
    """

    sig_effs: Sequence[float] = DEFAULT_SIG_EFFS
    bkg_effs: Sequence[float] = DEFAULT_BKG_EFFS
    sculpting_sig_effs: Sequence[float] = (0.9, 0.7, 0.5, 0.3)
    decorrelation_sig_eff: float = 0.5
    mass_bins: int | np.ndarray = 30


#: optional result -> (its report sections, why they are skipped when its input is missing)
_OPTIONAL = {
    "wrong_hypothesis": (
        ("wrong_hypothesis",),
        "no signal samples were scored at other hypotheses",
    ),
    "auc_grid": (("auc_grid",), "no parametric AUCs per mass point were given"),
    "seeds": (("seed_stability",), "no AUCs from several training seeds were given"),
    "sculpting": (("decorrelation",), "no sample with a mass spectator was given"),
    "pileup": (("pileup",), "no samples with different pileup levels were given"),
    "training": (("training_curves",), "no training metrics.csv was given"),
    "hypotheses": (
        ("mass_awareness", "background_aucs"),
        "no mass-awareness study was given (paratag.evaluate.hypotheses.hypothesis_study)",
    ),
    "models": (("model_comparison",), "no models to compare were given"),
    "importance": (("interpretability",), "no importance study was asked for"),
}


def compute_results(
    *,
    test: ScoredSample | None = None,
    train: ScoredSample | None = None,
    class_names: Sequence[str] = ("signal", "background"),
    signal_index: int = 0,
    background_weights: Mapping[int, float] | Sequence[float] | None = None,
    condition_names: Sequence[str] = ("mHc", "mA"),
    parametric_aucs: Mapping[Any, float] | None = None,
    dedicated_aucs: Mapping[Any, float] | None = None,
    splits: Mapping[Any, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    wrong_hypothesis: WrongHypothesis | None = None,
    seed_aucs: Mapping[int, float | Mapping[Any, float]] | None = None,
    sculpting_samples: Mapping[str, ScoredSample] | None = None,
    pileup: Mapping[str, ScoredSample] | None = None,
    metrics_csv: str | Path | None = None,
    n_boot: int = 100,
    seed: int = 0,
    working_points: WorkingPoints = WorkingPoints(),
    hypotheses: Mapping[str, Any] | None = None,
    models: ModelComparison | None = None,
    importance: Importance | None = None,
) -> EvaluationResults:
    """Run every study whose inputs are given; record why the others were skipped.

    Args:
        test: scored test sample (metrics, ROC, score distributions, default sculpting).
        train: scored training sample (KS overfitting check, train overlays).
        class_names: class names in label order.
        signal_index: label of the signal class.
        background_weights: per-background weights of the final discriminant.
        condition_names: names of the mass parameters, e.g. ``("mHc", "mA")``.
        parametric_aucs: parametric-model AUC at every grid point (heatmap, comparison).
        dedicated_aucs: dedicated-model AUC at the points that have one.
        splits: ``train``/``interp``/``extrap`` per point (default ``train``).
        thresholds: ratio targets per split (and ``seed``) overriding the issue's defaults.
        wrong_hypothesis: result of :func:`~paratag.evaluate.studies.wrong_hypothesis`.
        seed_aucs: AUC (or per-point AUCs) per training seed.
        sculpting_samples: per model name, a scored sample with ``mass`` (default: the test's).
        pileup: scored sample per pileup level.
        metrics_csv: the training run's ``metrics.csv``.
        n_boot: bootstrap replicas for the test metrics and pileup levels (0 disables).
        seed: bootstrap seed.
        working_points: efficiencies of the tables and sculpting cuts.
        hypotheses: the mass-awareness study (:func:`paratag.evaluate.hypotheses.hypothesis_study`).
        models: the model comparison (:func:`~paratag.evaluate.comparison.compare_models`).
        importance: permutation importance and saliency (:mod:`paratag.evaluate.importance`).
    """
    skipped: dict[str, str] = {}
    kw: dict[str, Any] = {
        "class_names": tuple(class_names),
        "condition_names": tuple(condition_names),
        "signal_index": signal_index,
        "test": test,
        "train": train,
        "background_weights": background_weights,
        "decorrelation_sig_eff": working_points.decorrelation_sig_eff,
    }
    binary = functools.partial(_binary, signal_index=signal_index, weights=background_weights)
    if test is not None:
        kw.update(_test_metrics(test, train, binary, class_names, n_boot, seed, working_points))
    else:
        skipped["metrics"] = "no scored test sample was given"
    _comparison(kw, skipped, parametric_aucs, dedicated_aucs, splits, thresholds, condition_names)
    optional = {
        "wrong_hypothesis": wrong_hypothesis,
        "auc_grid": auc_grid(parametric_aucs, splits, condition_names) if parametric_aucs else None,
        "seeds": seed_stability(seed_aucs, condition_names) if seed_aucs else None,
        "sculpting": _sculpting_all(test, sculpting_samples, binary, working_points) or None,
        "pileup": _pileup(pileup, binary, n_boot, seed, working_points),
        "training": None if metrics_csv is None else read_metrics_csv(metrics_csv),
        "hypotheses": dict(hypotheses) if hypotheses else None,
        "models": models,
        "importance": importance,
    }
    kw.update({k: v for k, v in optional.items() if v is not None})
    missing = [k for k, v in optional.items() if v is None]
    skipped.update({name: _OPTIONAL[k][1] for k in missing for name in _OPTIONAL[k][0]})
    return EvaluationResults(skipped=skipped, **kw)
