"""Weighted classifier metrics: ROC, AUC, working points, bootstrap, KS, discriminant, JSD.

Everything here works on plain numpy arrays and honours per-event weights.
The ROC curve is a vectorised reimplementation of
:func:`sklearn.metrics.roc_curve` (``drop_intermediate=False``); the tests check
both against scikit-learn. Because bootstrap replicas only change the event
weights, not the score ordering, one sort serves every replica, so the
bootstrap is a batched cumulative sum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from paratag.errors import InvalidValueError

__all__ = [
    "DEFAULT_BKG_EFFS",
    "DEFAULT_SIG_EFFS",
    "BinaryMetrics",
    "BootstrapMetrics",
    "KSResult",
    "RocCurve",
    "auc",
    "binary_metrics",
    "bootstrap_metrics",
    "final_discriminant",
    "jensen_shannon",
    "ks_train_test",
    "metric_names",
    "rejection_at",
    "roc_auc",
    "roc_curve",
    "signal_efficiency_at",
    "threshold_at_efficiency",
    "weighted_ks",
]

DEFAULT_SIG_EFFS: tuple[float, ...] = (0.3, 0.5)
DEFAULT_BKG_EFFS: tuple[float, ...] = (0.01, 0.001)


def _as_inputs(
    y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and flatten labels (0/1), scores and weights."""
    y = np.asarray(y_true).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if not (y.shape == s.shape == w.shape):
        raise InvalidValueError(
            f"labels {y.shape}, scores {s.shape} and weights {w.shape} must have the same length"
        )
    if not np.all(np.isfinite(s)) or not np.all(np.isfinite(w)):
        raise InvalidValueError("scores or weights contain NaN/inf; clean the inputs first")
    yb = y.astype(bool)
    if np.any((y != 0) & (y != 1)):
        raise InvalidValueError("binary labels must be 0 (background) or 1 (signal)")
    if w[yb].sum() <= 0 or w[~yb].sum() <= 0:
        raise InvalidValueError(
            "need a positive total weight of both signal (label 1) and background (label 0)"
        )
    return yb.astype(np.float64), s, w


@dataclass(frozen=True)
class RocCurve:
    """A weighted ROC curve; ``fpr`` = εB and ``tpr`` = εS, both non-decreasing."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray

    @property
    def auc(self) -> float:
        """Area under the curve."""
        return auc(self.fpr, self.tpr)


def _sorted_cumulative(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Descending sort order, indices of the last event of each distinct score, thresholds."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    return order, last, s_sorted[last]


def roc_curve(
    y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None
) -> RocCurve:
    """Weighted ROC curve (same points as sklearn's ``roc_curve(drop_intermediate=False)``)."""
    y, s, w = _as_inputs(y_true, scores, weights)
    order, last, thr = _sorted_cumulative(y, s)
    tps = np.cumsum((w * y)[order])[last]
    fps = np.cumsum((w * (1.0 - y))[order])[last]
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=np.r_[np.inf, thr])


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Trapezoidal area under a ROC curve (1-D) ."""
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) * 0.5))


def roc_auc(y_true: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted ROC AUC (ties count one half, as in sklearn's ``roc_auc_score``)."""
    return roc_curve(y_true, scores, weights).auc


def _bkg_eff_at_sig_eff(fpr: np.ndarray, tpr: np.ndarray, target: float) -> np.ndarray:
    """Smallest εB reaching εS >= target, linearly interpolated; rows are curves."""
    k = fpr.shape[-1]
    j = np.clip(np.sum(tpr < target, axis=-1), 1, k - 1)
    i = j - 1
    t0, t1 = np.take_along_axis(tpr, i[..., None], -1), np.take_along_axis(tpr, j[..., None], -1)
    f0, f1 = np.take_along_axis(fpr, i[..., None], -1), np.take_along_axis(fpr, j[..., None], -1)
    dt = t1 - t0
    frac = np.divide(target - t0, dt, out=np.ones_like(dt), where=dt > 0)
    return (f0 + np.clip(frac, 0.0, 1.0) * (f1 - f0))[..., 0]


def _sig_eff_at_bkg_eff(fpr: np.ndarray, tpr: np.ndarray, target: float) -> np.ndarray:
    """Largest εS with εB <= target, linearly interpolated; rows are curves."""
    k = fpr.shape[-1]
    i = np.clip(np.sum(fpr <= target, axis=-1) - 1, 0, k - 1)
    j = np.minimum(i + 1, k - 1)
    t0, t1 = np.take_along_axis(tpr, i[..., None], -1), np.take_along_axis(tpr, j[..., None], -1)
    f0, f1 = np.take_along_axis(fpr, i[..., None], -1), np.take_along_axis(fpr, j[..., None], -1)
    df = f1 - f0
    frac = np.divide(target - f0, df, out=np.zeros_like(df), where=df > 0)
    return (t0 + np.clip(frac, 0.0, 1.0) * (t1 - t0))[..., 0]


def _inverse(x: np.ndarray) -> np.ndarray:
    """1/x with 1/0 = inf."""
    x = np.asarray(x, dtype=np.float64)
    return np.divide(1.0, x, out=np.full_like(x, np.inf), where=x > 0)


def rejection_at(curve: RocCurve, sig_eff: float) -> float:
    """Background rejection 1/εB at signal efficiency ``sig_eff`` (inf if εB = 0)."""
    eb = _bkg_eff_at_sig_eff(curve.fpr[None], curve.tpr[None], sig_eff)
    return float(_inverse(eb)[0])


def signal_efficiency_at(curve: RocCurve, bkg_eff: float) -> float:
    """Signal efficiency εS at background efficiency ``bkg_eff``."""
    return float(_sig_eff_at_bkg_eff(curve.fpr[None], curve.tpr[None], bkg_eff)[0])


def metric_names(
    sig_effs: Sequence[float] = DEFAULT_SIG_EFFS, bkg_effs: Sequence[float] = DEFAULT_BKG_EFFS
) -> list[str]:
    """Names of the scalar metrics, e.g. ``auc``, ``rej@sig0.3``, ``sig@bkg0.01``."""
    return ["auc"] + [f"rej@sig{e:g}" for e in sig_effs] + [f"sig@bkg{e:g}" for e in bkg_effs]


@dataclass(frozen=True)
class BinaryMetrics:
    """Scalar metrics of one weighted binary classification."""

    values: dict[str, float]
    n_signal: int
    n_background: int
    sum_w_signal: float
    sum_w_background: float

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        return {
            "values": dict(self.values),
            "n_signal": self.n_signal,
            "n_background": self.n_background,
            "sum_w_signal": self.sum_w_signal,
            "sum_w_background": self.sum_w_background,
        }


def binary_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    weights: np.ndarray | None = None,
    sig_effs: Sequence[float] = DEFAULT_SIG_EFFS,
    bkg_effs: Sequence[float] = DEFAULT_BKG_EFFS,
) -> BinaryMetrics:
    """AUC, rejection 1/εB at each εS in ``sig_effs`` and εS at each εB in ``bkg_effs``."""
    y, _, w = _as_inputs(y_true, scores, weights)
    curve = roc_curve(y_true, scores, weights)
    vals = _curve_metrics(curve.fpr[None], curve.tpr[None], sig_effs, bkg_effs)
    sig = y > 0.5
    return BinaryMetrics(
        values={k: float(v[0]) for k, v in vals.items()},
        n_signal=int(sig.sum()),
        n_background=int((~sig).sum()),
        sum_w_signal=float(w[sig].sum()),
        sum_w_background=float(w[~sig].sum()),
    )


def _curve_metrics(
    fpr: np.ndarray, tpr: np.ndarray, sig_effs: Sequence[float], bkg_effs: Sequence[float]
) -> dict[str, np.ndarray]:
    """Metric arrays for a batch of curves with shape (B, K)."""
    out = {"auc": np.sum(np.diff(fpr, axis=-1) * (tpr[:, 1:] + tpr[:, :-1]) * 0.5, axis=-1)}
    for e in sig_effs:
        out[f"rej@sig{e:g}"] = _inverse(_bkg_eff_at_sig_eff(fpr, tpr, e))
    for e in bkg_effs:
        out[f"sig@bkg{e:g}"] = _sig_eff_at_bkg_eff(fpr, tpr, e)
    return out


@dataclass(frozen=True)
class BootstrapMetrics:
    """Nominal metrics with bootstrap spread (std and central 68% interval)."""

    nominal: dict[str, float]
    std: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    n_boot: int
    seed: int

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        return {
            "nominal": dict(self.nominal),
            "std": dict(self.std),
            "low": dict(self.low),
            "high": dict(self.high),
            "n_boot": self.n_boot,
            "seed": self.seed,
        }


def bootstrap_metrics(
    y_true: np.ndarray,
    scores: np.ndarray,
    weights: np.ndarray | None = None,
    n_boot: int = 100,
    seed: int = 0,
    sig_effs: Sequence[float] = DEFAULT_SIG_EFFS,
    bkg_effs: Sequence[float] = DEFAULT_BKG_EFFS,
    max_elements: int = 2_000_000,
) -> BootstrapMetrics:
    """Bootstrap uncertainties of :func:`binary_metrics`, vectorised and seeded.

    Each replica resamples the N events with replacement (multinomial counts that
    multiply the event weights); replicas are processed in batches of at most
    ``max_elements`` (replicas x events) numbers, and the result does not depend on
    the batch size.
    Infinite rejections (εB = 0 in a replica) are excluded from the spread.
    ``n_boot=0`` gives the nominal values with NaN spread.
    """
    if n_boot == 1 or n_boot < 0:
        raise InvalidValueError(f"n_boot={n_boot}: use 0 (no bootstrap) or at least 2 replicas")
    y, s, w = _as_inputs(y_true, scores, weights)
    nominal = binary_metrics(y, s, w, sig_effs, bkg_effs).values
    if n_boot == 0:
        nan = dict.fromkeys(nominal, float("nan"))
        return BootstrapMetrics(nominal, dict(nan), dict(nan), dict(nan), n_boot=0, seed=seed)
    order, last, _ = _sorted_cumulative(y, s)
    ws, bs = (w * y)[order], (w * (1.0 - y))[order]
    rng = np.random.default_rng(seed)
    batch = max(1, min(n_boot, max_elements // max(1, s.size)))
    chunks: list[dict[str, np.ndarray]] = []
    done = 0
    while done < n_boot:
        nb = min(batch, n_boot - done)
        draws = rng.integers(0, s.size, size=(nb, s.size)) + (np.arange(nb) * s.size)[:, None]
        k = np.bincount(draws.ravel(), minlength=nb * s.size).reshape(nb, s.size).astype(np.float64)
        tps = np.cumsum(ws * k, axis=1)[:, last]
        fps = np.cumsum(bs * k, axis=1)[:, last]
        ok = (tps[:, -1] > 0) & (fps[:, -1] > 0)
        tps, fps = tps[ok], fps[ok]
        zero = np.zeros((tps.shape[0], 1))
        tpr = np.hstack([zero, tps / tps[:, -1:]])
        fpr = np.hstack([zero, fps / fps[:, -1:]])
        chunks.append(_curve_metrics(fpr, tpr, sig_effs, bkg_effs))
        done += nb
    std, low, high = {}, {}, {}
    for name in nominal:
        arr = np.concatenate([c[name] for c in chunks])
        arr = arr[np.isfinite(arr)]
        if arr.size < 2:
            std[name] = low[name] = high[name] = float("nan")
            continue
        std[name] = float(np.std(arr, ddof=1))
        low[name], high[name] = (float(q) for q in np.quantile(arr, [0.16, 0.84]))
    return BootstrapMetrics(nominal=nominal, std=std, low=low, high=high, n_boot=n_boot, seed=seed)


@dataclass(frozen=True)
class KSResult:
    """Two-sample weighted Kolmogorov–Smirnov result."""

    statistic: float
    pvalue: float
    n_eff_a: float
    n_eff_b: float

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        return {
            "statistic": self.statistic,
            "pvalue": self.pvalue,
            "n_eff_a": self.n_eff_a,
            "n_eff_b": self.n_eff_b,
        }


def _n_eff(w: np.ndarray) -> float:
    """Kish effective sample size (Σw)² / Σw²."""
    return float(w.sum() ** 2 / np.sum(w**2))


def weighted_ks(
    a: np.ndarray,
    b: np.ndarray,
    weights_a: np.ndarray | None = None,
    weights_b: np.ndarray | None = None,
) -> KSResult:
    """Weighted two-sample KS test; the p-value uses Kish effective sample sizes.

    With unit weights it equals ``scipy.stats.ks_2samp(a, b, method="asymp")``.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    wa = np.ones_like(a) if weights_a is None else np.asarray(weights_a, np.float64).reshape(-1)
    wb = np.ones_like(b) if weights_b is None else np.asarray(weights_b, np.float64).reshape(-1)
    if a.size == 0 or b.size == 0 or wa.sum() <= 0 or wb.sum() <= 0:
        raise InvalidValueError("KS test needs two non-empty samples with positive total weight")
    grid = np.union1d(a, b)
    ia, ib = np.argsort(a), np.argsort(b)
    ca = np.r_[0.0, np.cumsum(wa[ia])] / wa.sum()
    cb = np.r_[0.0, np.cumsum(wb[ib])] / wb.sum()
    fa = ca[np.searchsorted(a[ia], grid, side="right")]
    fb = cb[np.searchsorted(b[ib], grid, side="right")]
    d = float(np.max(np.abs(fa - fb)))
    na, nb = _n_eff(wa), _n_eff(wb)
    en = na * nb / (na + nb)
    p = float(np.clip(stats.kstwo.sf(d, max(1, int(np.round(en)))), 0.0, 1.0))
    return KSResult(statistic=d, pvalue=p, n_eff_a=na, n_eff_b=nb)


def ks_train_test(
    train_scores: np.ndarray,
    train_labels: np.ndarray,
    test_scores: np.ndarray,
    test_labels: np.ndarray,
    train_weights: np.ndarray | None = None,
    test_weights: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, KSResult]:
    """KS test of the train vs test score distribution for each class (overfitting check)."""
    trs, tes = np.asarray(train_scores).reshape(-1), np.asarray(test_scores).reshape(-1)
    trl, tel = np.asarray(train_labels).reshape(-1), np.asarray(test_labels).reshape(-1)
    trw = np.ones_like(trs, dtype=float) if train_weights is None else np.asarray(train_weights)
    tew = np.ones_like(tes, dtype=float) if test_weights is None else np.asarray(test_weights)
    classes = np.union1d(np.unique(trl), np.unique(tel)).astype(int)
    out: dict[str, KSResult] = {}
    for c in classes:
        name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        a, b = trl == c, tel == c
        if not a.any() or not b.any():
            continue
        out[name] = weighted_ks(trs[a], tes[b], trw[a], tew[b])
    return out


def final_discriminant(
    scores: np.ndarray,
    signal_index: int = 0,
    background_weights: Mapping[int, float] | Sequence[float] | None = None,
) -> np.ndarray:
    """Multi-class discriminant s0 / (s0 + Σ w_i s_i) of the origin analysis.

    Args:
        scores: class probabilities, shape (N, C).
        signal_index: column of the signal class.
        background_weights: weight per background class, as a mapping column -> weight or a
            sequence over the background columns in order; missing ones default to 1.

    Returns:
        Discriminant in [0, 1], shape (N,); 0 where every score is 0.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or not 0 <= signal_index < s.shape[1]:
        raise InvalidValueError(
            f"scores must be (N, C) with signal_index < C; got shape {s.shape}, "
            f"signal_index={signal_index}"
        )
    bkg_cols = [c for c in range(s.shape[1]) if c != signal_index]
    weights = np.ones(s.shape[1])
    weights[signal_index] = 0.0
    if isinstance(background_weights, Mapping):
        for c, v in background_weights.items():
            if int(c) not in bkg_cols:
                raise InvalidValueError(f"background weight for column {c}: not a background")
            weights[int(c)] = float(v)
    elif background_weights is not None:
        if len(background_weights) != len(bkg_cols):
            raise InvalidValueError(
                f"{len(background_weights)} background weights for {len(bkg_cols)} backgrounds"
            )
        weights[bkg_cols] = np.asarray(background_weights, dtype=np.float64)
    s0 = s[:, signal_index]
    den = s0 + s @ weights
    return np.divide(s0, den, out=np.zeros_like(s0), where=den > 0)


def threshold_at_efficiency(
    scores: np.ndarray, efficiency: float, weights: np.ndarray | None = None
) -> float:
    """Score cut t such that the weighted fraction of events with score >= t is ~efficiency."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    w = np.ones_like(s) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if s.size == 0 or w.sum() <= 0:
        raise InvalidValueError("threshold_at_efficiency needs events with positive weight")
    order = np.argsort(-s, kind="mergesort")
    frac = np.cumsum(w[order]) / w.sum()
    i = min(int(np.searchsorted(frac, efficiency, side="left")), s.size - 1)
    return float(s[order][i])


def jensen_shannon(p: np.ndarray, q: np.ndarray, base: float = 2.0) -> float:
    """Jensen–Shannon divergence of two (unnormalised) histograms; 0 if identical."""
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0 or (p < 0).any() or (q < 0).any():
        raise InvalidValueError("JSD needs two non-negative histograms of equal binning")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def _kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log(x[nz] / m[nz])))

    return max(0.0, 0.5 * (_kl(p) + _kl(q)) / np.log(base))
