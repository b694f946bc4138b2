"""GraphBuilder: a coffea processor turning NanoAOD/PFNano into padded point clouds.

Example:
    >>> from coffea import processor
    >>> from paratag.processors import GraphBuilder
    >>> runner = processor.Runner(processor.IterativeExecutor(), schema=NanoAODSchema)
    >>> out = runner({"QCD": {"files": {"pfnano.root": "Events"}, "metadata": {"label": 1}}},
    ...              processor_instance=GraphBuilder("jet"))
    >>> out["QCD"]["arrays"]["points"].shape  # (N, 2, 100)

The processor is stateless and picklable: it holds only the preset (plain
frozen dataclasses) and a few options. Output per dataset is
``{"arrays": {...}, "cutflow": {...}, "metadata": {...}}`` with the array keys
documented in :mod:`paratag.shards`; chunks are concatenated in (file, entry)
order in :meth:`postprocess`, so every executor gives identical arrays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from coffea import processor

from paratag.errors import ConfigError
from paratag.inputs import GraphInputs, build_inputs
from paratag.integrity import check_chunk_counts
from paratag.labels import TRUTH_FIELD, TruthMatch, truth_matched
from paratag.presets import Preset, cloud_keys, load_preset
from paratag.validity import OnInvalid, check_on_invalid, warn_invalid

__all__ = ["GraphBuilder", "graph_arrays"]


def graph_arrays(inputs: GraphInputs, preset: Preset) -> dict[str, np.ndarray]:
    """The padded clouds under their :func:`~paratag.presets.cloud_keys` (first bare, others ``<cloud>_*``)."""
    out: dict[str, np.ndarray] = {}
    for i, cloud in enumerate(preset.clouds):
        padded = inputs.clouds[cloud.name]
        points, features, mask = cloud_keys(cloud.name, i)
        out[points], out[features], out[mask] = padded.points, padded.features, padded.mask
    return out


_TRUTH = "_paratag_truth"


def _subset(inputs: GraphInputs, keep: np.ndarray) -> GraphInputs:
    """The graphs of ``inputs`` where ``keep`` (clouds, event index, spectators, weights)."""
    clouds = {
        name: dataclasses.replace(
            c,
            points=c.points[keep],
            features=c.features[keep],
            mask=c.mask[keep],
            counts=c.counts[keep],
        )
        for name, c in inputs.clouds.items()
    }
    return dataclasses.replace(
        inputs,
        clouds=clouds,
        event_index=inputs.event_index[keep],
        spectators={k: v[keep] for k, v in inputs.spectators.items()},
        weight=inputs.weight[keep],
        candidate_index=inputs.candidate_index[keep],
    )


class GraphBuilder(processor.ProcessorABC):
    """Build padded point clouds, labels, conditions and weights per dataset.

    Args:
        preset: built-in name ("jet", "event"), YAML path or :class:`Preset`.
        selection: per-graph selection expression overriding the preset's
            (e.g. ``"gt(jet.pt, 300)"``; ``""`` keeps every object).
        max_particles: P of the first cloud (overrides the preset).
        label: dataset → integer class; by default the ``label`` entry of the
            fileset metadata is used.
        condition: names of condition parameters read from the dataset metadata
            (e.g. ``["mHc", "mA"]``); datasets without them (backgrounds) get NaN.
        max_svs: length of a second cloud (SVs) when the preset has one.
        truth: per-jet truth labels (:class:`~paratag.labels.TruthMatch` or its mapping);
            ``"preset"`` (default) takes the preset's ``truth:`` block, None uses dataset
            labels only. Unmatched jets of signal datasets are dropped and counted
            (``truth_unmatched`` in the cutflow).
        on_invalid: NaN, inf or negative-pT input values (:mod:`paratag.validity`):
            ``"drop"`` (default) the objects/constituents holding them, ``"replace"``
            constituent values as CMSSW does, or ``"raise"``; counted in the cutflow.
    """

    def __init__(
        self,
        preset: str | Preset = "jet",
        selection: str | None = None,
        max_particles: int | None = None,
        label: Mapping[str, int] | None = None,
        condition: Sequence[str] = (),
        max_svs: int | None = None,
        truth: TruthMatch | Mapping[str, Any] | str | None = "preset",
        on_invalid: OnInvalid = "drop",
    ) -> None:
        p = load_preset(preset)
        self.on_invalid = check_on_invalid(on_invalid)
        lengths = {}
        if max_particles is not None:
            lengths[p.clouds[0].name] = int(max_particles)
        if max_svs is not None and len(p.clouds) > 1:
            lengths[p.clouds[1].name] = int(max_svs)
        self.preset = p.with_lengths(**lengths) if lengths else p
        self.selection = selection
        self.label = dict(label) if label is not None else None
        self.condition = tuple(condition)
        self.branches = frozenset(self.preset.branches())  # for the per-chunk counter check
        self.required_branches = frozenset(self.preset.required_branches())  # per file
        if truth == "preset":
            truth = self.preset.truth
        if isinstance(truth, str):
            raise ConfigError(f"GraphBuilder truth={truth!r}: use 'preset', a mapping or None")
        self.truth = truth if isinstance(truth, TruthMatch) else TruthMatch.from_mapping(truth)
        if self.truth is not None and self.preset.kind != "jet":
            raise ConfigError(
                f"preset {self.preset.name!r}: truth matching labels jets; it needs kind 'jet'"
            )

    def _label(self, dataset: str, metadata: Mapping[str, Any]) -> int:
        if self.label is not None:
            if dataset not in self.label:
                raise ConfigError(
                    f"dataset {dataset!r} has no entry in GraphBuilder(label=...); "
                    f"known: {sorted(self.label)}"
                )
            return int(self.label[dataset])
        if "label" not in metadata:
            raise ConfigError(
                f"dataset {dataset!r}: no class label; add `label: <int>` to its fileset "
                "metadata or pass GraphBuilder(label={dataset: int})"
            )
        return int(metadata["label"])

    def process(self, events: Any) -> dict[str, Any]:
        """Build one chunk; returns ``{dataset: {"chunks": {key: arrays}, "cutflow": {...}}}``."""
        meta = dict(events.metadata)
        dataset = str(meta.get("dataset", "unknown"))
        check_chunk_counts(meta, self.branches)
        label = self._label(dataset, meta)
        preset, matched = self.preset, None
        if self.truth is not None and label == self.truth.signal_label:
            where = str(meta.get("filename", dataset))
            events[preset.object, TRUTH_FIELD] = truth_matched(
                events, preset.object, self.truth, where
            )
            preset = dataclasses.replace(
                preset, spectators={**preset.spectators, _TRUTH: f"jet.{TRUTH_FIELD}"}
            )
        inputs = build_inputs(events, preset, self.selection, self.on_invalid)
        warn_invalid(inputs.invalid)
        if _TRUTH in inputs.spectators:
            matched = inputs.spectators.pop(_TRUTH) > 0.5
            inputs = _subset(inputs, matched)
        n = len(inputs)
        arrays = graph_arrays(inputs, self.preset)
        arrays["label"] = np.full(n, label, dtype=np.int64)
        cond = [float(meta.get(name, np.nan)) for name in self.condition]
        arrays["condition"] = np.tile(np.asarray(cond, dtype=np.float32), (n, 1)).reshape(
            n, len(cond)
        )
        arrays["weight"] = inputs.weight.astype(np.float32)
        for name, values in inputs.spectators.items():
            arrays[f"spec_{name}"] = values
        key = f"{meta.get('filename', '')}#{int(meta.get('entrystart', 0)):015d}"
        counts = inputs.clouds[self.preset.clouds[0].name].counts
        cutflow = {
            "events": len(events),
            "candidates": inputs.n_candidates,
            "selected": n + (0 if matched is None else int((~matched).sum())),
            **({} if matched is None else {"truth_unmatched": int((~matched).sum())}),
            "with_constituents": int((counts > 0).sum()),
            **inputs.invalid.cutflow(),
        }
        user_meta = {
            k: v
            for k, v in meta.items()
            if k not in ("filename", "entrystart", "entrystop", "fileuuid", "treename")
        }
        return {
            dataset: {"chunks": {key: arrays}, "cutflow": cutflow, "metadata": {key: user_meta}}
        }

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        """Concatenate chunks per dataset in (file, entry) order."""
        out = {}
        for dataset, acc in accumulator.items():
            if "chunks" not in acc:  # already post-processed
                out[dataset] = acc
                continue
            keys = sorted(acc["chunks"])
            chunks = [acc["chunks"][k] for k in keys]
            arrays = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
            metas = list(acc["metadata"].values())
            out[dataset] = {
                "arrays": arrays,
                "cutflow": dict(acc["cutflow"]),
                "metadata": metas[0] if metas else {},
            }
        return out

    def describe(self) -> dict[str, Any]:
        """Plain-dict description of this builder (stored in shard manifests)."""
        return {
            "preset": self.preset.to_dict(),
            "selection": self.selection,
            "condition": list(self.condition),
            "label": self.label,
            "on_invalid": self.on_invalid,
        }

    def __repr__(self) -> str:
        lengths = {c.name: c.max_length for c in self.preset.clouds}
        return f"GraphBuilder(preset={self.preset.name!r}, lengths={lengths}, condition={list(self.condition)})"
