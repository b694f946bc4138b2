"""ResNet-15 and its image data: ML4SCI layout, fast e/gamma calorimeter, PFNano jet images."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import onnxruntime as ort
import pytest
import torch

from paratag.baselines.images import (
    CaloSimConfig,
    JetImageConfig,
    jet_images,
    jet_images_from_file,
    load_ml4sci_h5,
    read_collections,
    simulate_egamma,
    to_channels_first,
    write_ml4sci_h5,
)
from paratag.baselines.resnet import ResNet15, ResNetOptions, count_weighted_layers, export_onnx
from paratag.config import ModelConfig
from paratag.errors import ConfigError, InputFileError, MissingBranchError
from paratag.evaluate.metrics import roc_auc
from paratag.models import build_model

DATA = Path(__file__).parent / "data"
PFNANO = DATA / "pfnano.root"
JET_BRANCHES = {
    "FatJet": ("pt", "eta", "phi"),
    "PFCands": ("pt", "eta", "phi", "charge"),
    "FatJetPFCands": ("jetIdx", "pFCandsIdx"),
}


# -- model ---------------------------------------------------------------------------------


def test_resnet15_layers_and_parameters():
    model = ResNet15()
    assert count_weighted_layers(model) == 15
    assert sum(p.numel() for p in model.parameters()) == 178_754
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(getattr(m, "is_shortcut", False) for m in convs) == 2  # stage-2/3 projections
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 15
    out = model(torch.rand(3, 2, 32, 32))
    assert out.shape == (3, 2)


def test_resnet_registry_and_config_errors():
    m = build_model(ModelConfig(name="resnet15", options={"hidden": 32}), in_channels=1)
    assert isinstance(m, ResNet15)
    assert m.options.in_channels == 1 and m.options.hidden == 32
    assert m(torch.rand(2, 1, 32, 32)).shape == (2, 2)
    with pytest.raises(ConfigError, match="unknown key"):
        ResNet15.from_config(ModelConfig(name="resnet15", options={"depth": 50}))
    with pytest.raises(ConfigError, match="not parametric"):
        ResNet15.from_config(
            ModelConfig(
                name="resnet15",
                condition_names=("mX",),
                condition_mean=(1.0,),
                condition_std=(1.0,),
            )
        )
    with pytest.raises(ConfigError, match="dropout"):
        ResNetOptions(dropout=1.5)


def test_resnet_onnx_parity(tmp_path):
    torch.manual_seed(0)
    model = ResNet15()
    model.train()
    model(torch.rand(16, 2, 32, 32))  # non-trivial batch-norm running stats
    path = export_onnx(model, tmp_path / "resnet.onnx", model.example_inputs(n=2)["images"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["images"]
    for n in (1, 3, 8):
        x = torch.rand(n, 2, 32, 32)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(None, {"images": x.numpy()})[0]
        assert got.shape == (n, 2)
        np.testing.assert_allclose(got, ref, atol=1e-4)


# -- ML4SCI layout -------------------------------------------------------------------------


def test_ml4sci_roundtrip_and_raw_layout(tmp_path):
    X, y = simulate_egamma(5, seed=3)
    p = write_ml4sci_h5(tmp_path / "sim.h5", X, y)
    X2, y2 = load_ml4sci_h5(p)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    # two files written directly with h5py in the ML4SCI layout (photons y=0, electrons y=1)
    rng = np.random.default_rng(0)
    for name, label in (("photons.hdf5", 0.0), ("electrons.hdf5", 1.0)):
        with h5py.File(tmp_path / name, "w") as f:
            f.create_dataset("X", data=rng.random((4, 32, 32, 2), dtype=np.float32))
            f.create_dataset("y", data=np.full(4, label))
    X3, y3 = load_ml4sci_h5([tmp_path / "photons.hdf5", tmp_path / "electrons.hdf5"], max_events=3)
    assert X3.shape == (6, 32, 32, 2) and y3.tolist() == [0, 0, 0, 1, 1, 1]
    assert to_channels_first(X3).shape == (6, 2, 32, 32)
    np.testing.assert_array_equal(to_channels_first(X3)[1, 1], X3[1, :, :, 1])


def test_ml4sci_wrong_layouts(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("images", data=np.zeros((2, 32, 32, 2)))
        f.create_dataset("labels", data=np.zeros(2))
    with pytest.raises(InputFileError, match=r"'X', 'y'.*ML4SCI"):
        load_ml4sci_h5(tmp_path / "other.h5")
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f.create_dataset("X", data=np.zeros((2, 2048)))
        f.create_dataset("y", data=np.zeros(2))
    with pytest.raises(InputFileError, match=r"shape \(2, 2048\)"):
        load_ml4sci_h5(tmp_path / "flat.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputFileError, match="HDF5"):
        load_ml4sci_h5(tmp_path / "text.h5")
    with pytest.raises(InputFileError, match="does not exist"):
        load_ml4sci_h5(tmp_path / "missing.h5")


# -- calorimeter simulation ----------------------------------------------------------------


def test_calorimeter_simulation_physics():
    cfg = CaloSimConfig(pt_range=(50.0, 50.0), eta_range=(0.0, 0.0), conversion_probability=0.0)
    X, y = simulate_egamma(300, cfg, seed=7)
    assert X.shape == (600, 32, 32, 2) and X.dtype == np.float32
    assert y.sum() == 300
    e, t = X[..., 0], X[..., 1]
    # readout threshold and timing only where energy was read out
    assert np.all((e == 0) | (e >= cfg.threshold_gev))
    assert np.all(t[e == 0] == 0)
    # the hottest crystal sits in the centre of the crop
    flat = e.reshape(len(e), -1).argmax(1)
    assert np.all(flat // 32 == 16) and np.all(flat % 32 == 16)
    # without noise: photons at eta = 0 deposit ~ 50 GeV minus lateral leakage out of the window
    quiet = CaloSimConfig(
        pt_range=(50.0, 50.0), eta_range=(0.0, 0.0), conversion_probability=0.0, noise_gev=0.0
    )
    Xq, yq = simulate_egamma(300, quiet, seed=7)
    eq = Xq[..., 0]
    assert 47.0 < eq[yq == 0].sum(axis=(1, 2)).mean() < 51.0
    # electrons radiate in the tracker and bend: wider in phi (columns), not in eta (rows)
    d = np.arange(32) - 16

    def width(img, axis_weights):
        return float(((img * axis_weights).sum(axis=(1, 2)) / img.sum(axis=(1, 2))).mean())

    phi2, eta2 = d[None, :] ** 2, d[:, None] ** 2
    assert width(eq[yq == 1], phi2) > 1.25 * width(eq[yq == 0], phi2)
    assert width(eq[yq == 1], eta2) == pytest.approx(width(eq[yq == 0], eta2), rel=0.15)
    # same seed, same images
    X2, _ = simulate_egamma(300, cfg, seed=7)
    np.testing.assert_array_equal(X, X2)


def test_calorimeter_config_errors():
    with pytest.raises(ConfigError, match="conversion_probability"):
        CaloSimConfig(conversion_probability=1.5)
    with pytest.raises(ConfigError, match="pt_range"):
        CaloSimConfig(pt_range=(10.0, 5.0))
    with pytest.raises(ConfigError, match="n_per_class"):
        simulate_egamma(0)


def test_resnet_trains_on_embedded_egamma():
    torch.manual_seed(0)
    X, y = simulate_egamma(300, CaloSimConfig(conversion_probability=0.1), seed=11)
    x = torch.tensor(to_channels_first(X))
    x[:, 0] = torch.log1p(x[:, 0])
    x[:, 1] = x[:, 1] / 5.0
    target = torch.tensor(1 - y)  # class 0 = signal (electron), label 1 = signal
    model = ResNet15(ResNetOptions(widths=(4, 8, 16), hidden=16))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    tr, te = slice(0, 450), slice(450, 600)
    for _ in range(4):
        model.train()
        for idx in torch.randperm(450).split(64):
            loss = torch.nn.functional.cross_entropy(model(x[tr][idx]), target[tr][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        score = torch.softmax(model(x[te]), 1)[:, 0].numpy()
    assert roc_auc(y[te], score) > 0.65


# -- jet images from PFNano ----------------------------------------------------------------


def test_jet_images_on_real_pfnano():
    events = read_collections(PFNANO, JET_BRANCHES)
    cfg = JetImageConfig(normalize=False, max_jets=5, pt_min=0.0, eta_max=5.0)
    images, evt, jet = jet_images(events, cfg)
    n_fj = [len(v) for v in events["FatJet"]["pt"].tolist()]
    assert images.shape == (sum(n_fj), 2, 32, 32)
    assert evt.tolist() == [e for e, n in enumerate(n_fj) for _ in range(n)]
    assert np.all(images[:, 1] <= images[:, 0] + 1e-3)
    # independent reference: loop over the link table of two events
    ev = events.tolist()
    row = 0
    for e in range(2):
        for j in range(n_fj[e]):
            fj = ev[e]["FatJet"][j]
            expected = 0.0
            for link in ev[e]["FatJetPFCands"]:
                if link["jetIdx"] != j:
                    continue
                c = ev[e]["PFCands"][link["pFCandsIdx"]]
                deta = c["eta"] - fj["eta"]
                dphi = (c["phi"] - fj["phi"] + np.pi) % (2 * np.pi) - np.pi
                if abs(deta) < 0.8 and abs(dphi) < 0.8:
                    expected += c["pt"]
            assert images[row, 0].sum() == pytest.approx(expected, rel=1e-5)
            assert expected > 0
            row += 1
    # default: two leading jets above 200 GeV, images normalised to unit pT sum
    norm, evt2, jet2 = jet_images_from_file(PFNANO)
    assert len(norm) == 20 and set(jet2.tolist()) == {0, 1}
    np.testing.assert_allclose(norm[:, 0].sum(axis=(1, 2)), 1.0, rtol=1e-5)
    # the hardest pixel is near the jet axis (centre of the image)
    centre = norm[:, 0, 12:20, 12:20].sum(axis=(1, 2))
    assert np.median(centre) > 0.5


@pytest.mark.filterwarnings(
    "ignore:Branch .* already exists:RuntimeWarning"
)  # coffea on the real fixture
def test_jet_images_same_jets_as_graph_preset():
    import coffea.nanoevents as ne

    from paratag.inputs import build_inputs

    ev = ne.NanoEventsFactory.from_root(
        {str(PFNANO): "Events"}, schemaclass=ne.PFNanoAODSchema, mode="eager"
    ).events()
    images, evt, _ = jet_images(ev, JetImageConfig(max_jets=100))
    graphs = build_inputs(ev, "jet")
    assert len(images) == len(graphs) > 0
    np.testing.assert_array_equal(evt, graphs.event_index)


def test_jet_images_errors():
    events = read_collections(
        PFNANO, {"FatJet": ("pt", "eta", "phi"), "PFCands": ("pt", "eta", "phi", "charge")}
    )
    with pytest.raises(MissingBranchError, match="FatJetPFCands_jetIdx"):
        jet_images(events)
    with pytest.raises(MissingBranchError, match="Nope_pt"):
        read_collections(PFNANO, {"Nope": ("pt",)})
    full = read_collections(PFNANO, JET_BRANCHES)
    import awkward as ak

    broken = ak.with_field(
        full, full["FatJetPFCands"]["pFCandsIdx"] + 100000, ["FatJetPFCands", "pFCandsIdx"]
    )
    with pytest.raises(InputFileError, match="point outside"):
        jet_images(broken)
