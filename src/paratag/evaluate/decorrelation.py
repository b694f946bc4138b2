"""Mass decorrelation: background mass sculpting by score cuts and the DisCo figure of merit.

For cuts at several signal efficiencies the background mass (jet mass or mA
candidate mass) histogram after the cut is compared with the one before it by
the Jensen–Shannon divergence; the DisCo paper plots 1/JSD at 50% signal
efficiency against the background rejection 1/εB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from paratag.errors import InvalidValueError
from paratag.evaluate.metrics import jensen_shannon, threshold_at_efficiency

__all__ = ["SculptingResult", "decorrelation_points", "sculpting"]


@dataclass(frozen=True)
class SculptingResult:
    """Background mass histograms before/after cuts at several signal efficiencies.

    ``n_pass`` counts the background jets (unweighted) passing each cut: a JSD
    between histograms of a few dozen jets measures their noise, not the sculpting.
    """

    bins: np.ndarray
    before: np.ndarray
    after: dict[float, np.ndarray]
    thresholds: dict[float, float]
    bkg_eff: dict[float, float]
    jsd: dict[float, float]
    n_pass: dict[float, int]
    n_background: int

    def inv_bkg_eff(self, sig_eff: float) -> float:
        """1/εB at the cut of signal efficiency ``sig_eff``."""
        e = self.bkg_eff[sig_eff]
        return float("inf") if e <= 0 else 1.0 / e

    def inv_jsd(self, sig_eff: float) -> float:
        """1/JSD at the cut of signal efficiency ``sig_eff`` (the DisCo figure of merit)."""
        j = self.jsd[sig_eff]
        return float("inf") if j <= 0 else 1.0 / j

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        return {
            "bins": self.bins.tolist(),
            "before": self.before.tolist(),
            "after": {f"{k:g}": v.tolist() for k, v in self.after.items()},
            "thresholds": {f"{k:g}": v for k, v in self.thresholds.items()},
            "bkg_eff": {f"{k:g}": v for k, v in self.bkg_eff.items()},
            "jsd": {f"{k:g}": v for k, v in self.jsd.items()},
            "n_pass": {f"{k:g}": v for k, v in self.n_pass.items()},
            "n_background": self.n_background,
        }


def sculpting(
    bkg_mass: np.ndarray,
    bkg_score: np.ndarray,
    sig_score: np.ndarray,
    bkg_weight: np.ndarray | None = None,
    sig_weight: np.ndarray | None = None,
    sig_effs: Sequence[float] = (0.9, 0.7, 0.5, 0.3),
    bins: int | np.ndarray = 30,
) -> SculptingResult:
    """Background mass shape before and after score cuts; JSD after vs before each cut."""
    m = np.asarray(bkg_mass, dtype=np.float64).reshape(-1)
    sb = np.asarray(bkg_score, dtype=np.float64).reshape(-1)
    wb = np.ones_like(m) if bkg_weight is None else np.asarray(bkg_weight, np.float64).reshape(-1)
    if not (m.shape == sb.shape == wb.shape):
        raise InvalidValueError(
            f"background mass {m.shape}, score {sb.shape}, weight {wb.shape} differ"
        )
    edges = np.histogram_bin_edges(m, bins=bins) if np.isscalar(bins) else np.asarray(bins, float)
    before, _ = np.histogram(m, bins=edges, weights=wb)
    after, thr, eff, jsd, n_pass = {}, {}, {}, {}, {}
    for e in sig_effs:
        t = threshold_at_efficiency(sig_score, e, sig_weight)
        sel = sb >= t
        h, _ = np.histogram(m[sel], bins=edges, weights=wb[sel])
        after[float(e)], thr[float(e)] = h, t
        eff[float(e)] = float(wb[sel].sum() / wb.sum())
        jsd[float(e)] = jensen_shannon(before, h) if h.sum() > 0 else float("nan")
        n_pass[float(e)] = int(sel.sum())
    return SculptingResult(
        bins=edges,
        before=before,
        after=after,
        thresholds=thr,
        bkg_eff=eff,
        jsd=jsd,
        n_pass=n_pass,
        n_background=len(m),
    )


def decorrelation_points(
    results: Mapping[str, SculptingResult], sig_eff: float = 0.5
) -> dict[str, dict[str, float]]:
    """Per model: 1/εB and 1/JSD at ``sig_eff`` (the DisCo paper's comparison)."""
    return {
        name: {
            "sig_eff": sig_eff,
            "inv_bkg_eff": r.inv_bkg_eff(sig_eff),
            "inv_jsd": r.inv_jsd(sig_eff),
            "jsd": r.jsd[sig_eff],
            "n_pass": r.n_pass[sig_eff],
            "n_background": r.n_background,
        }
        for name, r in results.items()
    }
