"""Graph models: construction, parameter counts, registry, invariances, conditioning."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from paratag.config import ModelConfig, load
from paratag.errors import ConfigError, InvalidValueError
from paratag.graphs import knn
from paratag.models import (
    available_models,
    build_model,
    example_inputs,
    get_model_class,
    input_names,
    positional,
)
from paratag.models.layers import EdgeConvBlock

torch.set_num_threads(2)

# Tiny widths keep the invariance tests fast; k=4 so P=50 clouds have real neighbours.
TINY_PN = {"conv_params": [[4, [8, 8]], [4, [12]]], "fc_params": [[16, 0.1]], "use_fusion": True}
TINY_PARAM = {
    **TINY_PN,
    "conv_params": [[4, [8, 8]], [4, [12]]],
    "embed_dim": 8,
    "encoder_dims": [8],
}
TINY_IN = {"relational_hidden": [8, 6], "edge_dim": 5, "object_hidden": [8], "object_dim": 6}
COND = ("mHc", "mA")

CASES = {
    "particlenet": (ModelConfig("particlenet", options=TINY_PN), {}),
    "parametric": (
        ModelConfig(
            "parametric_particlenet", n_classes=4, condition_names=COND, options=TINY_PARAM
        ),
        {},
    ),
    "parametric_pairs": (
        ModelConfig(
            "parametric_particlenet",
            n_classes=2,
            condition_names=COND,
            options={
                **TINY_PARAM,
                "pair_features": True,
                "pair_kinematics": {"log_pt_index": 0, "log_pt_median": 3.0},
                "resonance": "mA",
                "cascade": "mHc",
                "masked_edges": True,
                "condition_edges": True,
                "condition_input": True,
            },
        ),
        {},
    ),
    "interaction_net": (ModelConfig("interaction_net", options=TINY_IN), {"sv_dims": 3}),
    "interaction_net_cond": (
        ModelConfig(
            "interaction_net",
            condition_names=("mX",),
            condition_mean=(125.0,),
            condition_std=(50.0,),
            options=TINY_IN,
        ),
        {"sv_dims": 3},
    ),
}


def make(case: str) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg, extra = CASES[case]
    model = build_model(cfg, point_dims=2, feature_dims=5, **extra)
    randomise_norms(model)
    return model.eval()


def randomise_norms(model: torch.nn.Module) -> None:
    """Non-trivial batch-norm statistics so eval-mode folding is exercised."""
    gen = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.copy_(torch.rand(mod.num_features, generator=gen) - 0.5)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
            mod.bias.data.copy_(torch.rand(mod.num_features, generator=gen) - 0.5)


def run(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- construction and parameter counts ---------------------------------------------------


def test_registry_lists_models_and_rejects_unknown_name() -> None:
    assert {"particlenet", "parametric_particlenet", "interaction_net"} <= set(available_models())
    with pytest.raises(ConfigError, match="nope"):
        build_model(ModelConfig("nope"), point_dims=2, feature_dims=7)
    assert get_model_class("particlenet").__name__ == "ParticleNet"


@pytest.mark.parametrize(
    ("preset", "fusion", "expected"),
    [
        # Paper (arXiv:1902.08570) top tagging: 7 features, 2 classes, no fusion layer.
        # Full: blocks 10,048 + 58,368 + 231,424, input BN 14, FC 65,792 + 514 = 366,160.
        ("particlenet", False, 366_160),
        # Lite: blocks 3,200 + 22,880, input BN 14, FC 8,320 + 258 = 26,416 (paper: 26k).
        ("particlenet_lite", False, 26_416),
        # weaver-core's default adds the fusion layer (and widens the first FC layer).
        ("particlenet", True, 571_728),
        ("particlenet_lite", True, 47_152),
    ],
)
def test_particlenet_parameter_counts_match_paper(preset: str, fusion: bool, expected: int) -> None:
    cfg = ModelConfig("particlenet", options={"preset": preset, "use_fusion": fusion})
    model = build_model(cfg, point_dims=2, feature_dims=7)
    assert n_params(model) == expected


def test_interaction_net_cms_configuration_parameter_count() -> None:
    # CMS H->bb IN: 30 track features (2 as points) x 60 tracks, 14 SV features x 5 SVs.
    model = build_model(ModelConfig("interaction_net"), point_dims=2, feature_dims=28, sv_dims=14)
    # f_R^pp 3,660 + 1,830 + 620; f_R^pv 2,700 + 1,830 + 620; f_O 4,260 + 1,830 + 744; fc 50.
    assert n_params(model) == 18_144
    cond = ModelConfig("interaction_net", condition_names=COND)
    conditioned = build_model(cond, point_dims=2, feature_dims=28, sv_dims=14)
    assert n_params(conditioned) == 18_144 + 2 * 60  # condition columns of f_O's first layer
    assert input_names(model) == ["points", "features", "mask", "sv_features", "sv_mask"]
    assert input_names(conditioned)[3] == "condition"


def test_models_build_from_yaml(tmp_path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "name": "parametric_particlenet",
                    "n_classes": 4,
                    "condition_names": ["mHc", "mA"],
                    "options": {"preset": "particlenet_lite", "attention_heads": 2},
                }
            }
        )
    )
    cfg = load(ModelConfig, path, section="model")
    model = build_model(cfg, point_dims=2, feature_dims=7)
    assert model.options.conv_params == ((7, (32, 32, 32)), (7, (64, 64, 64)))
    assert model.options.attention_heads == 2
    assert torch.equal(model.condition_mean, torch.tensor([130.0, 90.0]))
    assert torch.equal(model.condition_std, torch.tensor([20.0, 10.0]))
    out = run(model.eval(), example_inputs(model, n=2, p=10))
    assert out.shape == (2, 4)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("particlenet", {"widths": [1]}, "unknown key"),
        ("particlenet", {"preset": "huge"}, "preset 'huge'"),
        ("particlenet", {"conv_params": [[0, [8]]]}, "k >= 1"),
        ("parametric_particlenet", {"attention_heads": 5}, "divisible"),
        ("interaction_net", {"edge_dim": 0}, "positive"),
    ],
)
def test_bad_options_raise_config_error(name: str, options: dict, match: str) -> None:
    cfg = ModelConfig(name, condition_names=COND, options=options)
    with pytest.raises(ConfigError, match=match):
        build_model(cfg, point_dims=2, feature_dims=7)


def test_condition_normalisation_is_a_saved_buffer() -> None:
    model = make("parametric")
    phys = torch.tensor([[130.0, 90.0], [150.0, 80.0]])
    norm = model.normalise_condition(phys)
    assert torch.allclose(norm, torch.tensor([[0.0, 0.0], [1.0, -1.0]]))
    assert torch.allclose(model.denormalise_condition(norm), phys)
    state = model.state_dict()
    assert "condition_mean" in state and "condition_std" in state
    with pytest.raises(InvalidValueError, match="expects 2"):
        model.normalise_condition(torch.zeros(3, 1))
    plain = make("particlenet")
    assert plain.condition_mean.numel() == 0 and plain.condition_names == ()
    with pytest.raises(ConfigError, match="mZp"):
        build_model(
            ModelConfig("interaction_net", condition_names=("mZp",)), point_dims=2, feature_dims=5
        )
    with pytest.raises(ConfigError, match="needs condition"):
        build_model(ModelConfig("parametric_particlenet"), point_dims=2, feature_dims=5)


def test_missing_required_inputs_raise() -> None:
    inputs = example_inputs(make("parametric"), n=2, p=8)
    inputs.pop("condition")
    with pytest.raises(InvalidValueError, match="condition"):
        make("parametric")(**inputs)
    inputs = example_inputs(make("interaction_net"), n=2, p=8)
    inputs.pop("sv_features")
    with pytest.raises(InvalidValueError, match="sv_features"):
        make("interaction_net")(**inputs)


# --- EdgeConv and kNN ---------------------------------------------------------------------


def naive_edgeconv(block: EdgeConvBlock, coords, x, mask) -> torch.Tensor:
    """weaver's formulation: explicit [x_i, x_j - x_i] edge tensor, then the layers."""
    n, p, _ = x.shape
    k = block.k
    idx = knn(coords.transpose(1, 2), mask.transpose(1, 2), k)
    xj = torch.stack([x[b][idx[b]] for b in range(n)])  # (N, P, k, C)
    xi = x.unsqueeze(2).expand(-1, -1, k, -1)
    h = torch.cat([xi, xj - xi], dim=-1)
    for lin, bn in zip(block.linears, block.norms, strict=True):
        h = F.relu(bn(lin(h).reshape(-1, lin.out_features)).reshape(n, p, k, -1))
    sc = block.shortcut[1](block.shortcut[0](x).reshape(n * p, -1)).reshape(n, p, -1)
    return F.relu(h.mean(dim=2) + sc) * mask


@pytest.mark.parametrize("training", [True, False])
def test_edgeconv_split_first_layer_equals_edge_tensor_formula(training: bool) -> None:
    torch.manual_seed(3)
    block = EdgeConvBlock(4, 5, (8, 6))
    randomise_norms(block)
    block.train(training)
    coords, x = torch.randn(3, 12, 2), torch.randn(3, 12, 5)
    mask = torch.ones(3, 12, 1)
    mask[1, 9:] = 0
    x, coords = x * mask, coords * mask
    expected = naive_edgeconv(block, coords, x, mask)
    assert torch.allclose(block(coords, x, mask), expected, atol=1e-5)


def test_edgeconv_clamps_k_for_tiny_clouds() -> None:
    block = EdgeConvBlock(16, 5, (8,)).eval()
    x = torch.randn(2, 4, 5)
    out = block(torch.randn(2, 4, 2), x, torch.ones(2, 4, 1))
    assert out.shape == (2, 4, 8)
    model = make("particlenet")  # k = 4 > P - 1 = 2
    assert run(model, example_inputs(model, n=2, p=3)).isfinite().all()


def test_knn_never_picks_padding_with_enough_real_points() -> None:
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(4, 2, 30, generator=gen)
    mask = torch.ones(4, 1, 30)
    mask[:, :, 20:] = 0
    idx = knn(points * mask, mask, 7)
    assert idx[:, :20].max() < 20
    self_idx = torch.arange(30).view(1, -1, 1)
    assert not (idx[:, :20] == self_idx[:, :20]).any()
    # padded rows take padded neighbours (zero inputs), as weaver's coordinate shift does
    assert idx[:, 20:].min() >= 20


# --- invariances (eval mode, tiny widths) ----------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_permutation_invariance(case: str) -> None:
    model = make(case)
    inputs = example_inputs(model, n=3, p=50, seed=1)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(2))
    permuted = {
        k: (v[:, :, perm] if k in ("points", "features", "mask") else v) for k, v in inputs.items()
    }
    if "sv_features" in inputs:
        sv_perm = torch.tensor([3, 1, 4, 0, 2])
        permuted["sv_features"] = inputs["sv_features"][:, :, sv_perm]
        permuted["sv_mask"] = inputs["sv_mask"][:, :, sv_perm]
    assert torch.allclose(run(model, inputs), run(model, permuted), atol=1e-5)


@pytest.mark.parametrize("case", list(CASES))
def test_extra_padding_does_not_change_output(case: str) -> None:
    model = make(case)
    inputs = example_inputs(model, n=3, p=50, seed=4)
    padded = dict(inputs)
    for k in ("points", "features", "mask"):
        padded[k] = F.pad(inputs[k], (0, 30))  # P 50 -> 80
    if "sv_features" in inputs:
        padded["sv_features"] = F.pad(inputs["sv_features"], (0, 3))
        padded["sv_mask"] = F.pad(inputs["sv_mask"], (0, 3))
    assert padded["mask"].shape[-1] == 80
    assert torch.allclose(run(model, inputs), run(model, padded), atol=1e-5)


@pytest.mark.parametrize("case", list(CASES))
def test_garbage_in_padded_slots_is_ignored(case: str) -> None:
    model = make(case)
    inputs = example_inputs(model, n=3, p=50, seed=5)
    gen = torch.Generator().manual_seed(6)
    dirty = dict(inputs)
    pad = 1.0 - inputs["mask"]
    assert pad.sum() > 0
    for k in ("points", "features"):
        dirty[k] = inputs[k] + 100.0 * torch.randn(inputs[k].shape, generator=gen) * pad
    if "sv_features" in inputs:
        sv_pad = 1.0 - inputs["sv_mask"]
        assert sv_pad.sum() > 0
        noise = torch.randn(inputs["sv_features"].shape, generator=gen)
        dirty["sv_features"] = inputs["sv_features"] + 100.0 * noise * sv_pad
    clean, out = run(model, inputs), run(model, dirty)
    assert torch.allclose(clean, out, atol=1e-5)
    # the garbage would matter if the mask were ignored: flip one padded slot to real
    dirty["mask"] = inputs["mask"].clone()
    dirty["mask"][-1, 0, -1] = 1.0
    assert not torch.allclose(run(model, dirty), clean, atol=1e-5)


def test_non_parametric_models_ignore_the_condition() -> None:
    model = make("particlenet")
    inputs = example_inputs(model, n=3, p=20)
    with_cond = run(model, {**inputs, "condition": torch.randn(3, 2)})
    assert torch.equal(run(model, inputs), with_cond)


@pytest.mark.parametrize("case", ["parametric", "parametric_pairs", "interaction_net_cond"])
def test_condition_changes_output_and_has_gradient(case: str) -> None:
    model = make(case)
    inputs = example_inputs(model, n=3, p=20, seed=7)
    cond = inputs.pop("condition").requires_grad_(True)
    out = model(**inputs, condition=cond)
    out.sum().backward()
    assert cond.grad is not None and cond.grad.abs().sum() > 0
    shifted = run(model, {**inputs, "condition": cond.detach() + 0.5})
    assert not torch.allclose(out.detach(), shifted, atol=1e-4)


def test_mass_aware_attention_depends_on_condition() -> None:
    """With trained (non-zero) modulation the attention output itself depends on the condition."""
    model = make("parametric")
    with torch.no_grad():
        for block in model.attention:
            torch.nn.init.normal_(block.modulation.generator.weight, std=0.5)
            torch.nn.init.normal_(block.out_proj.weight, std=0.5)
        torch.nn.init.zeros_(model.head_condition.weight)  # only attention sees the condition
    inputs = example_inputs(model, n=3, p=20, seed=8)
    a = run(model, inputs)
    b = run(model, {**inputs, "condition": inputs["condition"] + 1.0})
    assert not torch.allclose(a, b, atol=1e-4)


def test_reset_condition_modules_to_identity_removes_condition_dependence() -> None:
    model = make("parametric")
    with torch.no_grad():  # pretend training moved every condition pathway away from identity
        for name, param in model.named_parameters():
            if name in model.condition_parameter_names() or "out_proj" in name:
                param.normal_(std=0.3)
    inputs = example_inputs(model, n=3, p=20, seed=9)
    other = {**inputs, "condition": torch.randn(3, 2) * 2}
    assert not torch.allclose(run(model, inputs), run(model, other), atol=1e-4)
    model.reset_condition_modules_to_identity()
    assert torch.allclose(run(model, inputs), run(model, other), atol=1e-6)

    names = model.condition_parameter_names()
    assert any(n.startswith("mass_encoder.") for n in names)
    assert any(".modulation." in n for n in names)
    assert "head_condition.weight" in names and "pooled_film.generator.weight" in names
    assert not any(n.startswith(("edge_convs.", "head.")) or "qkv" in n for n in names)
    # a stage-1 per-mass model is the same class: state dicts align key for key
    twin = make("parametric")
    assert list(twin.state_dict()) == list(model.state_dict())
    model.reset_condition_modules_to_identity(attention_output=True)
    assert all(b.out_proj.weight.abs().sum() == 0 for b in model.attention)


# --- training mode --------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_training_step_produces_finite_gradients(case: str) -> None:
    model = make(case).train()
    inputs = example_inputs(model, n=4, p=16, seed=10)
    loss = F.cross_entropy(model(**inputs), torch.arange(4) % model.n_classes)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.isfinite().all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_positional_wrapper_matches_keyword_call_and_keeps_mode() -> None:
    model = make("interaction_net_cond")
    inputs = example_inputs(model, n=2, p=9)
    assert list(inputs) == input_names(model)
    wrapper = positional(model)
    assert not wrapper.training
    with torch.no_grad():
        assert torch.equal(wrapper(*inputs.values()), model(**inputs))


def test_cascade_features_are_the_three_body_mass_against_the_hypothesis() -> None:
    from paratag.models.kinematics import cascade_features

    # two back-to-back 45 GeV muons at eta 0 (m = 90 GeV, A at rest), a 20 GeV object at
    # eta 0.5 (massless, |p| = E = 20 cosh 0.5): m(A + k)^2 = (90 + E)^2 - E^2
    kin = torch.tensor([[[45.0, 0.0, 0.0], [45.0, 0.0, math.pi], [20.0, 0.5, 1.0], [0, 0, 0]]])
    mask = torch.tensor([[[1.0], [1.0], [1.0], [0.0]]])
    e = 20 * math.cosh(0.5)
    m3 = math.sqrt((90 + e) ** 2 - e**2)
    out = cascade_features(kin, mask, torch.tensor([90.0]), torch.tensor([130.0]))
    assert out.shape == (1, 4, 3)
    assert float(out[0, 2, 0]) == pytest.approx(math.log(m3 / 130.0), abs=1e-4)
    assert out[0, :2, 1].tolist() == pytest.approx([1.0, 1.0], abs=1e-4)  # the A daughters
    assert float(out[0, 2, 1]) == pytest.approx(0.0, abs=1e-6)
    assert out[0, :3, 2].tolist() == pytest.approx([1.0] * 3)  # a matching pair exists
    assert torch.all(out[0, 3] == 0)  # padded slot
    # a hypothesis far from every pair mass: no candidate
    far = cascade_features(kin, mask, torch.tensor([200.0]), torch.tensor([250.0]))
    assert float(far[0, 0, 2]) < 1e-6
    # the hypothesis moves the ratio, not the candidate
    other = cascade_features(kin, mask, torch.tensor([90.0]), torch.tensor([100.0]))
    assert float(other[0, 2, 0] - out[0, 2, 0]) == pytest.approx(math.log(1.3), abs=1e-4)


def test_cascade_needs_a_resonance_and_a_condition_parameter() -> None:
    from paratag.models.parametric import ParametricOptions

    with pytest.raises(ConfigError, match="needs a resonance"):
        ParametricOptions(cascade="mHc", pair_kinematics=None)
    cfg = ModelConfig(
        "parametric_particlenet",
        condition_names=COND,
        options={
            **TINY_PARAM,
            "pair_kinematics": {"log_pt_index": 0},
            "resonance": "mA",
            "cascade": "mX",
        },
    )
    with pytest.raises(ConfigError, match="cascade 'mX' is not a condition"):
        build_model(cfg, point_dims=2, feature_dims=6)


def test_every_graph_model_keeps_the_typed_contract() -> None:
    from paratag.models import GraphModel, input_names

    kw = {"point_dims": 2, "feature_dims": 5}
    for name, extra, cond in (
        ("particlenet", {}, ()),
        ("parametric_particlenet", {}, ("mHc", "mA")),
        ("interaction_net", {"sv_dims": 3}, ()),
    ):
        model = build_model(ModelConfig(name=name, condition_names=cond), **kw, **extra)
        assert isinstance(model, GraphModel), name
        assert ("condition" in input_names(model)) == model.uses_condition
        assert ("sv_features" in input_names(model)) == (model.sv_dims > 0)
    with pytest.raises(ConfigError, match="not a paratag graph model"):
        input_names(torch.nn.Linear(2, 2))
