"""Jet images for the ResNet-15 baseline, in the layout of the e/γ images.

:func:`jet_images` turns PFNano AK8 jets and their PF candidates into pT images around the
jet axis (``X`` of shape (N, 32, 32, 2), channels last), so ResNet-15 and the graph taggers
can be compared on the same jets. The electron/photon sources (ML4SCI files, the fast
calorimeter) are in :mod:`paratag.baselines.calo` and importable from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from paratag.baselines.calo import (
    CaloSimConfig,
    load_ml4sci_h5,
    simulate_egamma,
    to_channels_first,
    write_ml4sci_h5,
)
from paratag.errors import ConfigError, InputFileError, MissingBranchError

__all__ = [
    "CaloSimConfig",
    "nano_field",
    "JetImageConfig",
    "jet_images",
    "jet_images_from_file",
    "load_ml4sci_h5",
    "read_collections",
    "simulate_egamma",
    "to_channels_first",
    "write_ml4sci_h5",
]

# ---------------------------------------------------------------------------------------------
# Jet images from PFNano
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class JetImageConfig:
    """How AK8 jets become images.

    Attributes:
        n_pixels: pixels per side.
        half_width: half-width of the image in eta and phi around the jet axis (AK8: 0.8).
        pt_min: minimum FatJet pT in GeV.
        eta_max: maximum FatJet |eta| (2.4 as in the ``jet`` graph preset).
        max_jets: at most this many leading FatJets per event.
        normalize: divide each image by the jet's summed candidate pT inside the image.
    """

    n_pixels: int = 32
    half_width: float = 0.8
    pt_min: float = 200.0
    eta_max: float = 2.4
    max_jets: int = 2
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.n_pixels < 2 or self.half_width <= 0 or self.max_jets < 1:
            raise ConfigError(
                f"JetImageConfig: need n_pixels >= 2, half_width > 0, max_jets >= 1, got {self}"
            )


def nano_field(events: Any, coll: str, name: str, path: str, needs: str = "PFNano") -> ak.Array:
    """``events[coll][name]``, or a :class:`MissingBranchError` naming the branch and file."""
    try:
        return events[coll][name]
    except (KeyError, AttributeError, ValueError, ak.errors.FieldNotFoundError) as exc:
        raise MissingBranchError(f"{coll}_{name}", path, f"the baseline needs {needs}") from exc


def jet_images(
    events, config: JetImageConfig | None = None, path: str = "<events>"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make pT images of AK8 jets from their PF candidates (vectorised over jets).

    Candidates are grouped per jet through the ``FatJetPFCands`` link table
    (``jetIdx`` -> ``FatJet``, ``pFCandsIdx`` -> ``PFCands``).

    Args:
        events: NanoEvents or an awkward record array with ``FatJet`` (pt, eta, phi),
            ``PFCands`` (pt, eta, phi, charge) and ``FatJetPFCands`` (jetIdx, pFCandsIdx).
        config: image settings.
        path: file name used in error messages.

    Returns:
        ``(images, event_index, jet_index)``: images (J, 2, n, n) float32 with channel 0 the
        total and channel 1 the charged pT (rows: eta, columns: phi, jet axis in the centre),
        and the event and FatJet index of every image.
    """
    cfg = config or JetImageConfig()
    fj_pt, fj_eta, fj_phi = (nano_field(events, "FatJet", n, path) for n in ("pt", "eta", "phi"))
    pf_pt, pf_eta, pf_phi, pf_q = (
        nano_field(events, "PFCands", n, path) for n in ("pt", "eta", "phi", "charge")
    )
    l_jet, l_pf = (nano_field(events, "FatJetPFCands", n, path) for n in ("jetIdx", "pFCandsIdx"))

    n_fj, n_pf, n_link = (np.asarray(ak.num(a)) for a in (fj_pt, pf_pt, l_jet))
    fj_start = np.concatenate([[0], np.cumsum(n_fj)[:-1]]).astype(np.int64)
    pf_start = np.concatenate([[0], np.cumsum(n_pf)[:-1]]).astype(np.int64)
    link_evt = np.repeat(np.arange(len(n_fj)), n_link)
    jl = np.asarray(ak.flatten(l_jet), dtype=np.int64)
    pl = np.asarray(ak.flatten(l_pf), dtype=np.int64)
    bad = (jl < 0) | (jl >= n_fj[link_evt]) | (pl < 0) | (pl >= n_pf[link_evt])
    if np.any(bad):
        raise InputFileError(
            path,
            f"{int(bad.sum())} FatJetPFCands entries point outside FatJet/PFCands",
            "the link table does not match the collections; regenerate or re-skim the file",
        )
    gjet = fj_start[link_evt] + jl
    gpf = pf_start[link_evt] + pl

    # Select the leading jets above threshold and give each an output row.
    jpt = np.asarray(ak.flatten(fj_pt), dtype=np.float64)
    local = np.asarray(ak.flatten(ak.local_index(fj_pt)))
    jeta_abs = np.abs(np.asarray(ak.flatten(fj_eta), dtype=np.float64))
    selected = (jpt > cfg.pt_min) & (jeta_abs < cfg.eta_max) & (local < cfg.max_jets)
    row_of_jet = np.full(jpt.size, -1, dtype=np.int64)
    row_of_jet[selected] = np.arange(int(selected.sum()))
    n_img, n = int(selected.sum()), cfg.n_pixels
    jet_evt = np.repeat(np.arange(len(n_fj)), n_fj)

    row = row_of_jet[gjet]
    keep = row >= 0
    row, gjet, gpf = row[keep], gjet[keep], gpf[keep]
    cpt = np.asarray(ak.flatten(pf_pt), dtype=np.float64)[gpf]
    deta = (
        np.asarray(ak.flatten(pf_eta), dtype=np.float64)[gpf]
        - np.asarray(ak.flatten(fj_eta), dtype=np.float64)[gjet]
    )
    dphi = (
        np.asarray(ak.flatten(pf_phi), dtype=np.float64)[gpf]
        - np.asarray(ak.flatten(fj_phi), dtype=np.float64)[gjet]
    )
    dphi = (dphi + np.pi) % (2.0 * np.pi) - np.pi
    charged = np.asarray(ak.flatten(pf_q))[gpf] != 0
    ie = np.floor((deta + cfg.half_width) / (2.0 * cfg.half_width) * n).astype(np.int64)
    ip = np.floor((dphi + cfg.half_width) / (2.0 * cfg.half_width) * n).astype(np.int64)
    inside = (ie >= 0) & (ie < n) & (ip >= 0) & (ip < n)
    cell = (row * n + ie) * n + ip
    size = n_img * n * n
    total = np.bincount(cell[inside], cpt[inside], minlength=size).reshape(n_img, n, n)
    charged_img = np.bincount(cell[inside], (cpt * charged)[inside], minlength=size).reshape(
        n_img, n, n
    )
    images: np.ndarray = np.stack([total, charged_img], axis=1)
    if cfg.normalize:
        norm = total.reshape(n_img, -1).sum(axis=1)
        images = images / np.where(norm > 0, norm, 1.0)[:, None, None, None]
    return images.astype(np.float32), jet_evt[selected], local[selected].astype(np.int64)


_JET_IMAGE_BRANCHES: Mapping[str, tuple[str, ...]] = {
    "FatJet": ("pt", "eta", "phi"),
    "PFCands": ("pt", "eta", "phi", "charge"),
    "FatJetPFCands": ("jetIdx", "pFCandsIdx"),
}


def read_collections(
    path: str | Path, collections: Mapping[str, Sequence[str]], tree: str = "Events"
) -> ak.Array:
    """Read NanoAOD collections with uproot into an awkward record array (no NanoEvents).

    Args:
        path: NanoAOD/PFNano ROOT file.
        collections: collection name -> field names, e.g. ``{"FatJet": ("pt", "eta")}``;
            a collection named ``MET`` is read as flat per-event fields.
        tree: tree name.

    Returns:
        ``events`` with ``events[collection][field]``.
    """
    import uproot

    p = Path(path)
    if not p.is_file():
        raise InputFileError(str(p), "file does not exist")
    try:
        t = uproot.open(p)[tree]
    except Exception as exc:  # uproot raises many types for broken files
        raise InputFileError(str(p), f"cannot open tree {tree!r} ({exc})") from exc
    names = [f"{c}_{f}" for c, fields in collections.items() for f in fields]
    missing = [b for b in names if b not in t]
    if missing:
        raise MissingBranchError(
            missing[0], str(p), f"{len(missing)} branch(es) missing: {missing}"
        )
    arrays = t.arrays(names)
    out = {}
    for c, fields in collections.items():
        rec = {f: arrays[f"{c}_{f}"] for f in fields}
        out[c] = ak.zip(rec, depth_limit=1 if arrays[f"{c}_{fields[0]}"].ndim == 1 else None)
    return ak.zip(out, depth_limit=1)


def jet_images_from_file(
    path: str | Path, config: JetImageConfig | None = None, tree: str = "Events"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`jet_images` for one PFNano file, read directly with uproot."""
    events = read_collections(path, _JET_IMAGE_BRANCHES, tree)
    return jet_images(events, config, path=str(path))
