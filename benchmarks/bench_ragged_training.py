"""Training throughput on real-multiplicity jets: paratag's length-bucketed, trimmed batches
vs weaver-core's ParticleNet with its default ``trim`` on the same jets.

Both models have the same configuration and parameter count (ParticleNet-Lite by
default, weaver's layout with the fusion layer) and train with the same loop, optimiser,
batch size and epochs on the same training jets:

- paratag: ``EpochBatchSampler(lengths=..., bucket=16)`` groups jets of similar
  constituent count, each batch is cut to its own longest jet (nothing is truncated);
- weaver: shuffled batches padded to the preset's 100 slots; in training mode weaver's
  ``trim`` cuts each batch to a length quantile (it can drop constituents).

The full ParticleNet trains on fewer jets by default (``--max-train-full``, 1 500: weaver's
padded full model does ≈ 16 jets/s on two cores) so that both configurations fit in ten
minutes. Printed: training jets/s per epoch, the ratio, and the validation AUC of both after the
same epochs (bootstrap σ), on the jet preset's PF candidates of truth-matched X→bb and
QCD jets — from ``--shards`` (jet-preset shards, e.g. ``paratag validate --only xbb``'s
OUT/xbb/shards) or generated here (``--events`` per X mass point and for QCD).

    python benchmarks/bench_ragged_training.py               # Lite and full, ~8 min on 2 cores
    python benchmarks/bench_ragged_training.py --shards validation_output/xbb/shards
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_models import build_pair  # the same weaver/paratag pair as bench_models.py

from paratag.conditions import fold_roles
from paratag.data.dataset import ShardStore
from paratag.data.sampler import EpochBatchSampler
from paratag.evaluate.metrics import bootstrap_metrics
from paratag.graphs import graph_lengths, trim_length


def _shards(args: argparse.Namespace, tmp: Path) -> Path:
    if args.shards:
        return Path(args.shards)
    from paratag.build import BuildConfig, build_shards
    from paratag.generate import GenerateConfig, generate

    cfg = GenerateConfig.from_file("validate_xbb")
    fs = generate(cfg, tmp / "gen", args.events, workers=2, seed=1, progress=False)
    build_shards(
        fs,
        tmp / "shards",
        BuildConfig(preset="jet", condition=("mX",)),
        executor="futures",
        workers=2,
    )
    return tmp / "shards"


def _arrays(path: Path, max_train: int) -> tuple[dict, dict]:
    """Training and validation folds: PF cloud arrays, labels (1 = X->bb) and lengths."""
    store = ShardStore(path)
    t = store.table
    role = fold_roles(t["spec_event"], 5, 0)
    out = []
    for r, cap in ((0, max_train), (1, max_train // 2)):
        rows = np.flatnonzero(role == r)
        rows = np.random.default_rng(0).permutation(rows)[:cap]
        a = store.gather(np.sort(rows), ["points", "features", "mask"])
        a["y"] = (t["label"][np.sort(rows)] == 0).astype(np.int64)
        a["lengths"] = graph_lengths(a["mask"])
        out.append(a)
    return out[0], out[1]


def _batches(train: dict, batch: int, epoch: int, ragged: bool):
    sampler = EpochBatchSampler(
        len(train["y"]),
        batch,
        seed=0,
        lengths=train["lengths"] if ragged else None,
        bucket=16 if ragged else 0,
    )
    sampler.set_epoch(epoch)
    for _, pos in sampler:
        pos = np.sort(pos)
        cut = trim_length(train["lengths"][pos], train["mask"].shape[-1], 8) if ragged else None
        yield (
            [torch.from_numpy(train[k][pos][..., :cut]) for k in ("points", "features", "mask")],
            (torch.from_numpy(train["y"][pos])),
        )


def _fit_epoch(model, weaver: bool, train: dict, batch: int, epoch: int, opt) -> float:
    model.train()
    t0 = time.perf_counter()
    for (p, f, m), y in _batches(train, batch, epoch, ragged=not weaver):
        opt.zero_grad(set_to_none=True)
        logits = model(p, f, m.bool()) if weaver else model(p, f, m)
        F.cross_entropy(logits, 1 - y).backward()  # class 0 = signal
        opt.step()
    return time.perf_counter() - t0


@torch.no_grad()
def _val_auc(model, weaver: bool, val: dict) -> tuple[float, float]:
    model.eval()
    scores = []
    for lo in range(0, len(val["y"]), 512):
        p, f, m = (torch.from_numpy(val[k][lo : lo + 512]) for k in ("points", "features", "mask"))
        logits = model(p, f, m.bool()) if weaver else model(p, f, m)
        scores.append(torch.softmax(logits, 1)[:, 0].numpy())
    b = bootstrap_metrics(val["y"], np.concatenate(scores), n_boot=50, sig_effs=(), bkg_effs=())
    return b.nominal["auc"], b.std["auc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", help="jet-preset shard directory (default: generate)")
    ap.add_argument("--events", type=int, default=700, help="generated events per sample")
    ap.add_argument("--max-train", type=int, default=6000, help="training jets used (Lite)")
    ap.add_argument(
        "--max-train-full", type=int, default=1500, help="training jets used (full ParticleNet)"
    )
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", nargs="+", default=["lite", "full"], choices=["lite", "full"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        shards = _shards(args, Path(d))
        folds = {
            name: _arrays(shards, args.max_train if name == "lite" else args.max_train_full)
            for name in args.configs
        }
    for name in args.configs:
        train, val = folds[name]
        print(
            f"[{name}] {len(train['y'])} training / {len(val['y'])} validation jets, constituents "
            f"per jet: mean {train['lengths'].mean():.1f}, max {train['lengths'].max()} of "
            f"{train['mask'].shape[-1]} slots; {args.threads} thread(s), batch {args.batch}"
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs, ours = build_pair(name, train["features"].shape[1], trim=True)
        if theirs is None:
            raise SystemExit("weaver-core is not installed: pip install --no-deps weaver-core")
        rates: dict[str, list[float]] = {"weaver": [], "paratag": []}
        opts = {
            k: torch.optim.Adam(m.parameters(), lr=1e-3)
            for k, m in (("weaver", theirs), ("paratag", ours))
        }
        for epoch in range(args.epochs):  # alternate, so load changes hit both alike
            for key, model in (("weaver", theirs), ("paratag", ours)):
                dt = _fit_epoch(model, key == "weaver", train, args.batch, epoch, opts[key])
                rates[key].append(len(train["y"]) / dt)
                print(f"[{name}] epoch {epoch} {key:8s}: {rates[key][-1]:8.1f} training jets/s")
        aucs = {
            k: _val_auc(m, k == "weaver", val) for k, m in (("weaver", theirs), ("paratag", ours))
        }
        best = {k: max(v) for k, v in rates.items()}
        print(
            f"[{name}] best epoch: paratag {best['paratag']:.1f} jets/s, weaver {best['weaver']:.1f} "
            f"jets/s: ratio {best['paratag'] / best['weaver']:.2f}x (target >= 2x)"
        )
        print(
            f"[{name}] validation AUC after {args.epochs} epochs: paratag {aucs['paratag'][0]:.4f} "
            f"± {aucs['paratag'][1]:.4f}, weaver {aucs['weaver'][0]:.4f} ± {aucs['weaver'][1]:.4f}"
        )
        diff = aucs["paratag"][0] - aucs["weaver"][0]
        sigma = float(np.hypot(aucs["paratag"][1], aucs["weaver"][1]))
        print(
            f"[{name}] AUC paratag - weaver = {diff:+.4f} (σ {sigma:.4f}): "
            f"{'equal within 2σ' if abs(diff) <= 2 * sigma else 'NOT equal within 2σ'}"
        )


if __name__ == "__main__":
    main()
