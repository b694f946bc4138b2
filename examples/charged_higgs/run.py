"""Run the three-lepton charged-Higgs analysis with the paratag score over a fileset.

Example (see README.md for the whole chain)::

    python examples/charged_higgs/run.py --fileset gen/fileset.json \
        --model export/model.onnx --hypotheses "mHc=130,mA=90;mHc=160,mA=90" \
        --executor futures --workers 2 --out results/

Writes ``OUT/hists.pkl`` (the ``hist.Hist`` and the cutflow), ``OUT/hists.root``
(one TH2 m(mumu) x score per dataset and hypothesis) and one mplhep figure per
hypothesis, ``OUT/mumu_mass_<hypothesis>.png``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path
from typing import Any

from analysis import ChargedHiggsAnalysis
from coffea import processor
from coffea.nanoevents import NanoAODSchema
from paratag.processors.tagger import parse_hypotheses

from paratag.build import load_fileset, make_executor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--fileset", required=True, help="coffea fileset JSON/YAML (paratag generate)")
    p.add_argument("--model", default=None, help="exported model.onnx (omit: no paratag score)")
    p.add_argument(
        "--hypotheses",
        default="mHc=130,mA=90",
        help='"mHc=130,mA=90;mHc=160,mA=90" or a YAML/JSON file with `hypotheses:`',
    )
    p.add_argument("--executor", choices=("iterative", "futures", "dask"), default="iterative")
    p.add_argument("--workers", type=int, default=2, help="workers for futures/dask")
    p.add_argument("--chunksize", type=int, default=50_000, help="events per chunk")
    p.add_argument("--score-cut", type=float, default=0.5, help="score cut shown in the plot")
    p.add_argument("--out", default="charged_higgs_results", help="output folder")
    return p.parse_args(argv)


def run_analysis(
    fileset: str, analysis: ChargedHiggsAnalysis, executor: str, workers: int, chunksize: int
) -> dict[str, Any]:
    """Run ``analysis`` over ``fileset`` with a coffea Runner on the chosen executor."""
    with make_executor(executor, workers) as ex:
        runner = processor.Runner(ex, schema=NanoAODSchema, chunksize=chunksize)
        return runner(load_fileset(fileset), processor_instance=analysis, treename="Events")  # type: ignore[no-any-return]


def save(result: dict[str, Any], out: Path) -> list[Path]:
    """Write the histogram + cutflow as pickle and the 2D histograms as ROOT."""
    import uproot

    out.mkdir(parents=True, exist_ok=True)
    h = result["hist"]
    pkl = out / "hists.pkl"
    pkl.write_bytes(pickle.dumps(result))
    root = out / "hists.root"
    with uproot.recreate(root) as f:
        for ds in h.axes["dataset"]:
            for hyp in h.axes["hypothesis"]:
                f[f"{ds}/{hyp}"] = h[{"dataset": ds, "hypothesis": hyp}]
    (out / "cutflow.json").write_text(json.dumps(result["cutflow"], indent=1) + "\n")
    return [pkl, root, out / "cutflow.json"]


def plot(h: Any, out: Path, score_cut: float) -> list[Path]:
    """Per hypothesis: m(mumu) per dataset (all / above the score cut) and the score shapes."""
    import matplotlib

    matplotlib.use("Agg")
    import hist
    import matplotlib.pyplot as plt
    import mplhep

    paths = []
    with plt.style.context(mplhep.style.CMS):
        for hyp in h.axes["hypothesis"]:
            fig, (ax_m, ax_s) = plt.subplots(1, 2, figsize=(16, 7))
            for i, ds in enumerate(h.axes["dataset"]):
                sub = h[{"dataset": ds, "hypothesis": hyp}]
                if sub.sum().value <= 0:
                    continue
                color = f"C{i}"
                mplhep.histplot(
                    sub.project("mumu_mass"), ax=ax_m, label=ds, color=color, yerr=False
                )
                cut = sub[{"score": slice(hist.loc(score_cut), None, sum)}]
                if cut.sum().value > 0:
                    mplhep.histplot(
                        cut,
                        ax=ax_m,
                        label=f"{ds}, score > {score_cut:g}",
                        color=color,
                        ls="--",
                        yerr=False,
                    )
                mplhep.histplot(
                    sub.project("score"), ax=ax_s, label=ds, color=color, density=True, yerr=False
                )
            ax_m.set_xlabel(r"$m_{\mu\mu}$ closest to $m_A$ [GeV]")
            ax_m.set_ylabel("events (genWeight)")
            ax_s.set_xlabel(f"paratag score ({hyp})")
            ax_s.set_ylabel("normalised events")
            for ax in (ax_m, ax_s):
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize="x-small")
            mplhep.cms.label(ax=ax_m, data=False, text="Private work", rlabel="")
            mplhep.cms.label(ax=ax_s, data=False, text="", rlabel=hyp)
            path = out / f"mumu_mass_{hyp}.png"
            fig.savefig(path, dpi=80)
            plt.close(fig)
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    hypotheses = parse_hypotheses(args.hypotheses)
    analysis = ChargedHiggsAnalysis(hypotheses, model=args.model)
    result = run_analysis(args.fileset, analysis, args.executor, args.workers, args.chunksize)
    out = Path(args.out)
    written = save(result, out) + plot(result["hist"], out, args.score_cut)
    for ds, flow in result["cutflow"].items():
        print(f"{ds:<28} " + "  ".join(f"{k}: {v}" for k, v in flow.items()))
    for p in written:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
