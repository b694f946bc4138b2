"""Per-jet truth labels: only jets holding the generator X and both its b quarks are signal."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from coffea import processor
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory
from paratag.processors import GraphBuilder

from paratag.errors import ConfigError
from paratag.labels import TruthMatch, truth_matched
from paratag.runner import run_processor

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from paratag.generate import GenerateConfig, ProcessConfig, run_job  # noqa: E402


@pytest.fixture(scope="module")
def xbb_file(tmp_path_factory):
    """80 boosted X(50 GeV) -> bb events in the PFNano layout (a few seconds).

    At mX = 50 GeV and pT > 400 GeV the b quarks are ~0.25 apart, so nearly every
    event has one matched jet (at 100 GeV about 1 in 8 splits wider than R = 0.8).
    """
    cfg = GenerateConfig(
        processes=(
            ProcessConfig("XToBB", "xbb", "xbb", mass_points=({"mX": 50.0},), pthat_min=400.0),
        ),
        chunk_size=40,
    )
    out = tmp_path_factory.mktemp("xbb")
    job = cfg.jobs(80, seed=9)[0]
    return next(iter(run_job(job, cfg, out)["files"]))


def _events(path):
    return NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=NanoAODSchema, mode="virtual"
    ).events()


def test_at_most_one_signal_jet_per_event_and_most_events_have_one(xbb_file):
    ev = _events(xbb_file)
    matched = truth_matched(ev, "FatJet", TruthMatch())
    per_event = ak.to_numpy(ak.sum(matched, axis=1))
    assert per_event.max() <= 1
    assert (per_event == 1).mean() >= 0.9, per_event.mean()
    # dataset labels would have called every jet signal: there are more jets than matches
    assert ak.sum(ak.num(ev.FatJet)) > per_event.sum()


def test_a_jet_far_from_the_x_is_never_signal(xbb_file):
    ev = _events(xbb_file)
    matched = truth_matched(ev, "FatJet", TruthMatch())
    x = ev.GenPart[abs(ev.GenPart.pdgId) == 25]
    j, r = ak.unzip(ak.cartesian([ev.FatJet, x], axis=1, nested=True))
    dphi = (j.phi - r.phi + np.pi) % (2 * np.pi) - np.pi
    dr_min = ak.min(np.sqrt((j.eta - r.eta) ** 2 + dphi**2), axis=-1)
    far = ak.fill_none(dr_min, 99.0) > 0.8
    assert ak.sum(far) > 0 and not ak.any(matched[far])


def test_graph_builder_drops_unmatched_jets_of_signal_and_counts_them(xbb_file, pfnano_path):
    fs = {"XToBB": {"files": {str(xbb_file): "Events"}, "metadata": {"label": 0, "mX": 50}}}
    out, _ = run_processor(fs, GraphBuilder("jet", condition=["mX"]), progress=False)
    cut = out["XToBB"]["cutflow"]
    n_sig = len(out["XToBB"]["arrays"]["label"])
    assert cut["selected"] == n_sig + cut["truth_unmatched"] and cut["truth_unmatched"] > 0
    assert n_sig <= cut["events"]
    dataset_labels, _ = run_processor(
        fs, GraphBuilder("jet", condition=["mX"], truth=None), progress=False
    )
    assert len(dataset_labels["XToBB"]["arrays"]["label"]) == cut["selected"]
    # the real CMS PFNano fixture builds with the spec (a background: labels kept) and as signal
    real = {"QCD": {"files": {str(pfnano_path): "Events"}, "metadata": {"label": 0}}}
    res, _ = run_processor(
        real, GraphBuilder("jet"), executor=processor.IterativeExecutor(status=False)
    )
    assert res["QCD"]["cutflow"]["truth_unmatched"] + len(res["QCD"]["arrays"]["label"]) == 24


def test_truth_spec_is_validated():
    with pytest.raises(ConfigError, match="max_dr"):
        TruthMatch(max_dr=0)
    with pytest.raises(ConfigError, match="kind 'jet'"):
        GraphBuilder("event", truth={"resonance": [25]})
