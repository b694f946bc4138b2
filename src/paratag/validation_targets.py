"""The entries of ``paratag validate``'s Targets table, and how its numbers are printed.

Every chain's verdict (:mod:`paratag.validation_summary`, :mod:`paratag.validation_jets`,
:mod:`paratag.validate_pileup`) is a mapping of target name to :func:`target_entry`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["fmt", "target_entry"]


def fmt(v: Any, spec: str = ".4f") -> str:
    """``v`` formatted with ``spec``; ``n/a`` for None or a string (a value not measured)."""
    return "n/a" if v is None or isinstance(v, str) else format(v, spec)


def target_entry(
    value: float | None,
    target: float,
    required: str,
    margin: float | None,
    *,
    strict: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """One target: the measured ``value``, what is ``required``, met or not and by how much.

    ``margin`` is ≥ 0 when the target is met, > 0 with ``strict`` (a "<" requirement);
    None: not measured, hence not met. ``extra`` adds the numbers the value derives from.
    """
    met = margin is not None and (margin > 0 if strict else margin >= 0)
    return {
        **extra,
        "value": value,
        "target": target,
        "required": required,
        "met": met,
        "margin": margin,
    }
