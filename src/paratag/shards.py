"""Dataset shards: GraphBuilder output on disk (parquet + a JSON manifest).

A shard directory holds one or more parquet files per dataset and
``manifest.json``. Each parquet row is one graph (jet or event); array columns
are fixed-size lists (``points`` is stored flat as ``Cp*P`` floats and
reshaped on read). The manifest records shapes, the preset (so the exact
features travel with the data), label/condition names and a cutflow per
dataset, plus the paratag version that wrote it.

Array keys of a built dataset (``dict[str, np.ndarray]``):

- ``points`` (N, Cp, P), ``features`` (N, Cf, P), ``mask`` (N, 1, P) float32
- a second cloud named after the preset's (:func:`paratag.presets.cloud_keys`):
  ``sv_points``, ``sv_features``, ``sv_mask`` for the jet preset's ``sv``
- ``label`` (N,) int64, ``condition`` (N, K) float32 (NaN where a dataset has
  no value, e.g. backgrounds), ``weight`` (N,) float32
- ``spec_<name>`` (N,) float64 spectators (``spec_event`` is the event number)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from paratag import __version__
from paratag.errors import InputFileError

__all__ = ["MANIFEST", "read_manifest", "read_shard", "write_shards"]

MANIFEST = "manifest.json"


def _to_table(arrays: Mapping[str, np.ndarray]) -> pa.Table:
    cols = {}
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        if arr.ndim == 1:
            cols[name] = pa.array(arr)
        else:
            width = int(np.prod(arr.shape[1:]))
            if width == 0:  # e.g. no condition: the manifest keeps the shape
                continue
            flat = pa.array(arr.reshape(-1))
            cols[name] = pa.FixedSizeListArray.from_arrays(flat, width)
    return pa.table(cols)


def write_shards(
    datasets: Mapping[str, Mapping[str, Any]],
    out_dir: str | Path,
    *,
    preset: Mapping[str, Any],
    condition_names: Iterable[str] = (),
    max_rows: int = 50_000,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write GraphBuilder output to parquet shards and return the manifest path.

    Args:
        datasets: dataset name → ``{"arrays": {key: ndarray}, "cutflow": {...}, "metadata": {...}}``.
        out_dir: directory to create (existing shards of the same names are replaced).
        preset: the preset as a dict (``Preset.to_dict()``), stored in the manifest.
        condition_names: names of the columns of ``condition``.
        max_rows: rows per parquet file.
        extra: additional manifest entries (e.g. the build config).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    shapes: dict[str, list[int]] = {}
    for name in sorted(datasets):
        ds = datasets[name]
        arrays = ds["arrays"]
        n = int(len(arrays["label"]))
        files = []
        for i in range(max(1, math.ceil(n / max_rows))):
            part = {k: v[i * max_rows : (i + 1) * max_rows] for k, v in arrays.items()}
            fname = f"{name}.{i:04d}.parquet"
            pq.write_table(_to_table(part), out / fname, compression="zstd")
            files.append({"path": fname, "rows": int(len(part["label"]))})
        for k, v in arrays.items():
            shapes[k] = [int(s) for s in np.shape(v)[1:]]
        entries.append(
            {
                "name": name,
                "rows": n,
                "files": files,
                "cutflow": _counts(ds.get("cutflow", {})),
                "metadata": _jsonable(ds.get("metadata", {})),
            }
        )
    manifest = {
        "format": "paratag-shards/1",
        "paratag_version": __version__,
        "preset": dict(preset),
        "condition_names": list(condition_names),
        "shapes": shapes,
        "datasets": entries,
        **(dict(extra) if extra else {}),
    }
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def read_manifest(shard_dir: str | Path) -> dict[str, Any]:
    """Read and check ``manifest.json`` of a shard directory."""
    path = Path(shard_dir) / MANIFEST
    if not path.is_file():
        raise InputFileError(str(path), "no shard manifest here", "run `paratag build` first")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputFileError(
            str(path), f"manifest is not valid JSON ({exc})", "rebuild the shards"
        ) from exc
    if manifest.get("format") != "paratag-shards/1":
        raise InputFileError(
            str(path),
            f"unknown shard format {manifest.get('format')!r}",
            "rebuild the shards with this paratag version",
        )
    return manifest


def read_shard(
    path: str | Path, shapes: Mapping[str, list[int]], columns: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Read one parquet shard back into numpy arrays with their manifest shapes."""
    stored = None  # zero-width columns (no condition) are not in the file
    if columns is not None:
        columns = list(columns)
        stored = [c for c in columns if c not in shapes or int(np.prod(shapes[c])) > 0]
    try:
        table = pq.read_table(path, columns=stored)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputFileError(str(path), f"cannot read shard ({exc})", "rebuild the shards") from exc
    out = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            if len(col) == 0:  # an empty fixed-size-list column flattens to nothing typed
                out[name] = np.zeros((0, *shapes[name]), np.float32)
                continue
            values = col.flatten().to_numpy(zero_copy_only=False)
            out[name] = values.reshape(len(col), *shapes[name])
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    wanted = shapes if columns is None else {c: shapes[c] for c in columns if c in shapes}
    for name, shape in wanted.items():
        if name not in out and int(np.prod(shape)) == 0:
            out[name] = np.zeros((table.num_rows, *shape), dtype=np.float32)
    return out


def _counts(flow: Mapping[str, Any]) -> dict[str, Any]:
    """A cutflow as plain JSON: ints, and nested per-file/per-branch counts."""
    return {k: _counts(v) if isinstance(v, Mapping) else int(v) for k, v in flow.items()}
