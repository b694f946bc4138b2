"""Non-graph baselines next to their peers, in one run.

1. ResNet-15 on the embedded e/gamma calorimeter simulation (accuracy, AUC); the seed's
   numbers on the real ML4SCI data are printed as a reference, NOT the same dataset.
2. ResNet-15 on jet images vs ParticleNet-Lite on the same PFNano AK8 jets (X->bb vs QCD),
   from PFNano files (--xbb/--qcd) or generated here with ``paratag.generate`` (--n-jets N).
3. Masked Transformer autoencoder (linear and MLP probes on the frozen encoder's mean-pooled
   or concatenated tokens, optional fine-tuning, and the MLP on the inputs alone) vs
   scikit-learn HistGradientBoostingClassifier on the same HIGGS features and split. pT and
   masses enter as log(1 + x); every network keeps its lowest validation loss on 1/6 of the
   training events (early stopping), as gradient boosting does.
   Data: --higgs-csv (UCI layout), --higgs-signal/--higgs-background (NanoAOD), or by default
   the HIGGS processes generated here with ``paratag.generate`` (``--higgs-source standin``:
   the particle-level Pythia 8 + FastJet stand-in ``generate_higgs_events``).

Scores are "signal first" (logit 0 = signal, labels 1 = signal); AUCs use
``paratag.evaluate.metrics.roc_auc``. Training goes through ``paratag.training.loop.fit``.

    python benchmarks/bench_baselines.py            # defaults: ~2.5 min on 2 CPU cores
    python benchmarks/bench_baselines.py --quick    # ~1 min smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from paratag.training.loop import FitConfig
from paratag.training.loop import fit as loop_fit
from torch import nn

from paratag.baselines.images import CaloSimConfig, simulate_egamma, to_channels_first
from paratag.baselines.masked_autoencoder import (
    MaskedAEOptions,
    MaskedTransformerAE,
    log_positive,
    mlp_head,
    reconstruction_metrics,
)
from paratag.baselines.resnet import ResNet15
from paratag.baselines.tabular import (
    HIGGS_FEATURES,
    encode_phi,
    generate_higgs_events,
    higgs_features,
    higgs_features_from_file,
    load_higgs_csv,
    split_higgs,
    standardize,
)
from paratag.evaluate.metrics import roc_auc

SEED_EGAMMA = {"accuracy": 0.7289, "auc": 0.80}
SEED_HIGGS_AUC = 0.73


class Batches:
    """Shuffled dict batches over equal-length tensors (``set_epoch`` re-seeds the order)."""

    def __init__(self, tensors: dict[str, torch.Tensor], batch: int, shuffle: bool = True) -> None:
        self.tensors, self.batch, self.shuffle, self.epoch = tensors, batch, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        n = len(next(iter(self.tensors.values())))
        gen = torch.Generator().manual_seed(self.epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        for idx in order.split(self.batch):
            yield {k: v[idx] for k, v in self.tensors.items()}


def fit(
    model: nn.Module,
    inputs,
    targets,
    epochs: int,
    lr: float = 1e-3,
    batch: int = 256,
    names=None,
    val_fraction: float = 0.0,
    patience: int | None = None,
    weight_decay: float = 1e-4,
) -> float:
    """Train through ``paratag.training.loop.fit`` (cross-entropy, class 0 = signal); returns seconds.

    With ``val_fraction`` > 0 the leading fraction of the events is held out and the model
    keeps the weights of its lowest validation loss (early stopping after ``patience``).
    """
    names = names or [f"x{i}" for i in range(len(inputs))]
    tensors = {**dict(zip(names, inputs, strict=True)), "label": targets}
    n_val = int(round(val_fraction * len(targets)))
    val = (
        Batches({k: v[:n_val] for k, v in tensors.items()}, 2048, shuffle=False) if n_val else None
    )
    loader = Batches({k: v[n_val:] for k, v in tensors.items()}, batch)
    t0 = time.perf_counter()
    loop_fit(
        model,
        loader,
        val,
        FitConfig(
            epochs=epochs,
            lr=lr,
            batch_size=batch,
            optimizer="adamw",
            weight_decay=weight_decay,
            scheduler="cosine",
            patience=patience if val is not None else None,
        ),
        forward_fn=lambda m, b: m(*(b[k] for k in names)),
        score_fn=None,
        show_progress=False,
    )
    return time.perf_counter() - t0


@torch.no_grad()
def signal_score(model: nn.Module, inputs, batch: int = 2048) -> np.ndarray:
    model.eval()
    n = len(inputs[0])
    out = [
        torch.softmax(model(*(x[i : i + batch] for x in inputs)), 1)[:, 0]
        for i in range(0, n, batch)
    ]
    return torch.cat(out).numpy()


def split(n: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    return perm[n_test:], perm[:n_test]


# ---------------------------------------------------------------------------------------------


def bench_egamma(n_per_class: int, epochs: int) -> None:
    print(f"\n== ResNet-15 on the embedded e/gamma simulation ({2 * n_per_class} images) ==")
    t0 = time.perf_counter()
    X, y = simulate_egamma(n_per_class, CaloSimConfig(), seed=1)
    t_sim = time.perf_counter() - t0
    X = to_channels_first(X)
    X[:, 0] = np.log1p(X[:, 0])  # compress the energy range; time stays in ns
    X[:, 1] = X[:, 1] / 5.0
    tr, te = split(len(y), 0.2)
    xt, yt = torch.tensor(X), torch.tensor(1 - y)  # class 0 = signal (electron)
    model = ResNet15()
    secs = fit(model, (xt[tr],), yt[tr], epochs, lr=3e-3, batch=128)
    s = signal_score(model, (xt[te],))
    acc = float(np.mean((s > 0.5) == (y[te] == 1)))
    print(
        f"simulation {t_sim:.1f}s ({len(y) / t_sim:.0f} images/s), training {secs:.1f}s, {epochs} epochs"
    )
    print(f"{'':28s}{'accuracy':>10s}{'AUC':>8s}")
    print(f"{'ResNet-15, our simulation':28s}{acc:10.4f}{roc_auc(y[te], s):8.4f}")
    print(
        f"{'seed, real ML4SCI data':28s}{SEED_EGAMMA['accuracy']:10.4f}{SEED_EGAMMA['auc']:8.2f}"
        "   <- reference only: a different dataset"
    )


# ---------------------------------------------------------------------------------------------


def bench_jets(
    xbb: list[str], qcd: list[str], epochs: int, n_generate: int = 0, workdir: Path = Path(".")
) -> None:
    print("\n== ResNet-15 (jet images) vs ParticleNet-Lite on the same AK8 jets ==")
    if n_generate and not (xbb and qcd):
        t0 = time.perf_counter()
        files = generate_samples("jets", n_generate, workdir)
        xbb, qcd = [files["XToBB_mX125"]], [files["QCD"]]
        print(
            f"generated {n_generate} X(125)->bb and {n_generate} QCD events with paratag.generate in {time.perf_counter() - t0:.0f}s"
        )
    if not xbb or not qcd:
        print(
            "skipped: pass --n-jets N to generate X->bb and QCD jets, or PFNano files with --xbb/--qcd"
        )
        return
    import warnings

    import coffea.nanoevents as ne

    # generated PFNano files have no Gen*/SubJet collections the schema cross-references
    warnings.filterwarnings("ignore", "Missing cross-reference", RuntimeWarning)

    from paratag.baselines.images import JetImageConfig, jet_images
    from paratag.config import ModelConfig
    from paratag.inputs import build_inputs
    from paratag.models import build_model

    imgs, pts, fts, msk, labels = [], [], [], [], []
    cfg = JetImageConfig(pt_min=200.0, eta_max=2.4, max_jets=100)
    for files, label in ((xbb, 1), (qcd, 0)):
        for f in files:
            ev = ne.NanoEventsFactory.from_root(
                {f: "Events"}, schemaclass=ne.PFNanoAODSchema, mode="eager"
            ).events()
            im, e_idx, _ = jet_images(ev, cfg, path=f)
            g = build_inputs(ev, "jet")
            if len(g) != len(im) or not np.array_equal(g.event_index, e_idx):
                raise RuntimeError(f"{f}: image and graph jet selections differ")
            pf = g.clouds["pf"]
            imgs.append(im)
            pts.append(pf.points)
            fts.append(pf.features)
            msk.append(pf.mask)
            labels.append(np.full(len(im), label))
    y = np.concatenate(labels)
    tr, te = split(len(y), 0.25)
    t = torch.tensor(1 - y)
    images = torch.tensor(np.concatenate(imgs))
    cloud = [torch.tensor(np.concatenate(a), dtype=torch.float32) for a in (pts, fts, msk)]
    print(f"{len(y)} jets ({int(y.sum())} X->bb, {int((1 - y).sum())} QCD), 25% test")
    resnet = ResNet15()
    t_r = fit(resnet, (images[tr],), t[tr], epochs)
    auc_r = roc_auc(y[te], signal_score(resnet, (images[te],)))
    pnet = build_model(
        ModelConfig(name="particlenet", options={"preset": "particlenet_lite"}),
        point_dims=cloud[0].shape[1],
        feature_dims=cloud[1].shape[1],
    )
    t_p = fit(pnet, tuple(c[tr] for c in cloud), t[tr], epochs)
    auc_p = roc_auc(y[te], signal_score(pnet, tuple(c[te] for c in cloud)))
    print(f"{'':24s}{'AUC':>8s}{'train s':>10s}")
    print(f"{'ResNet-15 (images)':24s}{auc_r:8.4f}{t_r:10.1f}")
    print(f"{'ParticleNet-Lite':24s}{auc_p:8.4f}{t_p:10.1f}")
    print(f"AUC ratio ResNet/ParticleNet = {auc_r / auc_p:.3f}")


# ---------------------------------------------------------------------------------------------


def generate_samples(kind: str, n: int, workdir: Path) -> dict[str, str]:
    """Run ``paratag.generate`` for the HIGGS processes or X(125)->bb + QCD jets; dataset -> file."""
    import dataclasses

    from paratag.baselines.tabular import HIGGS_PROCESSES
    from paratag.config import to_dict
    from paratag.generate.config import GenerateConfig, ProcessConfig
    from paratag.generate.runner import generate

    if kind == "higgs":
        cfg = GenerateConfig(
            processes=(
                ProcessConfig(
                    name="HiggsSignal",
                    kind="custom",
                    group="signal",
                    extra_settings=HIGGS_PROCESSES["higgs_signal"],
                ),
                ProcessConfig(
                    name="HiggsTTbar",
                    kind="custom",
                    group="ttX",
                    extra_settings=HIGGS_PROCESSES["higgs_ttbar"],
                ),
            ),
            ecm_gev=8000.0,
        )
    else:
        base = GenerateConfig.preset("xbb_jets")
        xbb = dataclasses.replace(base.processes[0], mass_points=({"mX": 125.0},))
        cfg = dataclasses.replace(base, processes=(xbb, base.processes[1]))
    out = workdir / kind
    run = out / "generate_run.json"
    wanted = json.loads(json.dumps({"n_events": n, "seed": 1, "config": to_dict(cfg)}))
    done = json.loads(run.read_text()) if run.exists() else {}
    if {k: done.get(k) for k in wanted} != wanted:  # else: the same files, reused
        generate(cfg, out, n, workers=2, progress=False)
    return {p.stem: str(p) for p in out.glob("*.root")}


def _higgs_data(
    args,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[np.ndarray, np.ndarray], str]:
    if args.higgs_csv:
        X, y, names = load_higgs_csv(args.higgs_csv, n_features=21, max_rows=args.max_rows)
        n_test = min(100_000, len(y) // 12)
        n_train = min(1_100_000, len(y) - n_test)
        return X, y, names, split_higgs(len(y), n_train, n_test), f"UCI HIGGS CSV {args.higgs_csv}"
    if args.higgs_signal and args.higgs_background:
        xs, _ = higgs_features_from_file(args.higgs_signal)
        xb, _ = higgs_features_from_file(args.higgs_background)
        source = "NanoAOD files"
    elif args.higgs_source == "generator":
        t0 = time.perf_counter()
        files = generate_samples("higgs", args.n_higgs, args.workdir)
        xs, _ = higgs_features_from_file(files["HiggsSignal"])
        xb, _ = higgs_features_from_file(files["HiggsTTbar"])
        source = (
            f"paratag.generate (Pythia 8 + its detector simulation, PFNano), {args.n_higgs} events "
            f"per process in {time.perf_counter() - t0:.0f}s"
        )
    else:
        t0 = time.perf_counter()
        xs, _ = higgs_features(generate_higgs_events("higgs_signal", args.n_higgs, seed=11))
        xb, _ = higgs_features(generate_higgs_events("higgs_ttbar", args.n_higgs, seed=12))
        source = (
            f"Pythia 8 particle level + smearing, {args.n_higgs} events per process generated in "
            f"{time.perf_counter() - t0:.0f}s"
        )
    X = np.concatenate([xs, xb])
    y = np.concatenate([np.ones(len(xs), np.int64), np.zeros(len(xb), np.int64)])
    perm = np.random.default_rng(0).permutation(len(y))
    X, y = X[perm], y[perm]
    n_test = len(y) // 4
    return X, y, HIGGS_FEATURES, split_higgs(len(y), None, n_test), source


def _pretrain(
    opts: MaskedAEOptions, x_tr: torch.Tensor, x_te: torch.Tensor, epochs: int, seed: int = 0
):
    """Pre-train the autoencoder; print the test loss terms and the feature-wise table."""
    torch.manual_seed(seed)
    model = MaskedTransformerAE(opts)
    t0 = time.perf_counter()
    loop_fit(
        model,
        Batches({"features": x_tr}, 256),
        None,
        FitConfig(epochs=epochs, lr=2e-3, optimizer="adamw", weight_decay=1e-4, scheduler="cosine"),
        forward_fn=lambda m, b: m.pretrain_loss(b["features"])[0],
        loss_fn=lambda out, b: out,
        score_fn=None,
        show_progress=False,
    )
    t_pre = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        mask = model.random_mask(len(x_te), torch.Generator().manual_seed(1))
        recon = model.reconstruct(x_te, mask)
        _, parts = model.pretrain_loss(x_te, mask)
    print(
        f"pre-training {t_pre:.1f}s; test loss terms: "
        + ", ".join(f"{k}={v:.4f}" for k, v in parts.items())
    )
    print("feature-wise reconstruction of masked values (standardised units):")
    for name, m in reconstruction_metrics(x_te, recon, mask, opts.feature_names).items():
        print(f"  {name:16s} MSE={m['mse']:.4f} MAE={m['mae']:.4f} Pearson={m['pearson']:.4f}")
    return model, t_pre


#: Every classifier of the tabular study: 1/6 of the training events for early stopping.
PROBE_FIT = {"lr": 1e-3, "val_fraction": 1 / 6, "patience": 8, "weight_decay": 1e-3}


def _classifiers(args, opts, state, data, t_pre: float) -> list[tuple[str, float, float]]:
    """Frozen-encoder probes (mean-pooled and concatenated tokens), fine-tuning, no-encoder MLP."""
    x_tr, x_te, t_tr, y_te = data
    rows = []
    for pooling in ("mean", "concat"):
        for head in ("linear", "mlp"):
            torch.manual_seed(args.seed)
            clf = MaskedTransformerAE(
                MaskedAEOptions(**{**opts.__dict__, "head": head, "pooling": pooling})
            )
            clf.load_state_dict(
                {k: v for k, v in state.items() if not k.startswith("head.")}, strict=False
            )
            clf.set_encoder_trainable(False)
            secs = fit(clf, (x_tr,), t_tr, args.clf_epochs, **PROBE_FIT)
            auc = roc_auc(y_te, signal_score(clf, (x_te,)))
            rows.append((f"AE + {head} probe (frozen, {pooling})", auc, secs + t_pre))
            if head == "mlp" and pooling == "concat" and args.finetune:
                clf.set_encoder_trainable(True)
                secs += fit(
                    clf, (x_tr,), t_tr, max(1, args.clf_epochs // 2), **{**PROBE_FIT, "lr": 5e-4}
                )
                auc = roc_auc(y_te, signal_score(clf, (x_te,)))
                rows.append(("AE + mlp, fine-tuned (concat)", auc, secs + t_pre))
    # the control: the probe's MLP on the standardised inputs, no encoder
    torch.manual_seed(args.seed)
    mlp = mlp_head(x_tr.shape[1], 2, opts.head_hidden, opts.head_layers, opts.dropout)
    secs = fit(mlp, (x_tr,), t_tr, args.clf_epochs, **PROBE_FIT)
    rows.append(("MLP on the inputs (no encoder)", roc_auc(y_te, signal_score(mlp, (x_te,))), secs))
    return rows


def bench_tabular(args) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    print("\n== Masked Transformer autoencoder vs HistGradientBoosting (HIGGS features) ==")
    X, y, names, (tr, te), source = _higgs_data(args)
    print(f"data: {source}; {len(tr)} train / {len(te)} test events, {len(names)} features")
    Xe, enc = encode_phi(X, names)
    Xe = log_positive(Xe, enc)  # pT and masses as log(1 + x): heavy tails, as in weaver configs
    xs_tr, mean, std = standardize(Xe[tr])
    xs_te, _, _ = standardize(Xe[te], mean, std)
    opts = MaskedAEOptions(
        feature_names=enc,
        feature_mean=tuple(map(float, mean)),
        feature_std=tuple(map(float, std)),
        d_model=32,
        n_layers=2,
        n_heads=4,
        ff_dim=64,
        mask_fraction=0.3,
        head="linear",
        dropout=0.1,
        log_positive=True,
        head_hidden=args.head_hidden,
        head_layers=args.head_layers,
    )
    x_tr, x_te = torch.tensor(xs_tr), torch.tensor(xs_te)
    model, t_pre = _pretrain(opts, x_tr, x_te, args.ae_epochs, args.seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    t = torch.tensor(1 - y)
    rows = _classifiers(args, opts, state, (x_tr, x_te, t[tr], y[te]), t_pre)
    t0 = time.perf_counter()
    hgb = HistGradientBoostingClassifier(max_iter=300, early_stopping=True, random_state=0).fit(
        xs_tr, y[tr]
    )
    t_hgb = time.perf_counter() - t0
    auc_hgb = roc_auc(y[te], hgb.predict_proba(xs_te)[:, 1])
    print(f"{'':38s}{'AUC':>8s}{'train s':>10s}")
    for name, a, secs in rows:
        print(f"{name:38s}{a:8.4f}{secs:10.1f}")
    print(f"{'HistGradientBoosting':38s}{auc_hgb:8.4f}{t_hgb:10.1f}")
    frozen = max(a for name, a, _ in rows if "frozen" in name)
    best = max(a for name, a, _ in rows if name.startswith("AE"))
    print(
        f"AUC best AE / gradient boosting = {best / auc_hgb:.3f}; "
        f"best frozen-encoder probe - gradient boosting = {frozen - auc_hgb:+.4f}"
    )
    print(
        f"(seed's transformer on the real UCI HIGGS data: AUC ~{SEED_HIGGS_AUC}, a different dataset)"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    p.add_argument("--n-egamma", type=int, default=3000, help="images per class")
    p.add_argument("--egamma-epochs", type=int, default=6)
    p.add_argument("--xbb", nargs="*", default=[], help="PFNano files of X->bb jets")
    p.add_argument("--qcd", nargs="*", default=[], help="PFNano files of QCD jets")
    p.add_argument("--jet-epochs", type=int, default=10)
    p.add_argument(
        "--n-jets", type=int, default=0, help="generate this many X->bb and QCD events (0: off)"
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("bench_baselines_work"),
        help="generated files (reused when the same sizes are asked again)",
    )
    p.add_argument(
        "--higgs-source",
        choices=["generator", "standin"],
        default="generator",
        help="HIGGS events from paratag.generate or the particle-level stand-in",
    )
    p.add_argument("--higgs-csv", type=Path, help="UCI HIGGS CSV (label + 28 columns)")
    p.add_argument("--max-rows", type=int, help="read only the first rows of the CSV")
    p.add_argument("--higgs-signal", help="NanoAOD file of the HIGGS signal process")
    p.add_argument("--higgs-background", help="NanoAOD file of the ttbar background")
    p.add_argument("--n-higgs", type=int, default=8000, help="generated events per process")
    p.add_argument("--ae-epochs", type=int, default=20)
    p.add_argument("--clf-epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="seed of the networks of the HIGGS study")
    p.add_argument("--head-hidden", type=int, default=64, help="MLP probe width")
    p.add_argument("--head-layers", type=int, default=2, help="MLP probe hidden layers")
    p.add_argument("--finetune", action="store_true", help="also fine-tune the whole AE")
    p.add_argument("--skip", nargs="*", default=[], choices=["egamma", "jets", "tabular"])
    args = p.parse_args()
    if args.quick:
        args.n_egamma, args.egamma_epochs = 1000, 2
        args.ae_epochs, args.clf_epochs, args.jet_epochs = 3, 3, 2
        args.n_higgs, args.n_jets = 300, args.n_jets and 100
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    parts = {
        "egamma": lambda: bench_egamma(args.n_egamma, args.egamma_epochs),
        "jets": lambda: bench_jets(args.xbb, args.qcd, args.jet_epochs, args.n_jets, args.workdir),
        "tabular": lambda: bench_tabular(args),
    }
    t_all = time.perf_counter()
    for name, run in parts.items():
        if name not in args.skip:
            t0 = time.perf_counter()
            run()
            print(f"[{name}] wall time {time.perf_counter() - t0:.0f} s")
    print(f"total wall time {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
