"""Per-object truth labels: which jets of a signal sample are signal.

Dataset-level labels call every jet of an X→bb̄ event signal, the recoil jet
included. A :class:`TruthMatch` (a preset's ``truth:`` block, data) instead
matches each jet to the generator record with branches every NanoAOD has
(``GenPart_pdgId``, ``GenPart_genPartIdxMother``, ``GenPart_eta``, ``GenPart_phi``):
a jet is signal when a resonance (``|pdgId|`` in ``resonance``) lies within
``max_dr`` of it and at least ``min_daughters`` of that resonance's daughters
(``|pdgId|`` in ``daughters``) are inside it too. In datasets labelled
``signal_label``, unmatched jets are dropped (and counted in the cutflow as
``truth_unmatched``), never trained as signal; jets of other datasets keep their
dataset label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from paratag.errors import ConfigError, SchemaError
from paratag.features import wrap_dphi

__all__ = ["TRUTH_FIELD", "TruthMatch", "truth_matched"]

#: Name of the per-jet flag added to the object collection while building.
TRUTH_FIELD = "paratagTruthMatched"


@dataclass(frozen=True)
class TruthMatch:
    """Truth matching of jets to a generator resonance and its daughters.

    Attributes:
        resonance: ``|pdgId|`` values of the resonance (25: the generator's X / H).
        daughters: ``|pdgId|`` values of its daughters that must be inside the jet (5: b).
        min_daughters: how many of them (2: both b quarks).
        max_dr: ΔR(jet, resonance) and ΔR(jet, daughter) must be below this (0.8 for AK8).
        signal_label: the dataset label whose jets are matched.
    """

    resonance: tuple[int, ...] = (25,)
    daughters: tuple[int, ...] = (5,)
    min_daughters: int = 2
    max_dr: float = 0.8
    signal_label: int = 0

    def __post_init__(self) -> None:
        if not self.resonance or self.max_dr <= 0 or self.min_daughters < 0:
            raise ConfigError(
                f"truth: needs resonance pdgIds, max_dr > 0 and min_daughters >= 0, got {self}"
            )
        if self.min_daughters and not self.daughters:
            raise ConfigError("truth: min_daughters > 0 needs daughters pdgIds")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> TruthMatch | None:
        """Build from a preset's ``truth:`` block (None or empty: dataset labels)."""
        if not data:
            return None
        from paratag.config import from_dict

        return from_dict(cls, dict(data), where="preset truth")


def _delta_r(eta1: Any, phi1: Any, eta2: Any, phi2: Any) -> Any:
    return np.sqrt((eta1 - eta2) ** 2 + wrap_dphi(phi1, phi2) ** 2)


def truth_matched(events: Any, collection: str, spec: TruthMatch, where: str = "") -> ak.Array:
    """Per-jet flag (jagged like ``events[collection]``): matched to a resonance per ``spec``."""
    fields = set(getattr(events, "fields", ()) or ())
    if "GenPart" not in fields:
        raise SchemaError(
            f"{where}: truth matching needs the GenPart collection (pdgId, genPartIdxMother, "
            "eta, phi); this file has none — data? use dataset labels (truth: null)"
        )
    gen = events.GenPart
    jets = events[collection]
    pdg = abs(gen.pdgId)
    is_res = np.isin(ak.to_numpy(ak.flatten(pdg)), spec.resonance)
    is_res = ak.unflatten(is_res, ak.num(pdg))
    res = gen[is_res]
    mother = gen.genPartIdxMother
    # a daughter's mother (local index within the event) must be a resonance
    safe_mother = ak.where(mother >= 0, mother, 0)
    mother_is_res = is_res[safe_mother] & (mother >= 0)
    is_dau = np.isin(ak.to_numpy(ak.flatten(pdg)), spec.daughters)
    dau = gen[ak.unflatten(is_dau, ak.num(pdg)) & mother_is_res]
    pair_res = ak.cartesian([jets, res], axis=1, nested=True)
    j, r = ak.unzip(pair_res)
    near_res = ak.any(_delta_r(j.eta, j.phi, r.eta, r.phi) < spec.max_dr, axis=-1)
    if spec.min_daughters:
        j, d = ak.unzip(ak.cartesian([jets, dau], axis=1, nested=True))
        inside = ak.sum(_delta_r(j.eta, j.phi, d.eta, d.phi) < spec.max_dr, axis=-1)
        near_res = near_res & (inside >= spec.min_daughters)
    return ak.fill_none(near_res, False)
