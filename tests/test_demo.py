"""The demo's own pieces (the full chain runs in `make demo`; each step is tested in its module)."""

from __future__ import annotations

import json

import hist
import numpy as np
from PIL import Image

from paratag.demo import DEMO_HYPOTHESES, _legend_groups, plot_score_hists
from paratag.pipeline import Steps


def test_score_plots_group_datasets(tmp_path):
    h = hist.Hist(
        hist.axis.StrCategory([], name="dataset", growth=True),
        hist.axis.StrCategory(["score_mHc130_mA90"], name="hypothesis"),
        hist.axis.Regular(20, 0, 1, name="score"),
        storage=hist.storage.Weight(),
    )
    rng = np.random.default_rng(0)
    for ds, loc in [("sig", 0.8), ("WZ", 0.2), ("ZZ", 0.3), ("DY_real", 0.1)]:
        h.fill(
            dataset=ds,
            hypothesis="score_mHc130_mA90",
            score=np.clip(rng.normal(loc, 0.1, 200), 0, 1),
        )
    fileset = {
        "sig": {"metadata": {"label": 0, "mHc": 130, "mA": 90}},
        "WZ": {"metadata": {"label": 2, "group": "diboson"}},
        "ZZ": {"metadata": {"label": 2, "group": "diboson"}},
        "DY_real": {"metadata": {"label": -1}},
    }
    groups = _legend_groups(fileset, DEMO_HYPOTHESES)
    assert groups == {
        "sig": "signal mHc=130, mA=90",
        "WZ": "diboson (generated)",
        "ZZ": "diboson (generated)",
        "DY_real": "DY_real (real CMS)",
    }
    paths = plot_score_hists(h, tmp_path, groups)
    png = [p for p in paths if p.suffix == ".png"]
    assert [p.name for p in png] == ["score_mHc130_mA90.png"]
    with Image.open(png[0]) as img:
        assert img.size[0] > 400 and img.size[1] > 300
        assert len(np.unique(np.asarray(img.convert("L")))) > 10  # not blank


def test_steps_are_cached_until_forced_or_upstream_ran(tmp_path):
    calls = []

    def work():
        calls.append(1)
        return {"value": len(calls)}

    quiet = {"log": lambda _: None}
    assert Steps(tmp_path, **quiet).run("x", work)["value"] == 1
    assert Steps(tmp_path, **quiet).run("x", work)["value"] == 1 and len(calls) == 1
    assert Steps(tmp_path, force=True, **quiet).run("x", work)["value"] == 2
    # a step after one that ran is redone; with other inputs it is redone too
    steps = Steps(tmp_path, **quiet)
    steps.run("first", work)
    assert steps.run("x", work)["value"] == 4
    assert Steps(tmp_path, **quiet).run("x", work)["value"] == 4  # nothing upstream ran now
    assert Steps(tmp_path, **quiet).run("y", work, inputs={"n": 1})["value"] == 5
    assert Steps(tmp_path, **quiet).run("y", work, inputs={"n": 1})["value"] == 5
    assert Steps(tmp_path, **quiet).run("y", work, inputs={"n": 2})["value"] == 6
    assert json.loads((tmp_path / "steps" / "y.json").read_text())["inputs"] == {"n": 2}
