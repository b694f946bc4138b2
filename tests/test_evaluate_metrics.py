"""Weighted metrics of paratag.evaluate.metrics vs scikit-learn, scipy and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from paratag.errors import InvalidValueError
from paratag.evaluate.metrics import (
    binary_metrics,
    bootstrap_metrics,
    final_discriminant,
    jensen_shannon,
    ks_train_test,
    rejection_at,
    roc_auc,
    roc_curve,
    signal_efficiency_at,
    threshold_at_efficiency,
    weighted_ks,
)

# y, scores, weights of the hand-computed 4-event case:
# AUC = sum_{sig i, bkg j} w_i w_j [s_i > s_j] / (W_s W_b) = (1*3 + 1*4 + 2*4) / (3*7) = 5/7
HAND = (np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1]), np.array([1.0, 2.0, 3.0, 4.0]))


def _sample(n: int, shift: float, seed: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.normal(shift * y, 1.0)
    if ties:
        s = np.round(s, 1)
    return y, s, rng.exponential(1.0, n)


@pytest.mark.parametrize("ties", [False, True])
def test_roc_matches_sklearn(ties):
    y, s, w = _sample(5000, 1.0, seed=1, ties=ties)
    c = roc_curve(y, s, w)
    fpr, tpr, thr = sk_roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    np.testing.assert_allclose(c.fpr, fpr, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c.tpr, tpr, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(c.thresholds[1:], thr[1:])
    assert c.auc == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_hand_computed_four_events():
    y, s, w = HAND
    assert roc_auc(y, s, w) == pytest.approx(5 / 7, abs=1e-12)
    c = roc_curve(y, s, w)
    np.testing.assert_allclose(c.tpr, [0, 1 / 3, 1 / 3, 1, 1])
    np.testing.assert_allclose(c.fpr, [0, 0, 3 / 7, 3 / 7, 1])
    # eps_S = 0.5 is first reached at eps_B = 3/7; eps_S = 0.3 already at eps_B = 0
    assert rejection_at(c, 0.5) == pytest.approx(7 / 3)
    assert math.isinf(rejection_at(c, 0.3))
    assert signal_efficiency_at(c, 0.01) == pytest.approx(1 / 3)
    m = binary_metrics(y, s, w)
    assert m.values["auc"] == pytest.approx(5 / 7)
    assert (m.n_signal, m.n_background, m.sum_w_signal, m.sum_w_background) == (2, 2, 3.0, 7.0)


def test_perfect_separation_and_inverted():
    y = np.r_[np.ones(100), np.zeros(100)]
    s = np.r_[np.linspace(0.6, 1, 100), np.linspace(0, 0.4, 100)]
    m = binary_metrics(y, s)
    assert m.values["auc"] == pytest.approx(1.0)
    assert math.isinf(m.values["rej@sig0.5"])
    assert m.values["sig@bkg0.001"] == pytest.approx(1.0)
    assert roc_auc(y, -s) == pytest.approx(0.0)


def test_identical_distributions_are_random():
    y, s, w = _sample(200_000, 0.0, seed=2)
    m = binary_metrics(y, s, w)
    assert m.values["auc"] == pytest.approx(0.5, abs=0.005)
    assert m.values["rej@sig0.5"] == pytest.approx(2.0, rel=0.03)
    assert m.values["sig@bkg0.01"] == pytest.approx(0.01, abs=0.003)


def test_working_points_invert_each_other():
    y, s, w = _sample(50_000, 1.5, seed=3)
    c = roc_curve(y, s, w)
    eb = 1.0 / rejection_at(c, 0.5)
    assert signal_efficiency_at(c, eb) == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(
    "bad",
    [
        (np.array([1, 1]), np.array([0.1, 0.2]), None),  # no background
        (np.array([1, 0]), np.array([np.nan, 0.2]), None),  # NaN score
        (np.array([1, 2]), np.array([0.1, 0.2]), None),  # non-binary label
        (np.array([1, 0, 0]), np.array([0.1, 0.2]), None),  # length mismatch
    ],
)
def test_invalid_inputs_raise(bad):
    with pytest.raises(InvalidValueError):
        binary_metrics(*bad)


def test_bootstrap_spread_matches_loop_over_sklearn():
    y, s, w = _sample(2000, 1.0, seed=4)
    b = bootstrap_metrics(y, s, w, n_boot=200, seed=7, max_elements=100_000)  # 50 per batch
    assert b.nominal["auc"] == pytest.approx(roc_auc_score(y, s, sample_weight=w))
    assert 0.0 < b.std["auc"] < 0.02
    assert b.low["auc"] < b.nominal["auc"] < b.high["auc"]
    assert all(np.isfinite(v) and v > 0 for v in b.std.values())
    rng = np.random.default_rng(99)
    loop = []
    for _ in range(200):
        k = np.bincount(rng.integers(0, y.size, y.size), minlength=y.size)
        loop.append(roc_auc_score(y, s, sample_weight=w * k))
    assert b.std["auc"] == pytest.approx(np.std(loop, ddof=1), rel=0.25)
    again = bootstrap_metrics(y, s, w, n_boot=200, seed=7)
    assert again.std == b.std  # seeded, and independent of the batch size
    assert bootstrap_metrics(y, s, w, n_boot=200, seed=8).std != b.std


def test_weighted_ks_matches_scipy_and_detects_shift():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=400), rng.normal(0.1, size=600)
    mine, ref = weighted_ks(a, b), ks_2samp(a, b, method="asymp")
    assert mine.statistic == pytest.approx(ref.statistic)
    assert mine.pvalue == pytest.approx(ref.pvalue)
    # integer weights act like repeated events for the statistic
    wa = rng.integers(1, 4, a.size).astype(float)
    assert weighted_ks(a, b, wa).statistic == pytest.approx(
        ks_2samp(np.repeat(a, wa.astype(int)), b).statistic
    )
    assert weighted_ks(rng.normal(size=3000), rng.normal(size=3000)).pvalue > 1e-3
    assert weighted_ks(rng.normal(size=3000), rng.normal(0.5, size=3000)).pvalue < 1e-10


def test_ks_train_test_per_class():
    rng = np.random.default_rng(6)
    ytr, yte = rng.integers(0, 2, 4000), rng.integers(0, 2, 4000)
    str_ = rng.normal(ytr, 1.0)
    ste = rng.normal(yte * 1.0 + (yte == 1) * 0.5, 1.0)  # signal shifted in test only
    res = ks_train_test(str_, ytr, ste, yte, class_names=["bkg", "sig"])
    assert set(res) == {"bkg", "sig"}
    assert res["bkg"].pvalue > 1e-3
    assert res["sig"].pvalue < 1e-10


def test_final_discriminant():
    s = np.array([[0.5, 0.3, 0.2], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(final_discriminant(s), [0.5, 0.0, 1.0])
    np.testing.assert_allclose(final_discriminant(s, background_weights=[2.0, 0.5])[0], 0.5 / 1.2)
    np.testing.assert_allclose(final_discriminant(s, background_weights={2: 0.0})[0], 0.5 / 0.8)
    np.testing.assert_allclose(final_discriminant(s, signal_index=1)[0], 0.3 / 1.0)
    with pytest.raises(InvalidValueError):
        final_discriminant(s, background_weights=[1.0])
    with pytest.raises(InvalidValueError):
        final_discriminant(s, background_weights={0: 1.0})


def test_jensen_shannon():
    p = np.array([1.0, 4.0, 5.0, 0.0])
    assert jensen_shannon(p, 3 * p) == pytest.approx(0.0, abs=1e-15)
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    q = np.array([2.0, 2.0, 1.0, 5.0])
    assert jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2)
    with pytest.raises(InvalidValueError):
        jensen_shannon([1, 2], [1, 2, 3])


def test_threshold_at_efficiency():
    s = np.arange(10.0)
    assert threshold_at_efficiency(s, 0.3) == 7.0  # 7, 8, 9 pass
    w = np.r_[np.ones(9), 9.0]  # the top event carries half the weight
    assert threshold_at_efficiency(s, 0.5, w) == 9.0
