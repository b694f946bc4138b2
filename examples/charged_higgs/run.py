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
import warnings
from pathlib import Path
from typing import Any

from analysis import ChargedHiggsAnalysis
from coffea import processor
from coffea.nanoevents import NanoAODSchema

from paratag.build import load_fileset, make_executor
from paratag.processors.tagger import parse_hypotheses

# Generated PFNano files have no Tau/FsrPhoton collections: coffea warns once per schema build.
warnings.filterwarnings("ignore", message="Missing cross-reference index", category=RuntimeWarning)


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
    """Per hypothesis: m(mumu) of every dataset, all events and events above the score cut."""
    import matplotlib

    matplotlib.use("Agg")
    import hist
    import matplotlib.pyplot as plt
    import mplhep

    paths = []
    with plt.style.context(mplhep.style.CMS):
        for hyp in h.axes["hypothesis"]:
            fig, axes = plt.subplots(1, 2, figsize=(16, 7), sharey=False)
            for ds in h.axes["dataset"]:
                sub = h[{"dataset": ds, "hypothesis": hyp}]
                if sub.sum().value <= 0:
                    continue
                mass_all = sub.project("mumu_mass")
                mass_cut = sub[{"score": slice(hist.loc(score_cut), None, sum)}]
                mplhep.histplot(mass_all, ax=axes[0], label=ds, histtype="step", yerr=False)
                if mass_cut.sum().value > 0:
                    mplhep.histplot(mass_cut, ax=axes[1], label=ds, histtype="step", yerr=False)
            axes[0].set_title("three tight leptons + OS $\\mu\\mu$", fontsize=16)
            axes[1].set_title(f"score({hyp}) > {score_cut:g}", fontsize=16)
            for ax in axes:
                ax.set_xlabel(r"$m_{\mu\mu}$ closest to $m_A$ [GeV]")
                ax.set_ylabel("events (genWeight)")
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize="x-small")
            mplhep.cms.label(ax=axes[0], data=False, text="Private work", rlabel=hyp)
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
