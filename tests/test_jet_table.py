"""The X->bb jet table: ResNet-15 on jet images drawn from the cloud, and the model comparison."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from paratag.baselines.resnet import JetImageOptions, JetImageResNet, rasterise
from paratag.config import ModelConfig
from paratag.errors import ConfigError
from paratag.evaluate.comparison import compare_models
from paratag.evaluate.metrics import roc_auc
from paratag.models import build_model
from paratag.models.registry import example_inputs, input_names, positional

SMALL = {"resnet": {"widths": [4, 8, 8], "hidden": 8}}


def _logptrel(pt_fraction: list[float]) -> torch.Tensor:
    """The jet preset's normalised pfcand_logptrel of each pT fraction."""
    return (torch.log(torch.tensor(pt_fraction)) + 4.7) * 0.7


def test_rasterise_puts_pt_fractions_in_the_right_pixels() -> None:
    o = JetImageOptions(n_pixels=16, half_width=0.8)
    points = torch.tensor([[[0.05, -0.79, 0.9, 0.3], [-0.79, 0.05, 0.0, 0.3]]])  # (1, 2, 4)
    features = torch.zeros(1, 5, 4)
    features[0, 2] = _logptrel([0.3, 0.1, 0.2, 0.4])
    features[0, 4] = torch.tensor([1.0, 0.0, -1.0, 1.0])
    mask = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]])  # the 4th particle is padding
    img = rasterise(points, features, mask, o)
    assert img.shape == (1, 2, 16, 16)
    # particle 0: eta row floor((0.05 + 0.8) / 1.6 * 16) = 8, phi column 0; particle 1: (0, 8)
    total = img[0, 0]
    assert total[8, 0] == pytest.approx(0.75, rel=1e-5)  # 0.3 of the 0.4 inside the image
    assert total[0, 8] == pytest.approx(0.25, rel=1e-5)
    assert float(total.sum()) == pytest.approx(1.0, rel=1e-6)  # particle 2 (|Δη| = 0.9) is outside
    assert img[0, 1, 8, 0] == pytest.approx(0.75, rel=1e-5) and float(
        img[0, 1].sum()
    ) == pytest.approx(0.75, rel=1e-5)
    raw = rasterise(points, features, mask, JetImageOptions(n_pixels=16, normalise=False))
    assert float(raw[0, 0].sum()) == pytest.approx(0.4, rel=1e-5)  # pT fractions themselves


def test_rasterise_draws_absolute_pt_and_displaced_tracks() -> None:
    from paratag.baselines.resnet import ABSOLUTE_PT

    o = JetImageOptions(n_pixels=16, **ABSOLUTE_PT)
    assert o.channels == 3
    points = torch.tensor([[[0.05, -0.79, 0.3], [-0.79, 0.05, 0.3]]])  # (1, 2, 3)
    features = torch.zeros(1, 15, 3)
    features[0, 0] = (torch.log(torch.tensor([120.0, 40.0, 80.0])) - 1.0) * 0.5  # pfcand_pt_log
    features[0, 4] = torch.tensor([1.0, 1.0, 0.0])  # charge
    features[0, 12] = torch.tensor([0.5, 0.2, 0.9]) * 0.1 * 10  # d0/σ = 5, 2, 9 (normalised)
    mask = torch.tensor([[[1.0, 1.0, 0.0]]])
    img = rasterise(points, features, mask, o)
    assert img.shape == (1, 3, 16, 16)
    assert img[0, 0, 8, 0] == pytest.approx(120.0, rel=1e-5)  # pT in GeV, not a fraction
    assert img[0, 0, 0, 8] == pytest.approx(40.0, rel=1e-5)
    assert float(img[0, 0].sum()) == pytest.approx(160.0, rel=1e-5)  # the padded slot adds nothing
    # only particle 0 is displaced (|d0/σ| = 5 > 3); particle 1 (2σ) is not
    assert float(img[0, 2].sum()) == pytest.approx(120.0, rel=1e-5)
    assert img[0, 2, 8, 0] == pytest.approx(120.0, rel=1e-5)
    model = build_model(
        ModelConfig(name="resnet15_image", options={**ABSOLUTE_PT, **SMALL}),
        point_dims=2,
        feature_dims=15,
    )
    assert model.cnn.options.in_channels == 3
    with pytest.raises(ConfigError, match="12 \\(d0 significance"):  # 12 features: no d0/σ
        build_model(
            ModelConfig(name="resnet15_image", options={**ABSOLUTE_PT, **SMALL}),
            point_dims=2,
            feature_dims=12,
        )
    with pytest.raises(ConfigError, match="displaced_norm_factor"):
        JetImageOptions(displaced_norm_factor=0.0)


def test_jet_image_resnet_keeps_the_graph_contract() -> None:
    cfg = ModelConfig(
        name="resnet15_image",
        n_classes=2,
        options=SMALL,
        condition_names=("mX",),
        condition_mean=(100.0,),
        condition_std=(40.0,),
    )
    model = build_model(cfg, point_dims=2, feature_dims=15).eval()
    assert isinstance(model, JetImageResNet) and not model.uses_condition
    assert input_names(model) == ["points", "features", "mask"]
    x = example_inputs(model, n=6, p=24)
    out = model(**x)
    assert out.shape == (6, 2)
    # extra padded slots change nothing; the condition is ignored
    padded = {k: torch.nn.functional.pad(v, (0, 9)) for k, v in x.items()}
    assert torch.allclose(model(**padded), out, atol=1e-6)
    assert torch.allclose(model(**x, condition=torch.randn(6, 1)), out)
    with pytest.raises(ConfigError, match="no secondary-cloud input"):
        build_model(cfg, point_dims=2, feature_dims=15, sv_dims=4)
    with pytest.raises(ConfigError, match="features 2"):
        build_model(cfg, point_dims=2, feature_dims=2)


def test_jet_image_resnet_exports_to_onnx(tmp_path) -> None:
    model = build_model(
        ModelConfig(name="resnet15_image", n_classes=2, options=SMALL),
        point_dims=2,
        feature_dims=15,
    ).eval()
    x = example_inputs(model, n=5, p=30, seed=3)
    path = tmp_path / "image.onnx"
    torch.onnx.export(
        positional(model),
        tuple(x.values()),
        str(path),
        input_names=list(x),
        output_names=["logits"],
        dynamic_axes={**{k: {0: "n", 2: "p"} for k in x}, "logits": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = example_inputs(model, n=3, p=41, seed=4)  # other batch size and length
    got = sess.run(None, {k: v.numpy() for k, v in y.items()})[0]
    np.testing.assert_allclose(got, model(**y).detach().numpy(), atol=1e-5)


def _toy(seed: int = 0):
    """Two signal points (mass 1 and 2) and a background with a 'mass' per row."""
    rng = np.random.default_rng(seed)
    mass = np.r_[np.full(200, 1.0), np.full(200, 2.0), rng.uniform(0.0, 3.0, 600)]
    signal = {(1.0,): np.arange(200), (2.0,): np.arange(200, 400)}
    return mass, signal, np.arange(400, 1000), np.ones(mass.size)


def test_compare_models_scores_each_point_at_its_hypothesis() -> None:
    mass, signal, background, weight = _toy()
    rng = np.random.default_rng(1)
    noise = rng.normal(size=mass.size)

    def score(model, rows, hyps):
        if model == "aware":  # knows the mass: peaks at the hypothesis
            return np.stack([-np.abs(mass[rows] - h[0]) for h in hyps], axis=1)
        return noise[rows][:, None].repeat(len(hyps), 1)  # ignores it

    cmp = compare_models(
        {"aware": "aware", "blind": "blind"},
        signal=signal,
        background=background,
        weight=weight,
        train_points=[(1.0,), (2.0,)],
        point_name=lambda p: f"m{p[0]:g}",
        score=score,
        conditioned=lambda m: m == "aware",
        n_boot=20,
    )
    assert cmp.rows == ("m1", "m2", "all") and cmp.conditioned == {"aware": True, "blind": False}
    # the aware scorer: AUC of |m - h| at each point, by hand
    for p, name in (((1.0,), "m1"), ((2.0,), "m2")):
        s = np.r_[-np.abs(mass[signal[p]] - p[0]), -np.abs(mass[background] - p[0])]
        y = np.r_[np.ones(200), np.zeros(600)]
        assert cmp.nominal["aware"][name]["auc"] == pytest.approx(roc_auc(y, s), abs=1e-9)
    assert cmp.nominal["aware"]["all"]["auc"] > 0.8
    assert abs(cmp.nominal["blind"]["all"]["auc"] - 0.5) < 0.08
    assert cmp.best() == "aware"
    assert 0 < cmp.std["aware"]["all"]["auc"] < 0.05
    head, rows = cmp.table()
    assert head[:3] == ["model", "point", "signal"] and len(rows) == 6
    assert rows[0][:3] == ["aware", "m1", "200"] and " ± " in rows[0][3]
    assert cmp.to_dict()["n_signal"] == {"m1": 200, "m2": 200, "all": 400}
