"""Parametric studies of paratag.evaluate.studies on synthetic score functions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from paratag.errors import InvalidValueError, UnknownMassPointError
from paratag.evaluate.decorrelation import decorrelation_points, sculpting
from paratag.evaluate.metrics import roc_auc
from paratag.evaluate.results import jsonable
from paratag.evaluate.studies import (
    GraphArrays,
    auc_grid,
    compare_to_dedicated,
    parametric_aucs,
    pileup_robustness,
    score_at_hypothesis,
    seed_stability,
    wrong_hypothesis,
)

GRID = [(mhc, ma) for mhc in (100.0, 130.0, 160.0) for ma in (15.0, 30.0, 45.0)]


def parametric_score(points, features, mask, condition):
    """Toy parametric tagger: signal-like when the reconstructed masses match the hypothesis."""
    d2 = ((features[:, 0, 0] - condition[:, 0]) / 6.0) ** 2 + (
        (features[:, 1, 0] - condition[:, 1]) / 4.0
    ) ** 2
    s = np.exp(-0.5 * d2) * mask[:, 0, 0]
    return np.stack([s, 1.0 - s], axis=1)


def blind_score(points, features, mask, condition):
    """Ignores the hypothesis (a non-parametric tagger)."""
    s = 1.0 / (1.0 + np.exp(-features[:, 2, 0]))
    return np.stack([s, 1.0 - s], axis=1)


def _arrays(mhc, ma, n, rng, signal=True):
    f = np.zeros((n, 3, 4), np.float32)
    if signal:
        f[:, 0, 0], f[:, 1, 0] = rng.normal(mhc, 2.0, n), rng.normal(ma, 1.5, n)
        f[:, 2, 0] = rng.normal(1.0, 1.0, n)
    else:
        f[:, 0, 0], f[:, 1, 0] = rng.uniform(80, 180, n), rng.uniform(5, 60, n)
        f[:, 2, 0] = rng.normal(-1.0, 1.0, n)
    mask = np.zeros((n, 1, 4), np.float32)
    mask[:, :, :2] = 1.0
    return GraphArrays(np.zeros((n, 2, 4), np.float32), f * mask, mask, rng.exponential(1.0, n))


@pytest.fixture(scope="module")
def signals():
    rng = np.random.default_rng(0)
    return {p: _arrays(*p, 150, rng) for p in GRID}


def test_score_at_hypothesis_broadcasts_and_batches(signals):
    arr = signals[GRID[0]]
    full = score_at_hypothesis(parametric_score, arr, GRID[0], batch_size=10_000)
    small = score_at_hypothesis(parametric_score, arr, GRID[0], batch_size=7)
    assert full.shape == (len(arr), 2)
    np.testing.assert_array_equal(full, small)
    other = score_at_hypothesis(parametric_score, arr, GRID[-1])
    assert full[:, 0].mean() > 10 * other[:, 0].mean()


def test_wrong_hypothesis_peaks_on_diagonal(signals):
    wh = wrong_hypothesis(parametric_score, signals)
    assert wh.matrix.shape == (len(GRID), len(GRID))
    assert all(wh.peaks_at_true)
    np.testing.assert_array_equal(np.argmax(wh.matrix, axis=1), np.arange(len(GRID)))
    d = json.loads(json.dumps(jsonable(wh.to_dict())))
    assert d["fraction_peaking_at_true"] == 1.0


def test_wrong_hypothesis_of_blind_tagger_does_not_peak(signals):
    wh = wrong_hypothesis(blind_score, signals)
    assert np.allclose(wh.matrix, wh.matrix[:, :1])  # constant along each row
    assert sum(wh.peaks_at_true) <= 1  # argmax of a constant row is its first column


def test_wrong_hypothesis_with_normalisation_and_subset(signals):
    hyps = GRID[:3]
    wh = wrong_hypothesis(
        lambda p, f, m, c: parametric_score(p, f, m, c * 100.0),
        {p: signals[p] for p in hyps},
        hypotheses=hyps,
        normalise=lambda p: [v / 100.0 for v in p],
    )
    assert all(wh.peaks_at_true)


def test_parametric_aucs(signals):
    rng = np.random.default_rng(1)
    bkg = _arrays(0, 0, 2000, rng, signal=False)
    aucs = parametric_aucs(parametric_score, signals, bkg)
    assert set(aucs) == set(GRID)
    assert min(aucs.values()) > 0.9
    blind = parametric_aucs(blind_score, signals, bkg)
    # the blind score only uses feature 2, which separates with AUC ~ Phi(2/sqrt(2)) ~ 0.92
    assert all(0.85 < v < 0.97 for v in blind.values())
    # AUC of one point by hand
    p = GRID[4]
    ss = parametric_score(None, signals[p].features, signals[p].mask, np.tile(p, (150, 1)))[:, 0]
    sb = parametric_score(None, bkg.features, bkg.mask, np.tile(p, (2000, 1)))[:, 0]
    ref = roc_auc(
        np.r_[np.ones(150), np.zeros(2000)], np.r_[ss, sb], np.r_[signals[p].weight, bkg.weight]
    )
    assert aucs[p] == pytest.approx(ref)


def test_compare_to_dedicated():
    par = {(100, 15): 0.95, (130, 30): 0.93, (160, 45): 0.90, (100, 30): 0.80}
    ded = {(100, 15): 0.955, (130, 30): 0.94, (160, 45): 0.93}
    splits = {(130, 30): "interp", (160, 45): "extrap"}
    c = compare_to_dedicated(par, ded, splits)
    assert c.points == ((100.0, 15.0), (130.0, 30.0), (160.0, 45.0))
    np.testing.assert_allclose(c.ratio, [0.95 / 0.955, 0.93 / 0.94, 0.90 / 0.93])
    assert c.passes() == (True, True, True)  # 0.9948 >= .99, 0.989 >= .98, 0.968 >= .95
    assert c.passes("train") == (True, False, False)
    s = c.summary()
    assert s["interp"]["n"] == 1 and s["extrap"]["min_ratio"] == pytest.approx(0.90 / 0.93)
    strict = compare_to_dedicated(par, ded, splits, thresholds={"extrap": 0.99})
    assert strict.passes() == (True, True, False)
    json.dumps(jsonable(c.to_dict()), allow_nan=False)
    with pytest.raises(UnknownMassPointError, match="mHc=200,mA=15"):
        compare_to_dedicated(par, {(200, 15): 0.9})
    with pytest.raises(InvalidValueError):
        compare_to_dedicated(par, ded, {(100, 15): "validation"})


def test_auc_grid_2d_and_1d():
    aucs = {(100, 15): 0.9, (160, 15): 0.8, (160, 45): 0.7}
    g = auc_grid(aucs, {(160, 45): "extrap"})
    np.testing.assert_array_equal(g.x, [100, 160])
    np.testing.assert_array_equal(g.y, [15, 45])
    assert g.auc[0, 0] == 0.9 and g.auc[1, 1] == 0.7 and np.isnan(g.auc[1, 0])
    assert g.split == (("train", "train"), ("", "extrap"))
    assert json.loads(json.dumps(g.to_dict()))["auc"][1][0] is None
    g1 = auc_grid({(500,): 0.9, (1000,): 0.95}, condition_names=["mX"])
    assert g1.auc.shape == (1, 2)
    with pytest.raises(InvalidValueError):
        auc_grid({(1, 2, 3): 0.5})


def test_seed_stability():
    st = seed_stability({0: 0.90, 1: 0.92, 2: 0.94})
    assert st.mean == pytest.approx(0.92) and st.std == pytest.approx(0.02)
    per = seed_stability(
        {0: {(100, 15): 0.9, (130, 30): 0.8}, 1: {(100, 15): 0.92, (130, 30): 0.8}}
    )
    assert per.aucs == pytest.approx((0.85, 0.86))
    assert per.per_point["mHc=100,mA=15"]["std"] == pytest.approx(np.std([0.9, 0.92], ddof=1))


def test_sculpting_and_jsd():
    rng = np.random.default_rng(2)
    n = 40_000
    mass = rng.exponential(60.0, n) + 20.0
    independent = rng.uniform(size=n)
    correlated = np.clip(mass / 300.0 + rng.normal(0, 0.05, n), 0, 1)
    sig = rng.uniform(0.3, 1.0, 20_000)
    bins = np.linspace(20, 400, 39)
    a = sculpting(mass, independent, sig, sig_effs=(0.9, 0.5), bins=bins)
    b = sculpting(mass, correlated, sig, sig_effs=(0.9, 0.5), bins=bins)
    assert a.jsd[0.5] < 0.01 < b.jsd[0.5]
    assert a.before.sum() == np.sum(mass <= 400)  # overflow is not histogrammed
    assert a.bkg_eff[0.5] == pytest.approx(np.mean(independent >= a.thresholds[0.5]))
    # unweighted jets passing each cut, of all background jets (overflow included)
    assert a.n_pass[0.5] == np.sum(independent >= a.thresholds[0.5]) and a.n_background == n
    assert b.n_pass[0.9] > b.n_pass[0.5] > 0
    full = sculpting(mass, independent, independent, sig_effs=(1.0,), bins=bins)  # keeps all
    assert full.bkg_eff[1.0] == 1.0
    assert full.jsd[1.0] == pytest.approx(0.0, abs=1e-12)
    pts = decorrelation_points({"flat": a, "sculpting": b})
    assert pts["flat"]["inv_jsd"] > pts["sculpting"]["inv_jsd"]
    assert pts["flat"]["n_pass"] == a.n_pass[0.5]
    json.dumps(jsonable(b.to_dict()), allow_nan=False)


def test_pileup_robustness():
    rng = np.random.default_rng(3)
    levels = {}
    for pu, shift in (("0", 2.0), ("60", 1.0)):
        y = rng.integers(0, 2, 5000)
        levels[pu] = (y, rng.normal(shift * y, 1.0), None)
    r = pileup_robustness(levels, n_boot=20)
    assert r.levels == ("0", "60")
    assert r.metrics[0].values["auc"] > r.metrics[1].values["auc"] + 0.1
    assert r.bootstrap[0] is not None and 0 < r.bootstrap[0].std["auc"] < 0.02
    assert pileup_robustness(levels).bootstrap == (None, None)
    json.dumps(jsonable(r.to_dict()), allow_nan=False)
