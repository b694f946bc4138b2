"""Jet clustering with FastJet: AK4 ``Jet`` and AK8 ``FatJet`` from PF candidates.

Clustering runs on a whole chunk at once through FastJet's multi-event awkward
interface. Charged pileup candidates (weight 0) are removed first (CHS).
Weakly decaying b and c hadrons enter as ghosts (momenta scaled by 1e-18) and
give ``hadronFlavour``; ``btagDeepFlavB`` is emulated from it (see
:func:`emulate_btag`). Soft-drop mass (beta = 0, z_cut = 0.1, R0 = 0.8) comes
from reclustering each fat jet's constituents with Cambridge/Aachen.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from paratag.errors import require
from paratag.generate.config import DetectorConfig
from paratag.generate.detector import Chunk, Reco, event_index
from paratag.generate.pythia_io import heavy_flavour

__all__ = ["Jets", "cluster_jets", "emulate_btag"]

GHOST_SCALE = 1e-18

Jets = dict[str, np.ndarray]


def fastjet_banner(show: bool) -> None:
    """Print FastJet's banner now (``show``) or silence it in this process.

    FastJet prints it on first use in every process; the generator shows it once
    in the parent and silences its worker processes.
    """
    require("fastjet", "gen")
    import fastjet._swig as fj

    if show:
        fj.ClusterSequence.print_banner()
    else:
        fj.ClusterSequence.set_fastjet_banner_stream(None)


def _p4_from_ptetaphim(
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, m: np.ndarray
) -> np.ndarray:
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.stack([px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + m**2)], axis=1)


def _jagged_p4(
    px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray, offsets: np.ndarray
) -> ak.Array:
    """Jagged (px, py, pz, E) records built from layouts (cheaper than ``ak.zip`` + ``ak.unflatten``)."""
    cols = [
        ak.contents.NumpyArray(np.ascontiguousarray(c, dtype=np.float64)) for c in (px, py, pz, e)
    ]
    record = ak.contents.RecordArray(cols, ["px", "py", "pz", "E"])
    return ak.Array(
        ak.contents.ListOffsetArray(ak.index.Index64(np.asarray(offsets, np.int64)), record)
    )


def emulate_btag(
    flavour: np.ndarray, eta: np.ndarray, cfg: DetectorConfig, rng: np.random.Generator
) -> np.ndarray:
    """Emulated DeepJet b score.

    A jet with |eta| < ``charged_eta_max`` passes ``btag_wp`` with probability
    ``btag_eff`` of its hadron flavour (b, c, light). Passing jets get a score
    uniform-in-power above the working point (peaked towards 1), failing jets a
    score below it (peaked towards 0); jets outside the tracker always fail.
    """
    eff_b, eff_c, eff_l = cfg.btag_eff
    eff = np.where(flavour == 5, eff_b, np.where(flavour == 4, eff_c, eff_l))
    eff = np.where(np.abs(eta) < cfg.charged_eta_max, eff, 0.0)
    u, v = rng.random(len(flavour)), rng.random(len(flavour))
    wp = cfg.btag_wp
    passed = u < eff
    return np.where(passed, wp + (1.0 - wp) * v**0.3, wp * v**3)


def cluster_jets(
    reco: Reco,
    chunk: Chunk,
    radius: float,
    pt_min: float,
    cfg: DetectorConfig,
    rng: np.random.Generator,
    softdrop: bool = False,
) -> tuple[Jets, np.ndarray, Jets, np.ndarray]:
    """Cluster anti-kt jets of ``radius``; return (jets, counts, links, link counts).

    ``jets`` holds pt, eta, phi, mass, nConstituents, hadronFlavour, nBHadrons,
    nCHadrons, btagDeepFlavB (and msoftdrop); ``links`` holds the
    ``*PFCands`` table (jetIdx, pFCandsIdx, pt), grouped by jet in jet order.
    """
    fastjet: Any = require("fastjet", "gen")
    pf = reco.pf
    n_events = chunk.n_events
    pf_off = np.concatenate([[0], np.cumsum(reco.pf_counts)])
    use = (pf["puppiWeight"] > 0) | ~pf["track"]
    c_idx = np.flatnonzero(use)
    c_ev = event_index(reco.pf_counts)[c_idx]

    had_flav = np.array([heavy_flavour(abs(int(p))) for p in chunk.had_pid], dtype=np.int32)
    g_idx = np.flatnonzero(had_flav > 0)
    g_ev = event_index(chunk.had_counts)[g_idx]

    p4 = np.concatenate(
        [
            np.stack([pf["px"], pf["py"], pf["pz"], pf["e"]], 1)[c_idx],
            chunk.had_p4[g_idx] * GHOST_SCALE,
        ]
    )
    is_ghost = np.concatenate([np.zeros(len(c_idx), bool), np.ones(len(g_idx), bool)])
    src = np.concatenate([c_idx, g_idx])  # global pf index or global hadron index
    evs = np.concatenate([c_ev, g_ev])
    order = np.argsort(evs, kind="stable")
    p4, is_ghost, src, evs = p4[order], is_ghost[order], src[order], evs[order]
    in_counts = np.bincount(evs, minlength=n_events)
    in_off = np.concatenate([[0], np.cumsum(in_counts)])

    particles = _jagged_p4(p4[:, 0], p4[:, 1], p4[:, 2], p4[:, 3], in_off)
    seq = fastjet.ClusterSequence(
        particles, fastjet.JetDefinition(fastjet.antikt_algorithm, radius)
    )
    cidx = seq.constituent_index(pt_min * 0.5)
    n_jets_raw = ak.to_numpy(ak.num(cidx, axis=1))
    n_const_raw = ak.to_numpy(ak.flatten(ak.num(cidx, axis=2)))
    local = ak.to_numpy(ak.flatten(cidx, axis=None)).astype(np.int64)
    jet_ev = np.repeat(np.arange(n_events), n_jets_raw)
    const_jet = np.repeat(np.arange(len(n_const_raw)), n_const_raw)
    pos = in_off[jet_ev[const_jet]] + local
    ghost = is_ghost[pos]

    real = ~ghost
    n_jr = len(n_const_raw)
    sums = np.stack(
        [np.bincount(const_jet[real], p4[pos[real], k], minlength=n_jr) for k in range(4)], 1
    )
    jpt = np.hypot(sums[:, 0], sums[:, 1])
    gh_flav = had_flav[src[pos[ghost]]]
    n_b = np.bincount(const_jet[ghost][gh_flav == 5], minlength=n_jr)
    n_c = np.bincount(const_jet[ghost][gh_flav == 4], minlength=n_jr)
    n_real = np.bincount(const_jet[real], minlength=n_jr)

    keep = (jpt > pt_min) & (n_real > 0)
    jorder = np.lexsort((-jpt, jet_ev))
    jorder = jorder[keep[jorder]]
    counts = np.bincount(jet_ev[jorder], minlength=n_events)
    sums, jpt = sums[jorder], jpt[jorder]
    pz, en = sums[:, 2], sums[:, 3]
    eta = np.arcsinh(pz / np.maximum(jpt, 1e-9))
    flavour = np.where(n_b[jorder] > 0, 5, np.where(n_c[jorder] > 0, 4, 0)).astype(np.int32)
    jets: Jets = {
        "pt": jpt,
        "eta": eta,
        "phi": np.arctan2(sums[:, 1], sums[:, 0]),
        "mass": np.sqrt(np.maximum(en**2 - jpt**2 - pz**2, 0.0)),
        "nConstituents": n_real[jorder].astype(np.int32),
        "hadronFlavour": flavour,
        "nBHadrons": n_b[jorder],
        "nCHadrons": n_c[jorder],
        "btagDeepFlavB": emulate_btag(flavour, eta, cfg, rng),
        "jetId": np.full(len(jpt), 6, dtype=np.int32),
        "e": en,
        "px": sums[:, 0],
        "py": sums[:, 1],
    }

    # link table: constituents of kept jets, in jet order, each jet's by decreasing pT
    new_id = np.full(n_jr, -1)
    new_id[jorder] = np.arange(len(jorder))
    jet_off = np.concatenate([[0], np.cumsum(counts)])
    sel = real & (new_id[const_jet] >= 0)
    l_jet = new_id[const_jet[sel]]
    l_pf = src[pos[sel]]
    l_pt = pf["pt"][l_pf]
    lorder = np.lexsort((-l_pt, l_jet))
    l_jet, l_pf, l_pt = l_jet[lorder], l_pf[lorder], l_pt[lorder]
    l_ev = jet_ev[jorder][l_jet]
    links: Jets = {
        "jetIdx": (l_jet - jet_off[l_ev]).astype(np.int32),
        "pFCandsIdx": (l_pf - pf_off[l_ev]).astype(np.int32),
        "pt": l_pt,
    }
    link_counts = np.bincount(l_ev, minlength=n_events)
    if softdrop:
        jets["msoftdrop"] = _softdrop_mass(fastjet, pf, l_pf, jets["nConstituents"])
    return jets, counts, links, link_counts


def _softdrop_mass(
    fastjet, pf: dict[str, np.ndarray], l_pf: np.ndarray, n_const: np.ndarray
) -> np.ndarray:
    """Soft-drop mass (beta = 0, z_cut = 0.1, R0 = 0.8) of each jet from its constituents."""
    if len(n_const) == 0:
        return np.zeros(0)
    offsets = np.concatenate([[0], np.cumsum(n_const)])
    per_jet = _jagged_p4(pf["px"][l_pf], pf["py"][l_pf], pf["pz"][l_pf], pf["e"][l_pf], offsets)
    seq = fastjet.ClusterSequence(per_jet, fastjet.JetDefinition(fastjet.cambridge_algorithm, 10.0))
    groomed = seq.exclusive_jets_softdrop_grooming(njets=1, beta=0.0, symmetry_cut=0.1, R0=0.8)
    return np.nan_to_num(ak.to_numpy(groomed.msoftdrop).astype(float))
