"""The hypothesis ratio: partners, its signal-only sample, the combined model and its stage."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from paratag.training.ratio import combined_config
from paratag.training.run import load_train_config, train

from paratag.conditions import GridConfig, MassGrid
from paratag.config import ModelConfig, from_dict
from paratag.data.dataset import ShardStore
from paratag.data.ratio import hypothesis_ratio_dataset, ratio_partners
from paratag.data.selection import DataConfig, SampleBuilder
from paratag.data.synthetic import make_synthetic_shards
from paratag.errors import ConfigError
from paratag.models import build_model, example_inputs
from paratag.models.io import load_model
from paratag.run_config import RatioConfig

NAMES = ("mHc", "mA")
# two pairs that share mA and differ in mHc, and one point alone at its mA
TRAIN = ((100, 85), (160, 85), (110, 95), (160, 95), (130, 90))
POINTS = [*TRAIN, (130, 85)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    make_synthetic_shards(out, POINTS, n_signal=500, n_background=600, seed=5)
    return out


def _builder(shards) -> SampleBuilder:
    grid = MassGrid.from_config(
        GridConfig(preset=None, names=NAMES, train=TRAIN, validation=((130, 85),))
    )
    store = ShardStore(shards, cache_size=4)
    return SampleBuilder(
        store, grid, DataConfig(shards=str(shards)), mean=(130, 90), std=(20, 5), seed=0
    )


def test_partners_share_every_parameter_outside_vary() -> None:
    partners = ratio_partners(TRAIN, NAMES, ("mHc",))
    assert partners == {0: [1], 1: [0], 2: [3], 3: [2], 4: []}
    assert ratio_partners(TRAIN, NAMES, ("mHc", "mA"))[4] == [0, 1, 2, 3]
    for bad in ((), ("mH",)):
        with pytest.raises(ConfigError, match="ratio.vary"):
            ratio_partners(TRAIN, NAMES, bad)


def test_ratio_sample_is_signal_at_its_hypothesis_against_its_partners(shards) -> None:
    b = _builder(shards)
    ds = hypothesis_ratio_dataset(b, list(TRAIN), "train", ("mHc",))
    table = b.store.table
    assert np.all(table["label"][ds.rows] == 0)  # signal only
    truth = np.asarray(table["condition"][ds.rows])
    right = ds.labels == 0
    # class 0: every event at its own hypothesis; class 1: at its partner's (same mA)
    assert np.array_equal(ds.condition[right], truth[right])
    assert np.all(ds.condition[~right, 1] == truth[~right, 1])
    assert np.all(ds.condition[~right, 0] != truth[~right, 0])
    # the lone point (130, 90) has no partner and is not in the sample
    assert not np.any(np.all(truth == (130, 90), axis=1))
    # at every hypothesis the two classes weigh the same
    for p in TRAIN[:4]:
        at = np.all(ds.condition == np.asarray(p, np.float32), axis=1)
        assert ds.weight[at & right].sum() == pytest.approx(ds.weight[at & ~right].sum(), rel=1e-5)
    with pytest.raises(ConfigError, match="nothing to learn"):
        hypothesis_ratio_dataset(b, [TRAIN[0], TRAIN[4]], "train", ("mHc",))


def test_ratio_config_rejects_what_it_cannot_train() -> None:
    with pytest.raises(ConfigError, match="ratio.vary is empty"):
        RatioConfig(vary=())
    with pytest.raises(ConfigError, match="self_weight"):
        RatioConfig(self_weight=1.0)
    with pytest.raises(ConfigError, match="base_condition: 'median' is not one of"):
        from_dict(RatioConfig, {"base_condition": "median"})


def _combined(scale: float, **options: object) -> torch.nn.Module:
    part = {"name": "parametric_particlenet", "options": {"conv_params": [[4, [8, 8]]]}}
    cfg = ModelConfig(
        name="hypothesis_ratio",
        n_classes=3,
        condition_names=NAMES,
        condition_mean=(130, 90),
        condition_std=(20, 5),
        options={"base": part, "scale": scale, **options},
    )
    torch.manual_seed(0)
    return build_model(cfg, point_dims=2, feature_dims=11).eval()


def test_combined_model_multiplies_the_signal_odds_by_the_ratio() -> None:
    model = _combined(1.0)
    inputs = tuple(example_inputs(model, n=6, p=10).values())
    with torch.no_grad():
        logits = model(*inputs)
        base = model.base(*inputs)
        delta = model.log_ratio(*inputs)
    assert logits.shape == (6, 3) and delta.abs().min() > 0
    # odds of signal against every background class: base odds x exp(log-ratio)
    for c in (1, 2):
        torch.testing.assert_close(
            logits[:, 0] - logits[:, c], base[:, 0] - base[:, c] + delta, rtol=1e-5, atol=1e-5
        )
    torch.testing.assert_close(logits[:, 1:], base[:, 1:])
    zero = _combined(0.0)
    zero.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(zero(*inputs), base)
    with pytest.raises(ConfigError, match="needs the condition"):
        model(*inputs[:3])
    with pytest.raises(ConfigError, match="unknown keys"):
        build_model(
            ModelConfig(
                name="hypothesis_ratio",
                condition_names=NAMES,
                options={"base": {"name": "particlenet", "layers": 2}},
            ),
            point_dims=2,
            feature_dims=11,
        )


def test_base_fixed_holds_the_stage3_factor_at_the_mean_of_those_parameters(tmp_path) -> None:
    """``base_fixed: [mHc]``: only the ratio moves the score with mHc; mA still reaches both."""
    model = _combined(1.0)
    fixed = _combined(1.0, base_fixed=["mHc"])
    fixed.load_state_dict(model.state_dict())
    points, features, mask, cond = example_inputs(model, n=6, p=10).values()
    at_mean, other_mhc, other_ma = cond.clone(), cond.clone(), cond.clone()
    at_mean[:, 0] = 0.0  # normalised: the training mean of mHc
    other_mhc[:, 0] += 1.5
    other_ma[:, 1] += 1.5
    with torch.no_grad():
        expected = model.base(points, features, mask, at_mean)
        expected[:, 0] += model.log_ratio(points, features, mask, cond)
        torch.testing.assert_close(fixed(points, features, mask, cond), expected)
        base = [fixed.base(points, features, mask, c * fixed.base_mask) for c in (cond, other_mhc)]
        torch.testing.assert_close(base[0], base[1])
        assert not torch.allclose(
            model(points, features, mask, other_mhc), model(*(points, features, mask, cond))
        )
        moved = fixed(points, features, mask, other_mhc) - fixed(points, features, mask, cond)
        assert moved[:, 0].abs().max() > 0 and moved[:, 1:].abs().max() == 0  # the ratio alone
        assert (fixed(points, features, mask, other_ma) - fixed(points, features, mask, cond))[
            :, 1:
        ].abs().max() > 0
    with pytest.raises(ConfigError, match=r"base_fixed \['mass'\] are not condition parameters"):
        _combined(1.0, base_fixed=["mass"])
    from paratag.export import export_model

    res = export_model(fixed, "event", tmp_path, class_names=["sig", "a", "b"], check=True)
    assert res.parity is not None and res.parity.ok  # one ONNX graph, the same numbers
    plain = ModelConfig(name="parametric_particlenet", condition_names=NAMES)
    assert combined_config(plain, RatioConfig(base_condition="mean")).options["base_fixed"] == [
        "mHc"
    ]
    assert "base_fixed" not in combined_config(plain, RatioConfig()).options


@pytest.fixture(scope="module")
def ratio_run(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "ratio"
    cfg = load_train_config("tiny", shards=shards, run_dir=out)
    grid = dataclasses.replace(
        cfg.grid, train=TRAIN, validation=((130, 85),), interpolation=(), extrapolation=()
    )
    cfg = dataclasses.replace(
        cfg, grid=grid, ratio=RatioConfig(enabled=True, epochs=6, batch_size=128, lr=2e-3)
    )
    summary = train(cfg)
    return out, summary


def _score(model: torch.nn.Module, b: SampleBuilder, point, hypothesis) -> np.ndarray:
    """Signal score of the test-fold signal of ``point`` at ``hypothesis``."""
    rows = b.point_rows(point, "test")
    batch = b.store.gather(rows, ("points", "features", "mask"))
    hyp = torch.tensor([hypothesis], dtype=torch.float32).expand(len(rows), 2)
    with torch.no_grad():
        logits = model(
            *(torch.as_tensor(batch[k]) for k in ("points", "features", "mask")),
            model.normalise_condition(hyp),
        )
    return torch.softmax(logits, 1)[:, 0].numpy()


def _mass_awareness(model: torch.nn.Module, b: SampleBuilder, i, j) -> float:
    """MA(i, j): AUC of i vs j at hypothesis i, plus j vs i at j, minus 1."""
    from sklearn.metrics import roc_auc_score

    total = -1.0
    for first, second in ((i, j), (j, i)):
        s1, s2 = _score(model, b, first, first), _score(model, b, second, first)
        y = np.r_[np.ones(len(s1)), np.zeros(len(s2))]
        total += float(roc_auc_score(y, np.r_[s1, s2]))
    return total


def test_ratio_stage_delivers_a_model_that_tells_same_ma_signals_apart(ratio_run, shards) -> None:
    out, summary = ratio_run
    assert summary["stage4"]["train_events"] > 0 and summary["stage4"]["vary"] == ["mHc"]
    model, info = load_model(out / "ratio" / "model.pt")
    stage3, _ = load_model(out / "stage3" / "model.pt")
    assert info["model_config"]["name"] == "hypothesis_ratio"
    b = _builder(shards)
    for pair in (((100, 85), (160, 85)), ((110, 95), (160, 95))):
        with_ratio, without = _mass_awareness(model, b, *pair), _mass_awareness(stage3, b, *pair)
        print(pair, with_ratio, without)
        assert with_ratio > 0.3 and with_ratio > without + 0.1


def test_the_run_delivers_the_ratio_model_until_stage3_changes(ratio_run, shards, tmp_path) -> None:
    import shutil

    from paratag.evaluate.run import evaluate_run
    from paratag.export import export_run
    from paratag.models.io import delivered_checkpoint

    out, _ = ratio_run
    assert delivered_checkpoint(out) == out / "ratio" / "model.pt"
    # the evaluation scores the delivered model and says which one it was
    evaluate_run(out, shards, tmp_path / "eval", n_boot=0, progress=False)
    info = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert info["model_stage"] == "ratio"
    # exported as one ONNX graph that onnxruntime runs like torch
    result = export_run(out, tmp_path / "export", check=True)
    assert result.parity is not None and result.parity.ok
    # a stage 3 retrained after the ratio makes the ratio model stale
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert delivered_checkpoint(copy) == copy / "ratio" / "model.pt"  # copies keep it current
    with open(copy / "stage3" / "model.pt", "ab") as f:
        f.write(b"retrained")
    assert delivered_checkpoint(copy) == copy / "stage3" / "model.pt"


def test_ratio_stage_is_skipped_without_partners(ratio_run, tmp_path) -> None:
    import shutil

    from paratag.models.io import delivered_checkpoint

    out, _ = ratio_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    cfg = load_train_config(copy / "config.yaml")
    lone = ((100, 85), (110, 95), (130, 90))  # no two share mA
    cfg = dataclasses.replace(
        cfg, run_dir=str(copy), grid=dataclasses.replace(cfg.grid, train=lone)
    )
    summary = train(cfg, stages=[4])
    assert "no two training points differ only in ['mHc']" in summary["stage4"]["skipped"]
    # the earlier ratio model no longer matches the config: stage 3 is delivered
    assert delivered_checkpoint(copy) == copy / "stage3" / "model.pt"
