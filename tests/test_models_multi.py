"""ParametricParticleNet with a shared trunk: many hypotheses for the price of one trunk."""

from __future__ import annotations

import pytest
import torch

from paratag.config import ModelConfig
from paratag.errors import ConfigError
from paratag.models import build_model, example_inputs
from paratag.models.layers import masked_mean
from paratag.models.parametric import ParametricOptions, ParametricParticleNet

TINY = {
    "conv_params": [[4, [8, 8]], [4, [16, 16]]],
    "fc_params": [[16, 0.1], [8, 0.0]],
    "attention_heads": 2,
    "embed_dim": 8,
    "encoder_dims": [8],
}


def make(shared: bool = True, fusion: bool = False, trained: bool = True) -> ParametricParticleNet:
    """A tiny model whose condition pathways are non-zero (as after training)."""
    torch.manual_seed(3)
    cfg = ModelConfig(
        name="parametric_particlenet",
        condition_names=("mHc", "mA"),
        options={**TINY, "shared_trunk": shared, "use_fusion": fusion},
    )
    model = build_model(cfg, point_dims=2, feature_dims=5).eval()
    assert isinstance(model, ParametricParticleNet)
    if trained:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in model.condition_parameter_names() or "out_proj" in name:
                    p.normal_(0, 0.5)
    return model


def per_hypothesis(model: ParametricParticleNet, inputs: dict, conds: torch.Tensor) -> torch.Tensor:
    n = inputs["mask"].shape[0]
    rows = [
        model(inputs["points"], inputs["features"], inputs["mask"], c.expand(n, -1)) for c in conds
    ]
    return torch.stack(rows, dim=1)


@pytest.mark.parametrize(("shared", "fusion"), [(True, False), (True, True), (False, True)])
def test_forward_hypotheses_equals_forward_per_hypothesis(shared: bool, fusion: bool) -> None:
    model = make(shared, fusion)
    inputs = example_inputs(model, n=5, p=12, seed=1)
    conds = torch.randn(4, 2)
    with torch.no_grad():
        multi = model.forward_hypotheses(
            inputs["points"], inputs["features"], inputs["mask"], conds
        )
        ref = per_hypothesis(model, inputs, conds)
    assert multi.shape == (5, 4, 2)
    torch.testing.assert_close(multi, ref, atol=1e-5, rtol=0)
    assert (ref[:, 0] - ref[:, 1]).abs().max() > 1e-3  # the hypotheses really differ


def test_shared_trunk_is_condition_independent_and_attention_matches_block() -> None:
    model = make(fusion=True)
    assert len(model.attention) == 1  # one attention block, on the trunk output
    inputs = example_inputs(model, n=4, p=10, seed=2)
    pts, fts, mask, cond = inputs.values()
    with torch.no_grad():
        trunk = model.trunk(pts, fts, mask)
        # the pooled-attention shortcut equals the plain block followed by pooling
        m = mask.transpose(1, 2)
        emb = model.mass_encoder(cond)
        block = model.attention[0](trunk, m, emb)
        expected = model.pooled_film(masked_mean(block, m), emb)
        # values are O(30): compare relative to them as well (float32 summation order)
        torch.testing.assert_close(
            model.embed(pts, fts, mask, cond), expected, atol=1e-5, rtol=1e-6
        )
    assert trunk.shape == (4, 10, 128)  # fusion width
    # no trunk parameter is a condition parameter
    names = model.condition_parameter_names()
    assert not any(n.startswith(("edge_convs.", "fusion.", "bn_fts.")) for n in names)


def test_stage2_reset_makes_shared_trunk_model_condition_free() -> None:
    model = make()
    inputs = example_inputs(model, n=3, p=10, seed=4)
    other = {**inputs, "condition": torch.randn(3, 2) * 2}
    with torch.no_grad():
        assert not torch.allclose(model(**inputs), model(**other), atol=1e-4)
        model.reset_condition_modules_to_identity()
        torch.testing.assert_close(model(**inputs), model(**other), atol=1e-6, rtol=0)
    names = model.condition_parameter_names()
    assert "attention.0.modulation.generator.weight" in names
    assert "head_condition.weight" in names and any(n.startswith("mass_encoder.") for n in names)
    model.reset_condition_modules_to_identity(attention_output=True)
    assert model.attention[0].out_proj.weight.abs().sum() == 0
    # stage-1 and stage-3 models with the same options align key for key
    assert list(make(trained=False).state_dict()) == list(model.state_dict())


def test_shared_trunk_trains_and_options_validate() -> None:
    model = make().train()
    inputs = example_inputs(model, n=4, p=10, seed=5)
    loss = torch.nn.functional.cross_entropy(model(**inputs), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert ParametricOptions().shared_trunk is False  # opt-in
    with pytest.raises(ConfigError, match="not divisible"):
        ParametricOptions(
            conv_params=((4, (8, 8)), (4, (10,))), shared_trunk=True, use_fusion=False
        )
    with pytest.raises(ConfigError, match="shared_trunk"):
        make(shared=False).trunk(*list(inputs.values())[:3])
