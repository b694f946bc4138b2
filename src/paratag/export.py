"""ONNX export for CMSSW and coffea: ``model.onnx`` + ``preprocess.json`` + a parity check.

:func:`export_model` is the core: it traces any paratag graph model with named
inputs ``points, features, mask[, condition][, <cloud>_features, <cloud>_mask]``
(``<cloud>``: the preset's second cloud, ``sv`` for the jet preset; dynamic batch
and particle axes) and a ``softmax`` output, stores the
preprocess fingerprint and paratag version in the ONNX metadata, and writes
the matching :mod:`paratag.preprocess` file next to it. :func:`export_run`
does the same for a training run directory. The parity checks
(:mod:`paratag.parity`, importable from here) compare PyTorch and onnxruntime on
real events at several batch sizes and particle counts.

With ``hypotheses_axis=True`` a second graph, ``model_hypotheses.onnx``, is
written next to ``model.onnx`` for models with ``forward_hypotheses`` (e.g.
ParametricParticleNet): input ``condition`` has shape ``(H, K)`` with a
dynamic ``H`` axis and output ``softmax`` has shape ``(N, H, C)``. Its file
name is recorded as ``hypotheses_model`` in preprocess.json's ``paratag``
block, where :class:`paratag.processors.Tagger` finds it. ``model.onnx`` is
unchanged (CMSSW keeps using it).

Example:
    >>> from paratag.export import export_model
    >>> result = export_model(model, "jet", "exported/", class_names=["Hbb", "QCD"])
    >>> result.onnx_path, result.preprocess_path
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paratag import __version__
from paratag.errors import ConfigError, InputFileError, ModelMismatchError
from paratag.model_check import check_model
from paratag.models.footprint import estimate_graph_bytes, hypothesis_bytes
from paratag.parity import (
    ParityReport,
    check_hypotheses_parity,
    check_parity,
    min_particles,
    parity_inputs,
)
from paratag.preprocess import (
    FORMAT_VERSION,
    Preprocess,
    inputs_fingerprint,
    load_preprocess,
    preprocess_for,
    split_input_name,
    write_preprocess,
)
from paratag.presets import Preset, cloud_keys, load_preset, secondary_cloud

__all__ = [
    "ExportResult",
    "ParityReport",
    "check_hypotheses_parity",
    "check_parity",
    "estimate_graph_bytes",
    "export_model",
    "export_run",
    "min_particles",
    "parity_inputs",
]

MODEL_FILE = "model.onnx"
MODEL_HYPOTHESES_FILE = "model_hypotheses.onnx"
PREPROCESS_FILE = "preprocess.json"
OPSET = 17


@dataclass(frozen=True)
class ExportResult:
    """Files written by an export, and the parity report when it was checked."""

    onnx_path: Path
    preprocess_path: Path
    parity: ParityReport | None = None


def _torch() -> Any:
    import torch

    return torch


class _Exported:  # built lazily so importing this module does not import torch
    @staticmethod
    def wrap(model: Any) -> Any:
        torch = _torch()
        from paratag.models import positional

        class SoftmaxModel(torch.nn.Module):  # type: ignore[name-defined]
            """Positional inputs in ONNX order, softmax over classes."""

            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = positional(inner)

            def forward(self, *inputs: Any) -> Any:
                return torch.softmax(self.inner(*inputs), dim=1)

        return SoftmaxModel(model).eval()

    @staticmethod
    def wrap_hypotheses(model: Any) -> Any:
        torch = _torch()

        class HypothesesModel(torch.nn.Module):  # type: ignore[name-defined]
            """``(points, features, mask, condition (H, K))`` -> softmax ``(N, H, C)``."""

            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, points: Any, features: Any, mask: Any, condition: Any) -> Any:
                logits = self.inner.forward_hypotheses(points, features, mask, condition)
                return torch.softmax(logits, dim=-1)

        return HypothesesModel(model).eval()


def _check_dims(model: Any, preset: Preset, names: Sequence[str]) -> None:
    first = preset.clouds[0]
    want = {"point_dims": len(first.points), "feature_dims": len(first.features)}
    if len(preset.clouds) > 1 and cloud_keys(preset.clouds[1].name, 1)[1] in names:
        want["sv_dims"] = len(preset.clouds[1].features)  # the second cloud feeds sv_*
    for attr, n in want.items():
        have = getattr(model, attr, None)
        if have is not None and int(have) != n:
            raise ModelMismatchError(
                f"model has {attr}={have} but preset {preset.name!r} gives {n}; export with the "
                "preset the model was trained on"
            )


def _lengths(preset: Preset, names: Sequence[str]) -> dict[str, int]:
    first = preset.clouds[0].name
    out = {}
    for n in names:
        if n != "condition":
            cloud, _ = split_input_name(n, first)
            out[cloud] = preset.cloud(cloud).max_length
    return out


def export_model(
    model: Any,
    preset: str | Preset | Mapping[str, Any],
    out_dir: str | Path,
    *,
    condition_names: Sequence[str] | None = None,
    condition_mean: Sequence[float] | None = None,
    condition_std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    opset: int = OPSET,
    check: bool = False,
    check_events: str | Path | Any = None,
    tolerance: float = 1e-4,
    hypotheses_axis: bool = False,
    grid: Mapping[str, Sequence[Sequence[float]]] | None = None,
) -> ExportResult:
    """Export ``model`` to ``out_dir/model.onnx`` with ``out_dir/preprocess.json``.

    Args:
        model: a paratag graph model (``model(points, features, mask, condition=None)``).
        preset: the preset it was trained with (name, YAML path, mapping or Preset).
        out_dir: output directory (created).
        condition_names: defaults to ``model.condition_names``.
        condition_mean: defaults to the model's ``condition_mean`` buffer.
        condition_std: defaults to the model's ``condition_std`` buffer.
        class_names: output class names, signal first; default ``class0, class1...``.
        opset: ONNX opset (>= 17).
        check: run :func:`check_parity` and raise :class:`ModelMismatchError` above
            ``tolerance`` (on ``check_events`` if given, else on synthetic inputs).
        check_events: a NanoAOD/PFNano file (or NanoEvents) for the parity check (implies ``check``).
        tolerance: the parity threshold.
        hypotheses_axis: also write ``model_hypotheses.onnx`` (condition ``(H, K)``,
            softmax ``(N, H, C)``) for models with ``forward_hypotheses``; the check
            then covers it too.
        grid: the training grid ``{role: [[mHc, mA], ...]}``; recorded so the Tagger warns
            for hypotheses far outside it.
    """
    p = load_preset(preset if not isinstance(preset, Mapping) else dict(preset))
    pp, lengths = _describe(
        model,
        p,
        opset,
        hypotheses_axis,
        grid,
        condition_names,
        condition_mean,
        condition_std,
        class_names,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path, pp_path = out / MODEL_FILE, out / PREPROCESS_FILE
    _write(model, p, pp, lengths, out, opset, hypotheses_axis)
    parity = None
    if check or check_events is not None:
        parity = _verify(model, p, pp, lengths, out, check_events, tolerance, hypotheses_axis)
    return ExportResult(onnx_path, pp_path, parity)


def _describe(
    model: Any,
    p: Preset,
    opset: int,
    hypotheses_axis: bool,
    grid: Mapping[str, Sequence[Sequence[float]]] | None,
    condition_names: Sequence[str] | None,
    condition_mean: Sequence[float] | None,
    condition_std: Sequence[float] | None,
    class_names: Sequence[str] | None,
) -> tuple[Preprocess, dict[str, int]]:
    """Checked preprocess description of ``model`` on preset ``p``, and the cloud lengths."""
    from paratag.models import input_names

    if opset < 17:
        raise ConfigError(f"opset {opset} is too old; paratag exports with opset >= 17")
    names = input_names(model, secondary_cloud(p))
    _check_dims(model, p, names)
    if hypotheses_axis and (
        not callable(getattr(model, "forward_hypotheses", None))
        or list(names) != ["points", "features", "mask", "condition"]
    ):
        raise ConfigError(
            f"hypotheses_axis=True needs a conditioned model with forward_hypotheses and inputs "
            f"points, features, mask, condition; {type(model).__name__} has {list(names)}"
        )
    lengths = _lengths(p, names)
    cloud_lengths = [lengths[c.name] for c in p.clouds if c.name in lengths]
    if cloud_lengths[0] < min_particles(model):
        raise ConfigError(
            f"preset {p.name!r} pads to {cloud_lengths[0]} particles but the model needs more than "
            f"its kNN k: at least {min_particles(model)}"
        )
    n_classes = int(getattr(model, "n_classes", 2))
    classes = (
        list(class_names) if class_names is not None else [f"class{i}" for i in range(n_classes)]
    )
    if len(classes) != n_classes:
        raise ConfigError(f"class_names {classes} has {len(classes)} names for {n_classes} outputs")
    extra: dict[str, Any] = {
        "model": type(model).__name__,
        "min_particles": min_particles(model),
        "bytes_per_graph": estimate_graph_bytes(model, cloud_lengths),
        "opset": opset,
    }
    if grid:
        extra["grid"] = {k: [list(map(float, q)) for q in v] for k, v in grid.items()}
    if hypotheses_axis:
        extra["hypotheses_model"] = MODEL_HYPOTHESES_FILE
        extra["bytes_per_hypothesis"] = hypothesis_bytes(model, cloud_lengths[0])
    space = getattr(model, "condition_space", None)
    pp = preprocess_for(
        p,
        names,
        condition_names=tuple(
            condition_names
            if condition_names is not None
            else getattr(model, "condition_names", ())
        ),
        condition_mean=list(
            condition_mean if condition_mean is not None else space.mean if space else ()
        ),
        condition_std=list(
            condition_std if condition_std is not None else space.std if space else ()
        ),
        class_names=classes,
        extra=extra,
    )
    return pp, lengths


def _write(
    model: Any,
    p: Preset,
    pp: Preprocess,
    lengths: Mapping[str, int],
    out: Path,
    opset: int,
    hypotheses_axis: bool,
) -> None:
    """Trace ``model.onnx`` (and ``model_hypotheses.onnx``), stamp them, write preprocess.json."""
    from paratag.models import example_inputs

    names = list(pp.input_names)
    first = p.clouds[0].name
    svs = lengths.get(p.clouds[1].name, 1) if len(p.clouds) > 1 else 1
    examples = example_inputs(model, n=3, p=lengths[first], n_sv=svs, secondary=secondary_cloud(p))
    dynamic: dict[str, dict[int, str]] = {}
    for n in names:
        if n == "condition":
            dynamic[n] = {0: "N"}
        else:
            cloud, _ = split_input_name(n, first)
            dynamic[n] = {0: "N", 2: f"P_{cloud}"}
    dynamic["softmax"] = {0: "N"}
    onnx_path, pp_path, hyp_path = (
        out / MODEL_FILE,
        out / PREPROCESS_FILE,
        out / MODEL_HYPOTHESES_FILE,
    )
    _trace_to_onnx(
        model, _Exported.wrap, tuple(examples.values()), onnx_path, names, dynamic, opset
    )
    _stamp(onnx_path, pp)
    if hypotheses_axis:
        hyp_dynamic = {**dynamic, "condition": {0: "H"}, "softmax": {0: "N", 1: "H"}}
        _export_hypotheses(model, examples, hyp_dynamic, hyp_path, opset)
        _stamp(hyp_path, pp)
    elif hyp_path.exists():
        hyp_path.unlink()  # a stale graph from an earlier export must not be picked up
    write_preprocess(pp, pp_path)
    check_model(load_preprocess(pp_path), onnx_path)
    if hypotheses_axis:
        check_model(load_preprocess(pp_path), hyp_path)


def _verify(
    model: Any,
    p: Preset,
    pp: Preprocess,
    lengths: Mapping[str, int],
    out: Path,
    check_events: str | Path | Any,
    tolerance: float,
    hypotheses_axis: bool,
) -> ParityReport:
    """PyTorch against onnxruntime (on ``check_events`` or synthetic inputs); raise on a mismatch."""
    from paratag.models import example_inputs

    onnx_path, hyp_path = out / MODEL_FILE, out / MODEL_HYPOTHESES_FILE
    if check_events is not None:
        feed = parity_inputs(check_events, p, pp)
    else:
        svs = lengths.get(p.clouds[1].name, 1) if len(p.clouds) > 1 else 1
        first = lengths[p.clouds[0].name]
        inputs = example_inputs(model, n=24, p=first, n_sv=svs, secondary=secondary_cloud(p))
        feed = {k: v.numpy() for k, v in inputs.items()}
    parity = check_parity(model, onnx_path, feed, tolerance=tolerance)
    if not parity.ok:
        raise ModelMismatchError(f"{onnx_path}: ONNX export disagrees with PyTorch: {parity}")
    if hypotheses_axis:
        hyp = check_hypotheses_parity(model, hyp_path, feed, tolerance=tolerance)
        if not hyp.ok:
            raise ModelMismatchError(f"{hyp_path}: ONNX export disagrees with PyTorch: {hyp}")
        parity = ParityReport(parity.cases + hyp.cases, tolerance)
    return parity


def _export_hypotheses(
    model: Any,
    examples: Mapping[str, Any],
    dynamic: Mapping[str, Mapping[int, str]],
    path: Path,
    opset: int,
) -> None:
    """Trace ``model.forward_hypotheses`` into ``path`` (dynamic N, P and H axes)."""
    inputs = dict(examples)
    inputs["condition"] = inputs["condition"][:2]  # H != N so the trace keeps the axes apart
    _trace_to_onnx(
        model, _Exported.wrap_hypotheses, tuple(inputs.values()), path, list(inputs), dynamic, opset
    )


def _trace_to_onnx(
    model: Any,
    wrap: Any,
    args: tuple[Any, ...],
    path: Path,
    input_names: list[str],
    dynamic: Mapping[str, Mapping[int, str]],
    opset: int,
) -> None:
    """Trace ``wrap(model)`` (an eval-mode positional wrapper) to ONNX; ``model``'s mode is kept."""
    torch = _torch()
    was_training = model.training
    try:
        wrapped = wrap(model)
        with warnings.catch_warnings():
            # The trace keeps k constant (documented on EdgeConvBlock); the legacy
            # exporter is the one that works without onnxscript.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(
                wrapped,
                args,
                str(path),
                input_names=input_names,
                output_names=["softmax"],
                dynamic_axes={k: dict(v) for k, v in dynamic.items()},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        model.train(was_training)


def _stamp(onnx_path: Path, pp: Preprocess) -> None:
    """Store version and preprocess fingerprint in the ONNX metadata."""
    import onnx

    m = onnx.load(str(onnx_path))
    meta = {
        "paratag_version": __version__,
        "paratag_format_version": str(FORMAT_VERSION),
        "paratag_preprocess_fingerprint": pp.fingerprint,
        "paratag_inputs_fingerprint": inputs_fingerprint(pp),
        "paratag_condition_names": ",".join(pp.condition_names),
    }
    del m.metadata_props[:]
    for k, v in meta.items():
        entry = m.metadata_props.add()
        entry.key, entry.value = k, v
    m.producer_name = "paratag"
    m.producer_version = __version__
    onnx.save(m, str(onnx_path))


def _find_checkpoint(run_dir: Path) -> Path:
    """The model a run delivers (the hypothesis ratio, else stage 3), else stage 2, else model.pt."""
    from paratag.models.io import delivered_checkpoint

    delivered = delivered_checkpoint(run_dir)
    if delivered is not None:
        return delivered
    for rel in ("stage2/model.pt", "model.pt", "best.pt"):
        if (run_dir / rel).is_file():
            return run_dir / rel
    raise InputFileError(
        str(run_dir),
        "no ratio/model.pt, stage3/model.pt, stage2/model.pt or model.pt found",
        "pass a training run directory (paratag train --run-dir DIR) or a .pt checkpoint",
    )


def export_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    check: bool = False,
    check_events: str | Path | None = None,
    tolerance: float = 1e-4,
    opset: int = OPSET,
    hypotheses_axis: bool = False,
) -> ExportResult:
    """Export the checkpoint of a training run (default output: ``RUN_DIR/export``)."""
    run = Path(run_dir)
    if not run.exists():
        raise InputFileError(str(run), "run directory does not exist", "check the path")
    ckpt = run if run.is_file() else _find_checkpoint(run)
    try:
        from paratag.models.io import load_model
    except ImportError as exc:
        raise ConfigError(
            "paratag.training.load_model is not available in this installation"
        ) from exc
    model, info = load_model(ckpt)
    info = dict(info or {})
    preset = info.get("preset")
    if preset is None:
        raise ModelMismatchError(
            f"{ckpt}: the checkpoint does not record its preset; cannot export"
        )
    target = (
        Path(out_dir) if out_dir is not None else (run if run.is_dir() else run.parent) / "export"
    )
    return export_model(
        model,
        preset,
        target,
        condition_names=info.get("condition_names"),
        condition_mean=info.get("condition_mean"),
        condition_std=info.get("condition_std"),
        class_names=info.get("class_names"),
        opset=opset,
        check=check,
        check_events=check_events,
        tolerance=tolerance,
        hypotheses_axis=hypotheses_axis,
        grid=info.get("grid"),
    )
