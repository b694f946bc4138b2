"""A three-lepton charged-Higgs analysis processor, with the paratag score added in a few lines.

The selection is the kind an analysis already has: exactly three tight leptons
(muons or electrons), at least one opposite-sign muon pair, and for every signal
hypothesis the pair whose invariant mass is closest to that hypothesis' mA.
The only paratag lines are marked ``# paratag``: the processor holds a
:class:`paratag.processors.Tagger` and calls it on the events of each chunk,
which adds one ``score_<hypothesis>`` field per (mHc, mA) hypothesis.

Output (per chunk, summed by coffea): ``{"hist": Hist(dataset, hypothesis,
mumu_mass, score), "cutflow": {dataset: {step: events}}}``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor
from paratag.processors import Tagger  # paratag
from paratag.processors.tagger import hypothesis_name  # paratag

__all__ = ["ChargedHiggsAnalysis", "tight_electrons", "tight_muons"]

# Generated PFNano files have no Tau/Photon collections: coffea warns on every schema build
# (set here, not in run.py, so that futures/dask worker processes get the filter too).
warnings.filterwarnings("ignore", message="Missing cross-reference index", category=RuntimeWarning)


def tight_muons(events: Any) -> Any:
    """Tight, isolated muons with pT > 10 GeV and |eta| < 2.4."""
    mu = events.Muon
    return mu[(mu.pt > 10) & (abs(mu.eta) < 2.4) & mu.tightId & (mu.pfRelIso04_all < 0.15)]


def tight_electrons(events: Any) -> Any:
    """Cut-based tight electrons with pT > 10 GeV and |eta| < 2.5."""
    el = events.Electron
    return el[(el.pt > 10) & (abs(el.eta) < 2.5) & (el.cutBased >= 4)]


class ChargedHiggsAnalysis(processor.ProcessorABC):
    """Three tight leptons, an opposite-sign muon pair near mA, and the paratag score.

    Args:
        hypotheses: signal hypotheses, e.g. ``[{"mHc": 130, "mA": 90}]``.
        model: exported ``model.onnx`` (``preprocess.json`` next to it); None runs
            the plain analysis and fills the score axis with -1 (underflow).
        mass_bins: ``(bins, low, high)`` of the m(mumu) axis in GeV.
        score_bins: bins of the score axis on [0, 1].
    """

    def __init__(
        self,
        hypotheses: Sequence[Mapping[str, float]],
        model: str | None = None,
        mass_bins: tuple[int, float, float] = (40, 10.0, 170.0),
        score_bins: int = 20,
    ) -> None:
        self.hypotheses = [dict(h) for h in hypotheses]
        self.names = [hypothesis_name(h) for h in self.hypotheses]
        self.mass_bins = mass_bins
        self.score_bins = score_bins
        # paratag: one Tagger for all hypotheses (picklable; the ONNX session is made per worker)
        self.tagger = Tagger(model, self.hypotheses) if model is not None else None

    def new_hist(self) -> hist.Hist:
        """Empty m(mumu) x score histogram."""
        n, lo, hi = self.mass_bins
        return hist.Hist(
            hist.axis.StrCategory([], name="dataset", growth=True, label="Dataset"),
            hist.axis.StrCategory(self.names, name="hypothesis", label="Hypothesis"),
            hist.axis.Regular(n, lo, hi, name="mumu_mass", label=r"$m_{\mu\mu}$ [GeV]"),
            hist.axis.Regular(self.score_bins, 0.0, 1.0, name="score", label="paratag score"),
            storage=hist.storage.Weight(),
        )

    def process(self, events: Any) -> dict[str, Any]:
        """Select three-lepton events and fill m(mumu) vs score for every hypothesis."""
        dataset = str(events.metadata.get("dataset", "unknown"))
        if self.tagger is not None:
            events = self.tagger(events)  # paratag: adds events.score_mHc130_mA90, ...
        cutflow = {"all": len(events)}

        muons, electrons = tight_muons(events), tight_electrons(events)
        three = (ak.num(muons) + ak.num(electrons)) == 3
        cutflow["three tight leptons"] = int(ak.sum(three))
        pairs = ak.combinations(muons, 2, fields=["a", "b"])
        pairs = pairs[pairs.a.charge * pairs.b.charge < 0]
        has_pair = three & (ak.num(pairs) > 0)
        cutflow["OS muon pair"] = int(ak.sum(has_pair))

        selected, pairs = events[has_pair], pairs[has_pair]
        masses = (pairs.a + pairs.b).mass
        weight = (
            np.asarray(selected.genWeight, np.float64)
            if "genWeight" in selected.fields
            else np.ones(len(selected))
        )
        h = self.new_hist()
        for hyp, name in zip(self.hypotheses, self.names, strict=True):
            closest = ak.argmin(abs(masses - hyp["mA"]), axis=1, keepdims=True)
            mumu = ak.to_numpy(ak.fill_none(ak.firsts(masses[closest]), np.nan))
            if self.tagger is not None:
                score = np.asarray(selected[f"score_{name}"], np.float64)  # paratag
            else:
                score = np.full(len(selected), -1.0)
            ok = np.isfinite(mumu) & np.isfinite(score)
            h.fill(
                dataset=dataset,
                hypothesis=name,
                mumu_mass=mumu[ok],
                score=score[ok],
                weight=weight[ok],
            )
        return {"hist": h, "cutflow": {dataset: cutflow}}

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        """Nothing to do: the histogram and cutflow are already summed."""
        return accumulator
