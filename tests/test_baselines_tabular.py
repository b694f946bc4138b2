"""Masked Transformer autoencoder and the HIGGS-style tabular features."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from paratag.baselines.masked_autoencoder import (
    FeatureLayout,
    MaskedAEOptions,
    MaskedTransformerAE,
    export_onnx,
    log_positive,
    reconstruction_metrics,
)
from paratag.baselines.tabular import (
    HIGGS_FEATURES,
    HIGGS_PROCESSES,
    HiggsSelection,
    encode_phi,
    generate_higgs_events,
    higgs_features,
    higgs_features_from_file,
    load_higgs_csv,
    split_higgs,
    standardize,
)
from paratag.config import ModelConfig
from paratag.errors import ConfigError, InputFileError, InvalidValueError, MissingBranchError
from paratag.evaluate.metrics import roc_auc
from paratag.models import build_model

DATA = Path(__file__).parent / "data"


def _real_features() -> np.ndarray:
    """HIGGS features of every real fixture event with a lepton and >= 2 jets (massless objects)."""
    a, _ = higgs_features_from_file(DATA / "nano_dy.root", HiggsSelection(min_jets=2))
    b, _ = higgs_features_from_file(DATA / "pfnano.root", HiggsSelection(min_jets=2))
    return np.concatenate([a, b])


def _model(X: np.ndarray, **kw) -> tuple[MaskedTransformerAE, torch.Tensor]:
    Xe, names = encode_phi(X, HIGGS_FEATURES[: X.shape[1]])
    if kw.get("log_positive"):
        Xe = log_positive(Xe, names)
    Xs, mean, std = standardize(Xe)
    opts = MaskedAEOptions(
        feature_names=names,
        feature_mean=tuple(map(float, mean)),
        feature_std=tuple(map(float, std)),
        d_model=16,
        n_heads=2,
        n_layers=1,
        ff_dim=32,
        **kw,
    )
    return MaskedTransformerAE(opts), torch.tensor(Xs)


# -- features ------------------------------------------------------------------------------


def test_higgs_features_on_real_nanoaod():
    import vector

    X, passed = higgs_features_from_file(DATA / "pfnano.root")
    assert X.shape == (int(passed.sum()), 28) and X.shape[0] >= 1
    X2, passed2 = higgs_features_from_file(DATA / "nano_dy.root", HiggsSelection(min_jets=2))
    assert len(X2) == passed2.sum() >= 5
    col = {n: i for i, n in enumerate(HIGGS_FEATURES)}
    for x in np.concatenate([X, X2]):
        assert x[col["lepton_pt"]] > 20 and x[col["met_pt"]] >= 0
        pts = [x[col[f"jet{i}_pt"]] for i in range(1, 5)]
        assert pts == sorted(pts, reverse=True)
    # independent check of m_bb, m_jj and m_wwbb (with the W-constrained neutrino) using `vector`
    x = X[0]

    def jet(i):
        return vector.obj(
            pt=x[col[f"jet{i}_pt"]], eta=x[col[f"jet{i}_eta"]], phi=x[col[f"jet{i}_phi"]], mass=0.0
        )

    btag = np.array([x[col[f"jet{i}_btag"]] for i in range(1, 5)])
    b = sorted(np.argsort(-btag, kind="stable")[:2] + 1)
    w = sorted(set(range(1, 5)) - set(b))
    assert x[col["m_bb"]] == pytest.approx((jet(b[0]) + jet(b[1])).mass, rel=1e-4)
    assert x[col["m_jj"]] == pytest.approx((jet(w[0]) + jet(w[1])).mass, rel=1e-4)
    # m_lv is 80.4 exactly when the W-mass constraint has a real solution
    m_lv = np.concatenate([X, X2])[:, col["m_lv"]]
    assert np.any(np.isclose(m_lv, 80.4, atol=1e-2)) and np.all(m_lv >= 0)


def test_higgs_features_selection_and_errors():
    from paratag.baselines.images import read_collections

    ev = read_collections(
        DATA / "nano_dy.root",
        {
            "Electron": ("pt", "eta", "phi"),
            "Muon": ("pt", "eta", "phi"),
            "Jet": ("pt", "eta", "phi", "btagDeepFlavB"),
        },
    )
    with pytest.raises(MissingBranchError, match="MET_pt"):
        higgs_features(ev)
    with pytest.raises(MissingBranchError, match="btagNope"):
        higgs_features_from_file(DATA / "nano_dy.root", HiggsSelection(btag_field="btagNope"))
    with pytest.raises(ConfigError, match="min_jets"):
        HiggsSelection(min_jets=5)
    # looser cuts select a superset of the events
    _, strict = higgs_features_from_file(DATA / "nano_dy.root", HiggsSelection(min_jets=3))
    _, loose = higgs_features_from_file(DATA / "nano_dy.root", HiggsSelection(min_jets=2))
    assert np.all(loose[strict]) and loose.sum() > strict.sum()


def test_encode_phi_and_standardize():
    X = np.array([[10.0, 0.5, np.pi / 2], [20.0, -0.5, np.pi]], dtype=np.float32)
    Xe, names = encode_phi(X, ("lepton_pt", "lepton_eta", "lepton_phi"))
    assert names == ("lepton_pt", "lepton_eta", "lepton_cosphi", "lepton_sinphi")
    np.testing.assert_allclose(Xe[:, 2:], [[0.0, 1.0], [-1.0, 0.0]], atol=1e-6)
    Xs, mean, std = standardize(Xe)
    np.testing.assert_allclose(Xs.mean(0), 0.0, atol=1e-6)
    Xs2, _, _ = standardize(Xe, mean, std)
    np.testing.assert_array_equal(Xs, Xs2)


# -- UCI HIGGS CSV ---------------------------------------------------------------------------


def _write_csv(path: Path, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = np.column_stack([rng.integers(0, 2, n).astype(float), rng.random((n, 28))])
    text = "\n".join(",".join(f"{v:.18e}" for v in row) for row in data) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return data


def test_higgs_csv_loader(tmp_path):
    data = _write_csv(tmp_path / "HIGGS.csv", 12)
    X, y, names = load_higgs_csv(tmp_path / "HIGGS.csv")
    assert X.shape == (12, 21) and names == HIGGS_FEATURES[:21]
    np.testing.assert_allclose(X, data[:, 1:22], rtol=1e-6)
    np.testing.assert_array_equal(y, data[:, 0].astype(int))
    data_gz = _write_csv(tmp_path / "HIGGS.csv.gz", 5, seed=1)
    X28, _, names28 = load_higgs_csv(tmp_path / "HIGGS.csv.gz", n_features=28, max_rows=3)
    assert X28.shape == (3, 28) and names28[-1] == "m_wwbb"
    np.testing.assert_allclose(X28, data_gz[:3, 1:], rtol=1e-6)


def test_higgs_csv_wrong_layouts(tmp_path):
    (tmp_path / "short.csv").write_text("1,0.5,0.3\n0,0.1,0.2\n")
    with pytest.raises(InputFileError, match="3 columns"):
        load_higgs_csv(tmp_path / "short.csv")
    bad = np.column_stack([np.full(2, 2.0), np.zeros((2, 28))])
    (tmp_path / "label.csv").write_text("\n".join(",".join(map(str, r)) for r in bad))
    with pytest.raises(InputFileError, match="0/1 label"):
        load_higgs_csv(tmp_path / "label.csv")
    with pytest.raises(InputFileError, match="does not exist"):
        load_higgs_csv(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match="21 or 28"):
        load_higgs_csv(tmp_path / "short.csv", n_features=10)


def test_default_split_is_first_1p1m_last_100k():
    train, test = split_higgs(11_000_000)
    assert len(train) == 1_100_000 and train[0] == 0 and train[-1] == 1_099_999
    assert len(test) == 100_000 and test[0] == 10_900_000 and test[-1] == 10_999_999
    tr, te = split_higgs(100, None, 20)
    assert tr.tolist() == list(range(80)) and te.tolist() == list(range(80, 100))
    with pytest.raises(ConfigError, match="full 11M"):
        split_higgs(1000)


# -- model -----------------------------------------------------------------------------------


def test_feature_layout_from_higgs_names():
    _, names = encode_phi(np.zeros((1, 28)), HIGGS_FEATURES)
    lay = FeatureLayout.from_names(names)
    assert len(names) == 34
    assert len(lay.angle_pairs) == 6 and len(lay.vectors) == 5 and lay.met is not None
    assert len(lay.jets) == 4 and set(lay.masses) == {"m_bb", "m_jj"}
    assert len(lay.positive) == 6 + 7  # lepton, MET, 4 jets pT + 7 masses
    lay21 = FeatureLayout.from_names(encode_phi(np.zeros((1, 21)), HIGGS_FEATURES[:21])[1])
    assert lay21.masses == {} and len(lay21.jets) == 4


def test_physics_penalties_vanish_on_real_events_and_catch_violations():
    model, x = _model(_real_features())
    pen = model.physics_penalties(x, x)
    for name in ("positive", "angle", "balance", "mass"):
        assert float(pen[name]) < 1e-6, name
    names = model.options.feature_names
    bad = model.physical(x.clone())
    bad[:, names.index("jet1_pt")] = -50.0
    bad[:, names.index("lepton_cosphi")] *= 2.0
    bad[:, names.index("m_bb")] += 40.0
    bad_std = (bad - model.feature_mean) / model.feature_std
    pen_bad = model.physics_penalties(bad_std, x)
    assert float(pen_bad["positive"]) > 1e-4
    assert float(pen_bad["angle"]) > 1e-2
    assert float(pen_bad["balance"]) > 1e-3  # the lepton px changed
    assert float(pen_bad["mass"]) > 1e-2


def test_log_positive_inputs_keep_the_physics_penalties_in_gev():
    X = _real_features()
    model, x = _model(X, log_positive=True)
    Xe, names = encode_phi(X, HIGGS_FEATURES[: X.shape[1]])
    i = names.index("jet1_pt")
    assert float(x[:, i].std(correction=0)) == pytest.approx(1.0, rel=1e-3)  # log(1 + pT)
    np.testing.assert_allclose(model.physical(x).numpy(), Xe, rtol=2e-3, atol=2e-3)
    pen = model.physics_penalties(x, x)
    assert all(float(v) < 1e-5 for v in pen.values()), pen
    bad = model.physical(x.clone())
    j = names.index("m_bb")
    m_bb = bad[:, j].clone()
    bad[:, j] += 40.0  # 40 GeV off the jet-pair mass: penalised in the units of the log
    bad = log_positive(bad.numpy(), names)
    bad_std = (torch.tensor(bad) - model.feature_mean) / model.feature_std
    expected = ((torch.log1p(m_bb + 40.0) - torch.log1p(m_bb)) / model.feature_std[j]) ** 2
    mass = float(model.physics_penalties(bad_std, x)["mass"])
    assert mass == pytest.approx(float(expected.mean()), rel=1e-2)
    with pytest.raises(ConfigError, match="feature names"):
        log_positive(Xe, names[:-1])
    Xe[:2, names.index("jet2_pt")] = -1.0
    with pytest.raises(InvalidValueError, match="2 negative or non-finite .* 'jet2_pt'"):
        log_positive(Xe, names)
    Xe[:2, names.index("jet2_pt")] = 30.0
    Xe[0, names.index("m_bb")] = np.nan
    with pytest.raises(InvalidValueError, match="1 negative or non-finite .* 'm_bb'"):
        log_positive(Xe, names)


def test_masking_and_reconstruction_metrics():
    model, x = _model(_real_features(), mask_fraction=0.3)
    mask = model.random_mask(len(x), torch.Generator().manual_seed(0))
    assert mask.shape == x.shape and torch.all(mask.sum(1) == round(0.3 * x.shape[1]))
    # masked inputs cannot influence the reconstruction
    noisy = torch.where(mask, torch.randn_like(x) * 100, x)
    torch.testing.assert_close(model.reconstruct(noisy, mask), model.reconstruct(x, mask))
    true = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]])
    rec = torch.tensor([[1.5, 9.0], [2.5, 9.0], [3.5, 9.0]])
    m = torch.tensor([[True, False], [True, False], [True, True]])
    out = reconstruction_metrics(true, rec, m, ("a", "b"))
    assert out["a"]["mse"] == pytest.approx(0.25) and out["a"]["mae"] == pytest.approx(0.5)
    assert out["a"]["pearson"] == pytest.approx(1.0) and out["a"]["n"] == 3
    assert out["b"]["mse"] == pytest.approx(49.0) and np.isnan(out["b"]["pearson"])


def test_registry_options_and_freezing():
    _, names = encode_phi(np.zeros((1, 21)), HIGGS_FEATURES[:21])
    cfg = ModelConfig(
        name="masked_autoencoder", options={"feature_names": list(names), "head": "linear"}
    )
    model = build_model(cfg, n_features=len(names))
    assert isinstance(model, MaskedTransformerAE) and isinstance(model.head, torch.nn.Linear)
    with pytest.raises(ConfigError, match="lists 27"):
        build_model(cfg, n_features=21)
    with pytest.raises(ConfigError, match="mask_fraction"):
        MaskedAEOptions(feature_names=names, mask_fraction=1.0)
    with pytest.raises(ConfigError, match="feature_names is empty"):
        MaskedAEOptions()
    with pytest.raises(ConfigError, match="pooling 'mean' or 'concat'"):
        MaskedAEOptions(feature_names=names, pooling="max")  # type: ignore[arg-type]
    concat = MaskedTransformerAE(
        MaskedAEOptions(feature_names=names, head="linear", pooling="concat", d_model=8, n_heads=2)
    )
    assert concat.head.in_features == 27 * 8  # one d_model slot per feature token
    assert concat(torch.randn(3, 27)).shape == (3, 2)
    deep = MaskedTransformerAE(
        MaskedAEOptions(feature_names=names, head="mlp", head_layers=2, head_hidden=16)
    )
    widths = [m.out_features for m in deep.head if isinstance(m, torch.nn.Linear)]
    assert widths == [16, 16, 2]
    with pytest.raises(ConfigError, match="head_layers"):
        MaskedAEOptions(feature_names=names, head_layers=0)
    model.set_encoder_trainable(False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    model.set_encoder_trainable(True)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("pooling", ["mean", "concat"])
def test_onnx_parity_classifier_and_autoencoder(tmp_path, pooling):
    torch.manual_seed(0)
    model, x = _model(_real_features(), pooling=pooling)
    path = export_onnx(model, tmp_path / "clf.onnx", x[:2])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 4, 9):
        xb = torch.randn(n, x.shape[1])
        with torch.no_grad():
            ref = model(xb).numpy()
        np.testing.assert_allclose(sess.run(None, {"features": xb.numpy()})[0], ref, atol=1e-4)
    path = export_onnx(model, tmp_path / "ae.onnx", x[:2], what="autoencoder")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        xb = torch.randn(n, x.shape[1])
        mask = model.random_mask(n)
        with torch.no_grad():
            ref = model.reconstruct(xb, mask).numpy()
        got = sess.run(None, {"features": xb.numpy(), "mask": mask.float().numpy()})[0]
        np.testing.assert_allclose(got, ref, atol=1e-4)


# -- embedded generated data ---------------------------------------------------------------


def test_higgs_pythia_settings_give_the_benchmark_chain():
    import pythia8mc

    py = pythia8mc.Pythia("", False)
    for s in (
        *HIGGS_PROCESSES["higgs_signal"],
        "PartonLevel:all = off",
        "HadronLevel:all = off",
        "Print:quiet = on",
        "Next:numberCount = 0",
    ):
        assert py.readString(s), s
    assert py.init()
    for _ in range(5):
        assert py.next()
        ids = {
            (abs(p.id()), abs(py.process[p.mother1()].id())) for p in py.process if p.mother1() > 0
        }
        assert {(37, 35), (24, 35), (24, 37), (25, 37), (5, 25)} <= ids
    with pytest.raises(ConfigError, match="unknown HIGGS process"):
        generate_higgs_events("higgs_wjets", 1)


def test_autoencoder_trains_on_generated_higgs_events():
    sig, _ = higgs_features(
        generate_higgs_events("higgs_signal", 150, seed=1), HiggsSelection(min_jets=3)
    )
    bkg, _ = higgs_features(
        generate_higgs_events("higgs_ttbar", 150, seed=2), HiggsSelection(min_jets=3)
    )
    assert len(sig) >= 15 and len(bkg) >= 15
    X = np.concatenate([sig, bkg])
    y = np.r_[np.ones(len(sig), int), np.zeros(len(bkg), int)]
    torch.manual_seed(0)
    model, x = _model(X, head="linear")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    fixed = model.random_mask(len(x), gen)
    with torch.no_grad():
        before, _ = model.pretrain_loss(x, fixed)
    for _ in range(40):
        loss, parts = model.pretrain_loss(x, model.random_mask(len(x), gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after, parts = model.pretrain_loss(x, fixed)
    assert float(after) < 0.8 * float(before)
    assert set(parts) == {"mse", "positive", "angle", "balance", "mass"}
    # linear probe on the frozen encoder; signal first (class 0)
    model.set_encoder_trainable(False)
    probe = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    target = torch.tensor(1 - y)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x), target)
        probe.zero_grad()
        loss.backward()
        probe.step()
    with torch.no_grad():
        score = torch.softmax(model(x), 1)[:, 0].numpy()
    assert roc_auc(y, score) > 0.6
