"""Fast parametric detector simulation: truth particles -> PF candidates, leptons, MET.

All steps run vectorised over a chunk of events held as flat NumPy arrays with
per-event counts. The parametrisation (acceptances, efficiencies, resolutions,
impact-parameter model, the PUPPI-like weight) is documented in
``docs/generate.md``; its numbers live in :class:`DetectorConfig`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import erf

from paratag.generate.config import DetectorConfig
from paratag.generate.pythia_io import TruthEvent

__all__ = ["Chunk", "Reco", "simulate", "stack_events"]

M_PION, M_ELECTRON, M_MUON = 0.13957, 0.000511, 0.10566
MM_TO_CM = 0.1


@dataclasses.dataclass
class Chunk:
    """Truth content of a chunk of events, flattened (particles and hadrons)."""

    counts: np.ndarray
    pid: np.ndarray
    charge: np.ndarray
    p4: np.ndarray
    vtx: np.ndarray
    hf: np.ndarray
    lepflav: np.ndarray
    pu: np.ndarray
    had_counts: np.ndarray
    had_pid: np.ndarray
    had_p4: np.ndarray
    had_vtx: np.ndarray
    pv_true: np.ndarray  # (n_events, 3) mm
    n_pu: np.ndarray
    weight: np.ndarray
    gen: list[dict[str, np.ndarray]]
    mu: np.ndarray  # (n_events,) mean pileup of each event (Pileup_nTrueInt)

    @property
    def n_events(self) -> int:
        """Number of events in the chunk."""
        return len(self.counts)


def stack_events(
    events: list[TruthEvent], pv_true: np.ndarray, n_pu: np.ndarray, mu: np.ndarray | None = None
) -> Chunk:
    """Concatenate per-event truth into one :class:`Chunk` (``mu``: per-event mean pileup)."""

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(e, name) for e in events])

    return Chunk(
        counts=np.array([len(e.pid) for e in events], dtype=np.int64),
        pid=cat("pid"),
        charge=cat("charge"),
        p4=cat("p4"),
        vtx=cat("vtx"),
        hf=cat("hf"),
        lepflav=cat("lepflav"),
        pu=cat("pu"),
        had_counts=np.array([len(e.had_pid) for e in events], dtype=np.int64),
        had_pid=cat("had_pid"),
        had_p4=cat("had_p4"),
        had_vtx=cat("had_vtx"),
        pv_true=pv_true,
        n_pu=n_pu,
        weight=np.array([e.weight for e in events]),
        gen=[e.gen for e in events],
        mu=np.zeros(len(events)) if mu is None else np.asarray(mu, float),
    )


@dataclasses.dataclass
class Reco:
    """Detector-level flat arrays: ``pf`` (PF candidates) plus per-event scalars."""

    pf: dict[str, np.ndarray]
    pf_counts: np.ndarray
    muon: dict[str, np.ndarray]
    muon_counts: np.ndarray
    electron: dict[str, np.ndarray]
    electron_counts: np.ndarray
    event: dict[str, np.ndarray]
    pv_reco: np.ndarray  # (n_events, 3) cm


def _smear(rng: np.random.Generator, x: np.ndarray, rel: np.ndarray) -> np.ndarray:
    return x * (1.0 + rel * rng.standard_normal(len(x)))


def event_index(counts: np.ndarray) -> np.ndarray:
    """Event number of each flat entry."""
    return np.repeat(np.arange(len(counts)), counts)


def _detect(
    chunk: Chunk,
    pt: np.ndarray,
    eta: np.ndarray,
    ok: np.ndarray,
    cfg: DetectorConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which truth particles are tracks, ECAL or HCAL deposits, and their smeared pT.

    Returns the masks (track, em, had) and the reconstructed pT of every particle.
    """
    e = chunk.p4[:, 3]
    apid = np.abs(chunk.pid)
    charged = chunk.charge != 0
    u = rng.random(len(pt))

    eff = np.where(np.isin(apid, (11, 13)), 0.99, cfg.tracking_eff)
    track = ok & charged & (np.abs(eta) < cfg.charged_eta_max) & (pt > cfg.track_pt_min) & (u < eff)
    in_calo = ok & ~track & (apid != 13) & (np.abs(eta) < cfg.calo_eta_max)
    em = in_calo & ((apid == 22) | (apid == 11))
    had = in_calo & ~em

    # calorimeter deposits: smear energy, keep direction, massless
    e_reco = e.copy()
    for mask, (stoch, const) in ((em, cfg.ecal_res), (had, cfg.hcal_res)):
        ee = e[mask]
        rel = np.sqrt(stoch**2 / np.maximum(ee, 1e-3) + const**2)
        e_reco[mask] = _smear(rng, ee, rel)
    em &= e_reco > cfg.photon_e_min
    had &= e_reco > cfg.neutral_e_min

    pt_reco = np.where(track, pt, e_reco / np.cosh(eta))
    a, b = cfg.track_res
    pt_reco[track] = np.abs(_smear(rng, pt[track], np.sqrt(a**2 + (b * pt[track]) ** 2)))
    return track, em, had, pt_reco


def _pdg_id_and_mass(
    apid: np.ndarray, track: np.ndarray, had: np.ndarray, sign: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """PF ``pdgId`` (e, mu, pi+-, photon, K0L) and mass hypothesis of every particle."""
    pdg = np.where(had, 130, 22).astype(np.int32)
    pdg = np.where(track & (apid == 11), -11 * sign, pdg)
    pdg = np.where(track & (apid == 13), -13 * sign, pdg)
    pdg = np.where(track & ~np.isin(apid, (11, 13)), 211 * sign, pdg)
    mass = np.where(track, M_PION, 0.0)
    mass = np.where(np.abs(pdg) == 11, M_ELECTRON, mass)
    mass = np.where(np.abs(pdg) == 13, M_MUON, mass)
    return pdg, mass


def _impact_parameters(
    chunk: Chunk,
    pv_ev: np.ndarray,
    pt: np.ndarray,
    track: np.ndarray,
    cfg: DetectorConfig,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Smeared d0, dz and their errors w.r.t. the reconstructed vertex ``pv_ev`` (straight tracks).

    Non-tracks get -1 in every column.
    """
    px, py, pz, _ = chunk.p4.T
    n = len(pt)
    rel_v = chunk.vtx * MM_TO_CM - pv_ev
    ptsafe = np.maximum(pt, 1e-6)
    d0_true = (-rel_v[:, 0] * py + rel_v[:, 1] * px) / ptsafe
    dz_true = rel_v[:, 2] - (rel_v[:, 0] * px + rel_v[:, 1] * py) / ptsafe * pz / ptsafe
    d0_err = np.hypot(cfg.d0_res_cm[0], cfg.d0_res_cm[1] / ptsafe)
    dz_err = np.hypot(cfg.dz_res_cm[0], cfg.dz_res_cm[1] / ptsafe)
    d0 = d0_true + d0_err * rng.standard_normal(n)
    dz = dz_true + dz_err * rng.standard_normal(n)
    for arr in (d0, dz, d0_err, dz_err):
        arr[~track] = -1.0
    return {"d0": d0, "d0Err": d0_err, "dz": dz, "dzErr": dz_err}


def _pf_candidates(
    chunk: Chunk, sel: np.ndarray, full: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """PF candidate columns of the kept particles ``sel`` from per-particle columns ``full``."""
    pf = {k: v[sel] for k, v in full.items()}
    pt_k, eta_k, phi_k, m_k = pf["pt"], pf["eta"], pf["phi"], pf["mass"]
    pf["px"] = pt_k * np.cos(phi_k)
    pf["py"] = pt_k * np.sin(phi_k)
    pf["pz"] = pt_k * np.sinh(eta_k)
    pf["hf"] = chunk.hf[sel]
    pf["pu"] = chunk.pu[sel]
    pf["lepflav"] = chunk.lepflav[sel]
    pf["track"] = pf.pop("track")
    pf["e"] = np.sqrt(pf["px"] ** 2 + pf["py"] ** 2 + pf["pz"] ** 2 + m_k**2)
    return pf


def _event_columns(
    pf: dict[str, np.ndarray], pf_counts: np.ndarray, pv_reco: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-event MET (from all PF candidates) and primary-vertex columns."""
    n_events = len(pf_counts)
    pf_ev = event_index(pf_counts)
    met_x = -np.bincount(pf_ev, pf["px"], minlength=n_events)
    met_y = -np.bincount(pf_ev, pf["py"], minlength=n_events)
    trk_pu = pf["track"] & (pf["pu"] > 0)
    n_trk_vtx = np.unique(pf_ev[trk_pu] * 10_000 + pf["pu"][trk_pu], return_counts=True)[1]
    good_pu = np.unique(pf_ev[trk_pu] * 10_000 + pf["pu"][trk_pu])[n_trk_vtx >= 2] // 10_000
    npvs = 1 + np.bincount(good_pu, minlength=n_events)
    return {
        "MET_pt": np.hypot(met_x, met_y),
        "MET_phi": np.arctan2(met_y, met_x),
        "MET_sumEt": np.bincount(pf_ev, pf["pt"], minlength=n_events),
        "PV_npvs": npvs.astype(np.int32),
        "PV_npvsGood": npvs.astype(np.int32),
        "PV_x": pv_reco[:, 0],
        "PV_y": pv_reco[:, 1],
        "PV_z": pv_reco[:, 2],
    }


def simulate(chunk: Chunk, cfg: DetectorConfig, rng: np.random.Generator) -> Reco:
    """Run the parametric detector on one chunk."""
    px, py, pz, _ = chunk.p4.T
    pt = np.hypot(px, py)
    ok = pt > 1e-6
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pt), where=ok))
    phi = np.arctan2(py, px)
    track, em, had, pt_reco = _detect(chunk, pt, eta, ok, cfg, rng)

    ev = event_index(chunk.counts)
    pv_true_cm = chunk.pv_true * MM_TO_CM
    pv_reco = pv_true_cm + rng.normal(0.0, [0.001, 0.001, 0.0015], pv_true_cm.shape)
    sign = np.sign(chunk.charge).astype(np.int32)
    pdg, mass = _pdg_id_and_mass(np.abs(chunk.pid), track, had, sign)
    ip = _impact_parameters(chunk, pv_reco[ev], pt, track, cfg, rng)
    puppi = np.ones(len(pt))
    puppi[track] = np.where((chunk.pu[track] == 0) | (np.abs(ip["dz"][track]) < 0.1), 1.0, 0.0)

    sel = np.flatnonzero(track | em | had)
    pf_counts = np.bincount(ev[sel], minlength=chunk.n_events)
    full = {
        "pt": pt_reco,
        "eta": eta,
        "phi": phi,
        "mass": mass,
        "charge": np.where(track, sign, 0).astype(np.int32),
        "pdgId": pdg,
        **ip,
        "puppiWeight": puppi,
        "track": track,
    }
    pf = _pf_candidates(chunk, sel, full)
    offsets = np.concatenate([[0], np.cumsum(pf_counts)])
    if chunk.n_pu.any():
        pf["puppiWeight"] = _puppi_neutrals(pf, offsets, chunk.n_pu, cfg)

    muon, muon_counts = _leptons(pf, offsets, 13, cfg, rng)
    electron, electron_counts = _leptons(pf, offsets, 11, cfg, rng)
    event = _event_columns(pf, pf_counts, pv_reco)
    return Reco(pf, pf_counts, muon, muon_counts, electron, electron_counts, event, pv_reco)


def _delta_r2(eta1: np.ndarray, phi1: np.ndarray, eta2: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    dphi = (phi1[:, None] - phi2[None, :] + np.pi) % (2 * np.pi) - np.pi
    return (eta1[:, None] - eta2[None, :]) ** 2 + dphi**2


def _puppi_neutrals(
    pf: dict[str, np.ndarray], offsets: np.ndarray, n_pu: np.ndarray, cfg: DetectorConfig
) -> np.ndarray:
    """PUPPI-like weights of neutral candidates (charged weights are kept).

    alpha_i = log max(1, sum_{j in charged PV, dR < 0.4} (pT_j / dR_ij)^2); the charged
    pileup candidates give the reference median and RMS; a neutral with
    alpha > median gets w = F_chi2(1)((alpha - median)^2 / RMS^2), otherwise 0.
    Then, as in CMS's PUPPI: w · pT below ``puppi_neutral_min_pt`` → 0, and w raised to
    the ``puppi_neutral_protect`` ramp in pT (hard neutrals far from any charged
    hard-vertex track would otherwise get 0).
    """
    w = pf["puppiWeight"].copy()
    for i in np.flatnonzero(n_pu > 0):
        s = slice(offsets[i], offsets[i + 1])
        eta, phi, pt = pf["eta"][s], pf["phi"][s], pf["pt"][s]
        trk, wi = pf["track"][s], w[s]
        ch_pv = trk & (wi > 0)
        ch_pu = trk & (wi == 0)
        neu = ~trk
        if not ch_pu.any() or not neu.any():
            continue

        def alpha(mask: np.ndarray) -> np.ndarray:
            dr2 = _delta_r2(eta[mask], phi[mask], eta[ch_pv], phi[ch_pv])  # noqa: B023
            near = (dr2 < 0.16) & (dr2 > 1e-8)
            ratio = np.where(near, pt[ch_pv][None, :] ** 2 / np.maximum(dr2, 1e-8), 0.0)  # noqa: B023
            return np.log(np.maximum(ratio.sum(axis=1), 1.0))  # 0 = nothing nearby

        a_pu = alpha(ch_pu)
        a_neu = alpha(neu)
        med = np.median(a_pu)
        rms = max(float(np.sqrt(np.mean((a_pu - med) ** 2))), 1e-3)
        chi2 = (a_neu - med) ** 2 / rms**2
        wn = np.where(a_neu > med, erf(np.sqrt(chi2 / 2.0)), 0.0)
        wi[neu] = _neutral_cuts(wn, pt[neu], int(n_pu[i]) + 1, cfg)
    return w


def _neutral_cuts(w: np.ndarray, pt: np.ndarray, n_pv: int, cfg: DetectorConfig) -> np.ndarray:
    """CMS PUPPI's neutral threshold (weighted pT vs a + b · n_PV) and high-pT protection."""
    a, b = cfg.puppi_neutral_min_pt
    w = np.where(w * pt < a + b * n_pv, 0.0, w)
    start, full = cfg.puppi_neutral_protect
    if full > start:
        w = np.clip((pt - start) / (full - start), w, 1.0)
    return w


def _leptons(
    pf: dict[str, np.ndarray],
    offsets: np.ndarray,
    flavour: int,
    cfg: DetectorConfig,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Identified muons (13) or electrons (11) from PF tracks, sorted by pT, with isolation."""
    if flavour == 13:
        eta_max, pt_min, eff, mass = 2.4, cfg.muon_pt_min, cfg.muon_eff, M_MUON
    else:
        eta_max, pt_min, eff, mass = (
            cfg.charged_eta_max,
            cfg.electron_pt_min,
            cfg.electron_eff,
            M_ELECTRON,
        )
    n_events = len(offsets) - 1
    cand = (np.abs(pf["pdgId"]) == flavour) & (np.abs(pf["eta"]) < eta_max) & (pf["pt"] > pt_min)
    idx = np.flatnonzero(cand)
    idx = idx[rng.random(len(idx)) < eff]
    ev = np.searchsorted(offsets, idx, side="right") - 1
    order = np.lexsort((-pf["pt"][idx], ev))
    idx, ev = idx[order], ev[order]

    iso03 = np.zeros(len(idx))
    iso04 = np.zeros(len(idx))
    for k, (j, i) in enumerate(zip(idx, ev, strict=True)):
        s = slice(offsets[i], offsets[i + 1])
        dr2 = _delta_r2(pf["eta"][j : j + 1], pf["phi"][j : j + 1], pf["eta"][s], pf["phi"][s])[0]
        contrib = pf["pt"][s] * pf["puppiWeight"][s]
        contrib[j - offsets[i]] = 0.0
        iso03[k] = contrib[dr2 < 0.09].sum() / pf["pt"][j]
        iso04[k] = contrib[dr2 < 0.16].sum() / pf["pt"][j]

    u = rng.random(len(idx))
    out = {
        "pt": pf["pt"][idx],
        "eta": pf["eta"][idx],
        "phi": pf["phi"][idx],
        "mass": np.full(len(idx), mass),
        "charge": pf["charge"][idx],
        "pdgId": pf["pdgId"][idx],
        "dxy": pf["d0"][idx],
        "dxyErr": pf["d0Err"][idx],
        "dz": pf["dz"][idx],
        "dzErr": pf["dzErr"][idx],
        "pfRelIso03_all": iso03,
        "pfRelIso04_all": iso04,
        "genPartFlav": pf["lepflav"][idx].astype(np.uint8),
        "pfCandIdx": (idx - offsets[ev]).astype(np.int32),
    }
    if flavour == 13:
        out["tightId"] = u < cfg.tight_id_eff
        out["mediumId"] = u < 0.5 * (1.0 + cfg.tight_id_eff)
        out["looseId"] = np.ones(len(idx), dtype=bool)
    else:
        # cutBased: 4 tight, 3 medium, 2 loose, 1 veto
        t = cfg.tight_id_eff
        out["cutBased"] = np.select(
            [u < t, u < t + 0.5 * (1 - t), u < t + 0.75 * (1 - t)], [4, 3, 2], 1
        ).astype(np.int32)
    return out, np.bincount(ev, minlength=n_events)
