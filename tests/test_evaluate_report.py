"""The evaluation report: every section, figures as real PNG/PDF files, JSON numbers."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from paratag.errors import InputFileError, InvalidValueError
from paratag.evaluate import ScoredSample, build_report, compute_results, roc_auc, write_report
from paratag.evaluate.comparison import compare_models
from paratag.evaluate.curves import METRICS_COLUMNS, read_metrics_csv
from paratag.evaluate.importance import Importance
from paratag.evaluate.report import _TITLES
from paratag.evaluate.results import SECTIONS
from paratag.evaluate.studies import wrong_hypothesis_from_matrix

GRID = [(mhc, ma) for mhc in (100.0, 130.0, 160.0) for ma in (15.0, 30.0, 45.0) if ma < mhc - 60]
CLASSES = ("signal", "WZ", "ttbar")


def _scored(n: int, seed: int, sep: float = 1.5) -> ScoredSample:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += sep
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    mass = np.where(y == 0, rng.normal(125, 10, n), rng.exponential(60, n) + 20)
    return ScoredSample(p, y, rng.exponential(1.0, n), mass)


def _metrics_csv(path):
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(METRICS_COLUMNS)
        for stage, pts in (
            ("pretrain", ["mHc=100,mA=15", "mHc=160,mA=45"]),
            ("average", [""]),
            ("finetune", [""]),
        ):
            for pt in pts:
                for e in range(4):
                    w.writerow(
                        [stage, pt, e, 1 / (e + 1), 1.2 / (e + 1), 0.8 + 0.03 * e, 1e-3, 2.0]
                    )
    return path


@pytest.fixture(scope="module")
def full_inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval_inputs")
    par = {p: 0.95 - 0.002 * i for i, p in enumerate(GRID)}
    ded = {p: 0.952 - 0.003 * i for i, p in enumerate(GRID)}
    splits = {GRID[1]: "interp", GRID[-1]: "extrap"}
    m = np.full((len(GRID), len(GRID)), 0.1) + 0.7 * np.eye(len(GRID))
    test = _scored(1500, 0)
    return {
        "test": test,
        "train": _scored(1500, 1),
        "class_names": CLASSES,
        "background_weights": [0.6, 0.4],
        "parametric_aucs": par,
        "dedicated_aucs": ded,
        "splits": splits,
        "wrong_hypothesis": wrong_hypothesis_from_matrix(GRID, GRID, m),
        "seed_aucs": {0: 0.95, 1: 0.951, 2: 0.947},
        "sculpting_samples": {"no DisCo": test, "DisCo": _scored(1500, 2, sep=1.2)},
        "pileup": {"0": test, "60": _scored(1500, 3, sep=1.0)},
        "metrics_csv": _metrics_csv(tmp / "metrics.csv"),
        "n_boot": 20,
        "hypotheses": _hypotheses(),
        "models": _models(),
        "importance": Importance(
            0.9,
            {"pf: pt": 0.2, "pf: eta": 0.01},
            {"pf": 0.3, "sv": 0.05},
            {"signal": np.eye(4), "background": np.ones((4, 4))},
            n_events=100,
        ),
    }


def _models():
    """Two taggers on the same toy events: one scores the truth with noise, one is blind."""
    rng = np.random.default_rng(7)
    y = np.r_[np.ones(200), np.zeros(300)]
    good, blind = y + rng.normal(0, 0.5, y.size), rng.normal(0, 1, y.size)
    return compare_models(
        {"good": good, "blind": blind},
        signal={(100.0,): np.arange(200)},
        background=np.arange(200, 500),
        weight=np.ones(500),
        train_points=[(100.0,)],
        point_name=lambda p: f"mX{p[0]:g}",
        score=lambda s, rows, hyps: s[rows][:, None].repeat(len(hyps), 1),
        conditioned=lambda s: False,
        n_boot=5,
    )


def _hypotheses() -> dict:
    """A hand-made mass-awareness study: two points, a mass-aware and a blind scorer."""
    from paratag.evaluate.mass_awareness import mass_awareness, process_aucs

    rng = np.random.default_rng(5)
    pts = [(130.0, 85.0), (130.0, 95.0)]
    w = [np.ones(300), np.ones(300)]
    aware = [
        [rng.normal(1, 1, 300), rng.normal(0, 1, 300)],
        [rng.normal(0, 1, 300), rng.normal(1, 1, 300)],
    ]
    blind = [[aware[0][0], aware[0][0]], [aware[1][1], aware[1][1]]]
    proc = np.array(["DY"] * 200 + ["TTbar"] * 100)
    aucs = process_aucs(
        aware[0][0],
        w[0],
        rng.normal(-1, 1, 300),
        np.ones(300),
        proc,
        {"resonant": ["DY"]},
        n_boot=5,
    )
    entry = {k: {"auc": v[0], "sigma": v[1]} for k, v in aucs.items()}
    return {
        "distance": "mA",
        "resonant": ["DY"],
        "processes": ["DY", "TTbar"],
        "per_point": {"mHc130_mA85": {"parametric": entry}},
        "awareness": {
            "parametric": mass_awareness(
                "parametric", ("mHc", "mA"), pts, aware, w, "mA"
            ).to_dict(),
            "inclusive-like": mass_awareness("blind", ("mHc", "mA"), pts, blind, w, "mA").to_dict(),
        },
        "sensitivity": {"d score / d mA [1/GeV]": 0.02},
    }


@pytest.fixture(scope="module")
def full_report(full_inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report(out, **full_inputs)


def test_report_has_every_section(full_report):
    md = full_report.read_text()
    html = (full_report.parent / "report.html").read_text()
    assert full_report.name == "report.md"
    for key in SECTIONS:
        assert f"## {_TITLES[key]}" in md
        assert f"<h2>{_TITLES[key]}</h2>" in html
    assert "not run" not in md


def test_report_numbers_match_metrics(full_inputs, full_report):
    test = full_inputs["test"]
    d = test.discriminant(0, full_inputs["background_weights"])
    auc = roc_auc(test.is_signal(), d, test.w())
    res = json.loads((full_report.parent / "results.json").read_text())
    assert res["metrics"]["nominal"]["auc"] == pytest.approx(auc)
    assert f"| auc | {auc:.4g} |" in full_report.read_text()
    assert set(res["ks"]) == set(CLASSES)
    assert res["wrong_hypothesis"]["fraction_peaking_at_true"] == 1.0
    assert res["seeds"]["mean"] == pytest.approx(np.mean([0.95, 0.951, 0.947]))
    assert set(res["decorrelation"]) == {"no DisCo", "DisCo"}
    assert set(res["training"]) == {"pretrain", "average", "finetune"}
    assert [r["split"] for r in res["comparison"]["rows"]].count("train") == len(GRID) - 2


def test_figures_exist_and_open(full_report):
    root = full_report.parent
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", full_report.read_text())
    expected = {
        "roc",
        "scores",
        "parametric_vs_dedicated",
        "wrong_hypothesis",
        "auc_grid",
        "seed_stability",
        "sculpting_no_DisCo",
        "sculpting_DisCo",
        "jsd_vs_rejection",
        "pileup",
        "training_curves",
        "saliency",
    }
    assert {p.split("/")[-1][:-4] for p in links} == expected
    for rel in set(links):
        png = root / rel
        assert png.stat().st_size > 5_000
        with Image.open(png) as im:
            im.load()
            assert im.format == "PNG"
            assert 400 <= im.width <= 2000 and 300 <= im.height <= 2000
            assert np.unique(np.asarray(im.convert("L"))).size > 10  # not a blank canvas
        pdf = png.with_suffix(".pdf")
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2_000
    html = (root / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == len(links)
    with Image.open(io.BytesIO(base64.b64decode(embedded[0]))) as im:
        assert im.format == "PNG"


def test_missing_inputs_say_not_run(tmp_path):
    md = write_report({}, tmp_path).read_text()
    for key in SECTIONS:
        section = md.split(f"## {_TITLES[key]}")[1].split("\n## ")[0]
        assert "**not run:**" in section, key
    assert "no training metrics.csv was given" in md
    assert json.loads((tmp_path / "results.json").read_text())["metrics"] is None
    assert not list((tmp_path / "figures").glob("*.png"))


def test_partial_inputs(tmp_path):
    test = _scored(800, 4)
    res = compute_results(test=test, class_names=CLASSES, n_boot=0)
    assert res.metrics is not None and res.metrics.n_boot == 0
    assert np.isnan(res.metrics.std["auc"])  # no bootstrap requested
    assert "decorrelation" not in res.skipped  # default sculpting sample is the test set
    md = write_report(res, tmp_path).read_text()
    assert "KS train vs test: no scored training sample was given" in md
    # 11 sections (all but metrics, decorrelation) + KS
    assert md.count("**not run:**") == len(SECTIONS) - 2 + 1 == 12


def test_binary_scores_and_bad_inputs(tmp_path):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 500)
    s = ScoredSample(rng.normal(y, 1.0), 1 - y)  # label 0 = signal, 1-D scores
    res = compute_results(test=s, n_boot=5)
    # label 0 is the signal class, i.e. the events with y == 1 and the higher scores
    assert res.metrics.nominal["auc"] == pytest.approx(roc_auc(y, s.scores))
    assert res.metrics.nominal["auc"] > 0.7
    with pytest.raises(InvalidValueError, match="weights"):
        ScoredSample(np.zeros(3), np.zeros(3), weights=np.ones(2))
    with pytest.raises(InvalidValueError, match="mass spectator"):
        compute_results(sculpting_samples={"x": s})
    bad = tmp_path / "metrics.csv"
    bad.write_text("stage,epoch\n1,0\n")
    with pytest.raises(InputFileError, match="missing columns"):
        read_metrics_csv(bad)
