from __future__ import annotations

import pytest
import torch
from paratag.training.schedule import (
    CurriculumPhase,
    Stage1Config,
    Stage3Config,
    average_state_dicts,
    averaging_weights,
    curriculum_phases,
    init_from_average,
    rank_points,
)

from paratag.config import ModelConfig, from_dict
from paratag.errors import ConfigError
from paratag.models import build_model

TRAIN = [
    (100.0, 85.0),
    (115.0, 90.0),
    (130.0, 85.0),
    (130.0, 90.0),
    (130.0, 95.0),
    (145.0, 90.0),
    (160.0, 95.0),
]


def test_stage_defaults_follow_the_plan():
    s1, s3 = Stage1Config(), Stage3Config()
    assert (s1.epochs, s1.optimizer, s1.lr, s1.batch_size) == (20, "adam", 1e-3, 512)
    assert (s3.epochs, s3.optimizer, s3.lr, s3.weight_decay, s3.scheduler, s3.batch_size) == (
        50,
        "adamw",
        1e-4,
        0.01,
        "cosine",
        1024,
    )
    assert [(p.epochs, p.masses) for p in s3.curriculum] == [
        (10, "easy"),
        (20, "medium"),
        (20, "all"),
    ]
    s3y = from_dict(Stage3Config, {"epochs": 6, "curriculum": [{"epochs": 2, "masses": "easy"}]})
    assert s3y.curriculum == (CurriculumPhase(2, "easy"),) and s3y.lr == 1e-4
    with pytest.raises(ConfigError):
        from_dict(Stage3Config, {"curriculum": [{"epochs": 2, "masses": "hard"}]})


def test_points_are_ranked_by_stage1_auc_then_by_mass_gap():
    by_gap = rank_points(TRAIN, ("mHc", "mA"))
    assert by_gap[0] == (160.0, 95.0)
    gaps = [(m - a) / m for m, a in by_gap]
    assert gaps == sorted(gaps, reverse=True)
    aucs = {p: 0.9 for p in TRAIN} | {(100.0, 85.0): 0.99}
    assert rank_points(TRAIN, ("mHc", "mA"), aucs)[0] == (100.0, 85.0)


def test_curriculum_goes_easy_medium_all():
    ranked = rank_points(TRAIN, ("mHc", "mA"))
    phases = curriculum_phases(Stage3Config(), ranked)
    assert [e for e, _ in phases] == [0, 10, 30]
    assert [len(p) for _, p in phases] == [3, 5, 7]
    assert phases[0][1] == ranked[:3]
    short = curriculum_phases(Stage3Config(epochs=12), ranked)
    assert [e for e, _ in short] == [0, 10]  # the "all" phase would start after the last epoch
    assert curriculum_phases(Stage3Config(curriculum_enabled=False), ranked) == [(0, ranked)]
    assert len(curriculum_phases(Stage3Config(), ranked[:15])[-1][1]) == 7


def test_averaging_weights():
    assert averaging_weights([0.9, 0.8]) == [0.5, 0.5]
    w = averaging_weights([0.9, 0.7], "auc_weighted")
    assert w == pytest.approx([2 / 3, 1 / 3])
    with pytest.raises(ConfigError):
        averaging_weights([0.9], "median")


def test_stage2_averages_shared_weights_and_resets_condition_pathways():
    cfg = ModelConfig(
        name="parametric_particlenet",
        condition_names=("mHc", "mA"),
        options={
            "conv_params": [[3, [8, 8]]],
            "fc_params": [[8, 0.0]],
            "use_fusion": False,
            "encoder_dims": [4],
            "embed_dim": 4,
            "attention_heads": 2,
        },
    )
    models = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        models.append(build_model(cfg, point_dims=2, feature_dims=3))
    sds = [m.state_dict() for m in models]
    avg = average_state_dicts(sds, [0.2, 0.3, 0.5])
    for key, value in avg.items():
        if value.is_floating_point():
            expected = 0.2 * sds[0][key] + 0.3 * sds[1][key] + 0.5 * sds[2][key]
            assert torch.allclose(value, expected, atol=1e-6), key
    torch.manual_seed(9)
    target = build_model(cfg, point_dims=2, feature_dims=3)
    reset = init_from_average(target, sds)
    assert reset and set(reset) == set(target.condition_parameter_names())
    got = target.state_dict()
    plain = average_state_dicts(sds)
    for name, value in got.items():
        if name not in reset and value.is_floating_point():
            assert torch.allclose(value, plain[name], atol=1e-6), name
    target.eval()
    pts, fts = torch.randn(4, 2, 6), torch.randn(4, 3, 6)
    mask = torch.ones(4, 1, 6)
    a = target(pts, fts, mask, torch.zeros(4, 2))
    b = target(pts, fts, mask, torch.randn(4, 2) * 3)
    assert torch.allclose(a, b, atol=1e-5)  # identity conditioning: the condition has no effect yet
    other = build_model(
        ModelConfig(name="parametric_particlenet", condition_names=("mHc", "mA")),
        point_dims=2,
        feature_dims=3,
    )
    with pytest.raises(ConfigError, match="different architecture"):
        average_state_dicts([sds[0], other.state_dict()])
