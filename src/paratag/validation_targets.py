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
    value: float | None, target: float, required: str, margin: float | None, **extra: Any
) -> dict[str, Any]:
    """One target: the measured ``value``, what is ``required``, met or not and by how much.

    ``margin`` is positive when the target is met (None: not measured, hence not met);
    ``extra`` adds the numbers the value derives from.
    """
    return {
        **extra,
        "value": value,
        "target": target,
        "required": required,
        "met": margin is not None and margin >= 0,
        "margin": margin,
    }
