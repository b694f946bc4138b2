"""``paratag demo``: the whole chain on generated data, from nothing to scored histograms.

Steps (each one function call into the library, each cached):

1. ``generate`` — Pythia8 + FastJet charged-Higgs grid and backgrounds in PFNano format;
2. ``build``    — GraphBuilder (event preset) → parquet shards;
3. ``train``    — the three-stage schedule (short demo schedule);
4. ``evaluate`` — the evaluation report (report.md / report.html);
5. ``export``   — model.onnx + preprocess.json, with the PyTorch/onnxruntime parity check;
6. ``score``    — Tagger on a Dask LocalCluster over the generated files and the real
   CMS NanoAOD fixture, for several (mHc, mA) hypotheses → hist → mplhep plots.

A finished step writes ``OUT/steps/<step>.json``; rerunning skips it unless
``force`` is set (or an earlier step was redone).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paratag.pipeline import Steps

__all__ = ["DEMO_HYPOTHESES", "DemoConfig", "plot_score_hists", "run_demo"]

DEMO_HYPOTHESES = (
    {"mHc": 100.0, "mA": 85.0},
    {"mHc": 130.0, "mA": 90.0},
    {"mHc": 145.0, "mA": 95.0},
    {"mHc": 160.0, "mA": 90.0},
)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and places of the demo.

    Attributes:
        out: output directory.
        events: generated events per process / mass point.
        workers: parallel workers (generation, Dask scoring).
        seed: master seed.
        generate_preset: generator preset name or YAML path.
        train_config: train config name or YAML path.
        real_fixture: a real CMS NanoAOD file also scored by the Tagger ("" to skip).
    """

    out: str = "demo_output"
    events: int = 1500
    workers: int = 2
    seed: int = 1
    generate_preset: str = "charged_higgs"
    train_config: str = "demo"
    real_fixture: str = ""


def plot_score_hists(
    h: Any, out_dir: str | Path, groups: Mapping[str, str] | None = None
) -> list[Path]:
    """One mplhep figure per hypothesis: normalised score per group of datasets (PNG + PDF).

    Args:
        h: the Tagger histogram (dataset x hypothesis x score).
        out_dir: where ``<hypothesis>.png/.pdf`` go.
        groups: dataset → legend entry; datasets sharing an entry are summed
            (default: one entry per dataset).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = dict(groups or {})
    paths = []
    with plt.style.context(mplhep.style.CMS):
        for hyp in h.axes["hypothesis"]:
            fig, ax = plt.subplots(figsize=(13, 7))
            merged: dict[str, Any] = {}
            for ds in h.axes["dataset"]:
                sub = h[{"dataset": ds, "hypothesis": hyp}]
                key = groups.get(ds, ds)
                merged[key] = sub if key not in merged else merged[key] + sub
            cmap = plt.get_cmap("tab10")  # one distinct colour per entry (10)
            for i, (key, sub) in enumerate(merged.items()):
                if sub.sum().value <= 0:
                    continue
                style = "--" if "real" in key else "-"
                mplhep.histplot(
                    sub,
                    ax=ax,
                    density=True,
                    label=key,
                    histtype="step",
                    yerr=False,
                    linestyle=style,
                    linewidth=2,
                    color=cmap(i % 10),
                )
            ax.set_yscale("log")
            ax.set_xlabel(f"paratag score at {hyp.removeprefix('score_')}")
            ax.set_ylabel("normalised events")
            ax.legend(
                fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False
            )
            # generated samples (and one real CMS file): the generic label, not an experiment's
            mplhep.label.exp_label(exp="paratag", data=False, ax=ax, rlabel="13.6 TeV (generated)")
            for suffix in ("png", "pdf"):
                path = out / f"{hyp}.{suffix}"
                fig.savefig(path, dpi=90, bbox_inches="tight")
                paths.append(path)
            plt.close(fig)
    return paths


def _legend_groups(fileset: Mapping[str, Any], hypotheses: Any) -> dict[str, str]:
    """Dataset → legend entry: signal points by name, backgrounds by group, real data marked."""
    out = {}
    for name, entry in fileset.items():
        meta = entry.get("metadata", {})
        if meta.get("label", -1) == 0:
            out[name] = f"signal mHc={meta.get('mHc'):g}, mA={meta.get('mA'):g}"
        elif "group" in meta:
            out[name] = f"{meta['group']} (generated)"
        else:
            out[name] = f"{name} (real CMS)"
    return out


@dataclass(frozen=True)
class _DemoRun:
    """What every demo step reads: the config, the output folder, the earlier steps."""

    cfg: DemoConfig
    out: Path
    progress: bool
    steps: Steps

    def done(self, step: str, key: str) -> Any:
        """Output ``key`` of an earlier step."""
        return self.steps.done[step][key]


def _generate(r: _DemoRun) -> dict[str, Any]:
    from paratag.generate import GenerateConfig, generate

    gen_cfg = GenerateConfig.from_file(r.cfg.generate_preset)
    fileset = generate(
        gen_cfg,
        r.out / "generated",
        r.cfg.events,
        workers=r.cfg.workers,
        seed=r.cfg.seed,
        progress=r.progress,
    )
    return {"fileset": str(fileset)}


def _build(r: _DemoRun) -> dict[str, Any]:
    from paratag.build import BuildConfig, build_shards

    manifest = build_shards(
        r.done("generate", "fileset"),
        r.out / "shards",
        BuildConfig(preset="event", condition=("mHc", "mA")),
        executor="futures",
        workers=r.cfg.workers,
    )
    return {"manifest": str(manifest)}


def _train(r: _DemoRun) -> dict[str, Any]:
    from paratag.training import load_train_config, train

    train_cfg = load_train_config(
        r.cfg.train_config,
        shards=str(r.out / "shards"),
        run_dir=str(r.out / "run"),
        seed=r.cfg.seed,
    )
    result = train(train_cfg)
    times = {
        k: v.get("time_s")
        for k, v in result.items()
        if k.startswith("stage") and isinstance(v, dict)
    }
    return {"run_dir": str(r.out / "run"), "stage_times_s": times}


def _evaluate(r: _DemoRun) -> dict[str, Any]:
    from paratag.evaluate.run import evaluate_run
    from paratag.training import dedicated_trainer

    report = evaluate_run(
        r.out / "run",
        r.out / "shards",
        r.out / "evaluation",
        progress=r.progress,
        dedicated_trainer=dedicated_trainer(r.out / "run", progress=r.progress),
    )
    return {"report": str(report), "html": str(Path(report).with_suffix(".html"))}


def _export(r: _DemoRun) -> dict[str, Any]:
    from paratag.export import export_run

    events = _first_signal_file(r.done("generate", "fileset"))
    result = export_run(r.out / "run", r.out / "export", check=True, check_events=events)
    return {
        "onnx": str(result.onnx_path),
        "preprocess": str(result.preprocess_path),
        "parity": str(result.parity) if result.parity is not None else "not run",
    }


def _score(r: _DemoRun) -> dict[str, Any]:
    from paratag.processors.tagger import Tagger, score_fileset, write_scores
    from paratag.runner import load_fileset

    fileset = load_fileset(r.done("generate", "fileset"))
    if r.cfg.real_fixture:
        fileset["CMS_DY_NanoAOD"] = {
            "files": {r.cfg.real_fixture: "Events"},
            "metadata": {"label": -1},
        }
    tagger = Tagger(r.done("export", "onnx"), hypotheses=list(DEMO_HYPOTHESES), output="hist")
    result = score_fileset(
        fileset, tagger, executor="dask", workers=r.cfg.workers, progress=r.progress
    )
    written = write_scores(result, r.out / "scores")
    groups = _legend_groups(fileset, DEMO_HYPOTHESES)
    plots = plot_score_hists(result["hist"], r.out / "scores" / "plots", groups)
    return {
        "outputs": [str(p) for p in written],
        "plots": [str(p) for p in plots if p.suffix == ".png"],
    }


#: The demo chain, in order: each step is cached (:class:`paratag.pipeline.Steps`).
DEMO_STEPS: tuple[tuple[str, Callable[[_DemoRun], dict[str, Any]]], ...] = (
    ("generate", _generate),
    ("build", _build),
    ("train", _train),
    ("evaluate", _evaluate),
    ("export", _export),
    ("score", _score),
)


def run_demo(
    cfg: DemoConfig = DemoConfig(), *, force: bool = False, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run (or resume) the demo chain (:data:`DEMO_STEPS`); a summary of every step."""
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    progress = os.environ.get("CI", "").lower() not in ("1", "true") and os.isatty(1)
    steps = Steps(out, force=force, log=log)
    run = _DemoRun(cfg, out, progress, steps)
    for name, fn in DEMO_STEPS:
        steps.run(name, functools.partial(fn, run))
    summary: dict[str, Any] = dict(steps.done)
    summary["total_time_s"] = sum(float(v["time_s"]) for v in steps.done.values())
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _first_signal_file(fileset_path: str) -> str | None:
    from paratag.runner import load_fileset

    for ds in load_fileset(fileset_path).values():
        if ds["metadata"].get("label") == 0:
            return next(iter(ds["files"]))
    return None
