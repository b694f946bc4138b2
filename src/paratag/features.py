"""Declarative feature specifications and their preprocessing.

A :class:`FeatureSpec` says *what* a feature is (a small expression over the
fields of a collection) and *how* it is preprocessed, with the same meaning as
the ``var_infos`` of weaver / CMSSW ``preprocess.json``::

    y = clip((x - median) * norm_factor, lower_bound, upper_bound)

after NaN/inf values of ``x`` are replaced by ``replace_inf_value``; padded
slots take ``pad``. Specs serialise to JSON and travel with the exported model.

Expressions are parsed by a tiny fixed grammar, never ``eval``::

    expr  := NUMBER | NAME | NAME '(' expr (',' expr)* ')'
    NAME  := identifier ('.' identifier)*

Bare names are fields of the constituent (``pt``, ``pdgId``); ``jet.<field>``
is the owning object broadcast to its constituents; ``link.<field>`` a field of
the PFNano link table (e.g. ``link.btagSip3dSig``); ``event.<path>`` an event
level branch (``event.MET.pt``, ``event.genWeight``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from paratag.errors import ConfigError

__all__ = [
    "FUNCTIONS",
    "Expression",
    "FeatureSpec",
    "apply_preprocessing",
    "evaluate",
    "parse",
    "referenced_names",
    "wrap_dphi",
]

Resolver = Callable[[str], np.ndarray]


def wrap_dphi(a: Any, b: Any) -> Any:
    """``a - b`` wrapped into [-π, π) (numpy or awkward arrays)."""
    return (a - b + np.pi) % (2.0 * np.pi) - np.pi


def _safe_log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.true_divide(a, b)


def _isin(x: np.ndarray, *values: np.ndarray) -> np.ndarray:
    out = np.zeros(np.shape(x), dtype=bool)
    for v in values:
        out |= x == v
    return out.astype(np.float32)


# The fixed operation set: name -> (numpy implementation, arity or None for variadic).
FUNCTIONS: dict[str, tuple[Callable[..., np.ndarray], int | None]] = {
    "log": (_safe_log, 1),
    "abs": (np.abs, 1),
    "sqrt": (np.sqrt, 1),
    "sign": (np.sign, 1),
    "tanh": (np.tanh, 1),
    "cosh": (np.cosh, 1),
    "cos": (np.cos, 1),
    "sin": (np.sin, 1),
    "neg": (np.negative, 1),
    "add": (np.add, 2),
    "sub": (np.subtract, 2),
    "mul": (np.multiply, 2),
    "div": (_safe_div, 2),
    "dphi": (wrap_dphi, 2),
    "hypot": (np.hypot, 2),
    "min": (np.minimum, 2),
    "max": (np.maximum, 2),
    "eq": (lambda a, b: (a == b).astype(np.float32), 2),
    "gt": (lambda a, b: (a > b).astype(np.float32), 2),
    "lt": (lambda a, b: (a < b).astype(np.float32), 2),
    "and": (lambda a, b: ((a != 0) & (b != 0)).astype(np.float32), 2),
    "isin": (_isin, None),
}

_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_][\w.]*)|(?P<op>[(),]))"
)


@dataclass(frozen=True)
class Expression:
    """A parsed feature expression: a number, a field path, or a function call."""

    kind: str  # "num", "name" or "call"
    value: Any
    args: tuple[Expression, ...] = ()

    def __str__(self) -> str:
        if self.kind == "call":
            return f"{self.value}({', '.join(str(a) for a in self.args)})"
        return str(self.value)


def parse(text: str) -> Expression:
    """Parse an expression string; raise :class:`ConfigError` on any syntax error."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ConfigError(f"feature expression {text!r}: unexpected character at {pos}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1

    def node(i: int) -> tuple[Expression, int]:
        if i >= len(tokens):
            raise ConfigError(f"feature expression {text!r}: ends unexpectedly")
        kind, tok = tokens[i]
        if kind == "num":
            return Expression("num", float(tok)), i + 1
        if kind != "name":
            raise ConfigError(f"feature expression {text!r}: unexpected {tok!r}")
        if i + 1 < len(tokens) and tokens[i + 1][1] == "(":
            if tok not in FUNCTIONS:
                raise ConfigError(
                    f"feature expression {text!r}: unknown function {tok!r}; "
                    f"available: {sorted(FUNCTIONS)}"
                )
            args = []
            j = i + 2
            while True:
                arg, j = node(j)
                args.append(arg)
                if j >= len(tokens):
                    raise ConfigError(f"feature expression {text!r}: missing ')'")
                if tokens[j][1] == ")":
                    j += 1
                    break
                if tokens[j][1] != ",":
                    raise ConfigError(f"feature expression {text!r}: expected ',' or ')'")
                j += 1
            arity = FUNCTIONS[tok][1]
            if arity is not None and len(args) != arity:
                raise ConfigError(
                    f"feature expression {text!r}: {tok}() takes {arity} argument(s), got {len(args)}"
                )
            return Expression("call", tok, tuple(args)), j
        return Expression("name", tok), i + 1

    expr, end = node(0)
    if end != len(tokens):
        raise ConfigError(f"feature expression {text!r}: trailing input after {expr}")
    return expr


def referenced_names(expr: Expression | str) -> set[str]:
    """All field paths an expression reads."""
    if isinstance(expr, str):
        expr = parse(expr)
    if expr.kind == "name":
        return {expr.value}
    return set().union(*(referenced_names(a) for a in expr.args)) if expr.args else set()


def evaluate(expr: Expression | str, resolve: Resolver) -> np.ndarray:
    """Evaluate an expression on flat numpy arrays given by ``resolve(name)``."""
    if isinstance(expr, str):
        expr = parse(expr)
    if expr.kind == "num":
        return np.float64(expr.value)  # type: ignore[return-value]
    if expr.kind == "name":
        return np.asarray(resolve(expr.value))
    fn, _ = FUNCTIONS[expr.value]
    return fn(*(evaluate(a, resolve) for a in expr.args))


@dataclass(frozen=True)
class FeatureSpec:
    """One input variable: its expression and its weaver-style preprocessing.

    Attributes:
        name: variable name (``var_names`` in preprocess.json).
        expr: expression over collection fields; defaults to ``name``.
        median: subtracted before scaling (weaver ``median``; "center").
        norm_factor: multiplied after centring (weaver ``norm_factor``).
        lower_bound: clip lower bound after scaling.
        upper_bound: clip upper bound after scaling.
        replace_inf_value: replaces NaN and +-inf raw values.
        pad: value of padded slots (the model contract expects 0).
    """

    name: str
    expr: str = ""
    median: float = 0.0
    norm_factor: float = 1.0
    lower_bound: float = -1e32
    upper_bound: float = 1e32
    replace_inf_value: float = 0.0
    pad: float = 0.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("FeatureSpec.name must not be empty")
        if not self.expr:
            object.__setattr__(self, "expr", self.name)
        parse(self.expr)  # validate early, with the feature's own name in errors
        if self.lower_bound > self.upper_bound:
            raise ConfigError(
                f"feature {self.name!r}: lower_bound {self.lower_bound} > upper_bound {self.upper_bound}"
            )
        if not math.isfinite(self.norm_factor):
            raise ConfigError(f"feature {self.name!r}: norm_factor must be finite")

    @property
    def expression(self) -> Expression:
        """The parsed expression."""
        return parse(self.expr)

    def var_info(self) -> dict[str, float]:
        """This spec's preprocessing in weaver/CMSSW ``var_infos`` layout."""
        return {
            "median": self.median,
            "norm_factor": self.norm_factor,
            "replace_inf_value": self.replace_inf_value,
            "lower_bound": self.lower_bound,
            "upper_bound": self.upper_bound,
            "pad": self.pad,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str) -> FeatureSpec:
        """Build from a mapping (or a bare name string) as found in YAML/JSON."""
        from paratag.config import from_dict

        if isinstance(data, str):
            return cls(name=data)
        return from_dict(cls, data, where=f"feature {data.get('name', '?')!r}")


def apply_preprocessing(raw: np.ndarray, specs: Sequence[FeatureSpec]) -> np.ndarray:
    """Apply each spec's preprocessing to the rows of ``raw`` (C, M) -> float32 (C, M)."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.shape[0] != len(specs):
        raise ValueError(f"{raw.shape[0]} rows for {len(specs)} feature specs")
    median = np.array([s.median for s in specs])[:, None]
    norm = np.array([s.norm_factor for s in specs])[:, None]
    lo = np.array([s.lower_bound for s in specs])[:, None]
    hi = np.array([s.upper_bound for s in specs])[:, None]
    inf_value = np.array([s.replace_inf_value for s in specs])[:, None]
    x = np.where(np.isfinite(raw), raw, inf_value)
    return np.clip((x - median) * norm, lo, hi).astype(np.float32)
