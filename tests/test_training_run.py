"""The tiny three-stage run on synthetic-but-physical shards (the issue's acceptance test)."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from paratag.training.checkpoint import load_checkpoint, load_model
from paratag.training.run import load_train_config, train
from paratag.training.schedule import average_state_dicts
from typer.testing import CliRunner

from paratag.cli import app
from paratag.conditions import point_name
from paratag.data.synthetic import make_synthetic_shards
from paratag.errors import ConfigError, InputFileError, UnknownMassPointError

POINTS = [(100, 85), (130, 90), (160, 95), (145, 90)]
TRAIN = [(100, 85), (130, 90), (160, 95)]


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    make_synthetic_shards(out, POINTS, n_signal=300, n_background=400, seed=11)
    return out


@pytest.fixture(scope="module")
def run_dir(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    cfg = load_train_config("tiny", shards=shards, run_dir=out)
    train(cfg)
    return out


def test_run_directory_layout(run_dir):
    assert (run_dir / "config.yaml").is_file()
    for p in TRAIN:
        assert (run_dir / "stage1" / point_name(p, ("mHc", "mA")) / "model.pt").is_file()
        assert (run_dir / "stage1" / point_name(p, ("mHc", "mA")) / "last.pt").is_file()
    for f in ("stage2/model.pt", "stage3/model.pt", "stage3/last.pt"):
        assert (run_dir / f).is_file(), f
    assert list((run_dir / "tensorboard" / "stage3" / "all").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    assert list(rows[0]) == [
        "stage",
        "point",
        "epoch",
        "train_loss",
        "val_loss",
        "val_auc",
        "lr",
        "time_s",
    ]
    assert sum(r["stage"] == "stage1" for r in rows) == 3 * 2
    assert [r["epoch"] for r in rows if r["stage"] == "stage3" and r["point"] == "all"] == [
        "0",
        "1",
        "2",
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["stage1"]["points"]) == {"mHc100_mA85", "mHc130_mA90", "mHc160_mA95"}
    assert summary["stage3"]["roles"]["mHc145_mA90"] == "validation"
    assert all(summary[s]["time_s"] > 0 for s in ("stage1", "stage2", "stage3"))
    resolved = load_train_config(run_dir / "config.yaml")  # the resolved config round-trips
    assert resolved.model.condition_mean == (130.0, 90.0) and resolved.model.condition_names == (
        "mHc",
        "mA",
    )
    assert resolved.stage3.curriculum == load_train_config("tiny").stage3.curriculum


def test_stage2_starts_from_the_averaged_stage1_weights(run_dir):
    sds = [
        load_checkpoint(run_dir / "stage1" / point_name(p, ("mHc", "mA")) / "model.pt")[
            "model_state"
        ]
        for p in TRAIN
    ]
    stage2 = load_checkpoint(run_dir / "stage2" / "model.pt")
    reset = set(stage2["info"]["reset_parameters"])
    assert reset and any(n.startswith("mass_encoder.") for n in reset)
    avg = average_state_dicts(sds)
    for name, value in stage2["model_state"].items():
        if name in reset or not value.is_floating_point():
            continue
        assert torch.allclose(value, avg[name], atol=1e-6), name
    assert not torch.allclose(sds[0]["head_input.weight"], sds[1]["head_input.weight"])
    # FiLM generators and the head's condition input are zero: identity conditioning
    assert torch.count_nonzero(stage2["model_state"]["head_condition.weight"]) == 0
    stage3 = load_checkpoint(run_dir / "stage3" / "model.pt")
    assert stage3["info"]["initialised_from"].endswith("stage2/model.pt")


def test_stage3_separates_signal_at_every_point(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    s3 = summary["stage3"]
    assert s3["best_val_auc"] > 0.85
    assert set(s3["val_auc_per_point"]) == {
        "mHc100_mA85",
        "mHc130_mA90",
        "mHc160_mA95",
        "mHc145_mA90",
    }
    assert min(s3["val_auc_per_point"].values()) > 0.75
    assert [c["first_epoch"] for c in s3["curriculum"]] == [0, 1, 2]
    assert [len(c["points"]) for c in s3["curriculum"]] == [1, 2, 3]


def test_load_model_rebuilds_the_checkpoint(run_dir, shards):
    model, info = load_model(run_dir / "stage3" / "model.pt")
    assert info["condition_names"] == ["mHc", "mA"] and info["input_dims"] == {
        "point_dims": 2,
        "feature_dims": 11,
    }
    assert info["class_names"] == ["signal", "TTbar+WZ"] and info["preset"]["name"] == "event"
    assert info["model_config"]["name"] == "parametric_particlenet" and not model.training
    from paratag.shards import read_manifest, read_shard

    man = read_manifest(shards)
    sig = read_shard(shards / man["datasets"][1]["files"][0]["path"], man["shapes"])
    cond = model.normalise_condition(torch.tensor(sig["condition"][:5]))
    with torch.no_grad():
        out = model(
            torch.tensor(sig["points"][:5]),
            torch.tensor(sig["features"][:5]),
            torch.tensor(sig["mask"][:5]),
            cond,
        )
    assert out.shape == (5, 2) and torch.isfinite(out).all()


def test_resume_equals_uninterrupted_and_same_seed_same_weights(run_dir, shards, tmp_path):
    other = tmp_path / "cut"
    other.mkdir()
    for stage in ("stage1", "stage2"):
        shutil.copytree(run_dir / stage, other / stage)
    cfg = load_train_config("tiny", shards=shards, run_dir=other)

    def kill(epoch, _row):
        if epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(cfg, stages=[3], callbacks=[kill])
    assert load_checkpoint(other / "stage3" / "last.pt")["info"]["epoch"] == 1
    torch.manual_seed(99)
    np.random.seed(99)  # noqa: NPY002 - a restarted process has arbitrary global RNG state
    train(cfg, stages=[3], resume=True)
    ref = load_checkpoint(run_dir / "stage3" / "last.pt")["model_state"]
    got = load_checkpoint(other / "stage3" / "last.pt")["model_state"]
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    ref_best = load_checkpoint(run_dir / "stage3" / "model.pt")["model_state"]
    got_best = load_checkpoint(other / "stage3" / "model.pt")["model_state"]
    assert all(torch.equal(ref_best[k], got_best[k]) for k in ref_best)


def test_cli_reruns_one_stage_alone(run_dir, shards, tmp_path):
    other = tmp_path / "rerun"
    shutil.copytree(run_dir / "stage1", other / "stage1")
    result = CliRunner().invoke(
        app, ["train", "tiny", "--shards", str(shards), "--run-dir", str(other), "--stage", "2"]
    )
    assert result.exit_code == 0, result.output
    a = load_checkpoint(run_dir / "stage2" / "model.pt")["model_state"]
    b = load_checkpoint(other / "stage2" / "model.pt")["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (other / "stage3").exists()
    summary = json.loads((other / "summary.json").read_text())
    assert set(summary) >= {"stage2"} and "stage1" not in summary


def test_user_errors_are_clear(shards, tmp_path):
    cfg = load_train_config("tiny", shards=shards, run_dir=tmp_path / "x")
    with pytest.raises(InputFileError, match="stage-1 models"):
        train(cfg, stages=[2])
    with pytest.raises(ConfigError, match="data.shards is empty"):
        train(load_train_config("tiny", run_dir=tmp_path / "y"))
    import dataclasses

    from paratag.conditions import GridConfig

    bad = dataclasses.replace(cfg, grid=GridConfig(preset="charged_higgs"))
    with pytest.raises(UnknownMassPointError, match="mHc115_mA90"):
        train(bad, stages=[1])
    with pytest.raises(ConfigError, match="nope"):
        load_train_config("nope")
    multi = tmp_path / "multi"
    make_synthetic_shards(multi, TRAIN, n_signal=20, n_background=20, labels={"WZ": 2})
    with pytest.raises(ConfigError, match=r"labels \[0, 1, 2\].*data.binary"):
        train(load_train_config("tiny", shards=multi, run_dir=tmp_path / "m"), stages=[1])
