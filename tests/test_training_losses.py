from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from paratag.training.losses import (
    LossConfig,
    difficulty,
    distance_correlation,
    make_loss,
    weighted_cross_entropy,
)

from paratag.errors import ConfigError


def test_weighted_cross_entropy_is_the_weighted_mean():
    torch.manual_seed(0)
    logits, label, w = torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 1, 0]), torch.rand(6)
    ce = F.cross_entropy(logits, label, reduction="none")
    assert weighted_cross_entropy(logits, label, w) == pytest.approx(float((ce * w).mean()))
    assert weighted_cross_entropy(logits, label) == pytest.approx(float(ce.mean()))


def test_difficulty_formulas():
    mass = torch.tensor([[130.0, 90.0], [100.0, 95.0], [160.0, 85.0], [200.0, 90.0]])
    d = difficulty(mass, ("mHc", "mA"))
    assert float(d[0]) == pytest.approx(1 / (40 / 130 + 0.1))
    assert d[1] > d[0] > d[2]  # mA close to mHc counts more
    k = difficulty(mass, ("mHc", "mA"), "kinematic_margin")
    assert k[1] > k[0] > k[2] > k[3]  # the more off-shell the W*, the harder
    assert float(k[3]) == pytest.approx(
        1 / (float(torch.sigmoid(torch.tensor((200 - 90 - 80.379) / 10))) + 0.1), rel=1e-5
    )
    assert torch.equal(difficulty(mass, ("mHc", "mA"), "none"), torch.ones(4))
    with pytest.raises(ConfigError, match="needs conditions mHc and mA"):
        difficulty(mass[:, :1], ("mX",))


def test_physics_informed_loss_weights_hard_points():
    logits = torch.zeros(2, 2)
    batch = {
        "label": torch.tensor([0, 0]),
        "weight": torch.ones(2),
        "mass": torch.tensor([[130.0, 90.0], [100.0, 95.0]]),
    }
    plain = make_loss(LossConfig())(logits, batch)
    phys = make_loss(LossConfig(kind="physics_informed", normalise=False), ("mHc", "mA"))(
        logits, batch
    )
    d = difficulty(batch["mass"], ("mHc", "mA"))
    assert float(phys) == pytest.approx(float(plain) * float(d.mean()), rel=1e-6)
    norm = make_loss(LossConfig(kind="physics_informed"), ("mHc", "mA"), [(130, 90), (100, 95)])(
        logits, batch
    )
    assert float(norm) == pytest.approx(float(plain), rel=1e-6)  # normalised to mean difficulty 1


def test_distance_correlation():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(400, generator=g), torch.rand(400, generator=g)
    assert float(distance_correlation(x, y)) < 0.02
    assert float(distance_correlation(x, 3 * x + 1)) == pytest.approx(1.0, abs=1e-5)
    assert float(distance_correlation(x, x**2)) > 0.8
    w = torch.rand(400, generator=g)
    assert 0 <= float(distance_correlation(x, x**2, w)) <= 1.0 + 1e-6


def test_disco_term_decorrelates_the_score_from_the_mass():
    torch.manual_seed(0)
    mass = torch.rand(256) * 100
    label = torch.ones(256, dtype=torch.long)  # backgrounds only
    logits = torch.stack([mass / 50, torch.zeros(256)], 1).requires_grad_(True)
    batch = {"label": label, "weight": torch.ones(256), "spectator": mass}
    cfg = LossConfig(disco_lambda=10.0, disco_spectator="mll")
    loss = make_loss(cfg)(logits, batch)
    base = weighted_cross_entropy(logits, label)
    assert float((loss - base).detach()) > 5.0  # a mass-sculpting score pays the DisCo penalty
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="disco_spectator"):
        LossConfig(disco_lambda=1.0)
    with pytest.raises(ConfigError, match="spectator"):
        make_loss(cfg)(logits, {"label": label, "weight": torch.ones(256)})
