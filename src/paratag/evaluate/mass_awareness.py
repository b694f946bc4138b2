"""Does a parametric tagger use its mass hypothesis? Measures that a flat response cannot pass.

All functions are pure numpy on scores already computed by the caller:

- :func:`hypothesis_auc_matrix`: ``A[i, j]``, the AUC of signal ``i`` against
  signal ``j`` when both are scored at hypothesis ``i``; 0.5 for any scorer
  that ignores the hypothesis.
- :func:`mass_awareness_index`: ``MA(i, j) = A[i, j] + A[j, i] - 1`` — 0 for a
  hypothesis-blind scorer, 1 for perfect separation — and
  :func:`binned_index`, its mean over pairs binned in the distance of one
  condition parameter (e.g. ΔmA).
- :func:`peaks_at_own_hypothesis`: whether each signal's mean score is largest
  at its own hypothesis; applied to :func:`background_auc_matrix` (signal ``i``
  against the backgrounds at each hypothesis), the same question asked of a
  measure that per-hypothesis rescalings of the score cannot move.
- :func:`sensitivity`: mean per-event change of the score per unit of each
  condition parameter (finite differences), so a flat response is a number.
- :func:`auc_with_error`: weighted AUC with a bootstrap σ.
- :func:`process_aucs`: AUC against every background process alone, against
  all of them cross-section weighted and at equal process weight, and against
  a named group (the resonant backgrounds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paratag.evaluate.metrics import roc_auc

__all__ = [
    "DISTANCE_EDGES",
    "MIN_DISTANCES",
    "MassAwareness",
    "auc_with_error",
    "binned_index",
    "hypothesis_auc_matrix",
    "mass_awareness",
    "mass_awareness_index",
    "background_auc_matrix",
    "peaks_at_own_hypothesis",
    "process_aucs",
    "sensitivity",
]

Point = tuple[float, ...]
#: Bin edges of the pair distance (GeV) for :func:`binned_index` (presets may set theirs).
DISTANCE_EDGES: tuple[float, ...] = (0.0, 2.5, 5.0, 9.0, float("inf"))
#: Distances of the "pairs at least this far apart" means (presets may set theirs).
MIN_DISTANCES: tuple[float, ...] = (5.0, 9.0)


def _auc(s_pos: np.ndarray, s_neg: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray) -> float:
    if not len(s_pos) or not len(s_neg):
        return float("nan")
    y = np.r_[np.ones(len(s_pos)), np.zeros(len(s_neg))]
    return roc_auc(y, np.r_[s_pos, s_neg], np.r_[w_pos, w_neg])


def hypothesis_auc_matrix(
    scores: Sequence[Sequence[np.ndarray]], weights: Sequence[np.ndarray]
) -> np.ndarray:
    """``A[i, j]``: AUC of signal ``i`` vs signal ``j``, both scored at hypothesis ``i``.

    Args:
        scores: ``scores[i][h]`` — discriminant of signal sample ``i`` at hypothesis ``h``
            (only ``h = i`` and the columns used are read).
        weights: per-event weights of each signal sample.

    Returns:
        ``(n, n)`` matrix with NaN on the diagonal.
    """
    n = len(scores)
    out = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            if i != j:
                out[i, j] = _auc(scores[i][i], scores[j][i], weights[i], weights[j])
    return out


def mass_awareness_index(auc: np.ndarray) -> np.ndarray:
    """``MA = A + Aᵀ - 1`` (symmetric, NaN diagonal)."""
    return np.asarray(auc) + np.asarray(auc).T - 1.0


def binned_index(
    points: Sequence[Point],
    index: np.ndarray,
    column: int,
    edges: Sequence[float] = DISTANCE_EDGES,
) -> list[dict[str, float]]:
    """Mean MA over pairs ``i < j`` binned in ``|points[i][column] - points[j][column]|``.

    Returns one ``{"lo", "hi", "mean", "pairs"}`` per bin (``mean`` NaN when empty).
    """
    dist, vals = [], []
    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            if np.isfinite(index[i, j]):
                dist.append(abs(points[i][column] - points[j][column]))
                vals.append(index[i, j])
    d, v = np.asarray(dist), np.asarray(vals)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (d >= lo) & (d < hi)
        out.append(
            {
                "lo": lo,
                "hi": hi,
                "mean": float(v[sel].mean()) if sel.any() else float("nan"),
                "pairs": int(sel.sum()),
            }
        )
    return out


def mean_over_pairs(
    points: Sequence[Point], index: np.ndarray, column: int, min_distance: float
) -> float:
    """Mean MA over pairs with ``|Δ points[column]| >= min_distance`` (NaN if none)."""
    vals = [
        index[i, j]
        for i in range(len(points))
        for j in range(i + 1, len(points))
        if abs(points[i][column] - points[j][column]) >= min_distance and np.isfinite(index[i, j])
    ]
    return float(np.mean(vals)) if vals else float("nan")


def background_auc_matrix(
    scores: Sequence[Sequence[np.ndarray]],
    weights: Sequence[np.ndarray],
    background: Sequence[np.ndarray],
    background_weight: np.ndarray,
) -> np.ndarray:
    """``B[i, h]``: AUC of signal ``i`` against the backgrounds, both scored at hypothesis ``h``.

    ``scores[i][h]`` are signal ``i``'s scores at hypothesis ``h``, ``background[h]`` the
    backgrounds' at ``h``. ``B[i, h]`` is the mean over signal ``i`` of the background
    rejection its score reaches at ``h``: unlike the mean score, it does not change under a
    hypothesis-dependent rescaling of the score, so a row peaks at ``i`` only if signal ``i``
    is best separated from the SM at its own hypothesis.
    """
    n = len(scores)
    out = np.full((n, n), np.nan)
    for i in range(n):
        for h in range(n):
            out[i, h] = _auc(scores[i][h], background[h], weights[i], background_weight)
    return out


def peaks_at_own_hypothesis(mean_scores: np.ndarray) -> list[bool]:
    """``mean_scores[i, h]`` (signal ``i`` at hypothesis ``h``, square): does row ``i`` peak at ``i``?"""
    m = np.asarray(mean_scores)
    return [bool(np.argmax(m[i]) == i) for i in range(m.shape[0])]


def sensitivity(
    base: np.ndarray, shifted: Sequence[np.ndarray], steps: Sequence[float]
) -> list[float]:
    """Mean ``|score(c + δ_k e_k) - score(c)| / δ_k`` over events, one per condition parameter."""
    return [
        float(np.mean(np.abs(s - base)) / d) if len(base) else float("nan")
        for s, d in zip(shifted, steps, strict=True)
    ]


def auc_with_error(
    s_pos: np.ndarray,
    s_neg: np.ndarray,
    w_pos: np.ndarray,
    w_neg: np.ndarray,
    n_boot: int = 50,
    seed: int = 0,
) -> tuple[float, float]:
    """Weighted AUC and its bootstrap σ (events resampled in each class; σ NaN if ``n_boot < 2``)."""
    value = _auc(s_pos, s_neg, w_pos, w_neg)
    if n_boot < 2 or not np.isfinite(value):
        return value, float("nan")
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        ip = rng.integers(0, len(s_pos), len(s_pos))
        ineg = rng.integers(0, len(s_neg), len(s_neg))
        reps.append(_auc(s_pos[ip], s_neg[ineg], w_pos[ip], w_neg[ineg]))
    return value, float(np.nanstd(reps, ddof=1))


def process_aucs(
    s_sig: np.ndarray,
    w_sig: np.ndarray,
    s_bkg: np.ndarray,
    w_bkg: np.ndarray,
    process: np.ndarray,
    groups: Mapping[str, Sequence[str]] | None = None,
    n_boot: int = 50,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """``{name: (AUC, σ)}`` of signal vs each background process and combinations.

    Keys: every process name; ``"all"`` (the given weights, i.e. cross-section
    weighted); ``"all (equal weight)"`` (every process normalised to the same
    total weight, so one easy, large process cannot hide the hard ones); and one
    entry per ``groups`` item (e.g. ``{"resonant": ["WZ", "ZZ", "DY"]}``,
    cross-section weighted within the group). Groups with no events are omitted.
    """
    out: dict[str, tuple[float, float]] = {}
    names = sorted({str(p) for p in process})
    for name in names:
        sel = process == name
        out[name] = auc_with_error(s_sig, s_bkg[sel], w_sig, w_bkg[sel], n_boot, seed)
    out["all"] = auc_with_error(s_sig, s_bkg, w_sig, w_bkg, n_boot, seed)
    eq = np.zeros_like(w_bkg, dtype=np.float64)
    for name in names:
        sel = process == name
        total = w_bkg[sel].sum()
        if total > 0:
            eq[sel] = w_bkg[sel] / total
    out["all (equal weight)"] = auc_with_error(s_sig, s_bkg, w_sig, eq, n_boot, seed)
    for gname, members in (groups or {}).items():
        sel = np.isin(process, list(members))
        if sel.any():
            out[gname] = auc_with_error(s_sig, s_bkg[sel], w_sig, w_bkg[sel], n_boot, seed)
    return out


@dataclasses.dataclass(frozen=True)
class MassAwareness:
    """Hypothesis discrimination of one scorer over a set of signal points.

    Attributes:
        scorer: e.g. ``"parametric"``, ``"dedicated"``, ``"reference"``.
        condition_names: condition parameter names.
        points: the signal points (rows and columns of the matrices).
        auc: ``A[i, j]`` (see :func:`hypothesis_auc_matrix`).
        index: ``MA[i, j]``.
        distance: condition parameter the pair distance is taken in.
        bins: :func:`binned_index` of ``index``.
        mean_at: ``{min_distance: mean MA of pairs at least that far apart}``.
        peaks: per point, whether the mean score peaks at the own hypothesis (None if
            the scorer has no score of every sample at every hypothesis).
        background_auc: ``B[i, h]`` (:func:`background_auc_matrix`), or None.
        background_peaks: per point, whether ``B[i]`` peaks at ``i`` (None without ``B``).
    """

    scorer: str
    condition_names: tuple[str, ...]
    points: tuple[Point, ...]
    auc: np.ndarray
    index: np.ndarray
    distance: str
    bins: tuple[dict[str, float], ...]
    mean_at: dict[float, float]
    peaks: tuple[bool, ...] | None = None
    background_auc: np.ndarray | None = None
    background_peaks: tuple[bool, ...] | None = None

    @property
    def peak_fraction(self) -> float:
        """Fraction of points whose mean score peaks at their own hypothesis."""
        return float(np.mean(self.peaks)) if self.peaks else float("nan")

    @property
    def background_peak_fraction(self) -> float:
        """Fraction of points best separated from the backgrounds at their own hypothesis."""
        return float(np.mean(self.background_peaks)) if self.background_peaks else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "scorer": self.scorer,
            "condition_names": list(self.condition_names),
            "points": [list(p) for p in self.points],
            "auc": self.auc.tolist(),
            "index": self.index.tolist(),
            "distance": self.distance,
            "bins": list(self.bins),
            "mean_at": {f"{k:g}": v for k, v in self.mean_at.items()},
            "peaks": None if self.peaks is None else list(self.peaks),
            "peak_fraction": self.peak_fraction,
            "background_auc": None if self.background_auc is None else self.background_auc.tolist(),
            "background_peaks": (
                None if self.background_peaks is None else list(self.background_peaks)
            ),
            "background_peak_fraction": self.background_peak_fraction,
        }


def mass_awareness(
    scorer: str,
    condition_names: Sequence[str],
    points: Sequence[Point],
    scores: Sequence[Sequence[np.ndarray]],
    weights: Sequence[np.ndarray],
    distance: str,
    mean_scores: np.ndarray | None = None,
    min_distances: Sequence[float] = MIN_DISTANCES,
    background: tuple[Sequence[np.ndarray], np.ndarray] | None = None,
    edges: Sequence[float] = DISTANCE_EDGES,
) -> MassAwareness:
    """All hypothesis-discrimination measures of one scorer (see the module docstring).

    ``background``: the backgrounds' scores at every hypothesis and their weights, for
    :func:`background_auc_matrix`. ``edges``: the pair-distance bins of ``bins``;
    ``min_distances``: those of ``mean_at`` (the first is the headline one).
    """
    names = tuple(condition_names)
    column = names.index(distance)
    auc = hypothesis_auc_matrix(scores, weights)
    index = mass_awareness_index(auc)
    bkg_auc = None if background is None else background_auc_matrix(scores, weights, *background)
    return MassAwareness(
        scorer=scorer,
        condition_names=names,
        points=tuple(tuple(float(v) for v in p) for p in points),
        auc=auc,
        index=index,
        distance=distance,
        bins=tuple(binned_index(points, index, column, edges)),
        mean_at={float(d): mean_over_pairs(points, index, column, d) for d in min_distances},
        peaks=None if mean_scores is None else tuple(peaks_at_own_hypothesis(mean_scores)),
        background_auc=bkg_auc,
        background_peaks=None if bkg_auc is None else tuple(peaks_at_own_hypothesis(bkg_auc)),
    )
