"""Physics reference scorers with no ML, declared by the preset (``reference:``).

A network that learns less than one well-chosen variable shows it next to this
score in every table of the evaluation. Kinds:

``pair_mass``: ``-min |m(i, j) - m_h|`` over opposite-sign pairs of the selected
objects (massless four-vectors from the preset's ``log(pt)`` feature and the
(η, φ) points), where ``m_h`` is the hypothesis' ``condition`` parameter; events
without such a pair score ``-1e3``. For the charged-Higgs preset this is the
dimuon mass window around mA.

``spectator_window``: ``-|s - m_h|`` for a spectator ``s`` of the shards (the jet
preset: the soft-drop mass against mX), the mass-window cut of a resonance search.
A run whose conditions do not include ``condition`` gets no reference.

Both kinds also say how the evaluation bins pairs of signal points by their distance
in ``condition`` (the mass-awareness index): ``distance_edges`` (lower bin edges, the
last bin open; default 0, 2.5, 5, 9 — the dimuon resolution's scale) and
``min_distances`` (the "pairs at least this far apart" means, the first of which the
validation's target reads; default 5, 9). A jet-mass window needs tens of GeV.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paratag.errors import ConfigError
from paratag.evaluate.mass_awareness import DISTANCE_EDGES, MIN_DISTANCES
from paratag.presets import Preset

__all__ = [
    "NO_PAIR_SCORE",
    "PairMassReference",
    "Reference",
    "SpectatorWindowReference",
    "reference_from_preset",
]

#: Score of an event with no selected opposite-sign pair.
NO_PAIR_SCORE = -1e3


def _increasing(
    spec: Mapping[str, Any], key: str, default: tuple[float, ...], name: str
) -> tuple[float, ...]:
    """``spec[key]`` as increasing non-negative floats (``default`` when absent)."""
    raw = spec.get(key, default)
    try:
        values = tuple(float(v) for v in raw)
    except (TypeError, ValueError):
        values = ()
    if not values or values[0] < 0 or bool(np.any(np.diff(values) <= 0)):
        raise ConfigError(
            f"preset {name!r}: reference {key} {raw!r} must be a non-empty list of "
            f"increasing distances >= 0 (in the units of `condition`), e.g. {list(default)}"
        )
    return values


def _distance_bins(
    preset: Preset, spec: Mapping[str, Any]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The pair-distance bin edges (last bin open) and "at least" distances a reference declares."""
    lower = _increasing(spec, "distance_edges", DISTANCE_EDGES[:-1], preset.name)
    return (*lower, float("inf")), _increasing(spec, "min_distances", MIN_DISTANCES, preset.name)


class PairMassReference:
    """``-min |m(pair) - hypothesis|`` over opposite-sign pairs of selected objects."""

    def __init__(self, preset: Preset, spec: Mapping[str, Any], condition_names: Sequence[str]):
        cloud = preset.clouds[0]
        names = [f.name for f in cloud.features]
        missing = [spec.get(k, "") for k in ("select", "charge") if spec.get(k) not in names]
        if missing or spec.get("condition") not in condition_names:
            raise ConfigError(
                f"preset {preset.name!r}: reference {dict(spec)} needs features `select` and "
                f"`charge` among {names} and `condition` among {list(condition_names)}"
            )
        self.select = cloud.features[names.index(spec["select"])]
        self.select_index = names.index(spec["select"])
        self.charge = cloud.features[names.index(spec["charge"])]
        self.charge_index = names.index(spec["charge"])
        self.kin = preset.pair_kinematics()
        self.column = list(condition_names).index(spec["condition"])
        self.name = f"-min|m(pair) - {spec['condition']}|"
        self.edges, self.min_distances = _distance_bins(preset, spec)

    @staticmethod
    def _raw(x: np.ndarray, spec) -> np.ndarray:  # noqa: ANN001 - a FeatureSpec
        return x / spec.norm_factor + spec.median

    def pair_masses(self, points: np.ndarray, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Masses ``(N, P, P)`` of selected opposite-sign pairs (NaN elsewhere)."""
        k = self.kin
        m = mask[:, 0] > 0.5
        log_pt = features[:, k["log_pt_index"]] / k["log_pt_norm_factor"] + k["log_pt_median"]
        pt = np.where(m, np.exp(log_pt), 0.0)
        eta, phi = points[:, k["eta_index"]], points[:, k["phi_index"]]
        sel = m & (self._raw(features[:, self.select_index], self.select) > 0.5)
        q = self._raw(features[:, self.charge_index], self.charge)
        deta = eta[:, :, None] - eta[:, None, :]
        cos_dphi = np.cos(phi[:, :, None] - phi[:, None, :])
        m2 = 2.0 * pt[:, :, None] * pt[:, None, :] * (np.cosh(deta) - cos_dphi)
        ok = sel[:, :, None] & sel[:, None, :] & (q[:, :, None] * q[:, None, :] < 0)
        return np.where(ok, np.sqrt(np.clip(m2, 0.0, None)), np.nan)

    def scores(
        self, points: np.ndarray, features: np.ndarray, mask: np.ndarray, hypotheses: np.ndarray
    ) -> np.ndarray:
        """Scores ``(N, H)`` at each hypothesis ``(H, K)`` (physical units)."""
        masses = self.pair_masses(points, features, mask).reshape(len(points), -1)
        target = np.asarray(hypotheses, np.float64)[:, self.column]
        out = np.full((len(points), len(target)), NO_PAIR_SCORE)
        has = np.isfinite(masses).any(axis=1)
        if has.any():
            diff = np.abs(masses[has, :, None] - target[None, None, :])
            out[has] = -np.nanmin(diff, axis=1)
        return out

    def score_rows(self, store: Any, rows: np.ndarray, hypotheses: np.ndarray) -> np.ndarray:
        """Scores ``(len(rows), H)`` of shard-store rows."""
        a = store.gather(rows, ["points", "features", "mask"])
        return self.scores(a["points"], a["features"], a["mask"], hypotheses)


class SpectatorWindowReference:
    """``-|spectator - hypothesis|``: a mass-window cut on one spectator of the shards."""

    def __init__(self, preset: Preset, spec: Mapping[str, Any], condition_names: Sequence[str]):
        if spec.get("spectator") not in preset.spectators:
            raise ConfigError(
                f"preset {preset.name!r}: reference {dict(spec)} needs `spectator` among "
                f"{sorted(preset.spectators)}"
            )
        self.spectator = spec["spectator"]
        self.column = list(condition_names).index(spec["condition"])
        self.name = f"-|{self.spectator} - {spec['condition']}|"
        self.edges, self.min_distances = _distance_bins(preset, spec)

    def score_rows(self, store: Any, rows: np.ndarray, hypotheses: np.ndarray) -> np.ndarray:
        """Scores ``(len(rows), H)`` of shard-store rows."""
        s = np.asarray(store.spectator(self.spectator), np.float64)[np.asarray(rows, np.int64)]
        target = np.asarray(hypotheses, np.float64)[:, self.column]
        return -np.abs(s[:, None] - target[None, :])


Reference = PairMassReference | SpectatorWindowReference
_KINDS: dict[str, type[PairMassReference] | type[SpectatorWindowReference]] = {
    "pair_mass": PairMassReference,
    "spectator_window": SpectatorWindowReference,
}


def reference_from_preset(preset: Preset, condition_names: Sequence[str]) -> Reference | None:
    """The preset's reference scorer; None when it declares none or its condition is not run.

    Raises:
        ConfigError: an unknown kind, or a spec that does not match the preset.
    """
    spec = dict(preset.reference)
    if not spec:
        return None
    kind = _KINDS.get(spec.get("kind", ""))
    if kind is None:
        raise ConfigError(
            f"preset {preset.name!r}: unknown reference kind {spec.get('kind')!r}; "
            f"kinds: {sorted(_KINDS)}"
        )
    if kind is SpectatorWindowReference and spec.get("condition") not in condition_names:
        return None  # e.g. the jet preset's mX window in a run conditioned on something else
    return kind(preset, spec, condition_names)
