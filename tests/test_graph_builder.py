from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from coffea import processor
from coffea.nanoevents import NanoAODSchema
from paratag.processors import GraphBuilder

from conftest import load_events
from helpers_root import write_subset
from paratag.build import BuildConfig, build_shards, make_executor, run_builder, unwrap_error
from paratag.errors import ConfigError, InputFileError, InvalidValueError, SchemaError
from paratag.shards import read_manifest, read_shard

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


def fileset(path, **meta):
    return {"QCD": {"files": {str(path): "Events"}, "metadata": {"label": 1, **meta}}}


def run(executor, fs, builder, chunksize=3):
    runner = processor.Runner(
        executor, schema=NanoAODSchema, chunksize=chunksize, metadata_cache={}
    )
    try:
        return runner(fs, processor_instance=builder, treename="Events")
    except Exception as exc:  # coffea wraps worker errors; the paratag error is inside
        raise unwrap_error(exc) from exc


@pytest.fixture(scope="module")
def iterative_output(pfnano_path):
    return run(
        processor.IterativeExecutor(),
        fileset(pfnano_path, mX=125.0),
        GraphBuilder("jet", condition=["mX"]),
    )


def test_iterative_output(iterative_output):
    out = iterative_output["QCD"]
    arrays = out["arrays"]
    assert arrays["points"].shape == (24, 2, 100) and arrays["points"].dtype == np.float32
    assert arrays["features"].dtype == np.float32 and arrays["mask"].dtype == np.float32
    assert arrays["sv_features"].shape == (24, 10, 7)
    np.testing.assert_array_equal(arrays["label"], 1)
    np.testing.assert_array_equal(arrays["condition"], 125.0)
    assert arrays["condition"].shape == (24, 1)
    # MC: the weight is genWeight of the jet's event
    assert np.all(arrays["weight"] != 0)
    assert out["cutflow"] == {
        "events": 10,
        "candidates": 24,
        "selected": 24,
        "with_constituents": 24,
        "invalid_dropped_graphs": 0,
        "invalid_dropped_constituents": 0,
    }
    # events are in file order across chunks
    assert np.all(
        np.diff(arrays["spec_event"][np.r_[0, np.flatnonzero(np.diff(arrays["spec_event"])) + 1]])
        != 0
    )


def test_same_arrays_as_direct_build(iterative_output, pfnano_path):
    from paratag.inputs import build_inputs

    direct = build_inputs(load_events(pfnano_path), "jet")
    np.testing.assert_array_equal(
        iterative_output["QCD"]["arrays"]["features"], direct.clouds["pf"].features
    )


def test_futures_and_dask_give_identical_arrays(iterative_output, pfnano_path):
    fs = fileset(pfnano_path, mX=125.0)
    builder = GraphBuilder("jet", condition=["mX"])
    outs = {"futures": run(processor.FuturesExecutor(workers=2, retries=0), fs, builder)}
    with make_executor("dask", workers=2) as ex:
        outs["dask"] = run(ex, fs, builder)
    ref = iterative_output["QCD"]["arrays"]
    for name, out in outs.items():
        assert out["QCD"]["cutflow"] == iterative_output["QCD"]["cutflow"], name
        for key, value in ref.items():
            np.testing.assert_array_equal(out["QCD"]["arrays"][key], value, err_msg=f"{name}:{key}")


def test_no_progress_silences_coffeas_bars(pfnano_path, capfd):
    """coffea's futures executor draws its bars whatever ``status`` says; progress=False is quiet."""
    from coffea import util

    fs = fileset(pfnano_path, mX=125.0)
    out, _ = run_builder(
        fs,
        BuildConfig(preset="jet", condition=("mX",)),
        executor="futures",
        workers=1,
        progress=False,
    )
    assert out["QCD"]["cutflow"]["selected"] == 24
    captured = capfd.readouterr()
    for bar in ("Preprocessing", "Processing", "Merging"):
        assert bar not in captured.out + captured.err
    assert util.coffea_console.quiet is False  # restored


def test_picklable_and_holds_no_files():
    builder = GraphBuilder("event", max_particles=12)
    blob = pickle.dumps(builder)
    assert len(blob) < 20_000
    again = pickle.loads(blob)
    assert again.preset == builder.preset and again.preset.clouds[0].max_length == 12


def test_zero_length_chunk(pfnano_path):
    events = load_events.__wrapped__(pfnano_path)[:0]  # not the cached events: metadata changes
    events.metadata.update(dataset="QCD", label=1)
    out = GraphBuilder("jet").process(events)["QCD"]
    arrays = next(iter(out["chunks"].values()))
    assert arrays["points"].shape == (0, 2, 100) and arrays["points"].dtype == np.float32
    assert arrays["label"].dtype == np.int64 and arrays["label"].shape == (0,)
    assert out["cutflow"]["events"] == 0


def test_event_preset_on_real_nanoaod(nano_dy_path):
    out = run(
        processor.IterativeExecutor(),
        {"DY": {"files": {str(nano_dy_path): "Events"}, "metadata": {"label": 2}}},
        GraphBuilder("event"),
        20,
    )
    arrays = out["DY"]["arrays"]
    assert arrays["points"].shape == (40, 2, 16)
    assert "spec_met_pt" in arrays


def test_missing_label_is_a_clear_error(pfnano_path):
    fs = {"QCD": {"files": {str(pfnano_path): "Events"}}}
    with pytest.raises(ConfigError, match="dataset 'QCD': no class label"):
        run(processor.IterativeExecutor(retries=0), fs, GraphBuilder("jet"))


def test_missing_collection_names_the_file(nano_dy_path):
    with pytest.raises(SchemaError, match=r"nano_dy\.root.*PFCands"):
        run_builder(
            {"DY": {"files": [str(nano_dy_path)], "metadata": {"label": 1}}}, BuildConfig("jet")
        )


def test_missing_branch_names_file_and_branch(tmp_path, pfnano_path):
    bad = write_subset(
        pfnano_path, tmp_path / "no_d0.root", prefixes=JET_BRANCHES, drop=("PFCands_d0",)
    )
    with pytest.raises(SchemaError, match=r"no_d0\.root: Events lacks .*\['PFCands_d0'\]"):
        run_builder(fileset(bad), BuildConfig("jet"))
    # with skip_bad_files such a file is skipped and recorded, not the end of the run
    fs = {"QCD": {"files": [str(pfnano_path), str(bad)], "metadata": {"label": 1}}}
    out, skipped = run_builder(fs, BuildConfig("jet"), skip_bad_files=True)
    assert [s["file"] for s in skipped] == [str(bad)] and "PFCands_d0" in skipped[0]["reason"]
    assert len(out["QCD"]["arrays"]["label"]) == 24


def test_data_without_gen_weight_gets_weight_one(tmp_path, pfnano_path):
    data = write_subset(
        pfnano_path,
        tmp_path / "data.root",
        prefixes=tuple(b for b in JET_BRANCHES if b != "genWeight"),
    )
    out, _ = run_builder(fileset(data, label=3), BuildConfig("jet"))
    np.testing.assert_array_equal(out["QCD"]["arrays"]["weight"], 1.0)
    np.testing.assert_array_equal(out["QCD"]["arrays"]["label"], 3)


def test_truncated_file(tmp_path, pfnano_path):
    bad = tmp_path / "truncated.root"
    bad.write_bytes(pfnano_path.read_bytes()[: pfnano_path.stat().st_size // 2])
    with pytest.raises(InputFileError, match=r"truncated\.root: .*(truncated|not a readable)"):
        run_builder(fileset(bad), BuildConfig("jet"))


def test_not_nanoaod(tmp_path):
    import uproot

    delphes = tmp_path / "delphes.root"
    with uproot.recreate(delphes) as f:
        f.mktree("Delphes", {"Jet_PT": "float32"})
        f["Delphes"].extend({"Jet_PT": np.ones(3, np.float32)})
    with pytest.raises(
        InputFileError,
        match=r"delphes\.root: has no 'Events' tree \(trees: \['Delphes'\]\).*not NanoAOD",
    ):
        run_builder(fileset(delphes), BuildConfig("jet"))


def test_missing_file_and_skip_bad_files(tmp_path, pfnano_path):
    fs = {
        "QCD": {"files": [str(pfnano_path), str(tmp_path / "gone.root")], "metadata": {"label": 1}}
    }
    with pytest.raises(InputFileError, match=r"gone\.root: file does not exist"):
        run_builder(fs, BuildConfig("jet"))
    out, skipped = run_builder(fs, BuildConfig("jet"), skip_bad_files=True)
    assert [s["file"] for s in skipped] == [str(tmp_path / "gone.root")]
    assert len(out["QCD"]["arrays"]["label"]) == 24


def test_build_shards_round_trip(tmp_path, pfnano_path, iterative_output):
    shutil.copy(pfnano_path, tmp_path / "in.root")
    (tmp_path / "fs.yaml").write_text("QCD:\n  files: [in.root]\n  metadata: {label: 1, mX: 125}\n")
    manifest_path = build_shards(
        tmp_path / "fs.yaml",
        tmp_path / "shards",
        BuildConfig("jet", condition=("mX",), max_rows=10),
        chunksize=4,
    )
    manifest = read_manifest(manifest_path.parent)
    ds = manifest["datasets"][0]
    assert ds["rows"] == 24 and len(ds["files"]) == 3 and ds["cutflow"]["selected"] == 24
    assert manifest["preset"]["name"] == "jet" and manifest["condition_names"] == ["mX"]
    parts = [read_shard(manifest_path.parent / f["path"], manifest["shapes"]) for f in ds["files"]]
    features = np.concatenate([p["features"] for p in parts])
    np.testing.assert_array_equal(features, iterative_output["QCD"]["arrays"]["features"])
    assert (tmp_path / "shards" / "build_config.yaml").is_file()


def test_cli_build_reports_errors_without_traceback(tmp_path, nano_dy_path):
    (tmp_path / "fs.json").write_text(
        json.dumps({"DY": {"files": [str(nano_dy_path)], "metadata": {"label": 1}}})
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "paratag.cli",
            "build",
            str(tmp_path / "fs.json"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "paratag: error:" in proc.stderr and "PFCands" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_condition_key_typo_is_an_error(tmp_path, pfnano_path):
    """Issue 16: `condition: [mH]` wrote an all-NaN condition column with exit 0."""
    from paratag.build import check_condition_metadata

    fs = {
        "sig": {
            "files": {str(pfnano_path): "Events"},
            "metadata": {"label": 0, "mHc": 130, "mA": 90},
        },
        "bkg": {"files": {str(pfnano_path): "Events"}, "metadata": {"label": 1}},
    }
    check_condition_metadata(fs, ("mHc", "mA"))  # backgrounds carry no condition: fine
    with pytest.raises(ConfigError, match="no dataset of the fileset has these metadata keys"):
        build_shards(fs, tmp_path / "shards", BuildConfig("event", condition=("mH",)))
    with pytest.raises(ConfigError, match="but not \\['mX'\\]"):
        check_condition_metadata(fs, ("mHc", "mX"))
    # a background-only sample (e.g. for sculpting) has no condition anywhere, on purpose
    backgrounds = {k: v for k, v in fs.items() if "mHc" not in (v.get("metadata") or {})}
    check_condition_metadata(backgrounds, ("mHc", "mA"), background_only=True)
    with pytest.raises(ConfigError, match="no dataset of the fileset"):  # only when declared
        check_condition_metadata(backgrounds, ("mHc", "mA"))
    with pytest.raises(ConfigError, match="background_only"):
        check_condition_metadata(fs, ("mHc", "mA"), background_only=True)
    assert not (tmp_path / "shards").exists()


def _write_with_counter(src, dst, coll: str, shift: int):
    """Copy ``src`` with the jagged contents intact but ``n<coll>`` shifted by ``shift``."""
    import awkward as ak
    import uproot

    from paratag.presets import load_preset

    events = uproot.open(src)["Events"]
    wanted = load_preset("jet").branches() | {"run", "luminosityBlock", "event"}
    names = [n for n in events.keys() if n in wanted and not n.startswith("n")]  # noqa: SIM118
    arrays = events.arrays(names)
    groups: dict = {}
    flat = {}
    for name in arrays.fields:
        if "_" in name and arrays[name].ndim == 2:
            c, field = name.split("_", 1)
            groups.setdefault(c, {})[field] = arrays[name]
        else:
            flat[name] = arrays[name]
    data = {**flat, **{c: ak.zip(f) for c, f in groups.items()}}
    for c in groups:  # NanoAOD counters beside the contents; only n<coll> is wrong
        true = ak.to_numpy(ak.num(data[c]))
        data[f"n{c}"] = np.maximum(true + (shift if c == coll else 0), 0).astype(np.int32)
    with uproot.recreate(dst) as f:
        # contents keep their own (stored) counters; the NanoAOD counter nColl is wrong
        f.mktree(
            "Events",
            {k: v.type if hasattr(v, "type") else v.dtype for k, v in data.items()},
            counter_name=lambda counted: f"n{counted}_stored",
        )
        f["Events"].extend(data)
    return dst


@pytest.mark.parametrize(("coll", "shift"), [("PFCands", -5), ("FatJet", 1)])
def test_counter_inconsistent_with_contents_is_named(tmp_path, pfnano_path, coll, shift):
    """Issue 16: nPFCands = true - 5 misaligned 943 of 1076 slots with exit 0."""
    good = _write_with_counter(pfnano_path, tmp_path / "good.root", coll, 0)
    ref = run(processor.IterativeExecutor(), fileset(good), GraphBuilder("jet"))
    assert len(ref["QCD"]["arrays"]["label"]) == 24  # the rewritten file itself is fine
    bad = _write_with_counter(pfnano_path, tmp_path / "bad.root", coll, shift)
    with pytest.raises(InvalidValueError, match=rf"bad\.root.*'n{coll}' disagrees"):
        run(processor.IterativeExecutor(), fileset(bad), GraphBuilder("jet"))
