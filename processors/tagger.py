"""Tagger: parametric ONNX scores for many mass hypotheses inside coffea.

Example:
    >>> from paratag.processors import Tagger
    >>> tagger = Tagger("export/model.onnx", hypotheses=[{"mHc": 130, "mA": 90}, {"mHc": 160, "mA": 90}])
    >>> events = tagger(events)              # eager NanoEvents: FatJet.score_mHc130_mA90, ...
    >>> out = runner(fileset, processor_instance=Tagger("export/model.onnx", hyps, output="hist"))
    >>> scored = dask_awkward.map_partitions(tagger, dask_events)   # NanoEvents mode="dask"

Inputs are built by :func:`paratag.presets.build_inputs` (the function
GraphBuilder uses) with the preset stored in ``preprocess.json``. All
hypotheses of a chunk are scored in one pass over the padded inputs, which are
built once: ``strategy="loop"`` runs each micro-batch once per
hypothesis with the condition tiled over the batch; ``strategy="replicate"``
repeats the inputs along the batch axis with one condition row per copy and
makes one call. ``benchmarks/bench_tagger.py`` measured "loop" 1.3x faster for
the full ParametricParticleNet with 12 hypotheses (calls of 64 distinct graphs
beat calls of 5 graphs x 12 conditions). ``strategy="hypotheses"`` uses the
multi-hypothesis graph ``model_hypotheses.onnx`` (written by
``export_model(..., hypotheses_axis=True)``, condition ``(H, K)``, softmax
``(N, H, C)``): one call per micro-batch scores every hypothesis, and a
shared-trunk ParametricParticleNet computes its EdgeConv trunk only once.
``strategy="auto"`` (default) picks "hypotheses" when the export has that
graph, else "loop". Each call holds at most ``memory_mb``
of estimated working memory (micro-batching), whatever the coffea chunk size.

The processor is stateless and picklable: it holds plain arrays and the preset;
the onnxruntime session is created lazily once per worker process (cached by
model file and thread count) and never pickled.

Scores: objects failing the selection and objects without constituents get
NaN (they are not run through the network and not filled into histograms).
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np
from coffea import processor

from paratag.errors import ConfigError, InvalidValueError, ModelMismatchError
from paratag.integrity import check_chunk_counts
from paratag.preprocess import (
    Preprocess,
    check_model,
    load_preprocess,
    output_tensor,
    preprocess_for,
    split_input_name,
)
from paratag.presets import GraphInputs, Preset, build_inputs, load_preset
from paratag.validity import OnInvalid, check_on_invalid, warn_invalid

__all__ = ["Tagger", "hypothesis_name", "parse_hypotheses", "score_fileset", "write_scores"]

#: Rows (graphs x hypotheses) per onnxruntime call by default: larger calls were not faster
#: for the full ParticleNet (bench_tagger.py --sweep: 8-128 rows flat, 256 rows 15% slower).
DEFAULT_MAX_ROWS = 64
#: Key of the skipped-file list in :func:`score_fileset`'s output.
SKIPPED_KEY = "skipped_files"
#: Ragged micro-batches are cut to a multiple of this many slots.
RAGGED_STEP = 8
#: Working memory assumed per graph when the preprocess file has no estimate (CMSSW files).
FALLBACK_BYTES_PER_GRAPH = 8 * 2**20
_SELECTED = "_paratag_selected"

_SESSIONS: dict[tuple[str, int, int, int, tuple[str, ...]], Any] = {}
_LOCK = threading.Lock()


def hypothesis_name(values: Mapping[str, float]) -> str:
    """``{"mHc": 130, "mA": 90}`` → ``"mHc130_mA90"`` (``.``→``p``, ``-``→``m``)."""
    return "_".join(
        f"{k}{float(v):g}".replace(".", "p").replace("-", "m") for k, v in values.items()
    )


def resolve_providers(providers: str | Sequence[str] = "auto") -> tuple[str, ...]:
    """The onnxruntime execution providers for a name or list; a missing one is a clear error.

    ``auto``: CUDA when onnxruntime-gpu can use it, then CPU; ``cpu``; ``cuda``; or
    explicit provider names (a list or comma-separated).
    """
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    if isinstance(providers, str):
        key = providers.lower()
        if key == "auto":
            chosen = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
            return (*chosen, "CPUExecutionProvider")
        providers = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider"]}.get(
            key, [p.strip() for p in providers.split(",") if p.strip()]
        )
    missing = [p for p in providers if p not in available]
    if missing or not providers:
        hint = (
            "install onnxruntime-gpu (and CUDA) for CUDAExecutionProvider"
            if "CUDAExecutionProvider" in missing
            else "choose among the available ones"
        )
        raise ConfigError(
            f"onnxruntime execution provider(s) {missing or list(providers)} are not available in "
            f"this installation (available: {available}); {hint}, or use providers='auto'"
        )
    return tuple(providers)


def _session(
    path: str, threads: int, providers: tuple[str, ...] = ("CPUExecutionProvider",)
) -> Any:
    """One onnxruntime session per (model file, threads, providers) and process."""
    import onnxruntime as ort

    st = Path(path).stat()
    key = (path, st.st_mtime_ns, st.st_size, threads, providers)
    with _LOCK:
        sess = _SESSIONS.get(key)
        if sess is None:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(path, so, providers=list(providers))
            _SESSIONS[key] = sess
    return sess


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
            longest graph (rounded up to 8) instead of the exported length; equal scores,
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
        strategy: Literal["auto", "replicate", "loop", "hypotheses"] = "auto",
        ragged: bool = True,
        providers: str | Sequence[str] = "auto",
        on_invalid: OnInvalid = "drop",
    ) -> None:
        self.on_invalid = check_on_invalid(on_invalid)
        if output not in ("events", "hist", "both"):
            raise ConfigError(f"Tagger output {output!r}: use 'events', 'hist' or 'both'")
        if strategy not in ("auto", "replicate", "loop", "hypotheses"):
            raise ConfigError(
                f"Tagger strategy {strategy!r}: use 'auto', 'replicate', 'loop' or 'hypotheses'"
            )
        if threads < 1 or memory_mb <= 0 or (batch_size is not None and batch_size < 1):
            raise ConfigError("Tagger: threads, memory_mb and batch_size must be positive")
        path = Path(model).resolve()
        pp = load_preprocess(
            Path(preprocess) if preprocess is not None else path.parent / "preprocess.json"
        )
        check_model(pp, path)
        self.model_path = str(path)
        self.hypotheses_path = self._hypotheses_model(pp, path, strategy)
        if strategy == "auto":
            strategy = "hypotheses" if self.hypotheses_path else "loop"
        self.output = output
        self.threads, self.memory_mb, self.batch_size, self.strategy = (
            int(threads),
            float(memory_mb),
            batch_size,
            strategy,
        )
        self.preset = self._resolve_preset(pp, preset)
        self.branches = frozenset(self.preset.branches())  # for the per-chunk counter check
        self.required_branches = frozenset(self.preset.required_branches())  # per file
        first = self.preset.clouds[0].name
        self.input_names = tuple(pp.input_names)
        self.input_map = {n: split_input_name(n, first) for n in pp.input_names if n != "condition"}
        self.output_name = output_tensor(pp, self.model_path)
        self.bytes_per_graph = int(pp.paratag.get("bytes_per_graph", FALLBACK_BYTES_PER_GRAPH))
        self.bytes_per_hypothesis = int(pp.paratag.get("bytes_per_hypothesis", 0))
        self.min_particles = int(pp.paratag.get("min_particles", 1))
        self.ragged = bool(ragged)
        self.providers = resolve_providers(providers)
        self.score_index = self._score_index(pp, score_class)
        self.names, self.conditions = self._hypotheses(pp, hypotheses)
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
        self._session: Any = None

    # ----------------------------------------------------------------- setup
    @staticmethod
    def _hypotheses_model(pp: Preprocess, path: Path, strategy: str) -> str:
        """Path of the export's multi-hypothesis graph ('' if it has none)."""
        name = pp.paratag.get("hypotheses_model")
        if not name or "condition" not in pp.input_names:
            if strategy == "hypotheses":
                raise ConfigError(
                    f"{path}: no multi-hypothesis graph in its preprocess.json; export with "
                    "hypotheses_axis=True or use strategy='auto'"
                )
            return ""
        hyp = path.parent / str(name)
        check_model(pp, hyp)
        return str(hyp)

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

    @staticmethod
    def _score_index(pp: Preprocess, score_class: int | str) -> int:
        classes = pp.class_names
        if isinstance(score_class, str):
            if score_class not in classes:
                raise ConfigError(
                    f"score_class {score_class!r} is not one of the model's classes {list(classes)}"
                )
            return classes.index(score_class)
        if classes and not 0 <= score_class < len(classes):
            raise ConfigError(f"score_class {score_class} out of range for classes {list(classes)}")
        return int(score_class)

    def _hypotheses(
        self, pp: Preprocess, hypotheses: Sequence[Mapping[str, float]]
    ) -> tuple[tuple[str, ...], np.ndarray]:
        if "condition" not in pp.input_names:
            if hypotheses:
                raise ConfigError(
                    f"{self.model_path} takes no condition: drop hypotheses (it gives one 'score')"
                )
            return ("score",), np.zeros((1, 0), np.float32)
        block = pp.inputs["condition"]
        names = block.var_names
        if not hypotheses:
            raise ConfigError(
                f"{self.model_path} is parametric in {list(names)}: give hypotheses, "
                f"e.g. [{{{', '.join(f'{n!r}: ...' for n in names)}}}]"
            )
        if isinstance(hypotheses, Mapping) or not all(isinstance(h, Mapping) for h in hypotheses):
            raise ConfigError(
                f"hypotheses must be a list of mappings, e.g. [{{{', '.join(f'{n!r}: ...' for n in names)}}}], "
                f"got {hypotheses!r}"
            )
        rows = []
        for h in hypotheses:
            if set(h) != set(names):
                raise ConfigError(
                    f"hypothesis {dict(h)} must give exactly the model's condition names {list(names)}"
                )
            bad = {
                n: h[n]
                for n in names
                if isinstance(h[n], bool) or not isinstance(h[n], (int, float, np.number))
            }
            if bad:
                raise ConfigError(f"hypothesis {dict(h)}: values {bad} are not numbers (GeV)")
            raw = np.array([float(h[n]) for n in names])
            if not np.all(np.isfinite(raw)):
                raise InvalidValueError(f"hypothesis {dict(h)} has NaN or inf values")
            info = [block.var_infos[n] for n in names]
            norm = [(x - i["median"]) * i["norm_factor"] for x, i in zip(raw, info, strict=False)]
            rows.append(norm)
        labels = tuple("score_" + hypothesis_name({n: h[n] for n in names}) for h in hypotheses)
        if len(set(labels)) != len(labels):
            raise ConfigError(f"duplicate hypotheses: {list(labels)}")
        _warn_outside_grid(pp, hypotheses, names, self.model_path)
        return labels, np.asarray(rows, dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def session(self) -> Any:
        """The onnxruntime session of this worker (created on first use)."""
        if self._session is None:
            path = self.hypotheses_path if self.strategy == "hypotheses" else self.model_path
            self._session = _session(path, self.threads, self.providers)
        return self._session

    # --------------------------------------------------------------- scoring
    def rows_per_call(self) -> int:
        """Rows (graphs x hypotheses) per onnxruntime call; graphs with strategy "hypotheses"."""
        if self.batch_size is not None:
            return int(self.batch_size)
        per_graph = self.bytes_per_graph
        if self.strategy == "hypotheses":  # each graph also carries every hypothesis' attention
            per_graph += len(self.names) * self.bytes_per_hypothesis
        by_memory = int(self.memory_mb * 2**20 // max(per_graph, 1))
        return max(1, min(by_memory, DEFAULT_MAX_ROWS))

    def _lengths(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per cloud, the slot after each graph's last real element ``(N,)`` (from its mask)."""
        out: dict[str, np.ndarray] = {}
        for name, (cloud, kind) in self.input_map.items():
            if kind == "mask":
                m = arrays[name][:, 0] > 0  # (N, P)
                p = m.shape[1]
                last = p - np.argmax(m[:, ::-1], axis=1)
                out[cloud] = np.where(m.any(axis=1), last, 0)
        return out

    def _trimmed(
        self, arrays: Mapping[str, np.ndarray], idx: np.ndarray, lengths: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Rows ``idx`` of every input, cut along P to the batch's own longest graph.

        The length is rounded up to a multiple of :data:`RAGGED_STEP`, kept at least
        the model's minimum (largest kNN k + 1) and at most the exported length, so
        nothing real is ever dropped; padding does not change a model's output (tested).
        """
        first = self.preset.clouds[0].name
        cut: dict[str, int] = {}
        for cloud, lens in lengths.items():
            full = int(
                arrays[next(n for n, (c, _) in self.input_map.items() if c == cloud)].shape[-1]
            )
            need = int(lens[idx].max()) if len(idx) else 1
            need = -(-max(need, 1) // RAGGED_STEP) * RAGGED_STEP
            low = self.min_particles if cloud == first else 1
            cut[cloud] = min(full, max(need, low))
        return {
            name: np.ascontiguousarray(
                arrays[name][idx][..., : cut[c]] if c in cut else arrays[name][idx]
            )
            for name, (c, _) in self.input_map.items()
        }

    def score_arrays(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Scores ``(N, n_hypotheses)`` for padded model inputs (no condition) of N graphs.

        With ``ragged`` (the default) graphs are ordered by length and every
        micro-batch is cut to its own longest graph, so padded slots cost (almost)
        nothing; scores come back in the input order.
        """
        first = next(iter(arrays.values()))
        n, k = len(first), len(self.names)
        out = np.full((n, k), np.nan, dtype=np.float32)
        if n == 0:
            return out
        sess, rows = self.session, self.rows_per_call()
        parametric = self.conditions.shape[1] > 0
        per_call = max(1, rows // k) if parametric and self.strategy == "replicate" else rows
        lengths = self._lengths(arrays) if self.ragged else {}
        first_cloud = self.preset.clouds[0].name
        order = (
            np.argsort(lengths[first_cloud], kind="stable")
            if first_cloud in lengths
            else np.arange(n)
        )
        for start in range(0, n, per_call):
            sl = order[start : min(start + per_call, n)]
            b = len(sl)
            base = self._trimmed(arrays, sl, lengths)
            if not parametric:
                out[sl, 0] = sess.run([self.output_name], base)[0][:, self.score_index]
            elif self.strategy == "hypotheses":
                feed = {**base, "condition": self.conditions}
                out[sl] = sess.run([self.output_name], feed)[0][:, :, self.score_index]
            elif self.strategy == "replicate":
                feed = {name: np.concatenate([v] * k) if k > 1 else v for name, v in base.items()}
                feed["condition"] = np.repeat(self.conditions, b, axis=0)
                res = sess.run([self.output_name], feed)[0][:, self.score_index]
                out[sl] = res.reshape(k, b).T
            else:
                for j in range(k):
                    feed = dict(base)
                    feed["condition"] = np.ascontiguousarray(
                        np.broadcast_to(self.conditions[j], (b, self.conditions.shape[1]))
                    )
                    out[sl, j] = sess.run([self.output_name], feed)[0][:, self.score_index]
        return out

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
            for name, (c, kind) in self.input_map.items()
        }
        scores = np.full((len(inputs), len(self.names)), np.nan, dtype=np.float32)
        scores[run] = self.score_arrays(arrays)
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


def _warn_outside_grid(
    pp: Preprocess, hypotheses: Sequence[Mapping[str, float]], names: Sequence[str], model: str
) -> None:
    """Warn for hypotheses far outside the trained grid (see the margin below)."""
    grid = pp.paratag.get("grid") or {}
    points = [p for role in grid.values() for p in role] if isinstance(grid, Mapping) else []
    if not points:
        return
    arr = np.asarray(points, float)
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    # far = beyond half the grid's width, and at least 25% of the value, outside it
    margin = np.maximum((hi - lo) / 2, 0.25 * np.maximum(np.abs(lo), np.abs(hi)))
    for h in hypotheses:
        x = np.array([float(h[n]) for n in names])
        if np.any(x < lo - margin) or np.any(x > hi + margin):
            rng = ", ".join(f"{n} {a:g}-{b:g}" for n, a, b in zip(names, lo, hi, strict=True))
            warnings.warn(
                f"{model}: hypothesis {dict(h)} is far outside the grid the model was trained "
                f"and validated on ({rng}); its scores are an extrapolation",
                UserWarning,
                stacklevel=4,
            )


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
