"""Event kinematics inside a model: pair features and resonance-cascade features.

Objects are massless four-vectors built from each one's ``(pT, η, φ)``
(:class:`PairKinematics` says where they are in the inputs). Everything is
written with ``exp``/``sin``/``sqrt`` so torch and onnxruntime agree to float32
precision and every function exports to ONNX.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from paratag.errors import ConfigError

__all__ = [
    "CASCADE_FEATURES",
    "PAIR_FEATURES",
    "PairKinematics",
    "cascade_features",
    "pair_features",
]

PAIR_FEATURES: tuple[str, ...] = ("log_delta", "log_kt", "log_z", "log_m2")


@dataclasses.dataclass(frozen=True)
class PairKinematics:
    """Where a model finds each object's (pT, η, φ) for pairwise features.

    pT is recovered from a preprocessed ``log(pt)`` feature channel
    (``(log pT - median) * norm_factor``, as in the preset); η and φ are point
    channels, absolute or relative to a common axis (only differences enter).
    ``paratag train`` fills it from the preset when the config says
    ``pair_kinematics: auto``.

    Attributes:
        log_pt_index: feature channel of the preprocessed ``log(pt)``.
        log_pt_median: its preprocessing median.
        log_pt_norm_factor: its preprocessing scale.
        eta_index: point channel of η.
        phi_index: point channel of φ.
    """

    log_pt_index: int
    log_pt_median: float = 0.0
    log_pt_norm_factor: float = 1.0
    eta_index: int = 0
    phi_index: int = 1

    def __post_init__(self) -> None:
        if (
            self.log_pt_norm_factor == 0
            or min(self.log_pt_index, self.eta_index, self.phi_index) < 0
        ):
            raise ConfigError(
                f"pair_kinematics: channel indices must be >= 0 and norm_factor != 0, got {self}"
            )

    def kinematics(self, points: Tensor, features: Tensor) -> Tensor:
        """Per-object ``(pT, η, φ)`` ``(N, P, 3)`` from channels-last ``points`` and ``features``."""
        log_pt = features[..., self.log_pt_index] / self.log_pt_norm_factor + self.log_pt_median
        return torch.stack(
            [torch.exp(log_pt), points[..., self.eta_index], points[..., self.phi_index]], dim=-1
        )


def pair_features(
    centre: Tensor,
    neighbours: Tensor,
    resonance: Tensor | None = None,
    widths: Sequence[float] = (),
    generic: bool = True,
) -> Tensor:
    """Pair features of objects and their neighbours (massless four-vectors).

    With ``generic``, ParT's :data:`PAIR_FEATURES`: ``ln ΔR``, ``ln kT = ln(min(pT) ΔR)``,
    ``ln z = ln(min(pT) / (pT_i + pT_j))`` and ``ln m² = ln(2 pT_i pT_j (cosh Δη - cos Δφ))``
    (arguments floored at 1e-8). With a ``resonance`` mass per graph (GeV), one
    Gaussian window ``exp(-(m_ij - m_res)² / 2w²)`` per width ``w``: how well the pair
    matches the hypothesis, at the detector's resolution rather than at the scale of
    ``ln m²`` over all pairs (a 1 GeV window at 90 GeV is 0.02 in ``ln m²``).

    Shapes:
        centre: (N, P, 1, 3) ``(pT, η, φ)``; neighbours: (N, P, k, 3); resonance: (N,)
        output: (N, P, k, 4 * generic + len(widths))
    """
    pt_i, pt_j = centre[..., 0], neighbours[..., 0]
    deta = centre[..., 1] - neighbours[..., 1]
    phi_diff = centre[..., 2] - neighbours[..., 2]
    cos_dphi = torch.cos(phi_diff)
    dphi = torch.acos(cos_dphi.clamp(-1.0 + 1e-6, 1.0 - 1e-6))
    delta = torch.sqrt(deta * deta + dphi * dphi + 1e-12)
    pt_min = torch.minimum(pt_i, pt_j)
    m2 = massless_mass2(pt_i, pt_j, deta, phi_diff)
    floor = 1e-8
    out = []
    if generic:
        out += [
            torch.log(delta.clamp(min=floor)),
            torch.log((pt_min * delta).clamp(min=floor)),
            torch.log((pt_min / (pt_i + pt_j).clamp(min=floor)).clamp(min=floor)),
            torch.log(m2.clamp(min=floor)),
        ]
    if resonance is not None and widths:
        diff = torch.sqrt(m2.clamp(min=0.0) + 1e-12) - resonance.view(-1, 1, 1)
        out += [torch.exp(-0.5 * (diff / w) ** 2) for w in widths]
    return torch.stack(out, dim=-1)


#: per-object channels of :func:`cascade_features`
CASCADE_FEATURES: tuple[str, ...] = ("log_m_cascade_ratio", "resonance_share", "resonance_found")


def massless_mass2(pt_i: Tensor, pt_j: Tensor, deta: Tensor, dphi: Tensor) -> Tensor:
    """``m²`` of two massless objects: ``4 pT_i pT_j (sinh²(Δη/2) + sin²(Δφ/2))``.

    Equal to ``2 pT_i pT_j (cosh Δη - cos Δφ)`` without its cancellation for close
    pairs, so torch and onnxruntime agree to float32 precision (and no ``cosh``,
    which has no ONNX export).
    """
    half = 0.5 * deta
    sinh_half = 0.5 * (torch.exp(half) - torch.exp(-half))
    return 4.0 * pt_i * pt_j * (sinh_half * sinh_half + torch.sin(0.5 * dphi) ** 2)


def _pair_mass2(kin: Tensor) -> Tensor:
    """``m²`` of every pair of massless objects ``(N, P, P)`` from ``(pT, η, φ)`` ``(N, P, 3)``."""
    pt, eta, phi = kin[..., 0], kin[..., 1], kin[..., 2]
    deta = eta.unsqueeze(2) - eta.unsqueeze(1)
    dphi = phi.unsqueeze(2) - phi.unsqueeze(1)
    return massless_mass2(pt.unsqueeze(2), pt.unsqueeze(1), deta, dphi)


def cascade_features(
    kin: Tensor, mask: Tensor, resonance: Tensor, cascade: Tensor, width: float = 3.0
) -> Tensor:
    """Per-object features of a cascade ``X -> Y + A``, ``A -> pair`` (e.g. H+ -> W* A, A -> μμ).

    The A candidate is the sum of every pair's four-momentum weighted by its
    window ``exp(-(m_ij - m_A)² / 2 width²)``; each object ``k`` then gets
    ``ln(m(A + k) / m_X)`` (the three-body mass against the cascade hypothesis,
    ``m`` floored at 1 GeV), its share of the A candidate (1 for a daughter of a
    matching pair) and whether any pair matched (summed window weight, capped at 1).
    Relative to the hypothesis, like the pair windows, so every stage-1 model
    learns the same meaning for them.

    Shapes:
        kin: (N, P, 3) ``(pT, η, φ)``, zero at padded slots; mask: (N, P, 1)
        resonance, cascade: (N,) hypothesised m_A and m_X in GeV
        output: (N, P, len(CASCADE_FEATURES)), zero at padded slots
    """
    pt, eta, phi = kin[..., 0], kin[..., 1], kin[..., 2]
    m = mask[..., 0]
    cosh = 0.5 * (torch.exp(eta) + torch.exp(-eta))
    sinh = 0.5 * (torch.exp(eta) - torch.exp(-eta))
    p4 = torch.stack([pt * cosh, pt * torch.cos(phi), pt * torch.sin(phi), pt * sinh], -1)
    p4 = p4 * m.unsqueeze(-1)
    mass = torch.sqrt(_pair_mass2(kin).clamp(min=0.0) + 1e-12)
    off_diagonal = 1.0 - torch.eye(kin.shape[1], dtype=kin.dtype, device=kin.device)
    w = torch.exp(-0.5 * ((mass - resonance.view(-1, 1, 1)) / width) ** 2)
    w = w * m.unsqueeze(2) * m.unsqueeze(1) * off_diagonal
    row = w.sum(dim=2)  # (N, P): each object's summed pair weight
    total = row.sum(dim=1, keepdim=True)  # (N, 1): twice the summed weight over pairs
    share = 2.0 * row / (total + 1e-6)
    a4 = (share.unsqueeze(-1) * p4).sum(dim=1, keepdim=True)  # (N, 1, 4)
    s4 = a4 + p4
    m2 = s4[..., 0] ** 2 - (s4[..., 1:] ** 2).sum(-1)
    m3 = torch.sqrt(m2.clamp(min=1.0))
    ratio = torch.log(m3 / cascade.view(-1, 1))
    found = (0.5 * total).clamp(max=1.0).expand_as(share)
    return torch.stack([ratio, share, found], dim=-1) * m.unsqueeze(-1)
