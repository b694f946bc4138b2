"""Frozen configuration dataclasses and their YAML/JSON round trip.

Every configurable piece of paratag is a frozen dataclass. :func:`from_dict`
builds one from a plain mapping (as read from YAML or JSON), recursing into
nested dataclasses, tuples and optionals, and raises :class:`ConfigError`
naming the offending key for unknown keys, missing required keys or values of
the wrong type. :func:`to_dict` and :func:`dump` write the resolved config
back, so every run can store exactly what it ran with.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml

from paratag.errors import ConfigError

T = TypeVar("T")

__all__ = [
    "apply_overrides",
    "ModelConfig",
    "dump",
    "from_dict",
    "load",
    "read_mapping",
    "to_dict",
]


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON file into a dict, with a clear error if it is not one."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file does not exist")
    try:
        text = p.read_text()
    except UnicodeDecodeError as exc:  # e.g. a ROOT file given where a fileset/config goes
        hint = (
            "; a ROOT file is data: list it in a fileset YAML ({dataset: {files: [...]}})"
            if p.suffix == ".root"
            else ""
        )
        raise ConfigError(f"{p}: not a text (YAML/JSON) file{hint}") from exc
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: not valid YAML/JSON ({exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Convert ``value`` to annotation ``tp`` or raise ConfigError at ``where``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _convert(a, v, f"{where}[{i}]")
            for i, (a, v) in enumerate(zip(args, value, strict=False))
        )
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        args = get_args(tp)
        if args:
            return {
                _convert(args[0], k, f"{where}.key"): _convert(args[1], v, f"{where}.{k}")
                for k, v in value.items()
            }
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build the frozen dataclass ``cls`` from ``data``, validating every field."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    where = where or cls.__name__
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: required key {name!r} is missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """Convert a (nested) dataclass to plain dicts/lists suitable for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def load(cls: type[T], path: str | Path, section: str | None = None) -> T:
    """Load ``cls`` from a YAML/JSON file, optionally from one top-level section."""
    data = read_mapping(path)
    if section is not None:
        if section not in data:
            raise ConfigError(f"{path}: section {section!r} is missing")
        data = data[section]
    return from_dict(cls, data, where=f"{path}")


def dump(obj: Any, path: str | Path) -> Path:
    """Write a dataclass (or mapping) as YAML (or JSON for ``.json``) and return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = to_dict(obj)
    if p.suffix == ".json":
        p.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    else:
        p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which model to build and with what options.

    Attributes:
        name: registry name ("particlenet", "parametric_particlenet", "interaction_net", ...).
        n_classes: number of output classes (signal first).
        condition_names: names of the condition parameters, e.g. ("mHc", "mA").
        condition_mean: per-parameter mean used to normalise physical masses.
        condition_std: per-parameter standard deviation used to normalise.
        options: model-specific hyperparameters, validated by the model's own dataclass.
    """

    name: str = "particlenet"
    n_classes: int = 2
    condition_names: tuple[str, ...] = ()
    condition_mean: tuple[float, ...] = ()
    condition_std: tuple[float, ...] = ()
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        k = len(self.condition_names)
        if len(self.condition_mean) not in (0, k) or len(self.condition_std) not in (0, k):
            raise ConfigError(
                f"ModelConfig: condition_mean/std need {k} values for {list(self.condition_names)}"
            )
        if any(s <= 0 for s in self.condition_std):
            raise ConfigError(
                f"ModelConfig.condition_std must be positive, got {self.condition_std}"
            )
        if self.n_classes < 2:
            raise ConfigError(f"ModelConfig.n_classes must be >= 2, got {self.n_classes}")


def apply_overrides(cfg: T, items: Sequence[str]) -> T:
    """``cfg`` with ``key.sub=value`` overrides (values parsed as YAML, validated like the file).

    Example: ``apply_overrides(cfg, ["stage3.epochs=5", "data.shards=shards/"])``.
    """
    import yaml

    data = to_dict(cfg)
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write key.subkey=value, e.g. stage3.epochs=5")
        *parents, leaf = key.strip().split(".")
        node = data
        for i, part in enumerate(parents):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parents[: i + 1])
                raise ConfigError(f"--set {item!r}: {where!r} is not a section of the config")
            node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {'.'.join(parents)!r} is not a section")
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: cannot parse the value ({exc})") from exc
    return from_dict(type(cfg), data, where="--set")
