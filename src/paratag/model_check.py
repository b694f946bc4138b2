"""An ONNX file against its ``preprocess.json``: signature, output tensor, compatibility.

:func:`check_model` is run wherever a model is used with a preprocess file (the
Tagger, the scorer, the export): input names and order, channel counts, fixed
lengths, output names and, for paratag exports, the preprocess fingerprint stored
in the model's metadata, whatever the JSON says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paratag.errors import InputFileError, ModelMismatchError
from paratag.preprocess import FORMAT_VERSION, Preprocess, inputs_fingerprint

__all__ = ["check_model", "onnx_signature", "output_tensor"]


def output_tensor(pp: Preprocess, onnx_path: str | Path) -> str:
    """The ONNX output to read for ``pp`` (the model's only output for CMSSW files)."""
    if pp.onnx_output is not None:
        return pp.onnx_output
    return onnx_signature(onnx_path)[1][0]


def onnx_signature(onnx_path: str | Path) -> tuple[dict[str, list[Any]], list[str], dict[str, str]]:
    """Input shapes, output names and metadata of an ONNX file (dims: int or symbol name)."""
    import onnx

    p = Path(onnx_path)
    if not p.is_file():
        raise InputFileError(
            str(p),
            "model file does not exist",
            "check the path or run `paratag export RUN_DIR` first",
        )
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends on corrupt files
        raise InputFileError(
            str(p),
            f"not a valid ONNX model ({type(exc).__name__}: {exc})",
            "the file is corrupt or truncated; export it again",
        ) from exc
    if not model.graph.input:
        raise InputFileError(
            str(p), "not a valid ONNX model (the graph has no inputs)", "export it again"
        )
    initializers = {i.name for i in model.graph.initializer}
    shapes: dict[str, list[Any]] = {}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        dims = inp.type.tensor_type.shape.dim
        shapes[inp.name] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims
        ]
    meta = {m.key: m.value for m in model.metadata_props}
    return shapes, [o.name for o in model.graph.output], meta


def check_model(pp: Preprocess, onnx_path: str | Path) -> None:
    """Raise :class:`ModelMismatchError` unless the ONNX model matches ``pp``.

    Checks input names and order, channel counts, fixed lengths, output names
    and, for paratag exports, the preprocess fingerprint and format version
    stored in the model's metadata.
    """
    shapes, outputs, meta = onnx_signature(onnx_path)
    where = f"{onnx_path} vs {pp.path or 'preprocess'}"
    if list(shapes) != list(pp.input_names):
        raise ModelMismatchError(
            f"{where}: the model's inputs {list(shapes)} differ from the preprocess file's "
            f"input_names {list(pp.input_names)}; use the preprocess.json exported with this model"
        )
    wanted = pp.onnx_output
    if wanted is None and len(outputs) != 1:
        raise ModelMismatchError(
            f"{where}: the model has outputs {outputs}; a CMSSW preprocess file names classes "
            f"{list(pp.output_names)}, not the output tensor, so the model needs exactly one output"
        )
    if wanted is not None and wanted not in outputs:
        raise ModelMismatchError(
            f"{where}: output {wanted!r} is not among the model's outputs {outputs}; use the "
            "preprocess.json exported with this model"
        )
    for name in pp.input_names:
        dims, block = shapes[name], pp.inputs[name]
        if len(dims) < 2 or (isinstance(dims[1], int) and dims[1] != len(block.var_names)):
            raise ModelMismatchError(
                f"{where}: input {name!r} has shape {dims} but the preprocess file lists "
                f"{len(block.var_names)} variables {list(block.var_names)[:6]}..."
            )
        if len(dims) > 2 and isinstance(dims[2], int) and dims[2] != block.max_length:
            raise ModelMismatchError(
                f"{where}: input {name!r} has fixed length {dims[2]} but the preprocess file "
                f"pads to {block.max_length}"
            )
    fmt = meta.get("paratag_format_version")
    if fmt is not None and int(fmt) > FORMAT_VERSION:
        raise ModelMismatchError(
            f"{onnx_path}: exported by a newer paratag (format {fmt}); upgrade"
        )
    stored = meta.get("paratag_preprocess_fingerprint")
    if stored is not None and pp.is_paratag and stored != pp.fingerprint:
        raise ModelMismatchError(
            f"{where}: the model was exported with a different preprocess.json (fingerprint "
            f"{stored} != {pp.fingerprint}); keep model.onnx and its own preprocess.json together"
        )
    if stored is not None and not pp.is_paratag:
        # a paratag export read with a JSON that lacks the paratag block (the CMSSW variant,
        # or an edited file): the inputs themselves must still be the exported ones
        inputs = meta.get("paratag_inputs_fingerprint")
        if inputs is None or inputs != inputs_fingerprint(pp):
            raise ModelMismatchError(
                f"{where}: {onnx_path} is a paratag export, but this preprocess file has no "
                f"paratag block and its inputs (scaling, lengths, condition normalisation) "
                f"{'differ from' if inputs else 'cannot be checked against'} the exported ones; "
                "use the preprocess.json written by `paratag export` next to the model"
            )
