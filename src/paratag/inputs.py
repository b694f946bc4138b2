"""Inputs of a chunk: NanoEvents → padded point clouds for a preset (:func:`build_inputs`).

The single awkward → padded function shared by GraphBuilder (training) and the
Tagger (inference): it selects objects (jets or events), follows the PFNano link
tables to their constituents, evaluates the preset's expressions, applies the
preprocessing and pads. Invalid input values are found and handled here
(:mod:`paratag.validity`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from paratag.errors import ConfigError, InvalidValueError, MissingBranchError, SchemaError
from paratag.features import apply_preprocessing, evaluate, referenced_names
from paratag.graphs import PaddedCloud, pad_cloud
from paratag.presets import CloudSpec, Preset, SourceSpec, constituent_names, load_preset
from paratag.validity import InvalidTracker, OnInvalid, check_on_invalid

__all__ = ["GraphInputs", "build_inputs", "to_candidates"]


@dataclass(frozen=True)
class GraphInputs:
    """Padded inputs for one chunk, plus per-graph bookkeeping.

    Attributes:
        clouds: cloud name → padded arrays.
        event_index: (N,) index of each graph's event inside the chunk.
        spectators: name → (N,) float64 per-graph values.
        weight: (N,) float64 per-graph event weight (1 when the weight branch is absent).
        n_candidates: graphs before the selection (objects or events).
        invalid: the chunk's invalid input values and what was done with them.
        candidate_index: (N,) index of each graph among the ``n_candidates`` (objects
            dropped by the selection or for invalid values leave gaps).
        candidate_event: (n_candidates,) event of every candidate inside the chunk.
    """

    clouds: dict[str, PaddedCloud]
    event_index: np.ndarray
    spectators: dict[str, np.ndarray]
    weight: np.ndarray
    n_candidates: int
    invalid: InvalidTracker = dataclasses.field(default_factory=InvalidTracker)
    candidate_index: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    candidate_event: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return int(self.event_index.shape[0])


def _source_name(events: Any) -> str:
    meta = getattr(events, "metadata", None) or {}
    return str(meta.get("filename", "<events>"))


def _get(events: Any, path: str, where: str, owner: str = "") -> Any:
    """Follow an attribute path on NanoEvents (or on collection ``owner``).

    Raises SchemaError for a missing top-level collection and
    MissingBranchError (naming ``Collection_field``) for a missing field.
    """
    obj = events
    parts = path.split(".")
    for i, part in enumerate(parts):
        fields = list(getattr(obj, "fields", []) or [])
        if part not in fields:
            branch = "_".join(([owner] if owner else []) + parts[: i + 1])
            if i == 0 and not owner:
                raise SchemaError(
                    f"{where}: collection or branch {branch!r} is missing -- is this NanoAOD/PFNano? "
                    f"The preset needs {path!r}; pick another preset or produce the branch."
                )
            raise MissingBranchError(
                branch,
                where,
                "the preset reads it; produce it in your NanoAOD or use a preset without it",
            )
        obj = obj[part]
    return obj


def _flat(array: Any, what: str, where: str) -> np.ndarray:
    """Flatten a (jagged) awkward array to numpy, rejecting missing values."""
    arr = ak.flatten(array, axis=None) if array.ndim > 1 else array
    if isinstance(ak.type(arr).content, ak.types.OptionType):
        if ak.any(ak.is_none(arr)):
            raise InvalidValueError(f"{where}: {what} has missing (None) entries")
        arr = ak.fill_none(arr, 0)
    return np.asarray(ak.to_numpy(arr))


class _Chunk:
    """Flat views of one chunk of events, computed once and reused across clouds."""

    def __init__(self, events: Any, preset: Preset, on_invalid: OnInvalid = "drop") -> None:
        self.events = events
        self.preset = preset
        self.where = _source_name(events)
        self.n_events = len(events)
        meta = getattr(events, "metadata", None) or {}
        self.invalid = InvalidTracker(
            check_on_invalid(on_invalid), self.where, int(meta.get("entrystart", 0) or 0)
        )
        self._cache: dict[str, np.ndarray] = {}
        if preset.kind == "jet":
            objs = _get(events, preset.object, self.where)
            self.obj_counts = np.asarray(ak.num(objs, axis=1), dtype=np.int64)
            self.obj_event = np.repeat(np.arange(self.n_events), self.obj_counts)
            self.n_objects = int(self.obj_counts.sum())
        else:
            self.obj_counts = np.ones(self.n_events, dtype=np.int64)
            self.obj_event = np.arange(self.n_events)
            self.n_objects = self.n_events

    def event_value(self, path: str) -> np.ndarray:
        key = "event." + path
        if key not in self._cache:
            self._cache[key] = _flat(_get(self.events, path, self.where), path, self.where)
        return self._cache[key]

    def object_value(self, name: str) -> np.ndarray:
        key = "jet." + name
        if key not in self._cache:
            col = _get(self.events, self.preset.object, self.where)
            self._cache[key] = _flat(
                _get(col, name, self.where, self.preset.object),
                f"{self.preset.object}_{name}",
                self.where,
            )
        return self._cache[key]

    def invalid_graphs(self, names: set[str]) -> np.ndarray:
        """(n_objects,) True where a per-graph name (``jet.x``, ``event.y``) is invalid."""
        bad = np.zeros(self.n_objects, dtype=bool)
        for name in sorted(names):
            branch = self.preset.branch(name)
            if name.startswith("jet.") and self.preset.kind == "jet":
                bad |= self.invalid.check(self.object_value(name[4:]), branch, self.obj_event)
            elif name.startswith("event."):
                bad |= self.invalid.check(self.event_value(name[6:]), branch)[self.obj_event]
        return bad

    def graph_resolver(self, selected: np.ndarray):
        """Resolver for per-graph expressions over the selected objects/events."""

        def resolve(name: str) -> np.ndarray:
            if name.startswith("jet.") and self.preset.kind == "jet":
                return self.object_value(name[4:])[selected]
            if name.startswith("event."):
                return self.event_value(name[6:])[self.obj_event[selected]]
            raise ConfigError(
                f"preset {self.preset.name!r}: {name!r} is not available per graph; "
                "use jet.<field> or event.<branch>"
            )

        return resolve


def _group_source(chunk: _Chunk, src: SourceSpec, graph_of_object: np.ndarray):
    """Return (graph id, collection-flat index, link-flat index) of each constituent."""
    events, where = chunk.events, chunk.where
    coll = _get(events, src.collection, where)
    if coll.ndim == 1:  # singleton per event (MET): one constituent per event
        coll_counts = np.ones(chunk.n_events, dtype=np.int64)
    else:
        coll_counts = np.asarray(ak.num(coll, axis=1), dtype=np.int64)
    coll_offsets = np.cumsum(coll_counts) - coll_counts
    if chunk.preset.kind == "event":
        idx = np.arange(int(coll_counts.sum()), dtype=np.int64)
        graph = np.repeat(graph_of_object, coll_counts)
        return graph, idx, idx
    if not src.link:
        raise ConfigError(f"preset {chunk.preset.name!r}: source {src.collection!r} needs `link`")
    link = _get(events, src.link, where)
    obj_idx = _flat(
        _get(link, src.link_object_index, where, src.link),
        f"{src.link}_{src.link_object_index}",
        where,
    )
    link_counts = np.asarray(ak.num(link, axis=1), dtype=np.int64)
    link_event = np.repeat(np.arange(chunk.n_events), link_counts)
    link_idx = np.arange(len(obj_idx), dtype=np.int64)
    if src.link_target_index:
        tgt_idx = _flat(
            _get(link, src.link_target_index, where, src.link),
            f"{src.link}_{src.link_target_index}",
            where,
        )
        # PFNano writes -1 for link entries whose target was not stored (e.g. an SV
        # failing the SV collection's cuts): those entries have no constituent.
        stored = tgt_idx >= 0
        obj_idx, tgt_idx, link_event, link_idx = (
            obj_idx[stored],
            tgt_idx[stored],
            link_event[stored],
            link_idx[stored],
        )
    else:  # the link table is itself the constituent collection (FatJetSVs)
        tgt_idx = link_idx - (np.cumsum(link_counts) - link_counts)[link_event]
        coll_counts, coll_offsets = link_counts, np.cumsum(link_counts) - link_counts
    bad_obj = (obj_idx < 0) | (obj_idx >= chunk.obj_counts[link_event])
    bad_tgt = tgt_idx >= coll_counts[link_event]
    if bad_obj.any() or bad_tgt.any():
        which = src.link_object_index if bad_obj.any() else src.link_target_index
        ev = int(link_event[np.argmax(bad_obj | bad_tgt)])
        raise InvalidValueError(
            f"{where}: {src.link}_{which} points outside its collection in event {ev} of the "
            "chunk; the link table and the collections disagree (corrupt or inconsistent file)"
        )
    obj_offsets = np.cumsum(chunk.obj_counts) - chunk.obj_counts
    global_obj = obj_offsets[link_event] + obj_idx
    graph = graph_of_object[global_obj]
    coll_idx = coll_offsets[link_event] + tgt_idx
    return graph, coll_idx, link_idx


class _SourceView:
    """Lazily resolved per-constituent values of one source of a cloud."""

    def __init__(
        self,
        chunk: _Chunk,
        src: SourceSpec,
        graph_of_object: np.ndarray,
        selected: np.ndarray,
        names: set[str],
    ) -> None:
        self.chunk, self.src, self.selected = chunk, src, selected
        graph, coll_idx, link_idx = _group_source(chunk, src, graph_of_object)
        keep = graph >= 0
        self._set(graph[keep], coll_idx[keep], link_idx[keep])
        self._check_invalid(names)
        if src.selection:
            sel = np.broadcast_to(evaluate(src.selection, self.raw), self.graph.shape) != 0
            self._set(self.graph[sel], self.coll_idx[sel], self.link_idx[sel])

    def _set(self, graph: np.ndarray, coll_idx: np.ndarray, link_idx: np.ndarray) -> None:
        self.graph, self.coll_idx, self.link_idx = graph, coll_idx, link_idx
        self._cache: dict[str, np.ndarray] = {}

    def _check_invalid(self, names: set[str]) -> None:
        """Count the constituents' invalid values; drop those constituents unless "replace"."""
        tracker, src = self.chunk.invalid, self.src
        event = self.chunk.obj_event[self.selected[self.graph]] if len(self.graph) else self.graph
        bad = np.zeros(len(self.graph), dtype=bool)
        for name in sorted(names):
            bad |= tracker.check(self.raw(name), self.chunk.preset.branch(name, src), event)
        if bad.any() and tracker.policy != "replace":
            tracker.dropped_constituents += int(bad.sum())
            self._set(self.graph[~bad], self.coll_idx[~bad], self.link_idx[~bad])

    def raw(self, name: str) -> np.ndarray:
        """Value of a bare, ``link.``, ``jet.`` or ``event.`` name per constituent."""
        if name in self._cache:
            return self._cache[name]
        chunk, src = self.chunk, self.src
        if name.startswith(("jet.", "event.")):
            val = chunk.graph_resolver(self.selected)(name)[self.graph]
        elif name == "type":
            val = np.full(len(self.graph), src.type_id, dtype=np.float64)
        else:
            is_link = name.startswith("link.")
            table, field_name = (src.link, name[5:]) if is_link else (src.collection, name)
            coll = _get(chunk.events, table, chunk.where)
            vals = _flat(
                _get(coll, field_name, chunk.where, table), f"{table}_{field_name}", chunk.where
            )
            val = vals[self.link_idx if is_link else self.coll_idx]
        self._cache[name] = val
        return val

    def resolve(self, name: str) -> np.ndarray:
        """Value of a name as the cloud's expressions see it (aliases when declared)."""
        if not self.src.fields:
            return self.raw(name)
        aliases = {"type": str(self.src.type_id), **self.src.fields}
        if name not in aliases:
            raise ConfigError(
                f"source {self.src.collection!r}: {name!r} is not one of its aliases {sorted(aliases)}"
            )
        val = evaluate(aliases[name], self.raw)
        return np.broadcast_to(np.asarray(val, dtype=np.float64), self.graph.shape)


def _build_cloud(
    chunk: _Chunk,
    cloud: CloudSpec,
    graph_of_object: np.ndarray,
    n_graphs: int,
    selected: np.ndarray,
) -> PaddedCloud:
    views = [
        _SourceView(chunk, src, graph_of_object, selected, constituent_names(cloud, src))
        for src in cloud.sources
    ]
    per_source = [(v.graph, v.resolve) for v in views]
    graph = np.concatenate([g for g, _ in per_source]) if per_source else np.zeros(0, np.int64)
    order = np.argsort(graph, kind="stable")
    counts = np.bincount(graph, minlength=n_graphs).astype(np.int64)

    def rows(exprs: list[str]) -> np.ndarray:
        out = np.zeros((len(exprs), len(graph)), dtype=np.float64)
        for i, expr in enumerate(exprs):
            parts = [
                np.broadcast_to(np.asarray(evaluate(expr, r), np.float64), g.shape)
                for g, r in per_source
            ]
            out[i] = np.concatenate(parts) if parts else np.zeros(0)
        return out[:, order]

    raw_points = rows([s.expr for s in cloud.points])
    raw_features = rows([s.expr for s in cloud.features])
    chunk.invalid.count_replaced(raw_points, [f"{cloud.name}.{s.name}" for s in cloud.points])
    chunk.invalid.count_replaced(raw_features, [f"{cloud.name}.{s.name}" for s in cloud.features])
    key = rows([cloud.sort_by])[0]
    points = apply_preprocessing(raw_points, cloud.points)
    features = apply_preprocessing(raw_features, cloud.features)
    pads = np.array([s.pad for s in cloud.features], dtype=np.float32)
    return pad_cloud(points, features, counts, cloud.max_length, sort_key=key, pad_values=pads)


def build_inputs(
    events: Any,
    preset: str | Preset,
    selection: str | None = None,
    on_invalid: OnInvalid = "drop",
) -> GraphInputs:
    """Turn a chunk of NanoEvents into padded inputs for every cloud of ``preset``.

    Args:
        events: coffea NanoEvents (eager or virtual) or any awkward record array
            with NanoAOD-style collections.
        preset: preset name, YAML path or :class:`Preset`.
        selection: per-graph expression overriding the preset's selection
            (e.g. ``"gt(jet.pt, 300)"``); ``""`` disables it.
        on_invalid: what to do with NaN, inf or negative-pT input values
            (:mod:`paratag.validity`): ``"drop"``, ``"replace"`` or ``"raise"``.

    Returns:
        The padded clouds with event index, spectators and weights per graph, and
        the chunk's invalid-value counts (``.invalid``).
    """
    preset = load_preset(preset)
    chunk = _Chunk(events, preset, on_invalid)
    all_graphs = np.arange(chunk.n_objects)
    sel_expr = preset.selection if selection is None else selection
    is_data = referenced_names(preset.weight or "0") == {"event.genWeight"} and "genWeight" not in (
        getattr(events, "fields", None) or []
    )
    bad = chunk.invalid_graphs(preset.graph_names(sel_expr, with_weight=not is_data))
    chunk.invalid.dropped_graphs = int(bad.sum())
    if sel_expr and chunk.n_objects:
        passed = (
            np.broadcast_to(evaluate(sel_expr, chunk.graph_resolver(all_graphs)), all_graphs.shape)
            != 0
        ) & ~bad
    else:
        passed = ~bad
    selected = np.flatnonzero(passed)
    graph_of_object = np.full(chunk.n_objects, -1, dtype=np.int64)
    graph_of_object[selected] = np.arange(len(selected))
    clouds = {
        c.name: _build_cloud(chunk, c, graph_of_object, len(selected), selected)
        for c in preset.clouds
    }
    resolve = chunk.graph_resolver(selected)
    spectators = {
        name: np.broadcast_to(
            np.asarray(evaluate(expr, resolve), np.float64), selected.shape
        ).copy()
        for name, expr in preset.spectators.items()
    }
    weight = np.ones(len(selected), dtype=np.float64)
    # Collision data has no genWeight: every event counts once. Any other missing
    # weight branch is an error (a typo must not silently give unit weights).
    if preset.weight and not is_data:
        weight = np.broadcast_to(
            np.asarray(evaluate(preset.weight, resolve), np.float64), selected.shape
        ).copy()
    for name, arr in [*spectators.items(), ("weight", weight)]:
        if not np.all(np.isfinite(arr)):
            raise InvalidValueError(f"{chunk.where}: {name} has NaN or inf values")
    return GraphInputs(
        clouds,
        chunk.obj_event[selected],
        spectators,
        weight,
        chunk.n_objects,
        chunk.invalid,
        selected.astype(np.int64),
        chunk.obj_event,
    )


def to_candidates(
    inputs: GraphInputs, columns: Sequence[tuple[np.ndarray, Any]]
) -> tuple[GraphInputs, list[np.ndarray]]:
    """Per-graph bookkeeping and ``columns`` spread back over every candidate of the chunk.

    Graphs ``build_inputs`` dropped (invalid values) get the fill value of each column,
    NaN spectators and zero weight, so rows stay aligned with the events' objects (the
    clouds are not spread: they hold only the built graphs).
    """
    n, idx = inputs.n_candidates, inputs.candidate_index

    def spread(values: np.ndarray, fill: Any) -> np.ndarray:
        out = np.full((n, *values.shape[1:]), fill, dtype=values.dtype)
        out[idx] = values
        return out

    full = dataclasses.replace(
        inputs,
        event_index=inputs.candidate_event,
        spectators={k: spread(v, np.nan) for k, v in inputs.spectators.items()},
        weight=spread(inputs.weight, 0.0),
        candidate_index=np.arange(n, dtype=np.int64),
    )
    return full, [spread(v, fill) for v, fill in columns]
