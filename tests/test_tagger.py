"""Tagger processor: scores for many hypotheses, eager, on every coffea executor and on Dask."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import awkward as ak
import hist
import numpy as np
import pytest
import torch
from coffea import processor
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory
from paratag.processors import Tagger
from paratag.processors.tagger import parse_hypotheses
from typer.testing import CliRunner

from conftest import TINY_PN
from helpers_root import write_subset
from paratag.cli import app
from paratag.config import ModelConfig
from paratag.errors import ConfigError, InputFileError, ModelMismatchError, SchemaError
from paratag.export import export_model
from paratag.inputs import build_inputs
from paratag.models import build_model
from paratag.presets import load_preset
from paratag.runner import make_executor

HYPS = [{"mHc": 130, "mA": 90}, {"mHc": 160, "mA": 100}, {"mHc": 100.5, "mA": 60}]
NAMES = ["score_mHc130_mA90", "score_mHc160_mA100", "score_mHc100p5_mA60"]


def _events(path: Path, dataset: str = "test"):
    return NanoEventsFactory.from_root(
        {str(path): "Events"},
        schemaclass=NanoAODSchema,
        mode="virtual",
        metadata={"filename": str(path), "dataset": dataset},
    ).events()


@pytest.fixture(scope="module")
def pf_events(pfnano_path):
    return _events(pfnano_path)


@pytest.fixture(scope="module")
def slim_pfnano(tmp_path_factory, pfnano_path):
    """The real PFNano events with only the branches the jet preset needs (opens in ms, not s)."""
    wanted = load_preset("jet").branches() | {"run", "luminosityBlock", "event"}
    path = tmp_path_factory.mktemp("slim") / "pfnano_slim.root"
    write_subset(pfnano_path, path, branches=wanted)
    return path


@pytest.fixture(scope="module")
def dask_client():
    with make_executor("dask", 2) as ex:
        yield ex


def test_scores_match_pytorch_for_every_hypothesis(model_dir, pf_events):
    out, model = model_dir
    scored = Tagger(out / "model.onnx", HYPS)(pf_events)
    assert set(NAMES) <= set(scored.FatJet.fields)
    inputs = build_inputs(pf_events, "jet")
    pf = inputs.clouds["pf"]
    assert len(inputs) == 24 and (pf.counts > 0).all()
    for name, hyp in zip(NAMES, HYPS, strict=False):
        cond = model.normalise_condition(torch.tensor([[hyp["mHc"], hyp["mA"]]] * 24))
        with torch.no_grad():
            ref = torch.softmax(
                model(*(torch.from_numpy(a) for a in (pf.points, pf.features, pf.mask)), cond), 1
            )
        got = ak.to_numpy(ak.flatten(scored.FatJet[name]))
        np.testing.assert_allclose(got, ref[:, 0].numpy(), atol=1e-5)
    a, b = (ak.to_numpy(ak.flatten(scored.FatJet[n])) for n in NAMES[:2])
    assert np.abs(a - b).max() > 1e-3  # the hypotheses really differ


def test_strategies_and_micro_batches_agree(model_dir, pf_events):
    model = model_dir[0] / "model.onnx"
    ref = Tagger(model, HYPS).score_events(pf_events)[2]
    for kwargs in ({"strategy": "loop"}, {"batch_size": 1}, {"batch_size": 7}, {"memory_mb": 1e-3}):
        t = Tagger(model, HYPS, **kwargs)
        np.testing.assert_allclose(t.score_events(pf_events)[2], ref, atol=1e-6)
    assert Tagger(model, HYPS, memory_mb=1e-3).rows_per_call() == 1
    assert Tagger(model, HYPS, batch_size=7).rows_per_call() == 7


def test_pickles_without_session(model_dir, pf_events):
    t = Tagger(model_dir[0] / "model.onnx", HYPS)
    t(pf_events[:2])
    assert t.scorer._session is not None
    blob = pickle.dumps(t)
    assert len(blob) < 20_000
    t2 = pickle.loads(blob)
    assert t2.scorer._session is None
    np.testing.assert_array_equal(t2.score_events(pf_events)[2], t.score_events(pf_events)[2])


def test_empty_chunks(model_dir, pf_events):
    model = model_dir[0] / "model.onnx"
    empty = Tagger(model, HYPS)(pf_events[:0])
    assert len(empty) == 0 and NAMES[0] in empty.FatJet.fields
    # no jet passes: every score is NaN, the histogram is empty
    t = Tagger(model, HYPS, selection="gt(jet.pt, 1e9)", output="both")
    out = t.process(pf_events)
    assert out["test"]["cutflow"]["selected"] == 0
    assert out["hist"].sum().value == 0
    assert all(len(v) == 0 for v in out["test"]["chunks"].values().__iter__().__next__().values())
    # every jet without constituents: scores NaN, not run through the network
    preset = load_preset("jet")
    pf = dataclasses.replace(
        preset.clouds[0],
        sources=(dataclasses.replace(preset.clouds[0].sources[0], selection="gt(pt, 1e9)"),),
    )
    no_constituents = dataclasses.replace(preset, clouds=(pf, preset.clouds[1]))
    t = Tagger(model, HYPS, preset=no_constituents, output="both")
    out = t.process(pf_events)
    assert out["test"]["cutflow"] == {
        "events": 10,
        "candidates": 24,
        "selected": 24,
        "scored": 0,
        "invalid_dropped_graphs": 0,
        "invalid_dropped_constituents": 0,
    }
    assert out["hist"].sum().value == 0
    scored = Tagger(model, HYPS, preset=no_constituents)(pf_events)
    assert np.isnan(ak.to_numpy(ak.flatten(scored.FatJet[NAMES[0]]))).all()


def test_hist_output(model_dir, pf_events):
    t = Tagger(
        model_dir[0] / "model.onnx",
        HYPS,
        output="hist",
        axes=[hist.axis.Regular(10, 0, 300, name="jet_sdmass")],
    )
    h = t(pf_events)
    assert [ax.name for ax in h.axes] == ["dataset", "hypothesis", "score", "jet_sdmass"]
    assert list(h.axes["hypothesis"]) == NAMES
    assert h[{"dataset": "test", "hypothesis": NAMES[0]}].sum(flow=True).value == pytest.approx(
        24.0
    )


def test_bad_inputs(model_dir, tmp_path, nano_dy_path):
    out = model_dir[0]
    # a missing model is reported as the model, not as its missing preprocess.json
    with pytest.raises(InputFileError, match=r"model\.onnx: model file does not exist"):
        Tagger(tmp_path / "model.onnx", HYPS)  # no preprocess.json there either
    (tmp_path / "preprocess.json").write_text((out / "preprocess.json").read_text())
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(InputFileError, match="not a valid ONNX"):
        Tagger(tmp_path / "model.onnx", HYPS)
    with pytest.raises(ConfigError, match="condition names"):
        Tagger(out / "model.onnx", [{"mX": 100}])
    with pytest.raises(ConfigError, match="parametric"):
        Tagger(out / "model.onnx", [])
    with pytest.raises(ModelMismatchError, match="does not build the inputs"):
        Tagger(out / "model.onnx", HYPS, preset=load_preset("jet").with_lengths(pf=50))
    with pytest.raises(SchemaError, match="PFCands"):  # NanoAOD without PF candidates
        Tagger(out / "model.onnx", HYPS)(_events(nano_dy_path))
    assert parse_hypotheses("mHc=130,mA=90; mHc=160,mA=100") == [
        {"mHc": 130, "mA": 90},
        {"mHc": 160, "mA": 100},
    ]
    with pytest.raises(ConfigError, match="name=value"):
        parse_hypotheses("mHc:130")


def _run(executor, model: Path, fileset: dict) -> dict:
    runner = processor.Runner(executor, schema=NanoAODSchema, chunksize=4)
    return runner(fileset, processor_instance=Tagger(model, HYPS, output="both"), treename="Events")


# distributed's LocalCluster start-up leaves a probe socket for the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_runner_executors_identical(model_dir, slim_pfnano, pf_events, dask_client):
    model = model_dir[0] / "model.onnx"
    fileset = {
        "sig": {"files": {str(slim_pfnano): "Events"}},
        "bkg": {"files": {str(slim_pfnano): "Events"}},
    }
    ref = _run(processor.IterativeExecutor(status=False), model, fileset)
    eager = Tagger(model, HYPS)(pf_events)
    np.testing.assert_allclose(
        ref["sig"]["arrays"][NAMES[1]], ak.to_numpy(ak.flatten(eager.FatJet[NAMES[1]])), atol=1e-6
    )
    assert ref["sig"]["cutflow"]["scored"] == 24 and len(ref["sig"]["arrays"]["event"]) == 24
    for ex in (processor.FuturesExecutor(workers=2, status=False), dask_client):
        other = _run(ex, model, fileset)
        for ds in ("sig", "bkg"):
            assert other[ds]["cutflow"] == ref[ds]["cutflow"]
            for key, arr in ref[ds]["arrays"].items():
                np.testing.assert_array_equal(other[ds]["arrays"][key], arr)
        np.testing.assert_allclose(
            other["hist"].values(flow=True), ref["hist"].values(flow=True), rtol=1e-12
        )
        assert other["hist"].sum().value == 2 * 24 * len(HYPS)


# distributed's LocalCluster start-up leaves a probe socket for the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_dask_map_partitions_identical_and_column_usage(
    model_dir, pfnano_path, pf_events, dask_client
):
    import dask_awkward as dak

    model = model_dir[0] / "model.onnx"
    tagger = Tagger(model, HYPS)
    events = NanoEventsFactory.from_root(
        {str(pfnano_path): "Events"}, schemaclass=NanoAODSchema, mode="dask"
    ).events()
    scored = dak.map_partitions(tagger, events)
    lazy = scored.FatJet[NAMES[2]]
    columns = set().union(*dak.report_necessary_columns(lazy).values())
    preset = load_preset("jet")
    counts = {"n" + b.split("_")[0] for b in preset.branches() if "_" in b}
    assert columns == preset.branches() | counts
    got = lazy.compute()  # on the module's LocalCluster (the active distributed client)
    eager = tagger(pf_events)
    np.testing.assert_array_equal(
        ak.to_numpy(ak.flatten(got)), ak.to_numpy(ak.flatten(eager.FatJet[NAMES[2]]))
    )
    # called directly on dask-awkward events, as coffea.ml_tools' wrappers are
    direct = tagger(events)
    assert isinstance(direct, dak.Array)
    np.testing.assert_array_equal(
        ak.to_numpy(ak.flatten(direct.FatJet[NAMES[2]].compute())), ak.to_numpy(ak.flatten(got))
    )
    with pytest.raises(ConfigError, match="output='events'"):
        Tagger(model, HYPS, output="hist")(events)


def test_cli_score_writes_hists_and_parquet(model_dir, slim_pfnano, tmp_path):
    import pyarrow.parquet as pq
    import uproot

    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"sig": {"files": [str(slim_pfnano)]}}))
    res = CliRunner().invoke(
        app,
        [
            "score",
            str(fileset),
            "--model",
            str(model_dir[0] / "model.onnx"),
            "--hypotheses",
            "mHc=130,mA=90;mHc=160,mA=100",
            "--out",
            str(tmp_path / "out"),
            "--chunksize",
            "5",
            "--parquet",
        ],
    )
    assert res.exit_code == 0, res.output
    with uproot.open(tmp_path / "out" / "scores.root") as f:
        assert f["sig/score_mHc130_mA90"].values().sum() == pytest.approx(24.0)
    table = pq.read_table(tmp_path / "out" / "scores.parquet")
    assert table.num_rows == 24 and "score_mHc160_mA100" in table.column_names
    with open(tmp_path / "out" / "hists.pkl", "rb") as fh:
        assert pickle.load(fh)["hist"].sum().value == pytest.approx(48.0)


@pytest.fixture(scope="module")
def hypotheses_dir(tmp_path_factory):
    torch.manual_seed(2)
    cfg = ModelConfig(
        name="parametric_particlenet",
        condition_names=("mHc", "mA"),
        options={**TINY_PN, "shared_trunk": True},
    )
    model = build_model(cfg, point_dims=2, feature_dims=15).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in model.condition_parameter_names() or "out_proj" in name:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("tagger_hyp_model")
    export_model(model, "jet", out, class_names=["signal", "background"], hypotheses_axis=True)
    return out, model


def test_hypotheses_graph_scores_equal_per_hypothesis_path(hypotheses_dir, model_dir, pf_events):
    out, model = hypotheses_dir
    auto = Tagger(out / "model.onnx", HYPS)
    assert auto.strategy == "hypotheses" and auto.scorer.hypotheses_path.endswith(
        "model_hypotheses.onnx"
    )
    got = auto.score_events(pf_events)[2]
    assert np.abs(got[:, 0] - got[:, 1]).max() > 1e-3  # the hypotheses really differ
    for kwargs in ({"strategy": "loop"}, {"strategy": "replicate"}):
        ref = Tagger(out / "model.onnx", HYPS, **kwargs).score_events(pf_events)[2]
        np.testing.assert_allclose(got, ref, atol=1e-5)
    for kwargs in ({"batch_size": 1}, {"batch_size": 7}, {"memory_mb": 1e-3}):
        t = Tagger(out / "model.onnx", HYPS, strategy="hypotheses", **kwargs)
        np.testing.assert_allclose(t.score_events(pf_events)[2], got, atol=1e-6)
    # the memory budget counts every hypothesis' attention on top of the trunk
    assert auto.scorer.bytes_per_hypothesis > 0
    per_graph = auto.scorer.bytes_per_graph + len(HYPS) * auto.scorer.bytes_per_hypothesis
    budget = 5.5 * per_graph / 2**20  # below the default cap of 8 rows
    assert Tagger(out / "model.onnx", HYPS, memory_mb=budget).rows_per_call() == 5
    # against PyTorch directly
    pf = build_inputs(pf_events, "jet").clouds["pf"]
    conds = model.normalise_condition(torch.tensor([[h["mHc"], h["mA"]] for h in HYPS]))
    with torch.no_grad():
        ref = torch.softmax(
            model.forward_hypotheses(
                *(torch.from_numpy(a) for a in (pf.points, pf.features, pf.mask)), conds
            ),
            -1,
        )
    np.testing.assert_allclose(got, ref[:, :, 0].numpy(), atol=1e-5)
    # pickled taggers score the same; exports without the graph fall back to "loop"
    np.testing.assert_allclose(pickle.loads(pickle.dumps(auto)).score_events(pf_events)[2], got)
    assert Tagger(model_dir[0] / "model.onnx", HYPS).strategy == "loop"
    with pytest.raises(ConfigError, match="hypotheses_axis=True"):
        Tagger(model_dir[0] / "model.onnx", HYPS, strategy="hypotheses")


def test_hist_output_when_some_jets_fail_the_selection(model_dir, slim_pfnano, pf_events):
    """Issue 16: weights/spectators of all jets were indexed with a mask over the selected ones."""
    pt = ak.to_numpy(ak.flatten(pf_events.FatJet.pt))
    cut = float(np.median(pt))
    n_pass = int((pt > cut).sum())
    assert 0 < n_pass < len(pt)
    model = model_dir[0] / "model.onnx"
    kw = {
        "selection": f"gt(jet.pt, {cut})",
        "axes": [hist.axis.Regular(5, 0, 300, name="jet_sdmass")],
    }
    h = Tagger(model, HYPS, output="hist", **kw)(pf_events)
    assert h[{"dataset": "test", "hypothesis": NAMES[0]}].sum(flow=True).value == n_pass
    both = Tagger(model, HYPS, output="both", **kw).process(pf_events)
    assert both["hist"].sum(flow=True).value == n_pass * len(HYPS)
    cols = both["test"]["chunks"]
    assert sum(len(c["weight"]) for c in cols.values()) == n_pass
    fileset = {"sig": {"files": {str(slim_pfnano): "Events"}}}
    for ex in (
        processor.IterativeExecutor(status=False),
        processor.FuturesExecutor(workers=2, status=False),
    ):
        out = processor.Runner(ex, schema=NanoAODSchema, metadata_cache={})(
            fileset, processor_instance=Tagger(model, HYPS, output="both", **kw), treename="Events"
        )
        assert out["hist"].sum(flow=True).value == n_pass * len(HYPS)
        assert out["sig"]["cutflow"]["selected"] == n_pass


def test_cms_hbb_interaction_network_gives_a_schema_error_naming_the_file():
    """CMS's published IN: class labels as output_names are accepted; its inputs are listed."""
    cms = Path(__file__).resolve().parents[2] / "shared" / "data" / "cms"
    if not cms.is_dir():
        pytest.skip("../shared/data/cms is not beside this checkout")
    with pytest.raises(SchemaError, match="higgs_interactionnet_preprocess.json") as err:
        Tagger(
            cms / "higgs_interactionnet_model.onnx",
            preprocess=cms / "higgs_interactionnet_preprocess.json",
            score_class="Hbb",
        )
    assert "input_cpf" in str(err.value) and "pfcand_btagSip3dSig" in str(err.value)


def test_hypothesis_inputs_are_validated():
    with pytest.raises(ConfigError, match="given twice"):
        parse_hypotheses("mHc=130,mHc=140")
    with pytest.raises(ConfigError, match="name=value"):
        parse_hypotheses("mHc=heavy,mA=90")


def test_tagger_rejects_bad_hypothesis_values_and_warns_far_outside_the_grid(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(name="parametric_particlenet", condition_names=("mHc", "mA"), options=TINY_PN)
    model = build_model(cfg, point_dims=2, feature_dims=15).eval()
    grid = {
        "train": [[100, 85], [160, 95]],
        "validation": [],
        "interpolation": [],
        "extrapolation": [],
    }
    export_model(model, "jet", tmp_path, class_names=["signal", "background"], grid=grid)
    onnx_path = tmp_path / "model.onnx"
    with pytest.raises(ConfigError, match="not numbers"):
        Tagger(onnx_path, [{"mHc": "130", "mA": 90}])
    with pytest.raises(ConfigError, match="list of mappings"):
        Tagger(onnx_path, {"mHc": 130, "mA": 90})  # type: ignore[arg-type]
    with pytest.warns(UserWarning, match="far outside the grid"):
        Tagger(onnx_path, [{"mHc": 1000, "mA": 90}])
    Tagger(onnx_path, [{"mHc": 130, "mA": 90}])  # inside: no warning (warnings are errors)


@pytest.mark.parametrize("kind", ["futures", "dask"])
def test_zero_workers_is_a_clear_error_not_a_hang(kind):
    with pytest.raises(ConfigError, match="at least 1 worker"), make_executor(kind, 0):
        pass


@pytest.mark.parametrize("batch_size", [None, 3, 7])
def test_ragged_batches_equal_fully_padded_scores(model_dir, hypotheses_dir, pf_events, batch_size):
    """Issue 15: micro-batches cut to their own longest jet give the padded scores (1e-5)."""
    for model, strategy in (
        (model_dir[0] / "model.onnx", "loop"),
        (model_dir[0] / "model.onnx", "replicate"),
        (hypotheses_dir[0] / "model.onnx", "hypotheses"),
    ):
        kw = {"strategy": strategy, "batch_size": batch_size}
        padded = Tagger(model, HYPS, ragged=False, **kw)
        ragged = Tagger(model, HYPS, **kw)
        inputs, selected, ref = padded.score_events(pf_events)
        got = ragged.score_events(pf_events)[2]
        np.testing.assert_allclose(got, ref, atol=1e-5)
        # the cut really happens: the fixture's jets are far shorter than max_length
        scorer = ragged.scorer
        arrays = {n: getattr(inputs.clouds[c], kind) for n, (c, kind) in scorer.input_map.items()}
        lengths = scorer.lengths(arrays)["pf"]
        assert lengths.max() < arrays["mask"].shape[-1]
        for idx in (np.argsort(lengths)[:3], np.argsort(lengths)[-3:]):
            trimmed = scorer.trimmed(arrays, idx, scorer.lengths(arrays))
            # exactly the micro-batch's longest jet (no rounding), or the kNN minimum
            assert trimmed["features"].shape[-1] == max(lengths[idx].max(), scorer.min_particles)


def test_ragged_interaction_network_cuts_both_clouds(tmp_path, pf_events):
    torch.manual_seed(3)
    tiny_in = {"relational_hidden": [8], "edge_dim": 4, "object_hidden": [8], "object_dim": 4}
    model = build_model(
        ModelConfig("interaction_net", options=tiny_in), point_dims=2, feature_dims=15, sv_dims=10
    ).eval()
    export_model(model, "jet", tmp_path, class_names=["signal", "background"])
    ref = Tagger(tmp_path / "model.onnx", ragged=False, batch_size=5).score_events(pf_events)[2]
    got = Tagger(tmp_path / "model.onnx", batch_size=5).score_events(pf_events)[2]
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_execution_provider_selection(model_dir):
    from paratag.processors.tagger import resolve_providers

    auto = resolve_providers("auto")
    assert auto[-1] == "CPUExecutionProvider"
    assert resolve_providers("cpu") == ("CPUExecutionProvider",)
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ConfigError, match="onnxruntime-gpu"):
            resolve_providers("cuda")
        with pytest.raises(ConfigError, match="not available"):
            Tagger(model_dir[0] / "model.onnx", HYPS, providers="cuda")
    t = Tagger(model_dir[0] / "model.onnx", HYPS, providers="cpu")
    assert t.session.get_providers() == ["CPUExecutionProvider"]
