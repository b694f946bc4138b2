"""Invalid input values: what a chunk holds that no detector can measure, and what to do.

A value read from a file is *invalid* when it is NaN or ±inf, or when it is a
transverse momentum below zero (any branch whose field is ``pt``). Read as
numbers they would not fail anything: a NaN jet fails every ``gt(pt, ...)``
selection and disappears, a +inf muon pT becomes the preprocessing's
``replace_inf_value`` (a 1 GeV muon). :class:`InvalidTracker` finds them in every
branch a preset reads and applies one policy, ``on_invalid``:

- ``"raise"``: :class:`~paratag.errors.InvalidValueError` naming the file, the
  branch, the number of values and the first entry;
- ``"drop"`` (default): a graph (jet or event) with an invalid per-graph value is
  dropped, and so is a constituent with an invalid value;
- ``"replace"``: constituents keep their values and the preprocessing replaces
  non-finite ones by each feature's ``replace_inf_value``, as CMSSW does;
  per-graph values have no replacement, so those graphs are dropped.

Whatever the policy, every invalid value is counted per branch
(:attr:`InvalidTracker.values`), dropped graphs and constituents are counted,
and non-finite *computed* features (``log`` of a zero, a ratio with a zero
denominator) that the preprocessing replaces are counted per feature. The
processors put these counts into their cutflow, per file.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from paratag.errors import ConfigError, InvalidValueError

__all__ = [
    "ON_INVALID",
    "InvalidInputWarning",
    "InvalidTracker",
    "OnInvalid",
    "check_on_invalid",
    "invalid_mask",
    "invalid_summary",
    "warn_invalid",
]

OnInvalid = Literal["raise", "drop", "replace"]
#: The accepted ``on_invalid`` policies.
ON_INVALID: tuple[OnInvalid, ...] = ("raise", "drop", "replace")


def check_on_invalid(policy: str) -> OnInvalid:
    """``policy`` if it is one of :data:`ON_INVALID`, else a :class:`ConfigError`."""
    if policy not in ON_INVALID:
        raise ConfigError(f"on_invalid={policy!r}: use one of {list(ON_INVALID)}")
    return policy  # type: ignore[return-value]


def invalid_mask(values: np.ndarray, branch: str) -> np.ndarray:
    """True where a value read from ``branch`` is NaN, ±inf or (for ``*_pt``) negative."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        return np.zeros(values.shape, dtype=bool)
    bad = ~np.isfinite(values)
    if branch.rpartition("_")[2] == "pt":
        with np.errstate(invalid="ignore"):
            bad |= values < 0
    return bad


@dataclass
class InvalidTracker:
    """Counts and policy for the invalid values of one chunk.

    Attributes:
        policy: one of :data:`ON_INVALID`.
        where: the file (for messages).
        entry_start: the chunk's first entry in the file (for messages).
        values: branch → invalid values found.
        dropped_graphs: graphs (objects or events) dropped for an invalid value.
        dropped_constituents: constituents dropped for an invalid value.
        replaced: feature → computed non-finite values replaced by ``replace_inf_value``.
    """

    policy: OnInvalid = "drop"
    where: str = "<events>"
    entry_start: int = 0
    values: dict[str, int] = field(default_factory=dict)
    dropped_graphs: int = 0
    dropped_constituents: int = 0
    replaced: dict[str, int] = field(default_factory=dict)

    def check(self, values: np.ndarray, branch: str, event: np.ndarray | None = None) -> np.ndarray:
        """Invalid mask of ``values`` read from ``branch``; counts it, raises under "raise".

        ``event`` gives each value's event in the chunk (for the entry in the message).
        """
        bad = invalid_mask(values, branch)
        n = int(bad.sum())
        if not n:
            return bad
        self.values[branch] = self.values.get(branch, 0) + n
        if self.policy == "raise":
            first = int(np.argmax(bad))
            ev = int(event[first]) if event is not None and len(event) > first else first
            raise InvalidValueError(
                f"{self.where}: {branch} has {n} invalid value(s) (NaN, inf or negative pT) in "
                f"this chunk, the first {values[first]!r} in entry {self.entry_start + ev}; fix "
                "the file, or use on_invalid='drop' (drop those objects/constituents, counted) "
                "or 'replace' (constituent values replaced as in CMSSW, counted)"
            )
        return bad

    def count_replaced(self, raw: np.ndarray, names: list[str]) -> None:
        """Count non-finite rows of computed features ``raw`` (C, M) before preprocessing."""
        if raw.size == 0:
            return
        for name, n in zip(names, (~np.isfinite(raw)).sum(axis=1).tolist(), strict=True):
            if n:
                self.replaced[name] = self.replaced.get(name, 0) + int(n)

    def cutflow(self) -> dict[str, Any]:
        """Cutflow entries: ``invalid_dropped_*`` counts and, when any, per-file details."""
        out: dict[str, Any] = {
            "invalid_dropped_graphs": self.dropped_graphs,
            "invalid_dropped_constituents": self.dropped_constituents,
        }
        if self.values:
            out["invalid_values"] = {self.where: dict(self.values)}
        if self.replaced:
            out["replaced_values"] = {self.where: dict(self.replaced)}
        return out


def warn_invalid(tracker: InvalidTracker) -> None:
    """One warning naming the file and branches of a chunk with invalid values."""
    if not tracker.values:
        return
    what = _counts_text(tracker.values)
    action = {
        "drop": (
            f"dropped {tracker.dropped_graphs} object(s)/event(s) and "
            f"{tracker.dropped_constituents} constituent(s)"
        ),
        "replace": (
            f"replaced constituent values as in CMSSW and dropped {tracker.dropped_graphs} "
            "object(s)/event(s)"
        ),
    }.get(tracker.policy, "")
    warnings.warn(
        f"{tracker.where} (entries from {tracker.entry_start}): invalid values (NaN, inf or "
        f"negative pT) in {what}; {action} (on_invalid={tracker.policy!r}; counted in the cutflow)",
        InvalidInputWarning,
        stacklevel=3,
    )


class InvalidInputWarning(UserWarning):
    """Invalid input values were dropped or replaced (counted in the cutflow)."""


def invalid_summary(result: Mapping[str, Any]) -> list[str]:
    """One line per dataset and file with invalid values, from processor output cutflows."""
    lines = []
    for name, ds in result.items():
        flow = ds.get("cutflow", {}) if isinstance(ds, Mapping) else {}
        for where, counts in sorted(flow.get("invalid_values", {}).items()):
            what = _counts_text(counts)
            lines.append(
                f"{name}: invalid values (NaN, inf or negative pT) in {where} -- {what}; the "
                f"dataset lost {flow.get('invalid_dropped_graphs', 0)} object(s)/event(s) and "
                f"{flow.get('invalid_dropped_constituents', 0)} constituent(s) to them"
            )
    return lines


def _counts_text(counts: Mapping[str, int]) -> str:
    """``"FatJet_eta: 1, PFCands_pt: 2"`` (branches in order)."""
    return ", ".join(f"{b}: {n}" for b, n in sorted(counts.items()))
