"""Boosted X -> bb jet tagging with a mass-decorrelated Interaction Network, end to end.

Steps (each one paratag call):

1. generate  -- Pythia8 + FastJet X -> bb (mass grid) and QCD AK8 jets in PFNano format;
2. build     -- GraphBuilder "jet" preset: PF-candidate and secondary-vertex clouds, mX condition;
3. train     -- the Interaction Network of ``train.yaml`` with DisCo on the soft-drop mass,
                and (unless ``--no-baseline``) the same network without DisCo;
4. sculpting -- both models scored on the held-out fold; the QCD soft-drop mass before
                and after score cuts at fixed signal efficiencies, with the Jensen-Shannon
                divergence to the uncut shape (``paratag.evaluate.decorrelation.sculpting``).

The default flags are tiny (minutes on a laptop, statistics too small for physics);
for a real study raise ``--events`` and use ``--schedule-from-config``::

    python examples/xbb_jets/run.py --out xbb_output
    python examples/xbb_jets/run.py --out xbb_big --events 5000 \
        --masses 50,100,125,150,200 --schedule-from-config --report

Outputs in OUT: ``generated/``, ``shards/``, ``run_disco/``, ``run_nodisco/``,
``sculpting.png`` and ``sculpting.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

warnings.filterwarnings("ignore", message="Missing cross-reference index", category=RuntimeWarning)

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (tiny defaults)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="xbb_output", help="output folder")
    p.add_argument("--config", default=str(HERE / "train.yaml"), help="train YAML")
    p.add_argument("--events", type=int, default=200, help="events per process / mass point")
    p.add_argument("--masses", default="50,100,150", help="X masses in GeV, comma separated")
    p.add_argument("--hypothesis", type=float, default=None, help="mX of the sculpting plot")
    p.add_argument("--epochs", type=int, default=3, help="epochs of stage 1 and stage 3")
    p.add_argument(
        "--schedule-from-config", action="store_true", help="use train.yaml's epochs/curriculum"
    )
    p.add_argument("--max-particles", type=int, default=None, help="PF candidates per jet")
    p.add_argument("--disco-lambda", type=float, default=None, help="override loss.disco_lambda")
    p.add_argument("--no-baseline", action="store_true", help="skip the model without DisCo")
    p.add_argument("--report", action="store_true", help="also write the full evaluation report")
    p.add_argument("--sig-effs", default="0.8,0.5,0.3", help="signal efficiencies of the cuts")
    p.add_argument("--workers", type=int, default=2, help="generation / build workers")
    p.add_argument("--seed", type=int, default=1, help="generation and training seed")
    return p.parse_args(argv)


def _progress() -> bool:
    return os.environ.get("CI", "").lower() not in ("1", "true") and sys.stdout.isatty()


def generate_samples(
    out: Path, masses: Sequence[float], events: int, workers: int, seed: int
) -> Path:
    """The ``xbb_jets`` preset restricted to ``masses``; returns the fileset path."""
    from paratag.generate import GenerateConfig, generate

    preset = GenerateConfig.preset("xbb_jets")
    procs = []
    for proc in preset.processes:
        if proc.kind == "xbb":
            proc = dataclasses.replace(proc, mass_points=tuple({"mX": float(m)} for m in masses))
        procs.append(proc)
    cfg = dataclasses.replace(preset, processes=tuple(procs), chunk_size=min(250, events))
    return generate(cfg, out, events, workers=workers, seed=seed, progress=_progress())


def build(
    fileset: Path, out: Path, max_particles: int | None, workers: int, n_events: int, n_files: int
) -> Path:
    """GraphBuilder with the jet preset (PF candidates + SVs) and the mX condition."""
    from paratag.build import BuildConfig, build_shards

    cfg = BuildConfig(preset="jet", condition=("mX",), max_particles=max_particles)
    # Process pools pay off from ~10k jets; tiny samples build fastest in-process.
    executor = "futures" if workers > 1 and n_events * n_files > 20_000 else "iterative"
    return build_shards(fileset, out, cfg, executor=executor, workers=workers)


def train_model(args: argparse.Namespace, shards: Path, run_dir: Path, disco: bool) -> Path:
    """Train the IN of ``args.config`` on the generated masses; returns the run directory."""
    from paratag.training import load_train_config, train

    cfg = load_train_config(args.config, shards=shards, run_dir=run_dir, seed=args.seed)
    masses = tuple((float(m),) for m in args.masses.split(","))
    grid = dataclasses.replace(
        cfg.grid, train=masses, validation=(), interpolation=(), extrapolation=()
    )
    lam = cfg.loss.disco_lambda if args.disco_lambda is None else args.disco_lambda
    loss = dataclasses.replace(cfg.loss, disco_lambda=lam if disco else 0.0)
    cfg = dataclasses.replace(cfg, grid=grid, loss=loss, progress=_progress())
    if not args.schedule_from_config:
        from paratag.training.schedule import CurriculumPhase

        e = args.epochs
        cfg = dataclasses.replace(
            cfg,
            stage1=dataclasses.replace(cfg.stage1, epochs=e),
            stage3=dataclasses.replace(
                cfg.stage3, epochs=e, patience=None, curriculum=(CurriculumPhase(e, "all"),)
            ),
        )
    train(cfg)
    return run_dir


def score_test_fold(run_dir: Path, shards: Path, mx: float) -> dict[str, np.ndarray]:
    """Signal score at hypothesis ``mx`` of every held-out jet, with label, m_SD and weight."""
    import torch
    from paratag.training import load_model

    from paratag.conditions import fold_roles
    from paratag.data import ShardStore

    model, info = load_model(run_dir / "stage3" / "model.pt")
    store = ShardStore(shards, spectators=["jet_sdmass"])
    t = store.table
    test = fold_roles(t["spec_event"], int(info["n_folds"]), int(info["fold"])) == 2
    rows = np.flatnonzero(test & ((t["label"] != 0) | np.isclose(t["condition"][:, 0], mx)))
    cond = np.float32((mx - info["condition_mean"][0]) / info["condition_std"][0])
    keys = ["points", "features", "mask", "sv_features", "sv_mask"]
    scores = []
    with torch.no_grad():
        for lo in range(0, len(rows), 512):
            batch = {
                k: torch.from_numpy(v) for k, v in store.gather(rows[lo : lo + 512], keys).items()
            }
            n = batch["points"].shape[0]
            logits = model(
                batch["points"],
                batch["features"],
                batch["mask"],
                torch.full((n, 1), float(cond)),
                sv_features=batch["sv_features"],
                sv_mask=batch["sv_mask"],
            )
            scores.append(torch.softmax(logits, dim=1)[:, int(info["signal_label"])].numpy())
    return {
        "score": np.concatenate(scores) if scores else np.zeros(0, np.float32),
        "label": t["label"][rows],
        "mass": t["spec_jet_sdmass"][rows],
        "weight": t["weight"][rows],
    }


def sculpting_of(scored: dict[str, np.ndarray], sig_effs: Sequence[float], bins: np.ndarray) -> Any:
    """Background (QCD) m_SD sculpting by cuts on the signal score."""
    from paratag.evaluate.decorrelation import sculpting

    sig, bkg = scored["label"] == 0, scored["label"] != 0
    return sculpting(
        scored["mass"][bkg],
        scored["score"][bkg],
        scored["score"][sig],
        bkg_weight=scored["weight"][bkg],
        sig_weight=scored["weight"][sig],
        sig_effs=sig_effs,
        bins=bins,
    )


def plot_sculpting(results: dict[str, Any], mx: float, out: Path) -> Path:
    """One panel per model: normalised QCD m_SD before and after each score cut."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    with plt.style.context(mplhep.style.CMS):
        fig, axes = plt.subplots(1, len(results), figsize=(9 * len(results), 7), squeeze=False)
        for ax, (name, res) in zip(axes[0], results.items(), strict=True):
            mplhep.histplot(
                res.before,
                res.bins,
                ax=ax,
                density=True,
                yerr=False,
                color="k",
                lw=2,
                label="QCD, no cut",
            )
            for eff, h in res.after.items():
                if h.sum() > 0:
                    mplhep.histplot(
                        h,
                        res.bins,
                        ax=ax,
                        density=True,
                        yerr=False,
                        label=rf"$\varepsilon_S$ = {eff:.0%}: JSD {res.jsd[eff]:.3f}, "
                        rf"$1/\varepsilon_B$ {res.inv_bkg_eff(eff):.1f}",
                    )
            ax.set_xlabel(r"Soft-drop mass $m_{SD}$ [GeV]")
            ax.set_ylabel("Normalised QCD jets")
            title = f"{name}, $m_X$ = {mx:g} GeV hypothesis"
            ax.legend(fontsize="x-small", title=title, title_fontsize="x-small")
            mplhep.cms.label(ax=ax, data=False, text="Private work", rlabel="")
        path = out / "sculpting.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the chain and write ``sculpting.png`` / ``sculpting.json``."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    masses = [float(m) for m in args.masses.split(",")]
    mx = args.hypothesis if args.hypothesis is not None else masses[len(masses) // 2]
    if mx not in masses:
        raise SystemExit(f"--hypothesis {mx:g} is not one of --masses {args.masses}")
    effs = [float(e) for e in args.sig_effs.split(",")]
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    fileset = generate_samples(out / "generated", masses, args.events, args.workers, args.seed)
    times["generate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    build(fileset, out / "shards", args.max_particles, args.workers, args.events, len(masses) + 1)
    times["build"] = time.perf_counter() - t0

    runs = {"with DisCo": out / "run_disco"}
    if not args.no_baseline:
        runs["without DisCo"] = out / "run_nodisco"
    bins = np.linspace(0.0, 250.0, 26)
    results = {}
    for name, run_dir in runs.items():
        t0 = time.perf_counter()
        train_model(args, out / "shards", run_dir, disco=name == "with DisCo")
        times[f"train {name}"] = time.perf_counter() - t0
        results[name] = sculpting_of(score_test_fold(run_dir, out / "shards", mx), effs, bins)

    figure = plot_sculpting(results, mx, out)
    summary = {
        "hypothesis_mX": mx,
        "models": {k: v.to_dict() for k, v in results.items()},
        "times_s": times,
    }
    # JSD is NaN where no background survives a cut: written as null.
    text = json.dumps(summary, indent=1).replace("NaN", "null")
    (out / "sculpting.json").write_text(text + "\n")
    if args.report:
        from paratag.evaluate.run import evaluate_run

        md = evaluate_run(runs["with DisCo"], out / "shards", out / "report", progress=_progress())
        print(f"wrote {md}")
    for name, res in results.items():
        cells = ", ".join(
            f"eS={e:.0%}: 1/eB={res.inv_bkg_eff(e):.2f} JSD={res.jsd[e]:.3f}" for e in effs
        )
        print(f"{name:<14} {cells}")
    print(f"wrote {figure} and {out / 'sculpting.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
