"""Datasets over GraphBuilder shards: a lazy, LRU-cached store and a torch ``Dataset``.

:class:`ShardStore` opens a shard directory (``manifest.json`` + parquet
files). At construction it reads only the light per-row columns (label,
condition, weight, spectators) of every file; the heavy point-cloud arrays
are decoded on demand and kept in an LRU cache of at most ``cache_size``
decoded files, so memory stays bounded however large the dataset is.

:class:`GraphDataset` is a map-style dataset over a selection of store rows
whose keys are whole batches: ``dataset[(epoch, positions)]`` returns one batch
``dict[str, Tensor]``. Use it with :class:`paratag.data.sampler.EpochBatchSampler`
and :func:`make_loader` (``DataLoader(batch_size=None, sampler=...)``), which
decodes each shard file once per batch and works with ``num_workers > 0``.

Batch keys:

- ``points`` (B, Cp, P), ``features`` (B, Cf, P), ``mask`` (B, 1, P) float32
- ``<cloud>_points``/``<cloud>_features``/``<cloud>_mask`` when the dataset uses the
  preset's second cloud (``sv_*`` for the jet preset; :attr:`ShardStore.secondary_keys`)
- ``condition`` (B, K) float32, *normalised* with the model's mean/std
- ``mass`` (B, K) float32, the physical condition (GeV), for physics losses
- ``label`` (B,) int64, ``weight`` (B,) float32 training weight
- ``group`` (B,) int64 validation group (mass-point index), when set
- ``spectator`` (B,) float32 when a spectator (e.g. a jet mass for DisCo) is requested
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from paratag.conditions import ConditionSpace, draw_background_conditions
from paratag.errors import InputFileError, InvalidValueError
from paratag.graphs import graph_lengths, trim_length
from paratag.presets import cloud_keys, secondary_cloud
from paratag.shards import read_manifest, read_shard

__all__ = ["GraphDataset", "ShardStore", "make_loader"]

_LIGHT = ("label", "condition", "weight")
_CLOUD = ("points", "features", "mask")


class ShardStore:
    """All rows of a shard directory: light columns in memory, clouds LRU-cached.

    Attributes:
        path: the shard directory.
        manifest: the parsed ``manifest.json``.
        files: ``[(path, dataset_index)]`` per parquet file.
        datasets: manifest dataset entries (name, metadata, ...).
        table: light per-row columns over all files (``label``, ``condition``,
            ``weight``, ``spec_*``, ``file`` and ``row`` within the file, ``dataset``).
        secondary_keys: the keys of the preset's second cloud (``sv_*`` by default).
        has_sv: whether the shards hold that cloud.
    """

    def __init__(
        self, path: str | Path, cache_size: int = 8, spectators: Iterable[str] = ()
    ) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.shapes: dict[str, list[int]] = self.manifest["shapes"]
        self.cache_size = max(1, int(cache_size))
        self.datasets: list[dict[str, Any]] = list(self.manifest["datasets"])
        self.files: list[tuple[Path, int]] = [
            (self.path / f["path"], i) for i, d in enumerate(self.datasets) for f in d["files"]
        ]
        expected = [f.get("rows") for d in self.datasets for f in d["files"]]
        if not self.files:
            raise InputFileError(
                str(self.path / "manifest.json"),
                "lists no shard files",
                "rebuild the shards with `paratag build`",
            )
        specs = {"spec_event", *(f"spec_{s}" for s in spectators)}
        self._check_spectators(specs)
        columns = [*_LIGHT, *sorted(specs)]
        parts: dict[str, list[np.ndarray]] = {c: [] for c in (*columns, "file", "row", "dataset")}
        for fi, (fpath, di) in enumerate(self.files):
            arrays = read_shard(fpath, self.shapes, columns=columns)
            n = len(arrays["label"])
            if expected[fi] is not None and n != int(expected[fi]):
                raise InputFileError(
                    str(fpath),
                    f"has {n} rows but {self.path / 'manifest.json'} lists {expected[fi]} "
                    "(truncated or replaced shard?)",
                    "rebuild the shards with `paratag build`",
                )
            for c in columns:
                parts[c].append(arrays[c])
            parts["file"].append(np.full(n, fi, np.int64))
            parts["row"].append(np.arange(n, dtype=np.int64))
            parts["dataset"].append(np.full(n, di, np.int64))
        self.table: dict[str, np.ndarray] = {k: np.concatenate(v) for k, v in parts.items()}
        self.table["condition"] = self.table["condition"].reshape(len(self.table["label"]), -1)
        bad = ~np.isfinite(self.table["weight"])
        if bad.any():
            fpath = self.files[int(self.table["file"][np.argmax(bad)])][0]
            raise InvalidValueError(
                f"{fpath}: {int(bad.sum())} non-finite event weights; rebuild the shards"
            )
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self.secondary_keys = cloud_keys(secondary_cloud(self.manifest.get("preset") or None), 1)
        self.has_sv = all(k in self.shapes for k in self.secondary_keys)
        self._lengths: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.table["label"])

    def __getstate__(self) -> dict[str, Any]:  # workers start with an empty cache
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state

    @property
    def condition_names(self) -> list[str]:
        """Names of the ``condition`` columns."""
        return list(self.manifest.get("condition_names", []))

    def dataset_names(self) -> list[str]:
        """Dataset name of every row's ``dataset`` index."""
        return [d["name"] for d in self.datasets]

    def require_secondary(self) -> tuple[str, str, str]:
        """:attr:`secondary_keys`; :class:`InputFileError` when the shards lack that cloud."""
        if not self.has_sv:
            raise InputFileError(
                str(self.path / "manifest.json"),
                f"shards have no second cloud ({', '.join(self.secondary_keys)})",
                "build with a preset that has two clouds (e.g. jet), or set data.use_sv: false",
            )
        return self.secondary_keys

    def _check_spectators(self, keys: Iterable[str]) -> None:
        missing = sorted(k for k in keys if k not in self.shapes)
        if missing:
            raise InputFileError(
                str(self.path / "manifest.json"),
                f"shards have no spectator column(s) {missing}; available: "
                f"{sorted(k for k in self.shapes if k.startswith('spec_'))}",
                "add the spectator to the preset and rebuild, or change the training config",
            )

    def spectator(self, name: str) -> np.ndarray:
        """Spectator ``name`` of every row ``(N,)``; read from the files once if not loaded."""
        key = f"spec_{name}"
        if key not in self.table:
            self._check_spectators([key])
            columns = [read_shard(path, self.shapes, columns=[key])[key] for path, _ in self.files]
            self.table[key] = np.concatenate(columns)
        return self.table[key]

    def lengths(self) -> np.ndarray:
        """Real constituents of the first cloud per row ``(N,)`` (each file's mask read once)."""
        if self._lengths is None:
            out = np.zeros(len(self), np.int64)
            for fi, (path, _) in enumerate(self.files):
                sel = np.flatnonzero(self.table["file"] == fi)
                mask = read_shard(path, self.shapes, columns=["mask"])["mask"]
                out[sel] = graph_lengths(mask)[self.table["row"][sel]]
            self._lengths = out
        return self._lengths

    def cloud_arrays(self, file_index: int, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Decoded cloud arrays of one file, through the LRU cache."""
        hit = self._cache.get(file_index)
        if hit is None or any(k not in hit for k in keys):
            hit = read_shard(self.files[file_index][0], self.shapes, columns=list(keys))
            for k in keys:
                if not np.all(np.isfinite(hit[k])):
                    raise InvalidValueError(
                        f"{self.files[file_index][0]}: column {k!r} holds NaN/inf values; "
                        "rebuild the shards (GraphBuilder clips and pads every input)"
                    )
            self._cache[file_index] = hit
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(file_index)
        return hit

    def gather(self, rows: np.ndarray, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Cloud arrays of global ``rows`` (in that order), decoding each file once."""
        missing = [k for k in keys if k not in self.shapes]
        if missing:
            raise InputFileError(
                str(self.path / "manifest.json"),
                f"shards have no arrays {missing} (clouds of preset "
                f"{(self.manifest.get('preset') or {}).get('name')!r}: "
                f"{sorted(k for k in self.shapes if k.endswith('features'))})",
                "evaluate on shards built with the model's preset",
            )
        rows = np.asarray(rows, dtype=np.int64)
        files, local = self.table["file"][rows], self.table["row"][rows]
        out = {k: np.empty((len(rows), *self.shapes[k]), np.float32) for k in keys}
        for f in np.unique(files):
            sel = np.flatnonzero(files == f)
            arrays = self.cloud_arrays(int(f), keys)
            for k in keys:
                out[k][sel] = arrays[k][local[sel]]
        return out


class GraphDataset(Dataset):
    """Batches of selected store rows with conditions, weights and optional groups.

    Args:
        store: the shard store.
        rows: global store rows of this dataset (a row may appear more than once,
            e.g. a background evaluated at every validation mass point).
        condition: physical condition (len(rows), K); NaN rows are backgrounds
            whose condition is drawn from ``background_points`` every epoch.
        weight: training weight per row.
        space: the model's condition normalisation (None: the condition as given).
        background_points: grid to draw background conditions from.
        background_probabilities: their probabilities (default uniform).
        group: optional int per row (validation mass-point index).
        seed: run seed for the background draw.
        use_sv: include the preset's second cloud (the jet preset's secondary vertices).
        spectator: spectator name (without ``spec_``) returned as ``spectator``.
        labels: class label per row (default: the shard ``label``).
        phases: curriculum phases ``[(first_epoch, weight, background_points,
            background_probabilities), ...]`` that replace the weights and the
            background draw from ``first_epoch`` on.
        trim: cut every batch along P to its own longest graph (rounded up to
            :data:`paratag.graphs.TRIM_STEP`, at least ``trim`` slots in the first cloud: the model's
            largest kNN k + 1); None keeps the shards' padded length. Exact: only
            padding is removed (pair it with the sampler's length buckets).
    """

    def __init__(
        self,
        store: ShardStore,
        rows: np.ndarray,
        condition: np.ndarray,
        weight: np.ndarray,
        *,
        space: ConditionSpace | None = None,
        background_points: Sequence[Sequence[float]] = (),
        background_probabilities: Sequence[float] | None = None,
        group: np.ndarray | None = None,
        seed: int = 0,
        use_sv: bool = False,
        spectator: str | None = None,
        trim: int | None = None,
        labels: np.ndarray | None = None,
        phases: Sequence[
            tuple[int, np.ndarray, Sequence[Sequence[float]], Sequence[float] | None]
        ] = (),
    ) -> None:
        self.store = store
        self.rows = np.asarray(rows, dtype=np.int64)
        n = len(self.rows)
        self.condition = np.asarray(condition, dtype=np.float32).reshape(n, -1)
        self.weight = np.asarray(weight, dtype=np.float32)
        self.group = None if group is None else np.asarray(group, dtype=np.int64)
        if len(self.weight) != n or (self.group is not None and len(self.group) != n):
            raise ValueError("rows, condition, weight and group must have the same length")
        k = self.condition.shape[1]
        self.space = space
        self.background = ~np.all(np.isfinite(self.condition), axis=1)
        if self.background.any() and k and not len(background_points):
            raise ValueError("background rows need background_points to draw conditions from")
        self.background_points = [tuple(p) for p in background_points]
        self.background_probabilities = background_probabilities
        self.seed = int(seed)
        self.keys = _CLOUD + (store.require_secondary() if use_sv else ())
        self.trim = None if trim is None else max(1, int(trim))
        self.spectator = spectator
        self.labels = (
            store.table["label"][self.rows] if labels is None else np.asarray(labels, np.int64)
        )
        if len(self.labels) != n:
            raise ValueError("labels must have one entry per row")
        self.phases = sorted(
            (
                (int(e), np.asarray(w, np.float32), [tuple(p) for p in pts], probs)
                for e, w, pts, probs in phases
            ),
            key=lambda t: t[0],
        )

    def phase(
        self, epoch: int
    ) -> tuple[np.ndarray, list[tuple[float, ...]], Sequence[float] | None]:
        """Weights, background points and probabilities in effect at ``epoch``."""
        current = (self.weight, self.background_points, self.background_probabilities)
        for first, w, pts, probs in self.phases:
            if epoch >= first:
                current = (w, pts, probs)
        return current

    def __len__(self) -> int:
        return len(self.rows)

    def conditions_for(self, positions: np.ndarray, epoch: int) -> np.ndarray:
        """Physical conditions of ``positions`` at ``epoch`` (backgrounds drawn)."""
        cond = self.condition[positions].copy()
        bkg = self.background[positions]
        if bkg.any() and cond.shape[1]:
            _, points, probs = self.phase(epoch)
            cond[bkg] = draw_background_conditions(
                positions[bkg], points, probs, seed=self.seed, epoch=epoch
            )
        return cond

    def __getitem__(self, key: tuple[int, np.ndarray] | int) -> dict[str, torch.Tensor]:
        """One batch for ``(epoch, positions)``; a plain int gives a batch of one (epoch 0)."""
        if isinstance(key, tuple):
            epoch, positions = int(key[0]), np.asarray(key[1], dtype=np.int64)
        else:
            epoch, positions = 0, np.asarray([int(key)], dtype=np.int64)
        rows = self.rows[positions]
        arrays = self.store.gather(rows, self.keys)
        if self.trim is not None:
            arrays = trim_padding(arrays, self.trim)
        batch = {k: torch.from_numpy(v) for k, v in arrays.items()}
        mass = self.conditions_for(positions, epoch)
        batch["mass"] = torch.from_numpy(mass)
        batch["condition"] = torch.from_numpy(
            mass if self.space is None else self.space.normalise(mass)
        )
        batch["label"] = torch.from_numpy(self.labels[positions])
        batch["weight"] = torch.from_numpy(self.phase(epoch)[0][positions])
        if self.group is not None:
            batch["group"] = torch.from_numpy(self.group[positions])
        if self.spectator:
            spec = self.store.table[f"spec_{self.spectator}"][rows]
            batch["spectator"] = torch.from_numpy(spec.astype(np.float32))
        return batch


def trim_padding(arrays: Mapping[str, np.ndarray], first_min: int = 1) -> dict[str, np.ndarray]:
    """Cut each cloud (``points``/``features``/``mask``, ``<cloud>_*``) to its batch's longest graph.

    The length is :func:`paratag.graphs.trim_length` of the batch (at least ``first_min``
    in the first cloud): nothing but padding is removed.
    """
    out = dict(arrays)
    for key in arrays:
        if key != "mask" and not key.endswith("_mask"):
            continue
        prefix, mask = key[: -len("mask")], arrays[key]
        cut = trim_length(graph_lengths(mask), mask.shape[-1], first_min if prefix == "" else 1)
        for kind in _CLOUD:
            key = f"{prefix}{kind}"
            if key in out:
                out[key] = np.ascontiguousarray(out[key][..., :cut])
    return out


def make_loader(
    dataset: Dataset,
    sampler: Iterable[Any],
    *,
    num_workers: int = 0,
    pin_memory: bool | None = None,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader whose sampler yields whole batches (``batch_size=None``).

    Pinned memory is used by default when CUDA is available.
    """
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    gen = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=sampler,  # type: ignore[arg-type]
        num_workers=int(num_workers),
        pin_memory=bool(pin_memory),
        persistent_workers=False,
        generator=gen,
    )
