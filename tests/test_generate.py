"""paratag.generate: layout vs the real PFNano fixture, coffea/GraphBuilder round trip, physics sanity."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from paratag.errors import ConfigError  # noqa: E402
from paratag.generate import (  # noqa: E402
    GenerateConfig,
    PileupConfig,
    ProcessConfig,
    available_presets,
    generate,
    run_job,
)
from paratag.generate.config import DetectorConfig  # noqa: E402

REQUIRED = [
    "run",
    "luminosityBlock",
    "event",
    "genWeight",
    "Pileup_nTrueInt",
    "PV_npvs",
    "MET_pt",
    "MET_phi",
    "FatJet_pt",
    "FatJet_eta",
    "FatJet_phi",
    "FatJet_mass",
    "FatJet_msoftdrop",
    "FatJet_nConstituents",
    "FatJet_hadronFlavour",
    "Jet_pt",
    "Jet_eta",
    "Jet_phi",
    "Jet_mass",
    "Jet_btagDeepFlavB",
    "Jet_hadronFlavour",
    "Jet_nConstituents",
    "PFCands_pt",
    "PFCands_eta",
    "PFCands_phi",
    "PFCands_mass",
    "PFCands_charge",
    "PFCands_pdgId",
    "PFCands_d0",
    "PFCands_d0Err",
    "PFCands_dz",
    "PFCands_dzErr",
    "PFCands_puppiWeight",
    "FatJetPFCands_jetIdx",
    "FatJetPFCands_pFCandsIdx",
    "FatJetPFCands_pt",
    "JetPFCands_jetIdx",
    "JetPFCands_pFCandsIdx",
    "JetPFCands_pt",
    "SV_pt",
    "SV_eta",
    "SV_phi",
    "SV_mass",
    "SV_ntracks",
    "SV_dxy",
    "SV_dxySig",
    "SV_dlen",
    "SV_dlenSig",
    "SV_pAngle",
    "SV_x",
    "SV_y",
    "SV_z",
    "SV_chi2",
    "SV_ndof",
    "Muon_pt",
    "Muon_eta",
    "Muon_phi",
    "Muon_mass",
    "Muon_charge",
    "Muon_pfRelIso04_all",
    "Muon_tightId",
    "Muon_dxy",
    "Muon_dz",
    "Muon_genPartFlav",
    "Electron_pt",
    "Electron_eta",
    "Electron_phi",
    "Electron_mass",
    "Electron_charge",
    "Electron_pfRelIso04_all",
    "Electron_cutBased",
    "Electron_dxy",
    "Electron_dz",
    "Electron_genPartFlav",
    "GenPart_pt",
    "GenPart_eta",
    "GenPart_phi",
    "GenPart_mass",
    "GenPart_pdgId",
    "GenPart_status",
    "GenPart_statusFlags",
    "GenPart_genPartIdxMother",
]
SV_LINK = [
    "jetIdx",
    "sVIdx",
    "pt",
    "mass",
    "ntracks",
    "dxy",
    "dxysig",
    "d3d",
    "d3dsig",
    "costhetasvpv",
    "ptrel",
    "deltaR",
]
REQUIRED += [f"{c}_{f}" for c in ("FatJetSVs", "JetSVs") for f in SV_LINK]
REQUIRED += [f"n{c}" for c in ("FatJet", "Jet", "PFCands", "FatJetPFCands", "JetPFCands", "SV")]

MA = 90.0


def _config(*processes: ProcessConfig, **kw) -> GenerateConfig:
    return GenerateConfig(processes=processes, chunk_size=150, **kw)


SIGNAL = ProcessConfig(
    "HplusToWA", "charged_higgs", "signal", mass_points=({"mHc": 130.0, "mA": MA},), leptonic=True
)
TTBAR = ProcessConfig("TTbar", "ttbar", "nonprompt", leptonic=True, events_scale=0.5)


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> Path:
    """Signal (130, 90) with 300 events and dilepton tt with 150 events (~15 s)."""
    out = tmp_path_factory.mktemp("gen")
    return generate(_config(SIGNAL, TTBAR), out, 300, workers=1, seed=7, progress=False)


@pytest.fixture(scope="session")
def fileset(sample) -> dict:
    return json.loads(sample.read_text())


@pytest.fixture(scope="session")
def signal_path(fileset) -> str:
    return next(iter(fileset["HplusToWA_mHc130_mA90"]["files"]))


@pytest.fixture(scope="session")
def signal_events(signal_path):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    return NanoEventsFactory.from_root(
        {signal_path: "Events"}, schemaclass=PFNanoAODSchema, mode="eager"
    ).events()


# --- layout ---------------------------------------------------------------------------------


def test_branch_set_and_dtypes_match_real_pfnano(signal_path, pfnano_path):
    ours = uproot.open(signal_path)
    real = uproot.open(pfnano_path)
    branches = {k: v for k, v in ours["Events"].items()}
    missing = sorted(set(REQUIRED) - set(branches))
    assert not missing, f"generated file lacks {missing}"
    real_events = real["Events"]
    shared = [k for k in branches if k in real_events]
    assert len(shared) > 100
    drift = {
        k: (branches[k].typename, real_events[k].typename)
        for k in shared
        if branches[k].typename != real_events[k].typename
    }
    assert not drift, f"dtype differs from tests/data/pfnano.root: {drift}"
    assert branches["nFatJet"].typename == "uint32_t"
    assert branches["FatJetPFCands_jetIdx"].typename == "int32_t[]"
    for tree in ("Runs", "LuminosityBlocks"):
        assert tree in ours, tree
        for k, v in ours[tree].items():
            assert v.typename == real[tree][k].typename, (tree, k)
    assert ours["Runs"]["genEventCount"].array()[0] == 300
    assert ours["Events"].num_entries == 300


def test_presets_read_only_existing_branches(signal_path):
    from paratag.presets import load_preset

    branches = set(uproot.open(signal_path)["Events"].keys())
    for name in ("jet", "event"):
        needed = load_preset(name).branches()
        assert needed <= branches, (name, sorted(needed - branches))


def test_link_tables_are_consistent(signal_events):
    ev = signal_events
    # constituents recovered through coffea's nested index equal the link table
    assert ak.all(ak.num(ev.Jet.constituents.pf, axis=2) == ev.Jet.nConstituents)
    assert ak.all(ak.sum(ev.Jet.nConstituents, axis=1) == ak.num(ev.JetPFCands))
    pt_link = ev.JetPFCands.pt
    pt_pf = ev.JetPFCands.pf.pt
    assert ak.all(pt_link == pt_pf)
    # jets are pT ordered and the jet's pT is within 1% of its constituent sum
    assert ak.all(ev.Jet.pt[:, :-1] >= ev.Jet.pt[:, 1:])
    summed = ev.Jet.constituents.pf.sum(axis=2)
    assert np.allclose(ak.flatten(summed.pt), ak.flatten(ev.Jet.pt), rtol=1e-2)
    sv_idx = ak.flatten(ev.JetSVs.sVIdx)
    assert ak.all(sv_idx < ak.flatten(ak.broadcast_arrays(ak.num(ev.SV), ev.JetSVs.sVIdx)[0]))


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")
def test_opens_with_nanoaod_schema(signal_path):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    ev = NanoEventsFactory.from_root(
        {signal_path: "Events"}, schemaclass=NanoAODSchema, mode="eager"
    ).events()
    assert len(ev) == 300
    # the hard-process record: every A decays to a mu+ mu- pair
    a_children = ev.GenPart[ev.GenPart.pdgId == 36].children.pdgId
    children = ak.sort(ak.flatten(a_children, axis=2), axis=1)
    assert ak.all(ak.num(children) == 2)
    assert ak.all(children[:, 0] == -13) and ak.all(children[:, 1] == 13)


def test_fileset_metadata(fileset, sample):
    assert sample.name == "fileset.json"
    assert set(fileset) == {"HplusToWA_mHc130_mA90", "TTbar"}
    sig = fileset["HplusToWA_mHc130_mA90"]["metadata"]
    assert (sig["group"], sig["label"], sig["mHc"], sig["mA"]) == ("signal", 0, 130.0, 90.0)
    assert sig["n_generated"] == 300 and sig["pileup_mu"] == 0.0
    assert 0 < sig["xsec_pb"] < 1.0  # explicit sigma x BR, not Pythia's
    bkg = fileset["TTbar"]["metadata"]
    assert bkg["group"] == "nonprompt" and bkg["label"] == 3 and bkg["n_generated"] == 150
    assert "mHc" not in bkg
    # dilepton tt: Pythia's sigmaGen ~ 900 pb * 0.2134^2
    assert 15 < bkg["xsec_pb"] < 80
    for entry in fileset.values():
        ((path, tree),) = entry["files"].items()
        assert tree == "Events" and Path(path).is_file()
    assert (sample.parent / "generate_config.yaml").is_file()


def test_graph_builder_runs_on_generated_files(fileset):
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema
    from paratag.processors import GraphBuilder

    runner = processor.Runner(processor.IterativeExecutor(), schema=NanoAODSchema, chunksize=200)
    # the jet preset matches signal jets to a generator X -> bb; charged-Higgs events have none
    truthful = runner(fileset, processor_instance=GraphBuilder("jet"))
    cut = truthful["HplusToWA_mHc130_mA90"]["cutflow"]
    assert cut["truth_unmatched"] == cut["selected"] > 0
    for preset, condition in (("event", ["mHc", "mA"]), ("jet", [])):
        builder = GraphBuilder(preset, condition=condition, truth=None)
        out = runner(fileset, processor_instance=builder)
        sig = out["HplusToWA_mHc130_mA90"]["arrays"]
        assert sig["points"].dtype == np.float32 and len(sig["label"]) > 0
        assert np.all(sig["label"] == 0)
        assert np.all(out["TTbar"]["arrays"]["label"] == 3)
        if preset == "event":
            np.testing.assert_array_equal(sig["condition"][0], [130.0, 90.0])
            assert np.all(np.isnan(out["TTbar"]["arrays"]["condition"]))


# --- physics sanity -------------------------------------------------------------------------


def test_a_to_mumu_mass_peak(signal_events):
    mu = signal_events.Muon
    sel = (ak.num(mu) == 2) & (ak.sum(mu.charge, axis=1) == 0)
    assert ak.sum(sel) > 50
    mass = (mu[sel][:, 0] + mu[sel][:, 1]).mass.to_numpy()
    assert abs(np.median(mass) - MA) < 2.0
    assert np.mean(np.abs(mass - MA) < 5.0) > 0.6


def test_signal_has_three_leptons(signal_events):
    n_lep = ak.num(signal_events.Muon) + ak.num(signal_events.Electron)
    assert ak.mean(n_lep >= 3) > 0.5
    flav = ak.flatten(signal_events.Muon.genPartFlav).to_numpy()
    assert np.mean(flav == 1) > 0.7  # mostly prompt
    assert np.any(flav == 5)  # some from b decays: the nonprompt label exists


def test_btag_efficiency_matches_config(signal_events):
    cfg = GenerateConfig(processes=(SIGNAL,)).detector
    jets = ak.flatten(signal_events.Jet)
    jets = jets[np.abs(jets.eta) < 2.4]
    passed = jets.btagDeepFlavB > cfg.btag_wp
    b = passed[jets.hadronFlavour == 5].to_numpy()
    light = passed[jets.hadronFlavour == 0].to_numpy()
    assert len(b) > 300 and len(light) > 300
    assert abs(b.mean() - cfg.btag_eff[0]) < 4 * np.sqrt(0.16 / len(b)) + 0.01
    assert light.mean() < 0.04


def test_sv_displacement_larger_for_b_jets(signal_events):
    ev = signal_events
    flav = ak.flatten(ev.JetSVs.jet.hadronFlavour).to_numpy()
    d3d = ak.flatten(ev.JetSVs.d3d).to_numpy()
    jets = ak.flatten(ev.Jet)
    n_b = int(np.sum(jets.hadronFlavour == 5))
    n_light = int(np.sum(jets.hadronFlavour == 0))
    assert np.sum(flav == 5) > 50
    mean_b = d3d[flav == 5].mean()
    mean_light = d3d[flav == 0].mean() if np.any(flav == 0) else 0.0
    assert mean_b > 0.1  # cm: B flight distance
    assert mean_b > 2 * mean_light
    # b jets carry secondary vertices far more often than light jets
    assert np.sum(flav == 5) / n_b > 5 * max(np.sum(flav == 0), 1) / n_light


def test_b_tracks_are_displaced(signal_events):
    pf = signal_events.Jet.constituents.pf
    flav = ak.broadcast_arrays(signal_events.Jet.hadronFlavour[:, :, None], pf.pt)[0]
    charged = pf.charge != 0
    sig = np.abs(pf.d0 / pf.d0Err)
    b = ak.flatten(sig[charged & (flav == 5)], axis=None).to_numpy()
    light = ak.flatten(sig[charged & (flav == 0)], axis=None).to_numpy()
    assert np.mean(b > 3) > 2 * np.mean(light > 3)


# --- engineering ----------------------------------------------------------------------------


def test_same_seed_gives_identical_arrays(tmp_path):
    cfg = _config(ProcessConfig("WZ", "wz", "diboson", leptonic=True))
    job = cfg.jobs(25, seed=3)[0]
    paths = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        paths.append(next(iter(run_job(job, cfg, tmp_path / name)["files"])))
    other = cfg.jobs(25, seed=4)[0]
    (tmp_path / "c").mkdir()
    paths.append(next(iter(run_job(other, cfg, tmp_path / "c")["files"])))
    a, b, c = (uproot.open(p)["Events"].arrays() for p in paths)
    assert a.fields == b.fields
    for field in a.fields:
        assert ak.all(a[field] == b[field]), field
    assert not ak.all(a["MET_pt"] == c["MET_pt"])


def test_a_large_dataset_is_split_into_files_independently_of_the_workers(tmp_path):
    cfg = dataclasses.replace(
        _config(ProcessConfig("WZ", "wz", "diboson", leptonic=True)),
        chunk_size=10,
        max_events_per_file=12,
    )
    jobs = cfg.jobs(30, seed=3)
    assert [(j.part, j.n_events, j.first_event) for j in jobs] == [
        (0, 10, 0),
        (1, 10, 10),
        (2, 10, 20),
    ]
    assert jobs[0].seed == dataclasses.replace(cfg, max_events_per_file=None).jobs(30, 3)[0].seed
    arrays = []
    for workers in (1, 2):
        fs = json.loads(generate(cfg, tmp_path / str(workers), 30, workers, 3, False).read_text())
        (entry,) = fs.values()
        assert [Path(f).name for f in entry["files"]] == [f"WZ_part{k}.root" for k in range(3)]
        meta = entry["metadata"]
        assert meta["n_generated"] == 30 and len(meta["seeds"]) == 3 and "part" not in meta
        events = ak.concatenate([uproot.open(f)["Events"].arrays() for f in entry["files"]])
        assert events["event"].to_list() == list(range(1, 31))  # unique across the parts
        assert meta["sumw"] == pytest.approx(float(ak.sum(events["genWeight"])))
        arrays.append(events)
    for field in arrays[0].fields:  # one worker or two: the same events
        assert ak.all(arrays[0][field] == arrays[1][field]), field
    with pytest.raises(ConfigError, match="max_events_per_file"):
        dataclasses.replace(cfg, max_events_per_file=0)


def test_pileup_overlay(tmp_path):
    cfg = _config(
        ProcessConfig("WZ", "wz", "diboson", leptonic=True),
        pileup=PileupConfig(enabled=True, mu=6.0),
    )
    meta = run_job(cfg.jobs(15, seed=1)[0], cfg, tmp_path)
    path = next(iter(meta["files"]))
    assert meta["metadata"]["pileup_mu"] == 6.0
    t = uproot.open(path)["Events"].arrays(
        [
            "Pileup_nTrueInt",
            "Pileup_nPU",
            "PV_npvs",
            "PFCands_dz",
            "PFCands_charge",
            "PFCands_puppiWeight",
        ]
    )
    assert np.all(t.Pileup_nTrueInt == 6.0)
    assert t.Pileup_nPU.to_numpy().mean() > 3
    assert t.PV_npvs.to_numpy().mean() > 2.5
    charged = t.PFCands_charge != 0
    removed = charged & (t.PFCands_puppiWeight == 0)
    # charged pileup is removed (CHS-like), tracks compatible with the PV never are
    assert ak.sum(removed) > 0.3 * ak.sum(charged)
    assert ak.all(np.abs(t.PFCands_dz[removed]) >= 0.1)
    neutral_w = ak.flatten(t.PFCands_puppiWeight[~charged]).to_numpy()
    assert 0.05 < neutral_w.mean() < 0.95  # PU neutrals are suppressed


def test_pileup_pool_reuses_rotated_events_and_changes_nothing_when_large_enough(tmp_path):
    """A pool holding every draw gives the fresh-event file; a small one reuses, counted."""
    arrays = {}
    for pool_size in (0, 1000, 20):
        cfg = _config(
            ProcessConfig("WZ", "wz", "diboson", leptonic=True),
            pileup=PileupConfig(enabled=True, mu=6.0, pool_size=pool_size),
        )
        out = tmp_path / str(pool_size)
        entry = run_job(cfg.jobs(15, seed=1)[0], cfg, out)
        events = uproot.open(next(iter(entry["files"])))["Events"]
        arrays[pool_size] = (entry["metadata"], events.arrays(["Pileup_nPU", "PFCands_pt"]))
    n_pu = int(ak.sum(arrays[0][1].Pileup_nPU))
    assert n_pu > 40
    for size, (fresh, reused) in ((0, (n_pu, 0)), (1000, (n_pu, 0)), (20, (20, n_pu - 20))):
        assert (arrays[size][0]["pileup_fresh"], arrays[size][0]["pileup_reused"]) == (
            fresh,
            reused,
        )
    assert ak.all(arrays[1000][1].PFCands_pt == arrays[0][1].PFCands_pt)
    # reuse keeps the multiplicities (same draws) but not the candidates
    assert ak.all(arrays[20][1].Pileup_nPU == arrays[0][1].Pileup_nPU)
    assert not ak.all(ak.num(arrays[20][1].PFCands_pt) == ak.num(arrays[0][1].PFCands_pt))
    with pytest.raises(ConfigError, match="pool_size"):
        PileupConfig(enabled=True, pool_size=-1)


def test_pool_reuse_is_a_rotation_and_a_mirror_of_a_held_event():
    """Reused events keep pT, |pz|, E and the vertex radius; the pool never exceeds its size."""
    from paratag.generate.pileup import MinBiasPool

    class Source:
        def __init__(self):
            self.rng = np.random.default_rng(0)

        def next_finals(self, n):
            out = []
            for _ in range(n):
                p4 = self.rng.normal(size=(7, 4))
                p4[:, 3] = np.abs(p4[:, 3]) + 5.0
                out.append((np.arange(7), np.ones(7), p4, self.rng.normal(size=(7, 3))))
            return out

    pool = MinBiasPool(Source(), 3, np.random.default_rng(1))
    first = pool.take(2) + pool.take(4)
    assert (pool.n_fresh, pool.n_reused, len(pool.events)) == (3, 3, 3)
    held = {tuple(np.round(e[2][:, 3], 9)): e for e in pool.events}
    for _, _, p4, vtx in first[3:]:
        orig = held[tuple(np.round(p4[:, 3], 9))]  # E is unchanged, so it finds the original
        np.testing.assert_allclose(np.hypot(p4[:, 0], p4[:, 1]), np.hypot(*orig[2][:, :2].T))
        np.testing.assert_allclose(np.abs(p4[:, 2]), np.abs(orig[2][:, 2]))
        np.testing.assert_allclose(np.hypot(vtx[:, 0], vtx[:, 1]), np.hypot(*orig[3][:, :2].T))
        assert not np.allclose(p4[:, 0], orig[2][:, 0])  # rotated
    no_pool = MinBiasPool(Source(), 0, np.random.default_rng(1))
    no_pool.take(5)
    assert (no_pool.n_fresh, no_pool.n_reused, no_pool.events) == (5, 0, [])


def test_mixed_pileup_draws_each_events_mu_from_the_choices(tmp_path):
    cfg = _config(
        ProcessConfig("WZ", "wz", "diboson", leptonic=True),
        pileup=PileupConfig(enabled=True, mu_choices=(0.0, 8.0)),
    )
    meta = run_job(cfg.jobs(24, seed=2)[0], cfg, tmp_path)
    assert meta["metadata"]["pileup_mu_choices"] == [0.0, 8.0]
    t = uproot.open(next(iter(meta["files"])))["Events"].arrays(["Pileup_nTrueInt", "Pileup_nPU"])
    mu, n_pu = t.Pileup_nTrueInt.to_numpy(), t.Pileup_nPU.to_numpy()
    assert set(np.unique(mu)) == {0.0, 8.0}
    assert np.all(n_pu[mu == 0] == 0) and n_pu[mu == 8].mean() > 4
    with pytest.raises(ConfigError, match="mu_choices"):
        PileupConfig(enabled=True, mu_choices=(-1.0,))


def test_cli_generate_with_two_workers(tmp_path):
    import subprocess
    import sys

    (tmp_path / "cfg.yaml").write_text(
        "chunk_size: 10\nprocesses:\n"
        "  - {name: WZ, kind: wz, group: diboson, leptonic: true}\n"
        "  - {name: ZZ, kind: zz, group: diboson, leptonic: true}\n"
    )
    args = [str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "out"), "--events", "15"]
    code = "import sys; from paratag.cli import main; sys.argv = ['paratag', 'generate', *sys.argv[1:]]; main()"
    res = subprocess.run(
        [sys.executable, "-c", code, *args, "--workers", "2", "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    # FastJet's banner once per run (a fresh parent prints it), not once per worker process
    assert res.stdout.count("FastJet release") == 1, res.stdout
    fs = json.loads((tmp_path / "out" / "fileset.json").read_text())
    assert list(fs) == ["WZ", "ZZ"]
    for entry in fs.values():
        (path,) = entry["files"]
        assert uproot.open(path)["Events"].num_entries == 15


def test_presets_and_config_errors():
    assert {"charged_higgs", "charged_higgs_full", "xbb_jets"} <= set(available_presets())
    ch = GenerateConfig.preset("charged_higgs")
    names = [j.dataset for j in ch.jobs(10, 1)]
    assert "HplusToWA_mHc130_mA90" in names and "TTbar" in names and "WZ" in names
    full = GenerateConfig.preset("charged_higgs_full")
    assert sum(j.process.group == "signal" for j in full.jobs(10, 1)) == 12
    xbb = GenerateConfig.preset("xbb_jets")
    assert "XToBB_mX125" in [j.dataset for j in xbb.jobs(10, 1)]
    with pytest.raises(ConfigError, match="unknown generate preset 'nope'"):
        GenerateConfig.preset("nope")
    with pytest.raises(ConfigError, match="needs mHc > mA"):
        dataclasses.replace(SIGNAL, mass_points=({"mHc": 90.0, "mA": 95.0},))
    with pytest.raises(ConfigError, match="lacks"):
        ProcessConfig("X", "xbb", "xbb", mass_points=({"mA": 1.0},))
    with pytest.raises(ConfigError, match="Pythia rejected the setting"):
        bad = _config(ProcessConfig("Q", "qcd", "qcd", extra_settings=("Foo:bar = on",)))
        run_job(bad.jobs(1, 1)[0], bad, Path("/nonexistent"))


def test_vectorised_heavy_flavour_matches_scalar():
    from paratag.generate.pythia_io import _heavy_flavour_np, heavy_flavour

    ids = np.array([1, 5, 21, 111, 211, 411, 421, 431, 443, 511, 521, 553, 4122, 5122, 5332, 15])
    assert _heavy_flavour_np(ids).tolist() == [heavy_flavour(int(i)) for i in ids]


def test_batches_do_not_change_the_event_stream():
    """Two instances alternating: one batch of 5 equals batches of 2 + 3 (same events, order)."""
    from paratag.generate.pythia_io import PythiaSource
    from paratag.generate.runner import _settings

    config = _config(SIGNAL)
    job = config.jobs(5, seed=11)[0]
    one, split = PythiaSource(_settings(job, config)), PythiaSource(_settings(job, config))
    a = one.next_events(5)
    b = split.next_events(2) + split.next_events(3)
    assert len(a) == len(b) == 5
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.p4, y.p4)
        np.testing.assert_array_equal(x.hf, y.hf)
        np.testing.assert_array_equal(x.had_vtx, y.had_vtx)
        np.testing.assert_array_equal(x.gen["pdgId"], y.gen["pdgId"])
    assert len(a[0].gen["pdgId"]) > 0  # the hard-process record was matched to its event
    assert not np.array_equal(a[0].p4[:5], a[1].p4[:5])  # alternating instances differ


def test_many_chunks_extend_past_the_basket_capacity(tmp_path):
    """uproot relocates the Events header after ~10 extends; 14 chunks must all be written."""
    cfg = dataclasses.replace(_config(ProcessConfig("DY", "dy", "nonprompt")), chunk_size=4)
    job = cfg.jobs(56, seed=5)[0]
    out = run_job(job, cfg, tmp_path)
    path = next(iter(out["files"]))
    with uproot.open(path) as f:
        assert f["Events"].num_entries == 56
        assert f["Runs"]["genEventCount"].array()[0] == 56
        events = f["Events"].arrays(["event", "nMuon", "Muon_pt"])
    assert np.array_equal(np.diff(events["event"].to_numpy()), np.ones(55))
    assert ak.all(ak.num(events["Muon_pt"]) == events["nMuon"])


def test_puppi_keeps_hard_isolated_neutrals_and_drops_soft_ones():
    """CMS PUPPI's neutral rules: high-pT protection ramp and the n_PV-dependent threshold."""
    from paratag.generate.config import DetectorConfig
    from paratag.generate.detector import _puppi_neutrals

    rng = np.random.default_rng(0)
    n_pv_trk, n_pu_trk = 6, 40
    eta = np.r_[rng.normal(0, 0.05, n_pv_trk), rng.uniform(-2, 2, n_pu_trk), 0.02, 0.0, 0.0, 1.0]
    phi = np.r_[rng.normal(0, 0.05, n_pv_trk), rng.uniform(-3, 3, n_pu_trk), 0.03, 2.5, -2.5, 2.0]
    pt = np.r_[np.full(n_pv_trk, 5.0), np.full(n_pu_trk, 1.0), 0.4, 100.0, 250.0, 3.0]
    track = np.r_[np.ones(n_pv_trk + n_pu_trk, bool), np.zeros(4, bool)]
    weight = np.r_[np.ones(n_pv_trk), np.zeros(n_pu_trk), np.ones(4)]
    pf = {"eta": eta, "phi": phi, "pt": pt, "track": track, "puppiWeight": weight}
    n_pu = np.array([29])  # a + b * n_PV = 0.2 + 0.015 * 30 = 0.65 GeV
    offsets = np.array([0, len(pt)])
    w = _puppi_neutrals(pf, offsets, n_pu, DetectorConfig())[-4:]
    soft_near_pv, hard_isolated, very_hard, soft_isolated = w
    assert soft_near_pv == 0.0  # close to the hard vertex's tracks, but below the threshold
    assert hard_isolated == pytest.approx((100 - 20) / 180)  # no charged PV nearby: was 0
    assert very_hard == 1.0 and soft_isolated == 0.0
    off = DetectorConfig(puppi_neutral_protect=(0.0, 0.0), puppi_neutral_min_pt=(0.0, 0.0))
    legacy = _puppi_neutrals(pf, offsets, n_pu, off)[-4:]
    assert legacy[1] == 0.0 and legacy[0] > 0.5  # the plain alpha rule alone
    with pytest.raises(ConfigError, match="puppi_neutral"):
        DetectorConfig(puppi_neutral_min_pt=(-1.0, 0.0))


def test_puppi_jets_keep_pileup_out_and_equal_chs_jets_without_pileup(tmp_path):
    """Run-3 PUPPI jets: the same events give fewer, softer pileup jets than CHS at mu = 40."""

    def jets(mu: float, constituents: str) -> ak.Array:
        cfg = _config(
            ProcessConfig("WZ", "wz", "diboson", leptonic=True),
            pileup=PileupConfig(enabled=mu > 0, mu=mu),
            detector=DetectorConfig(jet_constituents=constituents),
        )
        out = tmp_path / f"{constituents}{mu:g}"
        meta = run_job(cfg.jobs(12, seed=4)[0], cfg, out)
        return uproot.open(next(iter(meta["files"])))["Events"].arrays(["Jet_pt", "MET_pt"])

    puppi0, chs0 = jets(0.0, "puppi"), jets(0.0, "chs")
    assert ak.all(puppi0.Jet_pt == chs0.Jet_pt)  # every weight is 1 without pileup
    puppi, chs = jets(40.0, "puppi"), jets(40.0, "chs")
    assert ak.all(puppi.MET_pt == chs.MET_pt)  # the same events: only the clustering differs
    n_puppi, n_chs = ak.sum(puppi.Jet_pt > 25), ak.sum(chs.Jet_pt > 25)
    n0 = ak.sum(puppi0.Jet_pt > 25)
    assert n_chs > 2 * n0 and n_puppi < 0.5 * n_chs  # CHS jets fill up with neutral pileup
    with pytest.raises(ConfigError, match="jet_constituents"):
        DetectorConfig(jet_constituents="ak4")
