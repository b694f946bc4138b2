"""Optuna search: stage-1-sized trials, a resumable study database, best parameters written."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml
from paratag.training.run import load_train_config
from paratag.training.tune import TuneConfig, apply_params, tune
from typer.testing import CliRunner

from paratag.cli import app
from paratag.data.synthetic import make_synthetic_shards
from paratag.errors import ConfigError


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_apply_params_changes_lr_k_widths_and_dropout():
    cfg = load_train_config("tiny")
    opts = dict(cfg.model.options)
    new = apply_params(cfg, {"lr": 0.003, "k": 6, "width_scale": 2.0, "dropout": 0.25}, opts)
    assert new.stage1.lr == 0.003
    assert new.model.options["conv_params"] == [[6, [32, 32]]]
    assert new.model.options["fc_params"] == [[16, 0.25]]
    assert cfg.model.options["conv_params"] == [[4, [16, 16]]]  # the original is untouched


def test_tune_runs_and_resumes_from_the_study_database(tmp_path):
    shards = tmp_path / "shards"
    make_synthetic_shards(
        shards, [(100, 85), (130, 90), (160, 95)], n_signal=150, n_background=150, seed=2
    )
    cfg = load_train_config("tiny", shards=shards, run_dir=tmp_path / "run")
    cfg = dataclasses.replace(cfg, stage1=dataclasses.replace(cfg.stage1, batch_size=64))
    tcfg = TuneConfig(n_trials=2, epochs=1, k=(3, 5))
    first = tune(cfg, tcfg)
    # one epoch of a tiny model: any AUC is possible, but it is an AUC and the best of the trials
    assert first["n_trials"] == 2 and 0.0 <= first["best_value"] <= 1.0
    assert set(first["best_params"]) == {"lr", "k", "width_scale", "dropout"}
    out = tmp_path / "run" / "tune"
    assert (out / "study.db").is_file() and (
        out / "trial_1" / "stage1" / "mHc100_mA85" / "model.pt"
    ).is_file()
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["params"] == first["best_params"] and "conv_params" in best["model"]["options"]
    rows = [line.split(",") for line in (out / "trials.csv").read_text().splitlines()[1:]]
    assert max(float(r[2]) for r in rows) == pytest.approx(first["best_value"])
    result = CliRunner().invoke(
        app,
        [
            "tune",
            "tiny",
            "--shards",
            str(shards),
            "--run-dir",
            str(tmp_path / "run"),
            "--trials",
            "1",
            "--epochs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "(3 trials)" in result.output  # the study resumed: 2 earlier trials + 1 new
    assert len((out / "trials.csv").read_text().splitlines()) == 1 + 3
    with pytest.raises(ConfigError, match="other choices"):
        tune(cfg, dataclasses.replace(tcfg, n_trials=1, width_scale=(1.0, 3.0)))
