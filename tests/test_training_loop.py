"""The generic fit loop on a non-graph model: pluggable forward/loss/score, resume, early stopping."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from paratag.training.checkpoint import load_checkpoint
from paratag.training.loop import FitConfig, evaluate, fit
from paratag.training.monitor import MetricsLogger
from torch import nn


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train fastest single-threaded; restore the process setting afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Interrupted(Exception):
    pass


def make_batches(seed: int, n_batches: int = 6, n: int = 64):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        y = torch.randint(0, 2, (n,), generator=g)
        x = torch.randn(n, 4, generator=g) + y[:, None] * 1.5
        out.append(
            {"x": x, "label": y, "weight": torch.ones(n), "group": y * 0 + torch.arange(n) % 2}
        )
    return out


class Loader:
    """A plain iterable with set_epoch: reshuffles batches deterministically per epoch."""

    def __init__(self, batches):
        self.batches, self.epoch = batches, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(
            len(self.batches), generator=torch.Generator().manual_seed(self.epoch)
        )
        return iter([self.batches[i] for i in order])


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))


FORWARD = staticmethod(lambda model, batch: model(batch["x"]))


def run(tmp, epochs=5, callbacks=(), resume=False, **cfg):
    model = mlp()
    res = fit(
        model,
        Loader(make_batches(0)),
        make_batches(1, 2),
        FitConfig(epochs=epochs, lr=0.01, scheduler="cosine", **cfg),
        forward_fn=lambda m, b: m(b["x"]),
        loss_fn=lambda out, b: F.cross_entropy(out, b["label"]),
        score_fn=lambda out: out.softmax(1)[:, 1],
        signal_label=1,
        device="cpu",
        checkpoint_dir=tmp,
        checkpoint_info={"name": "mlp"},
        resume=resume,
        callbacks=callbacks,
        logger=MetricsLogger(tmp / "log"),
    )
    return model, res


def test_fit_trains_any_model_with_pluggable_pieces(tmp_path):
    model, res = run(tmp_path / "a")
    assert res.epochs_run == 5 and len(res.history) == 5
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.best_metric == min(h["val_loss"] for h in res.history)
    assert res.history[res.best_epoch]["val_auc"] > 0.8
    assert res.best_group_auc and set(res.best_group_auc) == {0, 1}
    best = load_checkpoint(tmp_path / "a" / "model.pt")
    assert best["info"]["name"] == "mlp" and best["info"]["epoch"] == res.best_epoch
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in best["model_state"].items())
    lines = (tmp_path / "a" / "log" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "stage,point,epoch,train_loss,val_loss,val_auc,lr,time_s"
    assert sum(1 for line in lines if line.startswith("fit,all,")) == 5


def test_resume_equals_uninterrupted(tmp_path):
    ref, _ = run(tmp_path / "ref")
    ref_last = load_checkpoint(tmp_path / "ref" / "last.pt")["model_state"]

    def kill(epoch, _row):
        if epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        run(tmp_path / "cut", callbacks=[kill])
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["info"]["epoch"] == 2
    torch.manual_seed(1234)  # the process RNG after a restart is arbitrary
    resumed, res = run(tmp_path / "cut", resume=True)
    last = load_checkpoint(tmp_path / "cut" / "last.pt")["model_state"]
    assert all(torch.equal(last[k], ref_last[k]) for k in ref_last)
    assert all(
        torch.equal(a, b)
        for a, b in zip(resumed.state_dict().values(), ref.state_dict().values(), strict=True)
    )
    assert res.epochs_run == 5 and len(res.history) == 5
    lines = (tmp_path / "cut" / "log" / "metrics.csv").read_text().splitlines()
    epochs = [line.split(",")[2] for line in lines if line.startswith("fit,all,")]
    assert epochs == ["0", "1", "2", "3", "4"]  # rows of the interrupted run were not duplicated
    assert len(lines) == 1 + 3 * 5  # joint rows plus one row per validation group


def test_early_stopping_and_no_validation(tmp_path):
    model = mlp()
    res = fit(
        model,
        Loader(make_batches(0)),
        make_batches(1, 2),
        FitConfig(epochs=30, lr=0.05, patience=2, monitor="val_auc", min_delta=0.5),
        forward_fn=lambda m, b: m(b["x"]),
        score_fn=lambda out: out.softmax(1)[:, 1],
        signal_label=1,
        device="cpu",
    )
    assert res.stopped_early and res.epochs_run == 3  # no AUC gain of 0.5 is possible after epoch 0
    res2 = fit(
        mlp(),
        Loader(make_batches(0)),
        None,
        FitConfig(epochs=2),
        forward_fn=lambda m, b: m(b["x"]),
        device="cpu",
    )
    assert math.isnan(res2.history[0]["val_auc"]) and res2.best_metric == min(
        h["train_loss"] for h in res2.history
    )
    ev = evaluate(model, make_batches(2, 1), forward_fn=lambda m, b: m(b["x"]), score_fn=None)
    assert math.isnan(ev.auc) and ev.loss > 0


@pytest.mark.skipif(
    not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU has no oneDNN bfloat16"
)
def test_cpu_amp_trains_in_bfloat16_with_float32_weights(tmp_path):
    seen: dict[str, set[torch.dtype]] = {"train": set(), "eval": set()}

    def forward(m, b):
        out = m(b["x"])
        seen["train" if m.training else "eval"].add(out.dtype)
        return out

    def train(cpu_amp: bool):
        seen["train"].clear(), seen["eval"].clear()
        model = mlp()
        res = fit(
            model,
            Loader(make_batches(0)),
            make_batches(1, 2),
            FitConfig(epochs=5, lr=0.01, cpu_amp=cpu_amp),
            forward_fn=forward,
            loss_fn=lambda out, b: F.cross_entropy(out, b["label"]),
            score_fn=lambda out: out.softmax(1)[:, 1],
            signal_label=1,
            device="cpu",
        )
        return model, res, {k: set(v) for k, v in seen.items()}

    model, res, dtypes = train(True)
    assert dtypes == {"train": {torch.bfloat16}, "eval": {torch.bfloat16}}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights
    ref_model, ref, ref_dtypes = train(False)
    assert ref_dtypes == {"train": {torch.float32}, "eval": {torch.float32}}
    # same optimisation to bfloat16's precision: learns as well, weights differ
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert abs(res.history[-1]["val_auc"] - ref.history[-1]["val_auc"]) < 0.02
    assert not torch.equal(model[0].weight, ref_model[0].weight)
