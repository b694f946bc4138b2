"""Tagger: parametric ONNX scores for many mass hypotheses inside coffea.

Example:
    >>> from paratag.processors import Tagger
    >>> tagger = Tagger("export/model.onnx", hypotheses=[{"mHc": 130, "mA": 90}, {"mHc": 160, "mA": 90}])
    >>> events = tagger(events)              # eager NanoEvents: FatJet.score_mHc130_mA90, ...
    >>> out = runner(fileset, processor_instance=Tagger("export/model.onnx", hyps, output="hist"))
    >>> scored = dask_awkward.map_partitions(tagger, dask_events)   # NanoEvents mode="dask"

Inputs are built by :func:`paratag.inputs.build_inputs` (the function
GraphBuilder uses) with the preset stored in ``preprocess.json``; the network runs
in :class:`paratag.scoring.OnnxScorer` (hypothesis strategies, ragged
micro-batches, the onnxruntime session cache), shared with the export checks.
This module is the coffea side: events in, score columns and histograms out.

The processor is stateless and picklable: it holds plain arrays and the preset;
the onnxruntime session is created lazily once per worker process (cached by
model file and thread count) and never pickled.

Scores: objects failing the selection and objects without constituents get
NaN (they are not run through the network and not filled into histograms).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np
from coffea import processor

from paratag.conditions import parse_hypotheses, point_name
from paratag.errors import ConfigError, InputFileError, ModelMismatchError
from paratag.inputs import GraphInputs, build_inputs, to_candidates
from paratag.integrity import check_chunk_counts
from paratag.preprocess import Preprocess, load_preprocess, preprocess_for
from paratag.presets import Preset, load_preset
from paratag.scoring import OnnxScorer, Strategy, resolve_providers
from paratag.validity import OnInvalid, check_on_invalid, warn_invalid

__all__ = [
    "Tagger",
    "hypothesis_name",
    "parse_hypotheses",
    "resolve_providers",
    "score_fileset",
    "write_scores",
]

#: Key of the skipped-file list in :func:`score_fileset`'s output.
SKIPPED_KEY = "skipped_files"
_SELECTED = "_paratag_selected"


def hypothesis_name(values: Mapping[str, float]) -> str:
    """``{"mHc": 130, "mA": 90}`` → ``"mHc130_mA90"`` (:func:`paratag.conditions.point_name`)."""
    return point_name(list(values.values()), list(values))


def _same_inputs(pp: Preprocess, preset: Preset) -> str:
    """'' if ``preset`` produces exactly ``pp``'s inputs, else a description of the difference."""
    own = preprocess_for(
        preset,
        [n for n in pp.input_names if n != "condition"],
    )
    for name, block in own.inputs.items():
        theirs = pp.inputs[name]
        if block.var_names != theirs.var_names:
            return f"input {name!r}: variables {list(block.var_names)} != {list(theirs.var_names)}"
        if block.max_length != theirs.max_length:
            return f"input {name!r}: length {block.max_length} != {theirs.max_length}"
        if block.var_infos != theirs.var_infos and name != "mask" and not name.endswith("_mask"):
            return f"input {name!r}: preprocessing (var_infos) differs"
    return ""


class Tagger(processor.ProcessorABC):
    """Score objects (jets) or events with an exported paratag model for many hypotheses.

    Args:
        model: path to ``model.onnx`` (its ``preprocess.json`` is read from the same folder).
        hypotheses: one mapping per hypothesis, keys = the model's condition names
            (``[{"mHc": 130, "mA": 90}, ...]``); empty for unconditioned models.
        preset: None uses the preset stored in preprocess.json; for a CMSSW
            preprocess file, the preset whose expressions rebuild its variables.
        output: ``"events"`` (score columns), ``"hist"`` (filled ``hist.Hist``) or ``"both"``.
        preprocess: path of the preprocess file, if not next to the model.
        selection: per-object expression overriding the preset's selection.
        score_class: output class whose probability is the score (index or name; 0 = signal).
        axes: extra ``hist`` axes; each axis name is a preset spectator (``jet_sdmass``)
            or a key of ``variables``.
        variables: name → per-object expression for extra axes (``{"pt": "jet.pt"}``).
        score_bins: bins of the score axis on [0, 1].
        threads: onnxruntime intra-op threads per worker.
        memory_mb: working-memory budget of one onnxruntime call.
        batch_size: rows (graphs x hypotheses) per call; default from ``memory_mb``,
            at most :data:`DEFAULT_MAX_ROWS`.
        strategy: ``"auto"`` ("hypotheses" if the export has a multi-hypothesis graph,
            else "loop"), ``"loop"`` (one call per hypothesis and micro-batch),
            ``"replicate"`` (one call for all hypotheses of a micro-batch, inputs
            repeated) or ``"hypotheses"`` (one call of ``model_hypotheses.onnx`` per
            micro-batch of ``batch_size`` graphs; needs ``hypotheses_axis=True`` at export).
        providers: onnxruntime execution providers (:func:`resolve_providers`): ``auto``
            (CUDA with onnxruntime-gpu, else CPU), ``cpu``, ``cuda`` or provider names.
        ragged: order graphs by constituent count and cut every micro-batch to its own
            longest graph (at least the kNN minimum) instead of the exported length; equal scores,
            less work (the preset's ``max_length`` still clips, as in CMSSW).
        on_invalid: NaN, inf or negative-pT input values (:mod:`paratag.validity`):
            ``"drop"`` (default: those objects get NaN scores, constituents are left out),
            ``"replace"`` (constituent values replaced as in CMSSW) or ``"raise"``;
            counted in the cutflow per file and reported with a warning.
    """

    def __init__(
        self,
        model: str | Path = "model.onnx",
        hypotheses: Sequence[Mapping[str, float]] = (),
        preset: str | Preset | None = None,
        output: Literal["events", "hist", "both"] = "events",
        *,
        preprocess: str | Path | None = None,
        selection: str | None = None,
        score_class: int | str = 0,
        axes: Sequence[Any] = (),
        variables: Mapping[str, str] | None = None,
        score_bins: int = 50,
        threads: int = 1,
        memory_mb: float = 2000.0,
        batch_size: int | None = None,
        strategy: Strategy = "auto",
        ragged: bool = True,
        providers: str | Sequence[str] = "auto",
        on_invalid: OnInvalid = "drop",
    ) -> None:
        self.on_invalid = check_on_invalid(on_invalid)
        if output not in ("events", "hist", "both"):
            raise ConfigError(f"Tagger output {output!r}: use 'events', 'hist' or 'both'")
        path = Path(model).resolve()
        if not path.is_file():  # the model first: its preprocess.json is looked up beside it
            raise InputFileError(
                str(path),
                "model file does not exist",
                "check the path or run `paratag export RUN_DIR` first",
            )
        pp = load_preprocess(
            Path(preprocess) if preprocess is not None else path.parent / "preprocess.json"
        )
        self.output = output
        self.preset = self._resolve_preset(pp, preset)
        self.branches = frozenset(self.preset.branches())  # for the per-chunk counter check
        self.required_branches = frozenset(self.preset.required_branches())  # per file
        self.scorer = OnnxScorer(
            path,
            pp,
            hypotheses,
            first_cloud=self.preset.clouds[0].name,
            score_class=score_class,
            threads=threads,
            memory_mb=memory_mb,
            batch_size=batch_size,
            strategy=strategy,
            ragged=ragged,
            providers=providers,
        )
        self.model_path, self.names = self.scorer.model_path, self.scorer.names
        self.selection = selection
        self.variables = dict(variables or {})
        names = {*self.preset.spectators, *self.variables}
        for ax in axes:
            if ax.name not in names or ax.name in ("dataset", "hypothesis", "score"):
                raise ConfigError(
                    f"Tagger axis {ax.name!r}: name it after a preset spectator {sorted(self.preset.spectators)} "
                    "or pass variables={name: expression}"
                )
        self.axes = tuple(axes)
        self.score_bins = int(score_bins)

    # ----------------------------------------------------------------- setup
    @staticmethod
    def _resolve_preset(pp: Preprocess, preset: str | Preset | None) -> Preset:
        if preset is None:
            return pp.preset()
        p = load_preset(preset)
        if not pp.is_paratag:
            return pp.preset(p)
        diff = _same_inputs(pp, p)
        if diff:
            raise ModelMismatchError(
                f"preset {p.name!r} does not build the inputs of {pp.path}: {diff}; "
                "leave preset=None to use the model's own"
            )
        return p

    @property
    def strategy(self) -> str:
        """The resolved hypothesis strategy (:mod:`paratag.scoring`)."""
        return self.scorer.strategy

    @property
    def session(self) -> Any:
        """The onnxruntime session of this worker (created on first use)."""
        return self.scorer.session

    def rows_per_call(self) -> int:
        """Rows (graphs x hypotheses) per onnxruntime call (:meth:`OnnxScorer.rows_per_call`)."""
        return self.scorer.rows_per_call()

    # --------------------------------------------------------------- scoring
    def score_arrays(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Scores ``(N, n_hypotheses)`` for padded model inputs (no condition) of N graphs."""
        return self.scorer.score(arrays)

    def _inputs(self, events: Any) -> tuple[GraphInputs, np.ndarray]:
        """Inputs for every object (selection as a spectator) and the selection mask."""
        sel = self.preset.selection if self.selection is None else self.selection
        spectators = {**self.preset.spectators, **self.variables}
        if sel:
            spectators[_SELECTED] = sel
        preset = dataclasses.replace(self.preset, spectators=spectators, selection="")
        inputs = build_inputs(events, preset, "", self.on_invalid)
        warn_invalid(inputs.invalid)
        selected = inputs.spectators.pop(_SELECTED, np.ones(len(inputs))) != 0
        return inputs, selected

    def score_events(self, events: Any) -> tuple[GraphInputs, np.ndarray, np.ndarray]:
        """Scores of every object (or event) of a chunk.

        Returns:
            ``(inputs, selected, scores)``: the inputs of every object, a mask of
            objects passing the selection, and ``(n_objects, n_hypotheses)``
            scores, NaN where not selected or without constituents.
        """
        inputs, selected = self._inputs(events)
        first = self.preset.clouds[0].name
        run = selected & (inputs.clouds[first].counts > 0)
        arrays = {
            name: np.ascontiguousarray(getattr(inputs.clouds[c], kind)[run])
            for name, (c, kind) in self.scorer.input_map.items()
        }
        scores = np.full((len(inputs), len(self.names)), np.nan, dtype=np.float32)
        scores[run] = self.scorer.score(arrays)
        if len(inputs) < inputs.n_candidates:  # objects dropped for invalid values: NaN rows
            inputs, (selected, scores) = to_candidates(
                inputs, [(selected, False), (scores, np.nan)]
            )
        return inputs, selected, scores

    # -------------------------------------------------------------- outputs
    def new_hist(self) -> Any:
        """An empty score histogram (dataset x hypothesis x score x user axes)."""
        import hist

        return hist.Hist(
            hist.axis.StrCategory([], name="dataset", growth=True, label="Dataset"),
            hist.axis.StrCategory(list(self.names), name="hypothesis", label="Hypothesis"),
            hist.axis.Regular(self.score_bins, 0.0, 1.0, name="score", label="Tagger score"),
            *self.axes,
            storage=hist.storage.Weight(),
        )

    def _fill(
        self,
        h: Any,
        dataset: str,
        inputs: GraphInputs,
        selected: np.ndarray,
        scores: np.ndarray,
    ) -> None:
        """Fill the selected, scored objects; ``selected`` and ``scores`` span every object."""
        ok = selected & np.isfinite(scores[:, 0])
        extra = {ax.name: inputs.spectators[ax.name][ok] for ax in self.axes}
        weight = inputs.weight[ok]
        for j, name in enumerate(self.names):
            h.fill(dataset=dataset, hypothesis=name, score=scores[ok, j], weight=weight, **extra)

    def _columns(
        self, events: Any, inputs: GraphInputs, selected: np.ndarray, scores: np.ndarray
    ) -> dict[str, np.ndarray]:
        idx = inputs.event_index
        counts = (
            np.bincount(idx, minlength=len(events)) if len(idx) else np.zeros(len(events), np.int64)
        )
        starts = np.cumsum(counts) - counts
        cols: dict[str, np.ndarray] = {}
        for branch in ("run", "luminosityBlock", "event"):
            if branch in getattr(events, "fields", ()):
                cols[branch] = np.asarray(ak.to_numpy(events[branch]))[idx][selected]
        if self.preset.kind == "jet":
            cols["object_index"] = (np.arange(len(idx)) - starts[idx])[selected]
        cols["weight"] = inputs.weight[selected]
        for j, name in enumerate(self.names):
            cols[name] = scores[selected, j]
        return cols

    def process(self, events: Any) -> dict[str, Any]:
        """Score one chunk; accumulates columns per dataset and/or one histogram."""
        meta = dict(getattr(events, "metadata", None) or {})
        dataset = str(meta.get("dataset", "unknown"))
        check_chunk_counts(meta, self.branches)
        inputs, selected, scores = self.score_events(events)
        cutflow = {
            "events": len(events),
            "candidates": len(inputs),
            "selected": int(selected.sum()),
            "scored": int(np.isfinite(scores[:, 0]).sum()),
            **inputs.invalid.cutflow(),
        }
        out: dict[str, Any] = {dataset: {"cutflow": cutflow}}
        if self.output in ("events", "both"):
            key = f"{meta.get('filename', '')}#{int(meta.get('entrystart', 0)):015d}"
            out[dataset]["chunks"] = {key: self._columns(events, inputs, selected, scores)}
        if self.output in ("hist", "both"):
            h = self.new_hist()
            self._fill(h, dataset, inputs, selected, scores)
            out["hist"] = h
        return out

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        """Concatenate score columns per dataset in (file, entry) order."""
        out: dict[str, Any] = {}
        for name, acc in accumulator.items():
            if name == "hist" or not isinstance(acc, dict) or "chunks" not in acc:
                out[name] = acc
                continue
            keys = sorted(acc["chunks"])
            chunks = [acc["chunks"][k] for k in keys]
            arrays = {c: np.concatenate([ch[c] for ch in chunks]) for c in chunks[0]}
            out[name] = {"arrays": arrays, "cutflow": dict(acc["cutflow"])}
        return out

    # ------------------------------------------------------------ callable
    def __call__(self, events: Any) -> Any:
        """NanoEvents → events with ``score_*`` fields (or histograms).

        Eager or virtual events are scored now. Dask-awkward events (NanoEvents
        ``mode="dask"``) give a lazy dask-awkward array, as coffea.ml_tools'
        wrappers do: the Tagger is mapped over the partitions and, on the
        typetracer, touches only the branches the preset needs.
        """
        if _is_dask(events):
            if self.output != "events":
                raise ConfigError(
                    "dask-awkward events: use Tagger(output='events') and fill histograms from "
                    "the score fields (e.g. with hist.dask), or run output='hist' through "
                    "paratag.processors.tagger.score_fileset"
                )
            import dask_awkward as dak

            return dak.map_partitions(self, events, label="paratag-tagger")
        if ak.backend(events) == "typetracer":
            return self._typetracer(events)
        if self.output != "events":
            result = self.process(events)
            return result.get("hist") if self.output == "hist" else result
        inputs, _, scores = self.score_events(events)
        if self.preset.kind == "event":
            for j, name in enumerate(self.names):
                events = ak.with_field(events, scores[:, j], name)
            return events
        obj = self.preset.object
        counts = (
            np.bincount(inputs.event_index, minlength=len(events))
            if len(inputs)
            else np.zeros(len(events), np.int64)
        )
        jets = events[obj]
        for j, name in enumerate(self.names):
            jets = ak.with_field(jets, ak.unflatten(scores[:, j], counts), name)
        return ak.with_field(events, jets, obj)

    def _typetracer(self, events: Any) -> Any:
        if self.output != "events":
            raise ConfigError(
                "with dask_awkward.map_partitions use Tagger(output='events') and fill histograms "
                "from the score fields (e.g. with dask-histogram)"
            )
        for branch in sorted(self.preset.branches() | self._variable_branches()):
            col, _, field = branch.partition("_")
            if field and col in events.fields and field in events[col].fields:
                ak.typetracer.touch_data(events[col][field])
            elif branch in events.fields:
                ak.typetracer.touch_data(events[branch])
        if self.preset.kind == "event":
            zero = ak.Array(ak.to_layout(np.zeros(0, np.float32)).to_typetracer(forget_length=True))
            for name in self.names:
                events = ak.with_field(events, zero, name)
            return events
        obj = self.preset.object
        jets = events[obj]
        template = ak.values_astype(ak.local_index(jets, axis=1), np.float32)
        for name in self.names:
            jets = ak.with_field(jets, template, name)
        return ak.with_field(events, jets, obj)

    def _variable_branches(self) -> set[str]:
        if not self.variables:
            return set()
        extra = dataclasses.replace(self.preset, spectators=dict(self.variables))
        return extra.branches()

    def __repr__(self) -> str:
        return (
            f"Tagger(model={self.model_path!r}, hypotheses={len(self.names)}, "
            f"preset={self.preset.name!r}, output={self.output!r})"
        )


def _is_dask(events: Any) -> bool:
    """Whether ``events`` is a dask-awkward collection (imported only if it is)."""
    if not type(events).__module__.startswith("dask_awkward"):
        return False
    import dask_awkward as dak

    return isinstance(events, dak.Array)


def score_fileset(
    fileset: str | Path | Mapping[str, Any],
    tagger: Tagger,
    *,
    executor: str = "iterative",
    workers: int = 2,
    chunksize: int = 100_000,
    skip_bad_files: bool = False,
    progress: bool = True,
    scheduler: str | None = None,
) -> dict[str, Any]:
    """Run ``tagger`` over a coffea fileset (:func:`paratag.runner.run_processor`).

    Returns the postprocessed output; files skipped with ``skip_bad_files`` are logged
    and listed under ``skipped_files`` (written into ``hists.pkl`` by :func:`write_scores`).
    """
    from paratag.runner import run_processor

    out, skipped = run_processor(
        fileset,
        tagger,
        executor=executor,
        workers=workers,
        chunksize=chunksize,
        skip_bad_files=skip_bad_files,
        progress=progress,
        scheduler=scheduler,
    )
    return {**out, SKIPPED_KEY: skipped}


def write_scores(
    result: Mapping[str, Any], out_dir: str | Path, parquet: bool = False
) -> list[Path]:
    """Write ``hists.pkl`` (+ ``scores.root`` with one TH1 per dataset/hypothesis, + parquet)."""
    import pickle

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    h = result.get("hist")
    if h is not None:
        import uproot

        p = out / "hists.pkl"
        p.write_bytes(
            pickle.dumps(
                {
                    "hist": h,
                    "cutflow": {
                        k: v.get("cutflow") for k, v in result.items() if isinstance(v, Mapping)
                    },
                    SKIPPED_KEY: list(result.get(SKIPPED_KEY, [])),
                }
            )
        )
        written.append(p)
        root = out / "scores.root"
        with uproot.recreate(root) as f:
            for ds in h.axes["dataset"]:
                for hyp in h.axes["hypothesis"]:
                    sl = h[{"dataset": ds, "hypothesis": hyp}].project("score")
                    f[f"{ds}/{hyp}"] = sl
        written.append(root)
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = []
        for ds, acc in result.items():
            if isinstance(acc, Mapping) and "arrays" in acc:
                cols = {k: pa.array(v) for k, v in acc["arrays"].items()}
                cols["dataset"] = pa.array([ds] * len(next(iter(acc["arrays"].values()))))
                tables.append(pa.table(cols))
        if tables:
            p = out / "scores.parquet"
            pq.write_table(pa.concat_tables(tables, promote_options="default"), p)
            written.append(p)
    return written
