"""``preprocess.json``: the input description that travels with an exported model.

The layout is the one weaver writes and CMSSW's ``ParticleNetConstructor`` /
``ParticleNetFeatureEvaluator`` read::

    {"input_names": ["points", "features", "mask", "condition"],
     "output_names": ["signal", "ttX", "diboson", "nonprompt"],
     "features": {"var_names": [...], "var_length": 100,
                  "var_infos": {"pfcand_pt_log": {"median": 1.0, "norm_factor": 0.5,
                                "replace_inf_value": 0, "lower_bound": -5,
                                "upper_bound": 5, "pad": 0}, ...}},
     ...,
     "paratag": {"format_version": 1, "version": "0.1.0", "preset_name": "jet",
                 "preset": {...}, "condition_names": [...], "condition_mean": [...],
                 "condition_std": [...], "class_names": [...], "onnx_output": "softmax",
                 "fingerprint": "..."}}

``output_names`` are the class labels, as CMSSW's ONNX jet-tag producers and
weaver's ``export_json`` use them (one JetTag per label); the ONNX output tensor
(``softmax``) is named in the ``paratag`` block. Files written before this
convention (``output_names: ["softmax"]``) still load.

Each input ``x`` of the network is ``clip((raw - median) * norm_factor, lower,
upper)`` after NaN/inf are replaced, padded with ``pad`` up to its length. The
``condition`` input (parametric models) is described the same way: its
``median`` is the condition mean and its ``norm_factor`` is ``1/std``, so a
CMSSW producer normalises masses with the code it already has. Its ONNX shape
is ``(N, K)`` rather than ``(N, K, length)``.

:func:`load_preprocess` also reads the published CMSSW variant
(``min_length``/``max_length`` instead of ``var_length``, no ``paratag``
block, input names such as ``pf_points``); :func:`preset_from_preprocess`
rebuilds a preset for such a file from the expressions of a paratag preset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paratag import __version__
from paratag.conditions import ConditionSpace
from paratag.errors import ConfigError, InputFileError, ModelMismatchError, SchemaError
from paratag.features import FeatureSpec
from paratag.presets import Preset, load_preset

__all__ = [
    "LEGACY_OUTPUT",
    "inputs_fingerprint",
    "FORMAT_VERSION",
    "InputBlock",
    "Preprocess",
    "load_preprocess",
    "preprocess_for",
    "preset_from_preprocess",
    "split_input_name",
    "write_preprocess",
]

#: Version of the ``paratag`` block layout; bumped on incompatible changes.
FORMAT_VERSION = 1
#: ONNX output tensor of paratag exports (and the ``output_names`` of files written before 0.2).
LEGACY_OUTPUT = "softmax"

_KINDS = ("points", "features", "mask")
_VAR_INFO_KEYS = ("median", "norm_factor", "replace_inf_value", "lower_bound", "upper_bound", "pad")
_DEFAULT_INFO = {
    "median": 0.0,
    "norm_factor": 1.0,
    "replace_inf_value": 0.0,
    "lower_bound": -1e32,
    "upper_bound": 1e32,
    "pad": 0.0,
}


@dataclass(frozen=True)
class InputBlock:
    """One network input as described in preprocess.json.

    Attributes:
        name: ONNX input name (``features``, ``pf_points``, ``condition``...).
        var_names: one name per channel.
        var_infos: per variable the weaver preprocessing (see module docstring).
        min_length: shortest allowed length along the particle axis.
        max_length: padded length along the particle axis (``var_length``).
    """

    name: str
    var_names: tuple[str, ...]
    var_infos: dict[str, dict[str, float]]
    min_length: int
    max_length: int

    def to_json(self, cmssw: bool = False) -> dict[str, Any]:
        """The JSON block (``var_length``, or ``min/max_length`` with ``cmssw=True``)."""
        out: dict[str, Any] = {
            "var_names": list(self.var_names),
            "var_infos": {k: dict(v) for k, v in self.var_infos.items()},
        }
        if cmssw:
            out["min_length"], out["max_length"] = self.min_length, self.max_length
        else:
            out["var_length"] = self.max_length
        return out


@dataclass(frozen=True)
class Preprocess:
    """A parsed preprocess.json (paratag or CMSSW flavour).

    Attributes:
        input_names: ONNX input names in call order.
        output_names: the output's class labels, as CMSSW's ONNX jet-tag producers and
            weaver's ``export_json`` read them (one JetTag per name).
        inputs: input name → :class:`InputBlock`.
        paratag: the ``paratag`` block; empty for a CMSSW file.
        path: file it was read from ("" when built in memory).
    """

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    inputs: dict[str, InputBlock]
    paratag: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def is_paratag(self) -> bool:
        """Whether the file carries a ``paratag`` block (else it is a CMSSW file)."""
        return bool(self.paratag)

    @property
    def condition_names(self) -> tuple[str, ...]:
        """Condition parameter names (empty for unconditioned models)."""
        if "condition" in self.inputs:
            return self.inputs["condition"].var_names
        return tuple(self.paratag.get("condition_names", ()))

    @property
    def class_names(self) -> tuple[str, ...]:
        """Output class names (signal first for paratag exports): the ``output_names``."""
        if self.is_paratag and tuple(self.output_names) == (LEGACY_OUTPUT,):
            return tuple(self.paratag.get("class_names", ()))  # files written before 0.2
        return tuple(self.output_names)

    @property
    def onnx_output(self) -> str | None:
        """ONNX output tensor to read (None for CMSSW files: their model's only output).

        The ``paratag`` block's ``onnx_output``; ``softmax`` for older paratag files.
        """
        if not self.is_paratag:
            return None
        return str(self.paratag.get("onnx_output", LEGACY_OUTPUT))

    @property
    def fingerprint(self) -> str:
        """Hash of everything the network's inputs depend on."""
        return fingerprint(self)

    def preset(self, base: str | Preset | None = None) -> Preset:
        """The preset that rebuilds this file's inputs (see :func:`preset_from_preprocess`)."""
        if self.is_paratag and base is None:
            return load_preset(self.paratag["preset"])
        return preset_from_preprocess(self, base if base is not None else "jet")

    def to_json(self, cmssw: bool = False) -> dict[str, Any]:
        """The JSON document; ``cmssw=True`` writes the published CMSSW variant."""
        out: dict[str, Any] = {
            "input_names": list(self.input_names),
            "output_names": list(self.output_names),
        }
        shortest = int(self.paratag.get("min_particles", 0))
        first = load_preset(self.paratag["preset"]).clouds[0].name if shortest and cmssw else ""
        for name in self.input_names:
            block = self.inputs[name]
            if cmssw and shortest and name != "condition":
                # CMSSW feeds clamp(n, min_length, max_length) slots: the first cloud needs the
                # graph's minimum (largest kNN k + 1), the others at least one slot
                lo = shortest if split_input_name(name, first)[0] == first else 1
                block = dataclasses.replace(block, min_length=min(lo, block.max_length))
            out[name] = block.to_json(cmssw)
        if self.paratag and not cmssw:
            out["paratag"] = {**self.paratag, "fingerprint": self.fingerprint}
        return out


def split_input_name(name: str, first_cloud: str) -> tuple[str, str]:
    """Map an input name to ``(cloud, kind)``: ``features`` → (first, features), ``sv_mask`` → (sv, mask)."""
    if name in _KINDS:
        return first_cloud, name
    for kind in _KINDS:
        if name.endswith("_" + kind):
            return name[: -len(kind) - 1], kind
    raise ConfigError(
        f"input {name!r} is neither 'condition' nor '<cloud>_points|features|mask'; "
        "paratag cannot build it"
    )


def fingerprint(pp: Preprocess) -> str:
    """SHA-256 (16 hex digits) of the inputs and the ``paratag`` block (preset, conditions, classes)."""
    doc: dict[str, Any] = {name: pp.inputs[name].to_json() for name in pp.input_names}
    doc["_names"] = [list(pp.input_names), list(pp.output_names)]
    doc["_paratag"] = {k: v for k, v in pp.paratag.items() if k != "fingerprint"}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def inputs_fingerprint(pp: Preprocess) -> str:
    """SHA-256 (16 hex digits) of the input blocks alone: equal for both JSON flavours."""
    doc: dict[str, Any] = {name: pp.inputs[name].to_json() for name in pp.input_names}
    doc["_names"] = [list(pp.input_names), list(pp.output_names)]
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _block(name: str, specs: Sequence[FeatureSpec], length: int) -> InputBlock:
    return InputBlock(
        name, tuple(s.name for s in specs), {s.name: s.var_info() for s in specs}, length, length
    )


def preprocess_for(
    preset: str | Preset,
    input_names: Sequence[str],
    *,
    condition_names: Sequence[str] = (),
    condition_mean: Sequence[float] = (),
    condition_std: Sequence[float] = (),
    class_names: Sequence[str] = (),
    onnx_output: str = LEGACY_OUTPUT,
    extra: Mapping[str, Any] | None = None,
) -> Preprocess:
    """Describe the inputs ``input_names`` of a model trained on ``preset``.

    Args:
        preset: the preset the model was trained with.
        input_names: ONNX input names in call order (``points, features, mask[, condition]...``).
        condition_names: condition parameter names.
        condition_mean: their normalisation means (physical units).
        condition_std: their normalisation standard deviations.
        class_names: output class names, signal first (written as ``output_names``).
        onnx_output: the ONNX output tensor name (kept in the ``paratag`` block).
        extra: further entries of the ``paratag`` block (model name, memory estimate...).
    """
    p = load_preset(preset)
    first = p.clouds[0].name
    blocks: dict[str, InputBlock] = {}
    for name in input_names:
        if name == "condition":
            if (
                not condition_names
                or len(condition_mean) != len(condition_names)
                or len(condition_std) != len(condition_names)
            ):
                raise ConfigError(
                    "the model takes a condition input: give condition_names with one "
                    f"condition_mean and condition_std each (got {list(condition_names)}, "
                    f"{list(condition_mean)}, {list(condition_std)})"
                )
            space = ConditionSpace(
                tuple(condition_names), tuple(condition_mean), tuple(condition_std)
            )
            infos = {n: {**_DEFAULT_INFO, **v} for n, v in space.var_infos().items()}
            blocks[name] = InputBlock(name, tuple(condition_names), infos, 1, 1)
            continue
        cloud_name, kind = split_input_name(name, first)
        cloud = p.cloud(cloud_name)
        if kind == "mask":
            mname = f"{cloud.name}_mask"
            blocks[name] = InputBlock(
                name, (mname,), {mname: dict(_DEFAULT_INFO)}, cloud.max_length, cloud.max_length
            )
        else:
            specs = cloud.points if kind == "points" else cloud.features
            blocks[name] = _block(name, specs, cloud.max_length)
    info: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "version": __version__,
        "preset_name": p.name,
        "preset": p.to_dict(),
        "condition_names": list(condition_names),
        "condition_mean": [float(v) for v in condition_mean],
        "condition_std": [float(v) for v in condition_std],
        "class_names": list(class_names),
        "onnx_output": onnx_output,
        **dict(extra or {}),
    }
    labels = tuple(class_names) or (onnx_output,)
    return Preprocess(tuple(input_names), labels, blocks, info)


def write_preprocess(pp: Preprocess, path: str | Path, cmssw: bool = False) -> Path:
    """Write ``pp`` as JSON (paratag flavour, or the CMSSW variant with ``cmssw=True``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(pp.to_json(cmssw), indent=2) + "\n")
    return p


def _parse_block(name: str, data: Any, where: str) -> InputBlock:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: input {name!r} needs a block with var_names/var_infos")
    var_names = data.get("var_names")
    if not isinstance(var_names, list) or not all(isinstance(v, str) for v in var_names):
        raise ConfigError(f"{where}: {name}.var_names must be a list of strings")
    if "var_length" in data:
        lo = hi = data["var_length"]
    elif "max_length" in data:
        hi = data["max_length"]
        lo = data.get("min_length", hi)
    else:
        raise ConfigError(
            f"{where}: {name} needs var_length (paratag/weaver) or min_length/max_length (CMSSW)"
        )
    if (
        not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (lo, hi))
        or lo > hi
    ):
        raise ConfigError(
            f"{where}: {name} lengths must be integers with min <= max, got {lo}, {hi}"
        )
    raw_infos = data.get("var_infos", {})
    if not isinstance(raw_infos, Mapping):
        raise ConfigError(f"{where}: {name}.var_infos must be a mapping")
    infos: dict[str, dict[str, float]] = {}
    for var in var_names:
        info = raw_infos.get(var, {})
        if not isinstance(info, Mapping):
            raise ConfigError(f"{where}: {name}.var_infos.{var} must be a mapping")
        merged = {**_DEFAULT_INFO, **{k: v for k, v in info.items() if k in _VAR_INFO_KEYS}}
        for key, value in merged.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(
                    f"{where}: {name}.var_infos.{var}.{key} must be a number, got {value!r}"
                )
        infos[var] = {k: float(v) for k, v in merged.items()}
    return InputBlock(name, tuple(var_names), infos, int(lo), int(hi))


def load_preprocess(path: str | Path) -> Preprocess:
    """Read and validate a preprocess.json (paratag or CMSSW flavour)."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(
            str(p),
            "preprocess file does not exist",
            "export the model again (paratag export) or pass preprocess=PATH",
        )
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid JSON ({exc}); re-export the model") from exc
    where = str(p)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: top level must be a JSON object")
    for key in ("input_names", "output_names"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise ConfigError(f"{where}: {key!r} must be a non-empty list")
    inputs = {n: _parse_block(n, data.get(n), where) for n in data["input_names"]}
    info = data.get("paratag", {})
    if not isinstance(info, dict):
        raise ConfigError(f"{where}: the 'paratag' block must be a mapping")
    pp = Preprocess(
        tuple(data["input_names"]), tuple(data["output_names"]), inputs, dict(info), where
    )
    if info:
        fmt = info.get("format_version")
        if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
            raise ModelMismatchError(
                f"{where}: paratag block format_version {fmt!r} is not supported by paratag "
                f"{__version__} (supports <= {FORMAT_VERSION}); upgrade paratag or re-export"
            )
        if "preset" not in info:
            raise ConfigError(f"{where}: the paratag block lacks 'preset'; re-export the model")
        stored = info.get("fingerprint")
        if stored is not None and stored != pp.fingerprint:
            raise ModelMismatchError(
                f"{where}: the file was edited after export (fingerprint {stored} != "
                f"{pp.fingerprint}); re-export the model instead of editing preprocess.json"
            )
    return pp


def preset_from_preprocess(pp: Preprocess, base: str | Preset = "jet") -> Preset:
    """A preset computing ``pp``'s inputs with the expressions of ``base``.

    Variables are matched by name to the features and points of every cloud of
    ``base``; their preprocessing comes from ``pp``. Clouds are matched by
    input-name prefix (``pf_features`` → cloud ``pf``; bare names → first cloud).

    Raises:
        SchemaError: a variable has no expression in ``base`` (listed in the message).
    """
    b = load_preset(base)
    catalog = {s.name: s for c in b.clouds for s in (*c.points, *c.features)}
    first = b.clouds[0].name
    per_cloud: dict[str, dict[str, tuple[FeatureSpec, ...]]] = {}
    lengths: dict[str, int] = {}
    unknown: list[str] = []
    unmapped: list[str] = []
    for name in pp.input_names:
        if name == "condition":
            continue
        try:
            cloud_name, kind = split_input_name(name, first)
        except ConfigError:  # e.g. CMS's `input_cpf`: not a <cloud>_<kind> name
            unmapped.append(name)
            unknown += [v for v in pp.inputs[name].var_names if v not in catalog]
            continue
        if cloud_name not in {c.name for c in b.clouds}:
            raise SchemaError(
                f"{pp.path or 'preprocess'}: input {name!r} needs a cloud {cloud_name!r}, preset "
                f"{b.name!r} has {[c.name for c in b.clouds]}; write a preset with that cloud"
            )
        block = pp.inputs[name]
        lengths[cloud_name] = block.max_length
        if kind == "mask":
            continue
        specs = []
        for var in block.var_names:
            if var not in catalog:
                unknown.append(var)
                continue
            info = block.var_infos[var]
            specs.append(dataclasses.replace(catalog[var], **info))  # type: ignore[arg-type]
        per_cloud.setdefault(cloud_name, {})[kind] = tuple(specs)
    if unmapped or unknown:
        where = pp.path or "preprocess"
        parts = []
        if unmapped:
            parts.append(
                f"input(s) {unmapped} are not paratag input names (points, features, mask, "
                "condition or <cloud>_points|features|mask) and cannot be built"
            )
        if unknown:
            parts.append(
                f"{len(unknown)} variable(s) have no expression in preset {b.name!r}: {unknown}"
            )
        raise SchemaError(
            f"{where}: " + "; ".join(parts) + "; write a preset YAML with clouds and features "
            "of these names (their expressions over NanoAOD branches) and rename the inputs"
        )
    clouds = []
    for c in b.clouds:
        if c.name not in lengths:
            continue
        got = per_cloud.get(c.name, {})
        clouds.append(
            dataclasses.replace(
                c,
                points=got.get("points", c.points),
                features=got.get("features", c.features),
                max_length=lengths[c.name],
            )
        )
    return dataclasses.replace(b, name=f"{b.name}-from-preprocess", clouds=tuple(clouds))
