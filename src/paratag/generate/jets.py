"""Jet clustering with FastJet: AK4 ``Jet`` and AK8 ``FatJet`` from PF candidates.

Clustering runs on a whole chunk at once through FastJet's multi-event awkward
interface. The inputs are PF candidates weighted by their PUPPI weight (PUPPI jets,
as Run-3 NanoAOD's) or, with ``DetectorConfig.jet_constituents: chs``, all but the
charged pileup candidates at full weight (CHS).
Weakly decaying b and c hadrons enter as ghosts (momenta scaled by 1e-18) and
give ``hadronFlavour``; ``btagDeepFlavB`` is emulated from it (see
:func:`emulate_btag`). Soft-drop mass (beta = 0, z_cut = 0.1, R0 = 0.8) comes
from reclustering each fat jet's constituents with Cambridge/Aachen.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass
class _Inputs:
    """Clustering inputs of a chunk, grouped by event: CHS PF candidates and ghost hadrons."""

    p4: np.ndarray  # (n, 4) px, py, pz, E
    is_ghost: np.ndarray
    src: np.ndarray  # global PF index (candidates) or global hadron index (ghosts)
    offsets: np.ndarray  # per-event offsets into the arrays above
    had_flav: np.ndarray  # heavy flavour (5, 4, 0) of every truth hadron of the chunk


@dataclasses.dataclass
class _RawJets:
    """Anti-kt jets before the pT cut: constituent bookkeeping and per-jet sums."""

    jet_ev: np.ndarray  # event of each jet
    const_jet: np.ndarray  # jet of each constituent
    pos: np.ndarray  # position of each constituent in the inputs
    real: np.ndarray  # the constituent is a PF candidate, not a ghost
    sums: np.ndarray  # (n_jets, 4) summed px, py, pz, E of the real constituents
    pt: np.ndarray
    n_b: np.ndarray  # b-hadron ghosts per jet
    n_c: np.ndarray  # c-hadron ghosts per jet
    n_real: np.ndarray  # PF candidates per jet


def _candidate_p4(pf: dict[str, np.ndarray], idx: np.ndarray, puppi: bool) -> np.ndarray:
    """``(len(idx), 4)`` px, py, pz, E of PF candidates ``idx``, PUPPI-weighted if ``puppi``."""
    p4 = np.stack([pf["px"][idx], pf["py"][idx], pf["pz"][idx], pf["e"][idx]], 1)
    return p4 * pf["puppiWeight"][idx, None] if puppi else p4


def _clustering_inputs(reco: Reco, chunk: Chunk, puppi: bool) -> _Inputs:
    """PF candidates (PUPPI-weighted, or CHS) plus scaled b/c-hadron ghosts, sorted by event."""
    pf = reco.pf
    use = pf["puppiWeight"] > 0
    if not puppi:  # CHS: every neutral at full weight
        use |= ~pf["track"]
    c_idx = np.flatnonzero(use)
    c_ev = event_index(reco.pf_counts)[c_idx]

    had_flav = np.array([heavy_flavour(abs(int(p))) for p in chunk.had_pid], dtype=np.int32)
    g_idx = np.flatnonzero(had_flav > 0)
    g_ev = event_index(chunk.had_counts)[g_idx]

    p4 = np.concatenate(
        [
            _candidate_p4(pf, c_idx, puppi),
            chunk.had_p4[g_idx] * GHOST_SCALE,
        ]
    )
    is_ghost = np.concatenate([np.zeros(len(c_idx), bool), np.ones(len(g_idx), bool)])
    src = np.concatenate([c_idx, g_idx])
    evs = np.concatenate([c_ev, g_ev])
    order = np.argsort(evs, kind="stable")
    p4, is_ghost, src, evs = p4[order], is_ghost[order], src[order], evs[order]
    in_counts = np.bincount(evs, minlength=chunk.n_events)
    in_off = np.concatenate([[0], np.cumsum(in_counts)])
    return _Inputs(p4, is_ghost, src, in_off, had_flav)


def _antikt(fastjet: Any, inp: _Inputs, radius: float, pt_min: float, n_events: int) -> _RawJets:
    """Cluster ``inp`` with anti-kt (jets above ``pt_min / 2``) and sum each jet's constituents."""
    p4, in_off = inp.p4, inp.offsets
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
    ghost = inp.is_ghost[pos]

    real = ~ghost
    n_jr = len(n_const_raw)
    sums = np.stack(
        [np.bincount(const_jet[real], p4[pos[real], k], minlength=n_jr) for k in range(4)], 1
    )
    gh_flav = inp.had_flav[inp.src[pos[ghost]]]
    return _RawJets(
        jet_ev=jet_ev,
        const_jet=const_jet,
        pos=pos,
        real=real,
        sums=sums,
        pt=np.hypot(sums[:, 0], sums[:, 1]),
        n_b=np.bincount(const_jet[ghost][gh_flav == 5], minlength=n_jr),
        n_c=np.bincount(const_jet[ghost][gh_flav == 4], minlength=n_jr),
        n_real=np.bincount(const_jet[real], minlength=n_jr),
    )


def _jet_columns(
    raw: _RawJets, jorder: np.ndarray, cfg: DetectorConfig, rng: np.random.Generator
) -> Jets:
    """``Jet``/``FatJet`` columns of the kept jets ``jorder`` (b tag emulated with ``rng``)."""
    sums, jpt = raw.sums[jorder], raw.pt[jorder]
    pz, en = sums[:, 2], sums[:, 3]
    eta = np.arcsinh(pz / np.maximum(jpt, 1e-9))
    n_b, n_c = raw.n_b[jorder], raw.n_c[jorder]
    flavour = np.where(n_b > 0, 5, np.where(n_c > 0, 4, 0)).astype(np.int32)
    return {
        "pt": jpt,
        "eta": eta,
        "phi": np.arctan2(sums[:, 1], sums[:, 0]),
        "mass": np.sqrt(np.maximum(en**2 - jpt**2 - pz**2, 0.0)),
        "nConstituents": raw.n_real[jorder].astype(np.int32),
        "hadronFlavour": flavour,
        "nBHadrons": n_b,
        "nCHadrons": n_c,
        "btagDeepFlavB": emulate_btag(flavour, eta, cfg, rng),
        "jetId": np.full(len(jpt), 6, dtype=np.int32),
        "e": en,
        "px": sums[:, 0],
        "py": sums[:, 1],
    }


def _link_table(
    raw: _RawJets, inp: _Inputs, jorder: np.ndarray, counts: np.ndarray, reco: Reco
) -> tuple[Jets, np.ndarray, np.ndarray]:
    """Constituents of the kept jets in jet order, each jet's by decreasing pT.

    Returns the ``*PFCands`` columns, their per-event counts and the global PF index of
    each row.
    """
    pf_off = np.concatenate([[0], np.cumsum(reco.pf_counts)])
    new_id = np.full(len(raw.n_real), -1)
    new_id[jorder] = np.arange(len(jorder))
    jet_off = np.concatenate([[0], np.cumsum(counts)])
    sel = raw.real & (new_id[raw.const_jet] >= 0)
    l_jet = new_id[raw.const_jet[sel]]
    l_pf = inp.src[raw.pos[sel]]
    l_pt = reco.pf["pt"][l_pf]
    lorder = np.lexsort((-l_pt, l_jet))
    l_jet, l_pf, l_pt = l_jet[lorder], l_pf[lorder], l_pt[lorder]
    l_ev = raw.jet_ev[jorder][l_jet]
    links: Jets = {
        "jetIdx": (l_jet - jet_off[l_ev]).astype(np.int32),
        "pFCandsIdx": (l_pf - pf_off[l_ev]).astype(np.int32),
        "pt": l_pt,
    }
    return links, np.bincount(l_ev, minlength=len(counts)), l_pf


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
    n_events = chunk.n_events
    puppi = cfg.jet_constituents == "puppi"
    inp = _clustering_inputs(reco, chunk, puppi)
    raw = _antikt(fastjet, inp, radius, pt_min, n_events)

    keep = (raw.pt > pt_min) & (raw.n_real > 0)
    jorder = np.lexsort((-raw.pt, raw.jet_ev))
    jorder = jorder[keep[jorder]]
    counts = np.bincount(raw.jet_ev[jorder], minlength=n_events)
    jets = _jet_columns(raw, jorder, cfg, rng)
    links, link_counts, l_pf = _link_table(raw, inp, jorder, counts, reco)
    if softdrop:
        jets["msoftdrop"] = _softdrop_mass(
            fastjet, _candidate_p4(reco.pf, l_pf, puppi), jets["nConstituents"]
        )
    return jets, counts, links, link_counts


def _softdrop_mass(fastjet: Any, p4: np.ndarray, n_const: np.ndarray) -> np.ndarray:
    """Soft-drop mass (beta = 0, z_cut = 0.1, R0 = 0.8) of each jet from its constituents.

    ``p4``: ``(n, 4)`` constituent four-momenta grouped by jet, ``n_const`` per jet.
    """
    if len(n_const) == 0:
        return np.zeros(0)
    offsets = np.concatenate([[0], np.cumsum(n_const)])
    per_jet = _jagged_p4(p4[:, 0], p4[:, 1], p4[:, 2], p4[:, 3], offsets)
    seq = fastjet.ClusterSequence(per_jet, fastjet.JetDefinition(fastjet.cambridge_algorithm, 10.0))
    groomed = seq.exclusive_jets_softdrop_grooming(njets=1, beta=0.0, symmetry_cut=0.1, R0=0.8)
    return np.nan_to_num(ak.to_numpy(groomed.msoftdrop).astype(float))
