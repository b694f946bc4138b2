"""Invalid input values (NaN, inf, negative pT): counted, dropped/replaced/raised, reported."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import load_events
from helpers_root import write_subset
from paratag.build import BuildConfig, build_shards
from paratag.cli import app
from paratag.errors import ConfigError, InvalidValueError
from paratag.inputs import build_inputs
from paratag.presets import load_preset
from paratag.shards import read_manifest
from paratag.validity import InvalidInputWarning, check_on_invalid, invalid_mask

JET = load_preset("jet")


def _first_selected_jet(path):
    """(event, jet index, flat PFCands index of its first constituent) of a selected jet."""
    ev = load_events(path)
    ok = (ev.FatJet.pt > 200) & (abs(ev.FatJet.eta) < 2.4)
    e = int(np.flatnonzero(ak.to_numpy(ak.any(ok, axis=1)))[0])
    j = int(np.flatnonzero(ak.to_numpy(ok[e]))[0])
    link = ev.FatJetPFCands[e]
    k = int(np.flatnonzero(ak.to_numpy(link.jetIdx == j))[0])
    return e, j, int(link.pFCandsIdx[k])


def _set(arrays, branch, event, index, value):
    """Copy of jagged ``branch`` with element ``[event][index]`` replaced by ``value``."""
    col = arrays[branch]
    flat = np.asarray(ak.to_numpy(ak.flatten(col)), dtype=np.float64).copy()
    start = int(np.sum(ak.to_numpy(ak.num(col))[:event]))
    flat[start + index] = value
    arrays[branch] = ak.unflatten(flat.astype(np.float32), ak.num(col))
    return arrays


@pytest.fixture(scope="module")
def broken(pfnano_path, tmp_path_factory):
    """The real PFNano fixture with a +inf pT on one PF candidate of a selected jet and a
    NaN eta on another selected jet; returns (path, flat index of each of those jets)."""
    e, j, pf = _first_selected_jet(pfnano_path)
    ev = load_events(pfnano_path)
    n = ak.to_numpy(ak.num(ev.FatJet))
    starts = np.cumsum(n) - n
    ok = ak.to_numpy(ak.flatten((ev.FatJet.pt > 200) & (abs(ev.FatJet.eta) < 2.4)))
    first = int(starts[e] + j)
    other = int(next(i for i in np.flatnonzero(ok) if i != first))
    oe = int(np.searchsorted(starts, other, side="right") - 1)

    def corrupt(arrays):
        arrays = dict(zip(arrays.fields, ak.unzip(arrays), strict=True))
        _set(arrays, "PFCands_pt", e, pf, np.inf)
        _set(arrays, "FatJet_eta", oe, other - starts[oe], np.nan)
        return ak.Array(arrays)

    branches = JET.branches() | {"run", "luminosityBlock", "event", "genWeight"}
    path = write_subset(
        pfnano_path,
        tmp_path_factory.mktemp("invalid") / "invalid.root",
        branches=branches,
        transform=corrupt,
    )
    return path, (first, other)


def test_invalid_mask_rules():
    v = np.array([1.0, np.nan, np.inf, -np.inf, -2.0])
    assert invalid_mask(v, "PFCands_pt").tolist() == [False, True, True, True, True]
    assert invalid_mask(v, "PFCands_eta").tolist() == [False, True, True, True, False]
    assert not invalid_mask(np.array([-1, 3]), "Muon_pt").any()  # integers are always finite
    with pytest.raises(ConfigError, match="on_invalid='skip'"):
        check_on_invalid("skip")


def test_drop_counts_and_drops_exactly_the_bad_jet_and_constituent(broken, pfnano_path):
    path, (with_inf, with_nan) = broken
    clean = build_inputs(load_events(pfnano_path), JET, selection="")
    got = build_inputs(load_events(path), JET, selection="")
    inv = got.invalid
    assert inv.values == {"PFCands_pt": 1, "FatJet_eta": 1}
    assert (inv.dropped_graphs, inv.dropped_constituents) == (1, 1)
    # without a selection, graph i is jet i: the NaN jet is gone, one jet lost a constituent
    keep = np.delete(np.arange(len(clean)), with_nan)
    assert len(got) == len(clean) - 1
    lost = clean.clouds["pf"].counts[keep] - got.clouds["pf"].counts
    assert lost.tolist() == [int(i == with_inf) for i in keep]
    np.testing.assert_array_equal(got.spectators["jet_pt"], clean.spectators["jet_pt"][keep])


def test_replace_keeps_the_constituent_and_raise_names_file_branch_entry(broken):
    path, _ = broken
    rep = build_inputs(load_events(path), JET, on_invalid="replace")
    drop = build_inputs(load_events(path), JET)
    assert rep.invalid.dropped_constituents == 0 and rep.invalid.dropped_graphs == 1
    assert rep.clouds["pf"].counts.sum() == drop.clouds["pf"].counts.sum() + 1
    # log(+inf) is replaced by the feature's replace_inf_value, counted per feature
    assert rep.invalid.replaced["pf.pfcand_pt_log"] == 1
    with pytest.raises(InvalidValueError, match=r"invalid\.root: FatJet_eta has 1 invalid"):
        build_inputs(load_events(path), JET, on_invalid="raise")


def test_graph_builder_and_build_record_counts_per_file(broken, tmp_path):
    path, _ = broken
    fileset = {"qcd": {"files": {str(path): "Events"}, "metadata": {"label": 1}}}
    with pytest.warns(InvalidInputWarning, match=r"invalid\.root .*FatJet_eta: 1, PFCands_pt: 1"):
        manifest = build_shards(
            fileset, tmp_path / "shards", BuildConfig(preset="jet", condition=())
        )
    flow = read_manifest(manifest.parent)["datasets"][0]["cutflow"]
    assert flow["invalid_values"] == {str(path): {"FatJet_eta": 1, "PFCands_pt": 1}}
    assert flow["invalid_dropped_graphs"] == 1 and flow["invalid_dropped_constituents"] == 1
    json.dumps(flow)  # plain JSON


def test_tagger_gives_nan_for_the_dropped_jet_and_reports(broken, model_dir, pfnano_path):
    from paratag.processors import Tagger

    path, _ = broken
    tagger = Tagger(model_dir[0] / "model.onnx", [{"mHc": 130, "mA": 90}], output="both")
    clean = tagger.process(load_events(pfnano_path))
    with pytest.warns(InvalidInputWarning, match="FatJet_eta"):
        out = tagger.process(load_events(path))
    flow = out["test"]["cutflow"]
    assert flow["invalid_values"][str(path)] == {"FatJet_eta": 1, "PFCands_pt": 1}
    assert flow["scored"] == clean["test"]["cutflow"]["scored"] - 1
    with pytest.raises(InvalidValueError, match="PFCands_pt|FatJet_eta"):
        Tagger(model_dir[0] / "model.onnx", [{"mHc": 130, "mA": 90}], on_invalid="raise").process(
            load_events(path)
        )


def test_tagger_rows_stay_aligned_with_the_events(broken, model_dir, pfnano_path):
    """The dropped jet keeps its place (NaN score); every other jet keeps its own score."""
    from paratag.processors import Tagger

    path, (with_inf, with_nan) = broken
    hyp = [{"mHc": 130, "mA": 90}]
    tagger = Tagger(model_dir[0] / "model.onnx", hyp, selection="")
    clean = ak.to_numpy(ak.flatten(tagger(load_events(pfnano_path)).FatJet.score_mHc130_mA90))
    with pytest.warns(InvalidInputWarning):
        got = ak.to_numpy(ak.flatten(tagger(load_events(path)).FatJet.score_mHc130_mA90))
    assert len(got) == len(clean) and np.isnan(got[with_nan])
    same = np.setdiff1d(np.arange(len(clean)), [with_nan, with_inf])
    np.testing.assert_allclose(got[same], clean[same], atol=1e-6)
    assert abs(got[with_inf] - clean[with_inf]) > 0  # one constituent fewer
    with pytest.warns(InvalidInputWarning):
        cols = next(
            iter(
                Tagger(model_dir[0] / "model.onnx", hyp, selection="", output="both")
                .process(load_events(path))["test"]["chunks"]
                .values()
            )
        )
    ref = next(
        iter(
            Tagger(model_dir[0] / "model.onnx", hyp, selection="", output="both")
            .process(load_events(pfnano_path))["test"]["chunks"]
            .values()
        )
    )
    keep = np.setdiff1d(np.arange(len(clean)), [with_nan])
    np.testing.assert_array_equal(cols["object_index"], ref["object_index"][keep])
    np.testing.assert_array_equal(cols["event"], ref["event"][keep])


def test_event_preset_drops_an_infinite_muon(nano_dy_path, tmp_path):
    ev = load_events(nano_dy_path)
    e = int(np.flatnonzero(ak.to_numpy(ak.num(ev.Muon)) > 0)[0])
    event = load_preset("event")

    def corrupt(arrays):
        arrays = dict(zip(arrays.fields, ak.unzip(arrays), strict=True))
        return ak.Array(_set(arrays, "Muon_pt", e, 0, np.inf))

    path = write_subset(
        nano_dy_path,
        tmp_path / "muon_inf.root",
        branches=event.branches() | {"run", "luminosityBlock", "event", "genWeight"},
        transform=corrupt,
    )
    clean = build_inputs(load_events(nano_dy_path), event)
    got = build_inputs(load_events(path), event)
    assert got.invalid.values == {"Muon_pt": 1} and got.invalid.dropped_constituents == 1
    row = int(np.flatnonzero(clean.event_index == e)[0])
    assert got.clouds[event.clouds[0].name].counts[row] == (
        clean.clouds[event.clouds[0].name].counts[row] - 1
    )


def test_cli_score_on_invalid_option(broken, model_dir, tmp_path):
    path, _ = broken
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"sig": {"files": [str(path)]}}))
    args = ["score", str(fileset), "--model", str(model_dir[0] / "model.onnx")]
    args += ["--hypotheses", "mHc=130,mA=90", "--out", str(tmp_path / "out")]
    with pytest.warns(InvalidInputWarning):
        res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "invalid values" in res.output and "FatJet_eta: 1" in res.output
    res = CliRunner().invoke(app, [*args, "--on-invalid", "raise"])
    assert isinstance(res.exception, InvalidValueError) and "FatJet_eta" in str(res.exception)
