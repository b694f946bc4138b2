"""DDP with the gloo backend: 2 CPU processes under torchrun match one process."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from importlib import resources

import pytest
import torch
import yaml
from paratag.training.checkpoint import load_checkpoint
from paratag.training.run import load_train_config, train

from paratag.data.synthetic import make_synthetic_shards


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def losses(run_dir):
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    return [
        (float(r["train_loss"]), float(r["val_loss"]), float(r["val_auc"]))
        for r in rows
        if r["stage"] == "stage1"
    ]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_ddp_two_cpu_processes_match_single_process(tmp_path):
    shards = tmp_path / "shards"
    make_synthetic_shards(shards, [(130, 90)], n_signal=400, n_background=300, seed=5)
    base = yaml.safe_load((resources.files("paratag") / "configs" / "train_tiny.yaml").read_text())
    base["grid"] = {"preset": None, "names": ["mHc", "mA"], "train": [[130, 90]]}
    base["stage1"].update(epochs=2, batch_size=128)
    base["data"]["shards"] = str(shards)
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(base))

    single = tmp_path / "single"
    train(load_train_config(cfg_path, run_dir=single), stages=[1])

    ddp_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "true", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc-per-node=2",
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        "-m",
        "paratag.cli",
        "train",
        str(cfg_path),
        "--run-dir",
        str(ddp_dir),
        "--stage",
        "1",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    summary = (ddp_dir / "summary.json").read_text()
    assert '"world_size": 2' in summary
    a, b = losses(single), losses(ddp_dir)
    assert len(a) == len(b) == 2
    for (tl_a, vl_a, auc_a), (tl_b, vl_b, auc_b) in zip(a, b, strict=True):
        assert tl_b == pytest.approx(tl_a, rel=0.02)
        assert vl_b == pytest.approx(vl_a, rel=0.01)
        assert auc_b == pytest.approx(auc_a, abs=0.02)
    wa = load_checkpoint(single / "stage1" / "mHc130_mA90" / "last.pt")["model_state"]
    wb = load_checkpoint(ddp_dir / "stage1" / "mHc130_mA90" / "last.pt")["model_state"]
    diff = max(float((wa[k] - wb[k]).abs().max()) for k in wa if wa[k].is_floating_point())
    assert diff < 0.05
