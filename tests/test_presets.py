from __future__ import annotations

import numpy as np
import pytest
import uproot

from conftest import load_events
from paratag.errors import ConfigError, InvalidValueError, SchemaError
from paratag.inputs import build_inputs
from paratag.presets import builtin_presets, load_preset

JET_BRANCHES = (
    "run",
    "luminosityBlock",
    "event",
    "genWeight",
    "FatJet",
    "PFCands",
    "FatJetPFCands",
    "FatJetSVs",
)


def test_builtin_presets_load_and_round_trip():
    assert {"jet", "event"} <= set(builtin_presets())
    for name in ("jet", "event"):
        preset = load_preset(name)
        assert load_preset(preset.to_dict()) == preset


def test_jet_preset_on_real_pfnano(pfnano_path):
    events = load_events(pfnano_path)
    inputs = build_inputs(events, "jet")
    pf = inputs.clouds["pf"]
    assert pf.points.shape == (24, 2, 100) and pf.features.shape == (24, 15, 100)
    # constituents per jet equal the link-table multiplicity (the fixture has no nConstituents)
    link = uproot.open(pfnano_path)["Events"]["FatJetPFCands_jetIdx"].array(library="np")
    expected = np.concatenate(
        [
            np.bincount(j, minlength=n)
            for j, n in zip(
                link,
                uproot.open(pfnano_path)["Events"]["nFatJet"].array(library="np"),
                strict=False,
            )
        ]
    )
    np.testing.assert_array_equal(pf.counts, expected)
    # ordered by pt descending inside each jet; padded slots exactly zero
    ptlog = pf.features[:, 0, :]
    for i in range(len(pf)):
        n = min(pf.counts[i], 100)
        assert np.all(np.diff(ptlog[i, :n]) <= 1e-6)
        assert np.all(ptlog[i, n:] == 0) and np.all(pf.points[i, :, n:] == 0)
    # the jet axis is the pt-weighted centre of its constituents: relative eta/phi are small
    real = pf.mask[:, 0] > 0
    assert np.abs(pf.points[:, 0][real]).max() < 1.0 and np.abs(pf.points[:, 1][real]).max() < 1.0
    np.testing.assert_allclose(inputs.spectators["jet_pt"][:2], events.FatJet.pt[0][:2].to_numpy())
    assert inputs.clouds["sv"].features.shape[1:] == (10, 7)


def test_sort_and_features_match_hand_computation(pfnano_path):
    events = load_events(pfnano_path)
    inputs = build_inputs(events, "jet", selection="")
    ev0 = events[0]
    sel = ev0.FatJetPFCands.jetIdx == 0
    pts = ev0.PFCands.pt[ev0.FatJetPFCands.pFCandsIdx[sel]].to_numpy()
    top = np.sort(pts)[::-1][:100]
    # pfcand_pt_log = (log(pt) - 1) * 0.5, clipped to [-5, 5]
    np.testing.assert_allclose(
        inputs.clouds["pf"].features[0, 0, : len(top)],
        np.clip((np.log(top) - 1.0) * 0.5, -5, 5),
        rtol=1e-5,
    )


def test_event_preset_on_real_nanoaod(nano_dy_path):
    events = load_events(nano_dy_path)
    inputs = build_inputs(events, "event")
    cloud = inputs.clouds["objects"]
    assert len(inputs) == 40
    # one MET per event plus selected leptons and jets
    n_mu = np.asarray(
        [
            np.sum((np.asarray(pt) > 10) & (np.abs(np.asarray(eta)) < 2.4))
            for pt, eta in zip(events.Muon.pt, events.Muon.eta, strict=False)
        ]
    )
    n_met = cloud.features[:, 9, :].sum(axis=1)
    np.testing.assert_array_equal(n_met, 1.0)
    np.testing.assert_array_equal(cloud.features[:, 6, :].sum(axis=1), n_mu)


def test_jet_preset_on_nanoaod_without_pf_candidates(nano_dy_path):
    events = load_events(nano_dy_path)
    with pytest.raises(
        SchemaError, match=r"nano_dy\.root.*'FatJetPFCands'|nano_dy\.root.*'PFCands'"
    ):
        build_inputs(events, "jet")


def test_zero_length_chunk(pfnano_path):
    events = load_events(pfnano_path)[:0]
    inputs = build_inputs(events, "jet")
    assert inputs.clouds["pf"].points.shape == (0, 2, 100)
    assert inputs.clouds["pf"].points.dtype == np.float32
    assert inputs.weight.shape == (0,)


def test_selection_that_keeps_nothing(pfnano_path):
    inputs = build_inputs(load_events(pfnano_path), "jet", selection="gt(jet.pt, 1e9)")
    assert len(inputs) == 0 and inputs.n_candidates == 24


def test_unknown_preset_and_bad_alias(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'jets'"):
        load_preset("jets")
    data = load_preset("event").to_dict()
    data["clouds"][0]["features"].append({"name": "oops", "expr": "isolation"})
    with pytest.raises(ConfigError, match="'isolation' is not one of its aliases"):
        build_inputs(load_events(__import__("conftest").NANO_DY), load_preset(data))


def test_custom_preset_yaml(tmp_path, pfnano_path):
    import yaml

    data = load_preset("jet").to_dict()
    data["name"] = "jet_small"
    data["clouds"] = [data["clouds"][0]]
    data["clouds"][0]["max_length"] = 16
    data["clouds"][0]["features"] = [{"name": "pt_log", "expr": "log(pt)"}]
    path = tmp_path / "jet_small.yaml"
    path.write_text(yaml.safe_dump(data))
    inputs = build_inputs(load_events(pfnano_path), str(path))
    assert inputs.clouds["pf"].features.shape == (24, 1, 16)


def test_inconsistent_link_table(tmp_path, pfnano_path):
    from helpers_root import write_subset

    def corrupt(arrays):
        import awkward as ak

        idx = arrays["FatJetPFCands_pFCandsIdx"]
        arrays["FatJetPFCands_pFCandsIdx"] = idx + 100_000
        return ak.Array(arrays)

    bad = write_subset(
        pfnano_path, tmp_path / "bad_link.root", prefixes=JET_BRANCHES, transform=corrupt
    )
    with pytest.raises(InvalidValueError, match="FatJetPFCands_pFCandsIdx points outside"):
        build_inputs(load_events(bad), "jet")


def test_branches_are_in_the_real_file(pfnano_path):
    names = set(uproot.open(pfnano_path)["Events"].keys())
    assert load_preset("jet").branches() <= names
