"""Secondary vertices from displaced b/c-hadron and tau decays, and their jet association.

A secondary vertex is the set of reconstructed tracks (from the hard
interaction) that share the decay vertex of one weakly decaying hadron. Its
position is the true decay vertex smeared by ``DetectorConfig.sv_res_cm``;
vertices need ``sv_min_tracks`` tracks and a 3D flight significance above
``sv_min_sig`` inside the inner pixel layers (dxy < 2.5 cm). Kinematics are the sum of the track four-vectors (pion mass).
"""

from __future__ import annotations

import numpy as np

from paratag.generate.config import DetectorConfig
from paratag.generate.detector import MM_TO_CM, Chunk, Reco, event_index

__all__ = ["associate_svs", "build_svs"]

SV_MAX_DXY_CM = 2.5  # vertices need hits in the inner pixel layers


def build_svs(
    reco: Reco, chunk: Chunk, cfg: DetectorConfig, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return SV columns (NanoAOD ``SV_*`` names plus helpers) and per-event counts."""
    pf = reco.pf
    n_events = chunk.n_events
    ev_pf = event_index(reco.pf_counts)
    had_off = np.concatenate([[0], np.cumsum(chunk.had_counts)])
    trk = np.flatnonzero(pf["track"] & (pf["hf"] >= 0) & (pf["pu"] == 0))
    ghad = had_off[ev_pf[trk]] + pf["hf"][trk]  # global hadron index of each track
    uniq, inv, ntrk = np.unique(ghad, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    mass_pi = 0.13957
    px, py, pz = pf["px"][trk], pf["py"][trk], pf["pz"][trk]
    e = np.sqrt(px**2 + py**2 + pz**2 + mass_pi**2)
    nv = len(uniq)
    p = np.stack([np.bincount(inv, w, minlength=nv) for w in (px, py, pz, e)], 1)
    sv_ev = ev_pf[trk][np.unique(inv, return_index=True)[1]] if nv else np.zeros(0, int)

    sxy, sz = cfg.sv_res_cm
    pos = chunk.had_vtx[uniq] * MM_TO_CM + rng.normal(0.0, [sxy, sxy, sz], (nv, 3))
    flight = pos - reco.pv_reco[sv_ev]
    dxy = np.hypot(flight[:, 0], flight[:, 1])
    dlen = np.sqrt(dxy**2 + flight[:, 2] ** 2)
    dxy_err = np.full(nv, np.hypot(sxy, 0.001))
    dlen_err = np.sqrt(
        (sxy**2 * dxy**2 + sz**2 * flight[:, 2] ** 2) / np.maximum(dlen, 1e-9) ** 2 + 0.001**2
    )
    pabs = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2 + p[:, 2] ** 2)
    cos = np.einsum("ij,ij->i", flight, p[:, :3]) / np.maximum(dlen * pabs, 1e-12)
    pt = np.hypot(p[:, 0], p[:, 1])
    ndof = 2.0 * ntrk - 3.0
    sv = {
        "pt": pt,
        "eta": np.arcsinh(p[:, 2] / np.maximum(pt, 1e-9)),
        "phi": np.arctan2(p[:, 1], p[:, 0]),
        "mass": np.sqrt(np.maximum(p[:, 3] ** 2 - pabs**2, 0.0)),
        "ntracks": ntrk.astype(np.uint8),
        "x": pos[:, 0],
        "y": pos[:, 1],
        "z": pos[:, 2],
        "dxy": dxy,
        "dxySig": dxy / dxy_err,
        "dlen": dlen,
        "dlenSig": dlen / dlen_err,
        "pAngle": np.arccos(np.clip(cos, -1.0, 1.0)),
        "ndof": ndof,
        "chi2": rng.chisquare(np.maximum(ndof, 1.0)),
        "e": p[:, 3],
    }
    keep = (ntrk >= cfg.sv_min_tracks) & (sv["dlenSig"] > cfg.sv_min_sig) & (dxy < SV_MAX_DXY_CM)
    order = np.flatnonzero(keep)
    order = order[np.lexsort((-sv["dlenSig"][order], sv_ev[order]))]
    sv = {k: v[order] for k, v in sv.items()}
    return sv, np.bincount(sv_ev[order], minlength=n_events)


def associate_svs(
    jets: dict[str, np.ndarray],
    jet_counts: np.ndarray,
    sv: dict[str, np.ndarray],
    sv_counts: np.ndarray,
    radius: float,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """PFNano ``JetSVs``/``FatJetSVs`` tables: each SV within ``radius`` of a jet axis."""
    jet_off = np.concatenate([[0], np.cumsum(jet_counts)])
    sv_off = np.concatenate([[0], np.cumsum(sv_counts)])
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    for i in np.flatnonzero((jet_counts > 0) & (sv_counts > 0)):
        js, ss = np.arange(jet_off[i], jet_off[i + 1]), np.arange(sv_off[i], sv_off[i + 1])
        dphi = (jets["phi"][js][:, None] - sv["phi"][ss][None, :] + np.pi) % (2 * np.pi) - np.pi
        dr2 = (jets["eta"][js][:, None] - sv["eta"][ss][None, :]) ** 2 + dphi**2
        jj, kk = np.nonzero(dr2 < radius**2)
        rows.append((js[jj], ss[kk]))
    gj = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, int)
    gs = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, int)
    ev = np.searchsorted(jet_off, gj, side="right") - 1
    dphi = (sv["phi"][gs] - jets["phi"][gj] + np.pi) % (2 * np.pi) - np.pi
    deta = sv["eta"][gs] - jets["eta"][gj]
    table = {
        "jetIdx": (gj - jet_off[ev]).astype(np.int32),
        "sVIdx": (gs - sv_off[ev]).astype(np.int32),
        "pt": sv["pt"][gs],
        "mass": sv["mass"][gs],
        "ntracks": sv["ntracks"][gs].astype(np.float32),
        "chi2": sv["chi2"][gs],
        "normchi2": sv["chi2"][gs] / np.maximum(sv["ndof"][gs], 1.0),
        "dxy": sv["dxy"][gs],
        "dxysig": sv["dxySig"][gs],
        "d3d": sv["dlen"][gs],
        "d3dsig": sv["dlenSig"][gs],
        "costhetasvpv": np.cos(sv["pAngle"][gs]),
        "phirel": dphi,
        "ptrel": sv["pt"][gs] / jets["pt"][gj],
        "deltaR": np.hypot(deta, dphi),
        "enration": sv["e"][gs] / jets["e"][gj],
    }
    return table, np.bincount(ev, minlength=len(jet_counts))
