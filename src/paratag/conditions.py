"""Mass grids: condition names, the train/validation/interpolation/extrapolation splits.

A parametric tagger is trained on a grid of signal mass hypotheses. Every grid
point has exactly one *role*:

- ``train``: used in stage-1 pre-training and stage-3 fine-tuning;
- ``validation``: never trained on; scored every stage-3 epoch (model selection);
- ``interpolation``: held-out test points inside the trained region;
- ``extrapolation``: held-out test points outside it.

:data:`GRID_PRESETS` holds the charged-Higgs grids of the analysis plan
(``charged_higgs``: 7 train, 3 validation, 3 interpolation, 2 extrapolation
points; ``charged_higgs_full``: the 15-point grid mHc in {100, 115, 130, 145,
160} x mA in {85, 90, 95} with the plan's 3 validation points and the other 12
for training) and a one-parameter X->bb grid (``xbb``).

Backgrounds have no mass. Following the standard parametric-network recipe
(Baldi et al., arXiv:1601.07913) every background event is given a condition
drawn from the *training* signal grid with the probabilities of the signal
sample, so the condition's marginal distribution is the same for signal and
background and the network cannot separate them by the condition alone;
:func:`draw_background_conditions` does this statelessly from
``(seed, epoch, row)`` so it is identical in every DataLoader worker, DDP rank
and after a resume, and it is redrawn every epoch (augmentation).

Events are split into ``n_folds`` folds by their event number
(``event % n_folds``, deterministic, as in the origin analysis's 5-fold setup):
fold ``fold`` is the test fold (never used here), fold ``(fold + 1) % n_folds``
validates, the rest trains (:func:`fold_roles`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from paratag.errors import ConfigError, InvalidValueError, UnknownMassPointError

__all__ = [
    "CONDITION_DEFAULTS",
    "GRID_PRESETS",
    "ROLES",
    "ConditionSpace",
    "GridConfig",
    "MassGrid",
    "draw_background_conditions",
    "fit_subset",
    "fold_roles",
    "format_value",
    "match_points",
    "parse_hypotheses",
    "point_name",
    "uniform_hash",
]

Role = Literal["train", "validation", "interpolation", "extrapolation"]
ROLES: tuple[Role, ...] = ("train", "validation", "interpolation", "extrapolation")
Point = tuple[float, ...]
#: second key of :func:`fit_subset`'s hash, so its draw is not another function's
_FIT_SUBSET_KEY = 0x5EEDF17

_CH_TRAIN = ((100, 85), (115, 90), (130, 85), (130, 90), (130, 95), (145, 90), (160, 95))
_CH_VAL = ((115, 85), (145, 95), (160, 90))
_CH_INTERP = ((110, 87), (125, 91), (140, 93))
_CH_EXTRAP = ((95, 80), (165, 97))
_CH_FULL = tuple((m, a) for m in (100, 115, 130, 145, 160) for a in (85, 90, 95))

#: Built-in grids: name -> {names, train, validation, interpolation, extrapolation}.
GRID_PRESETS: dict[str, dict[str, tuple]] = {
    "charged_higgs": {
        "names": ("mHc", "mA"),
        "train": _CH_TRAIN,
        "validation": _CH_VAL,
        "interpolation": _CH_INTERP,
        "extrapolation": _CH_EXTRAP,
    },
    "charged_higgs_full": {
        "names": ("mHc", "mA"),
        "train": tuple(p for p in _CH_FULL if p not in _CH_VAL),
        "validation": _CH_VAL,
        "interpolation": _CH_INTERP,
        "extrapolation": _CH_EXTRAP,
    },
    "xbb": {
        "names": ("mX",),
        "train": ((50,), (75,), (125,), (150,), (200,)),
        "validation": ((100,),),
        "interpolation": ((90,), (175,)),
        "extrapolation": ((35,), (250,)),
    },
}


#: Normalisation (mean, std) in GeV of the analysis grids' parameters, used when a
#: config gives none (the charged-Higgs grids above; X->bb runs take the grid's own).
CONDITION_DEFAULTS: dict[str, tuple[float, float]] = {
    "mHc": (130.0, 20.0),
    "mA": (90.0, 10.0),
}


def format_value(v: float) -> str:
    """A mass in names: ``130`` → ``130``, ``100.5`` → ``100p5``, ``-5`` → ``m5``."""
    v = float(v)
    text = str(int(v)) if v.is_integer() else f"{v:g}"
    return text.replace(".", "p").replace("-", "m")


def point_name(point: Sequence[float], names: Sequence[str]) -> str:
    """Canonical text name of a grid point, e.g. ``mHc130_mA90`` (datasets, hypotheses, keys)."""
    return "_".join(f"{n}{format_value(v)}" for n, v in zip(names, point, strict=True))


@dataclasses.dataclass(frozen=True)
class ConditionSpace:
    """The condition parameters of a model: names and the normalisation of physical values.

    A network sees ``(physical - mean) / std``; ``preprocess.json`` stores the same as
    the condition's ``var_infos`` (``median`` = mean, ``norm_factor`` = 1/std).

    Attributes:
        names: parameter names, e.g. ``("mHc", "mA")``; empty for an unconditioned model.
        mean: per-parameter mean (GeV).
        std: per-parameter standard deviation (GeV, > 0).
    """

    names: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        k = len(self.names)
        if len(self.mean) != k or len(self.std) != k:
            raise ConfigError(
                f"condition_mean/condition_std need {k} values each for {list(self.names)}, "
                f"got {list(self.mean)} and {list(self.std)}"
            )
        if any(not s > 0 for s in self.std):
            raise ConfigError(f"condition_std must be positive, got {list(self.std)}")

    @classmethod
    def resolve(
        cls, names: Sequence[str], mean: Sequence[float] = (), std: Sequence[float] = ()
    ) -> ConditionSpace:
        """Given mean/std, or :data:`CONDITION_DEFAULTS` for well-known names."""
        names = tuple(str(n) for n in names)
        if mean or std or not names:
            return cls(names, tuple(float(m) for m in mean), tuple(float(s) for s in std))
        unknown = [n for n in names if n not in CONDITION_DEFAULTS]
        if unknown:
            raise ConfigError(
                f"no default normalisation for condition parameter(s) {unknown}; set "
                "model.condition_mean and model.condition_std in the config"
            )
        return cls(
            names,
            tuple(CONDITION_DEFAULTS[n][0] for n in names),
            tuple(CONDITION_DEFAULTS[n][1] for n in names),
        )

    @classmethod
    def from_var_infos(
        cls, names: Sequence[str], var_infos: Mapping[str, Mapping[str, Any]]
    ) -> ConditionSpace:
        """From a preprocess condition block's ``var_infos``."""
        infos = [var_infos[n] for n in names]
        return cls(
            tuple(names),
            tuple(float(i["median"]) for i in infos),
            tuple(1.0 / float(i["norm_factor"]) for i in infos),
        )

    def var_infos(self) -> dict[str, dict[str, float]]:
        """``{name: {"median": mean, "norm_factor": 1/std}}`` for ``preprocess.json``."""
        return {
            n: {"median": m, "norm_factor": 1.0 / s}
            for n, m, s in zip(self.names, self.mean, self.std, strict=True)
        }

    def normalise(self, physical: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Physical values ``(N, K)`` → normalised float32 ``(N, K)``."""
        x = np.asarray(physical, np.float64)
        return ((x - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def name(self, point: Sequence[float]) -> str:
        """Text name of a point (:func:`point_name`)."""
        return point_name(point, self.names)

    def rows(self, hypotheses: Sequence[Mapping[str, float]], where: str = "") -> np.ndarray:
        """Physical rows ``(H, K)`` of hypotheses given as mappings, validated."""
        example = f"[{{{', '.join(f'{n!r}: ...' for n in self.names)}}}]"
        if isinstance(hypotheses, Mapping) or not all(isinstance(h, Mapping) for h in hypotheses):
            raise ConfigError(
                f"{where}hypotheses must be a list of mappings, e.g. {example}, got {hypotheses!r}"
            )
        rows = []
        for h in hypotheses:
            if set(h) != set(self.names):
                raise ConfigError(
                    f"{where}hypothesis {dict(h)} must give exactly the condition names "
                    f"{list(self.names)}"
                )
            bad = {
                n: h[n]
                for n in self.names
                if isinstance(h[n], bool) or not isinstance(h[n], (int, float, np.number))
            }
            if bad:
                raise ConfigError(
                    f"{where}hypothesis {dict(h)}: values {bad} are not numbers (GeV)"
                )
            rows.append([float(h[n]) for n in self.names])
        arr = np.asarray(rows, np.float64).reshape(len(rows), len(self.names))
        if not np.all(np.isfinite(arr)):
            raise InvalidValueError(
                f"{where}hypotheses {list(map(dict, hypotheses))} hold NaN or inf"
            )
        return arr


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """The mass grid of a training run (the ``grid:`` section of a train config).

    Attributes:
        preset: a name in :data:`GRID_PRESETS`, or None to give every list explicitly.
        names: condition names (e.g. ``[mHc, mA]``); None takes the preset's.
        train: training points, each a list of ``len(names)`` masses in GeV.
        validation: validation points (None: the preset's, else empty).
        interpolation: interpolation test points.
        extrapolation: extrapolation test points.
    """

    preset: str | None = "charged_higgs"
    names: tuple[str, ...] | None = None
    train: tuple[tuple[float, ...], ...] | None = None
    validation: tuple[tuple[float, ...], ...] | None = None
    interpolation: tuple[tuple[float, ...], ...] | None = None
    extrapolation: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if self.preset is not None and self.preset not in GRID_PRESETS:
            raise ConfigError(
                f"grid.preset {self.preset!r} is unknown; choose one of {sorted(GRID_PRESETS)} "
                "or set it to null and list the points"
            )


@dataclasses.dataclass(frozen=True)
class MassGrid:
    """A resolved grid: condition names and the points of every role.

    Attributes:
        names: condition names, e.g. ``("mHc", "mA")``.
        train, validation, interpolation, extrapolation: points (tuples of floats).
    """

    names: tuple[str, ...]
    train: tuple[Point, ...]
    validation: tuple[Point, ...] = ()
    interpolation: tuple[Point, ...] = ()
    extrapolation: tuple[Point, ...] = ()

    def __post_init__(self) -> None:
        if not self.names:
            raise ConfigError("grid.names is empty: give the condition names, e.g. [mHc, mA]")
        if not self.train:
            raise ConfigError("grid.train is empty: a parametric run needs training points")
        seen: dict[Point, str] = {}
        for role in ROLES:
            for p in getattr(self, role):
                if len(p) != len(self.names):
                    raise ConfigError(
                        f"grid.{role}: point {list(p)} has {len(p)} values, expected "
                        f"{len(self.names)} for {list(self.names)}"
                    )
                if not all(np.isfinite(p)):
                    raise ConfigError(f"grid.{role}: point {list(p)} is not finite")
                if p in seen:
                    raise ConfigError(
                        f"grid: point {list(p)} is listed as both {seen[p]!r} and {role!r}; "
                        "each point has exactly one role"
                    )
                seen[p] = role

    @classmethod
    def from_config(cls, cfg: GridConfig) -> MassGrid:
        """Resolve a :class:`GridConfig` (preset + overrides) into a grid."""
        base = GRID_PRESETS[cfg.preset] if cfg.preset is not None else {}
        values = {}
        for key in ("names", *ROLES):
            given = getattr(cfg, key)
            values[key] = given if given is not None else base.get(key, ())
        names = tuple(str(n) for n in values.pop("names"))
        pts = {r: tuple(tuple(float(v) for v in p) for p in values[r]) for r in ROLES}
        return cls(names=names, **pts)

    def points(self, role: Role | Literal["all"] = "all") -> tuple[Point, ...]:
        """Points of one role, or of every role in :data:`ROLES` order."""
        if role == "all":
            return tuple(p for r in ROLES for p in getattr(self, r))
        if role not in ROLES:
            raise ConfigError(f"unknown grid role {role!r}; choose one of {list(ROLES)}")
        return tuple(getattr(self, role))

    def role_of(self, point: Sequence[float]) -> Role:
        """The role of ``point``; :class:`UnknownMassPointError` if it is not in the grid."""
        p = tuple(float(v) for v in point)
        for role in ROLES:
            if p in getattr(self, role):
                return role
        raise UnknownMassPointError(
            f"mass point {self.name(p)} is not in the grid; known points: "
            f"{[self.name(q) for q in self.points()]}"
        )

    def name(self, point: Sequence[float]) -> str:
        """Text name of ``point`` (see :func:`point_name`)."""
        return point_name(point, self.names)

    def parse(self, text: str) -> Point:
        """Inverse of :meth:`name` for points of this grid."""
        for p in self.points():
            if self.name(p) == text:
                return p
        raise UnknownMassPointError(
            f"mass point {text!r} is not in the grid; known: {[self.name(p) for p in self.points()]}"
        )

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean and standard deviation of the training points (std floored at 1 GeV)."""
        arr = np.asarray(self.train, dtype=np.float64)
        return tuple(arr.mean(axis=0).tolist()), tuple(np.maximum(arr.std(axis=0), 1.0).tolist())

    def model_normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The condition normalisation of a model trained on this grid.

        :data:`CONDITION_DEFAULTS` when every name has one, else :meth:`normalisation`.
        """
        if all(n in CONDITION_DEFAULTS for n in self.names):
            space = ConditionSpace.resolve(self.names)
            return space.mean, space.std
        return self.normalisation()


def match_points(
    condition: np.ndarray, points: Sequence[Sequence[float]], atol: float = 1e-3
) -> np.ndarray:
    """Index into ``points`` of every row of ``condition`` (N, K); -1 where none matches.

    Rows with NaN (backgrounds) never match.
    """
    cond = np.asarray(condition, dtype=np.float64).reshape(len(condition), -1)
    out = np.full(len(cond), -1, dtype=np.int64)
    for i, p in enumerate(points):
        hit = np.all(np.abs(cond - np.asarray(p, dtype=np.float64)) <= atol, axis=1)
        out[hit & (out < 0)] = i
    return out


def fit_subset(event: np.ndarray, fraction: float) -> np.ndarray:
    """Whether each event is among the share ``fraction`` kept by ``data.fit_fraction``.

    A hash of the event number, like :func:`fold_roles`: the same events in every run,
    the same share of every fold.
    """
    return uniform_hash(np.asarray(event).astype(np.int64), _FIT_SUBSET_KEY) < fraction


def fold_roles(event: np.ndarray, n_folds: int = 5, fold: int = 0) -> np.ndarray:
    """Per-event split: 0 train, 1 validation, 2 test, from ``event % n_folds``.

    Fold ``fold`` is the test fold, ``(fold + 1) % n_folds`` the validation
    fold. With ``n_folds == 2`` there is no test fold (fold ``fold`` validates).
    """
    if n_folds < 2:
        raise ConfigError(f"data.n_folds must be >= 2, got {n_folds}")
    if not 0 <= fold < n_folds:
        raise ConfigError(f"data.fold must be in [0, {n_folds - 1}], got {fold}")
    f = np.mod(np.asarray(event).astype(np.int64), n_folds)
    roles = np.zeros(len(f), dtype=np.int8)
    if n_folds == 2:
        roles[f == fold] = 1
        return roles
    roles[f == fold] = 2
    roles[f == (fold + 1) % n_folds] = 1
    return roles


def uniform_hash(*keys: int | np.integer | np.ndarray) -> np.ndarray:
    """Deterministic uniforms in [0, 1) from integer keys (splitmix64 chain), vectorised."""
    arrays = [np.atleast_1d(np.asarray(k)).astype(np.uint64) for k in keys]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    h = np.zeros(shape, dtype=np.uint64)
    for a in arrays:
        h = _splitmix64(h ^ np.broadcast_to(a, shape))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))  # type: ignore[no-any-return]


def draw_background_conditions(
    rows: np.ndarray,
    points: Sequence[Sequence[float]],
    probabilities: Iterable[float] | None = None,
    *,
    seed: int = 0,
    epoch: int = 0,
) -> np.ndarray:
    """Physical conditions ``(len(rows), K)`` for background rows, drawn from the grid.

    Args:
        rows: a stable integer id per event (its global row number).
        points: the signal points to draw from (the training grid).
        probabilities: per-point probabilities (default uniform); use the
            signal sample's per-point weight fractions so signal and background
            share the condition distribution.
        seed: run seed.
        epoch: epoch number; a new draw every epoch. Use a negative epoch for
            fixed (validation) draws.
    """
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or len(pts) == 0:
        raise ConfigError("cannot assign background conditions: the training grid is empty")
    prob = (
        np.full(len(pts), 1.0 / len(pts))
        if probabilities is None
        else np.asarray(list(probabilities), float)
    )
    if len(prob) != len(pts) or np.any(prob < 0) or prob.sum() <= 0:
        raise ConfigError(
            f"background condition probabilities {prob.tolist()} do not fit {len(pts)} points"
        )
    cdf = np.cumsum(prob / prob.sum())
    u = uniform_hash(np.int64(seed) & 0x7FFFFFFF, np.int64(epoch) + (1 << 20), np.asarray(rows))
    idx = np.minimum(np.searchsorted(cdf, u, side="right"), len(pts) - 1)
    return pts[idx]  # type: ignore[no-any-return]


def parse_hypotheses(text: str | Path) -> list[dict[str, float]]:
    """Hypotheses from ``"mHc=130,mA=90;mHc=160,mA=90"`` or a YAML/JSON file holding a list."""
    from paratag.config import read_mapping

    p = Path(str(text))
    if p.suffix in (".yaml", ".yml", ".json") and p.is_file():
        data = read_mapping(p).get("hypotheses")
        if not isinstance(data, list) or not all(isinstance(h, Mapping) for h in data):
            raise ConfigError(f"{p}: expected `hypotheses: [{{mHc: 130, mA: 90}}, ...]`")
        out = []
        for h in data:
            bad = {
                k: v for k, v in h.items() if isinstance(v, bool) or not isinstance(v, int | float)
            }
            if bad:
                raise ConfigError(f"{p}: hypothesis {dict(h)} has non-numeric values {bad}")
            out.append({str(k): float(v) for k, v in h.items()})
        return out
    out = []
    for part in filter(None, (s.strip() for s in str(text).split(";"))):
        hyp: dict[str, float] = {}
        for item in part.split(","):
            key, sep, value = item.partition("=")
            key = key.strip()
            try:
                number = float(value)
            except ValueError:
                sep = ""
            if not sep or not key:
                raise ConfigError(
                    f"hypothesis {part!r}: write name=value pairs with numbers, e.g. mHc=130,mA=90"
                )
            if key in hyp:
                raise ConfigError(f"hypothesis {part!r}: {key!r} is given twice")
            hyp[key] = number
        out.append(hyp)
    return out
