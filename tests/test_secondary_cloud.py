"""A preset's second cloud may have any name: shards, batches, training, export and Tagger follow it."""

from __future__ import annotations

import awkward as ak
import numpy as np
import onnx
import pytest
import torch
import yaml
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory
from paratag.processors import Tagger
from paratag.training import load_train_config, train

from paratag.build import BuildConfig, build_shards
from paratag.data.dataset import GraphDataset, ShardStore
from paratag.export import export_run
from paratag.inputs import build_inputs
from paratag.models.io import load_model
from paratag.presets import cloud_keys, load_preset, secondary_cloud

TINY_IN = {"relational_hidden": [8], "edge_dim": 4, "object_hidden": [8], "object_dim": 4}
HYP = {"mX": 100.0}


@pytest.fixture(scope="module")
def vtx_preset(tmp_path_factory):
    """The jet preset with its second cloud called ``vtx`` (dataset labels, 24 PF slots)."""
    data = load_preset("jet").to_dict()
    data.update(name="jet_vtx", truth={})
    data["clouds"][0]["max_length"] = 24
    data["clouds"][1]["name"] = "vtx"
    path = tmp_path_factory.mktemp("preset") / "jet_vtx.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, vtx_preset, pfnano_path):
    """Shards of the real PFNano jets (signal and background copies), a one-epoch IN run."""
    root = tmp_path_factory.mktemp("vtx")
    fileset = {
        "X": {"files": {str(pfnano_path): "Events"}, "metadata": {"label": 0, "mX": 100.0}},
        "QCD": {"files": {str(pfnano_path): "Events"}, "metadata": {"label": 1}},
    }
    shards = build_shards(
        fileset, root / "shards", BuildConfig(str(vtx_preset), condition=("mX",)), progress=False
    ).parent
    cfg = {
        "data": {"shards": str(shards), "n_folds": 3, "use_sv": True, "binary": True},
        "grid": {"preset": None, "names": ["mX"], "train": [[100]], "validation": []},
        "model": {"name": "interaction_net", "n_classes": 2, "options": TINY_IN},
        "loss": {"kind": "weighted_ce"},
        "stage1": {"enabled": False},
        "stage2": {"enabled": False},
        "stage3": {"epochs": 1, "batch_size": 16, "lr": 0.001, "curriculum": [], "amp": False},
        "run_dir": str(root / "run"),
        "device": "cpu",
        "progress": False,
        "tensorboard": False,
        "threads": 1,
    }
    (root / "train.yaml").write_text(yaml.safe_dump(cfg))
    train(load_train_config(root / "train.yaml"))
    return shards, root / "run"


def test_cloud_keys_follow_the_preset(vtx_preset):
    assert cloud_keys("pf", 0) == ("points", "features", "mask")
    assert cloud_keys("vtx", 1) == ("vtx_points", "vtx_features", "vtx_mask")
    assert secondary_cloud(load_preset(vtx_preset)) == "vtx"
    assert secondary_cloud(load_preset("jet").to_dict()) == "sv"
    assert secondary_cloud(None) == secondary_cloud(load_preset("event")) == "sv"


def test_shards_and_batches_use_the_cloud_name(trained):
    shards, _ = trained
    store = ShardStore(shards)
    assert store.shapes["vtx_features"] == [10, 7] and "sv_features" not in store.shapes
    rows = np.arange(len(store))
    cond, weight = store.table["condition"], store.table["weight"]
    ds = GraphDataset(store, rows, cond, weight, background_points=[(100.0,)], use_sv=True)
    batch = ds[(0, np.arange(4))]
    assert {"vtx_points", "vtx_features", "vtx_mask"} <= set(batch)
    assert batch["vtx_features"].shape[:2] == (4, 10)


def test_export_and_tagger_score_with_the_cloud_name(trained, vtx_preset, pfnano_path):
    _, run = trained
    res = export_run(run, run / "export", check_events=pfnano_path)
    assert res.parity is not None and res.parity.ok
    names = [i.name for i in onnx.load(str(res.onnx_path)).graph.input]
    assert names == ["points", "features", "mask", "condition", "vtx_features", "vtx_mask"]
    events = NanoEventsFactory.from_root(
        {str(pfnano_path): "Events"},
        schemaclass=NanoAODSchema,
        mode="virtual",
        metadata={"filename": str(pfnano_path), "dataset": "test"},
    ).events()
    scored = Tagger(res.onnx_path, [HYP])(events)
    got = ak.to_numpy(ak.flatten(scored.FatJet["score_mX100"]))
    model, info = load_model(run / "stage3" / "model.pt")
    inputs = build_inputs(events, load_preset(vtx_preset))
    pf, vtx = inputs.clouds["pf"], inputs.clouds["vtx"]
    cond = model.normalise_condition(torch.full((len(inputs), 1), HYP["mX"]))
    with torch.no_grad():
        logits = model(
            *(torch.from_numpy(a) for a in (pf.points, pf.features, pf.mask)),
            cond,
            sv_features=torch.from_numpy(vtx.features),
            sv_mask=torch.from_numpy(vtx.mask),
        )
    ref = torch.softmax(logits, 1)[:, 0].numpy()
    assert len(got) == 24 and info["input_dims"]["sv_dims"] == 10
    np.testing.assert_allclose(got, ref, atol=1e-5)
