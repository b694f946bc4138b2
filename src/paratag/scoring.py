"""OnnxScorer: an exported paratag model's scores for padded inputs, for many hypotheses.

The one place that runs exported models with onnxruntime: the Tagger (the
coffea side: events in, columns and histograms out) and the export parity checks
use it. All hypotheses of a batch are scored in one pass over the padded inputs:

- ``"loop"``: each micro-batch runs once per hypothesis, the condition tiled over it;
- ``"replicate"``: the inputs are repeated along the batch axis, one condition row
  per copy, one call (``benchmarks/bench_tagger.py`` measured "loop" 1.3x faster for
  the full ParametricParticleNet with 12 hypotheses);
- ``"hypotheses"``: one call of the multi-hypothesis graph ``model_hypotheses.onnx``
  (``export_model(..., hypotheses_axis=True)``: condition ``(H, K)``, softmax
  ``(N, H, C)``) per micro-batch; a shared-trunk model computes its trunk once;
- ``"auto"``: "hypotheses" when the export has that graph, else "loop".

With ``ragged`` (default) graphs are ordered by constituent count and each
micro-batch is cut to its own longest graph (:func:`paratag.graphs.trim_length`):
padded slots cost (almost) nothing and the scores equal the fully padded ones
(the models are invariant to padding, tested). Each call holds at most
``memory_mb`` of estimated working memory.

The scorer is picklable: its onnxruntime session is created lazily, cached per
process by (model file, threads, providers), and never pickled.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from paratag.conditions import ConditionSpace, point_name
from paratag.errors import ConfigError
from paratag.graphs import graph_lengths, trim_length
from paratag.model_check import check_model, output_tensor
from paratag.preprocess import Preprocess, split_input_name

__all__ = ["DEFAULT_MAX_ROWS", "OnnxScorer", "onnx_session", "resolve_providers"]

#: Rows (graphs x hypotheses) per onnxruntime call by default. Ragged micro-batches of the
#: length-sorted jets stay in cache when small: on 4,800 real-multiplicity PFNano jets (1 thread,
#: 2026-12-01) the full ParticleNet scored 270 jets/s at 8 rows, 234 at 16 and 185 at 64; the
#: Interaction Network 1,030-1,120 jets/s at 8-64 rows (flat).
DEFAULT_MAX_ROWS = 8
#: onnxruntime micro-batches are cut to exactly their longest graph (no rounding: the CPU
#: provider has no per-shape compilation). The Interaction Network's pair MLP costs P^2:
#: rounding to 8 slots cost it 8-25% on the PFNano jets (1 thread, 2026-12-02).
SCORE_TRIM_STEP = 1
#: Working memory assumed per graph when the preprocess file has no estimate (CMSSW files).
FALLBACK_BYTES_PER_GRAPH = 8 * 2**20

Strategy = Literal["auto", "replicate", "loop", "hypotheses"]
_STRATEGIES = ("auto", "replicate", "loop", "hypotheses")
_SESSIONS: dict[tuple[str, int, int, int, tuple[str, ...]], Any] = {}
_LOCK = threading.Lock()


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


def onnx_session(
    path: str | Path, threads: int = 1, providers: tuple[str, ...] = ("CPUExecutionProvider",)
) -> Any:
    """One onnxruntime session per (model file and its version on disk, threads, providers)."""
    import onnxruntime as ort

    path = str(path)
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


class OnnxScorer:
    """Scores ``(N, n_hypotheses)`` of one output class for padded model inputs.

    Args:
        model: path of ``model.onnx``.
        pp: its preprocess file (:func:`paratag.preprocess.load_preprocess`).
        hypotheses: one mapping per hypothesis (the model's condition names); empty for
            an unconditioned model.
        first_cloud: name of the preset's first cloud (its inputs have no prefix).
        score_class: output class whose probability is the score (index or name).
        threads, memory_mb, batch_size, strategy, ragged, providers: see
            :class:`paratag.processors.Tagger`.

    Attributes:
        names: one column name per hypothesis, ``score_mHc130_mA90`` (or ``("score",)``).
        conditions: normalised conditions ``(n_hypotheses, K)``.
        input_map: input name → (cloud, ``points``/``features``/``mask``).
    """

    def __init__(
        self,
        model: str | Path,
        pp: Preprocess,
        hypotheses: Sequence[Mapping[str, float]] = (),
        *,
        first_cloud: str,
        score_class: int | str = 0,
        threads: int = 1,
        memory_mb: float = 2000.0,
        batch_size: int | None = None,
        strategy: Strategy = "auto",
        ragged: bool = True,
        providers: str | Sequence[str] = "auto",
    ) -> None:
        if strategy not in _STRATEGIES:
            raise ConfigError(
                f"Tagger strategy {strategy!r}: use 'auto', 'replicate', 'loop' or 'hypotheses'"
            )
        if threads < 1 or memory_mb <= 0 or (batch_size is not None and batch_size < 1):
            raise ConfigError("Tagger: threads, memory_mb and batch_size must be positive")
        path = Path(model).resolve()
        check_model(pp, path)
        self.model_path = str(path)
        self.hypotheses_path = _hypotheses_model(pp, path, strategy)
        self.strategy = (
            ("hypotheses" if self.hypotheses_path else "loop") if strategy == "auto" else strategy
        )
        self.threads, self.memory_mb, self.batch_size = int(threads), float(memory_mb), batch_size
        self.ragged, self.providers = bool(ragged), resolve_providers(providers)
        self.first_cloud = first_cloud
        self.input_map = {
            n: split_input_name(n, first_cloud) for n in pp.input_names if n != "condition"
        }
        self.output_name = output_tensor(pp, self.model_path)
        self.bytes_per_graph = int(pp.paratag.get("bytes_per_graph", FALLBACK_BYTES_PER_GRAPH))
        self.bytes_per_hypothesis = int(pp.paratag.get("bytes_per_hypothesis", 0))
        self.min_particles = int(pp.paratag.get("min_particles", 1))
        self.score_index = _score_index(pp, score_class)
        self.names, self.conditions = self._hypotheses(pp, hypotheses)
        self._session: Any = None

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
        space = ConditionSpace.from_var_infos(block.var_names, block.var_infos)
        if not hypotheses:
            raise ConfigError(
                f"{self.model_path} is parametric in {list(space.names)}: give hypotheses, "
                f"e.g. [{{{', '.join(f'{n!r}: ...' for n in space.names)}}}]"
            )
        rows = space.rows(hypotheses)
        labels = tuple("score_" + point_name(r, space.names) for r in rows)
        if len(set(labels)) != len(labels):
            raise ConfigError(f"duplicate hypotheses: {list(labels)}")
        _warn_outside_grid(pp, rows, space.names, self.model_path)
        return labels, space.normalise(rows)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None
        return state

    @property
    def session(self) -> Any:
        """The onnxruntime session of this process (created on first use)."""
        if self._session is None:
            path = self.hypotheses_path if self.strategy == "hypotheses" else self.model_path
            self._session = onnx_session(path, self.threads, self.providers)
        return self._session

    def rows_per_call(self) -> int:
        """Rows (graphs x hypotheses) per onnxruntime call; graphs with strategy "hypotheses"."""
        if self.batch_size is not None:
            return int(self.batch_size)
        per_graph = self.bytes_per_graph
        if self.strategy == "hypotheses":  # each graph also carries every hypothesis' attention
            per_graph += len(self.names) * self.bytes_per_hypothesis
        by_memory = int(self.memory_mb * 2**20 // max(per_graph, 1))
        return max(1, min(by_memory, DEFAULT_MAX_ROWS))

    def lengths(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per cloud, the slot after each graph's last real element ``(N,)`` (from its mask)."""
        return {
            cloud: graph_lengths(arrays[name])
            for name, (cloud, kind) in self.input_map.items()
            if kind == "mask"
        }

    def trimmed(
        self, arrays: Mapping[str, np.ndarray], idx: np.ndarray, lengths: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Rows ``idx`` of every input, cut along P to the batch's own longest graph.

        :func:`~paratag.graphs.trim_length`: at least the model's minimum (largest kNN
        k + 1) in the first cloud and at most the exported length.
        """
        cut: dict[str, int] = {}
        for cloud, lens in lengths.items():
            name = next(n for n, (c, _) in self.input_map.items() if c == cloud)
            low = self.min_particles if cloud == self.first_cloud else 1
            cut[cloud] = trim_length(lens[idx], arrays[name].shape[-1], low, SCORE_TRIM_STEP)
        return {
            name: np.ascontiguousarray(
                arrays[name][idx][..., : cut[c]] if c in cut else arrays[name][idx]
            )
            for name, (c, _) in self.input_map.items()
        }

    def score(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Scores ``(N, n_hypotheses)`` for padded inputs (no condition) of N graphs."""
        n, k = len(next(iter(arrays.values()))), len(self.names)
        out = np.full((n, k), np.nan, dtype=np.float32)
        if n == 0:
            return out
        parametric = self.conditions.shape[1] > 0
        rows = self.rows_per_call()
        per_call = max(1, rows // k) if parametric and self.strategy == "replicate" else rows
        lengths = self.lengths(arrays) if self.ragged else {}
        order = (
            np.argsort(lengths[self.first_cloud], kind="stable")
            if self.first_cloud in lengths
            else np.arange(n)
        )
        for start in range(0, n, per_call):
            sl = order[start : min(start + per_call, n)]
            out[sl] = self._call(self.trimmed(arrays, sl, lengths), parametric)
        return out

    def _call(self, base: dict[str, np.ndarray], parametric: bool) -> np.ndarray:
        """Scores ``(b, n_hypotheses)`` of one micro-batch."""
        sess, cls, k = self.session, self.score_index, len(self.names)
        b = len(next(iter(base.values())))
        if not parametric:
            return sess.run([self.output_name], base)[0][:, cls : cls + 1]  # type: ignore[no-any-return]
        if self.strategy == "hypotheses":
            feed = {**base, "condition": self.conditions}
            return sess.run([self.output_name], feed)[0][:, :, cls]  # type: ignore[no-any-return]
        if self.strategy == "replicate":
            feed = {name: np.concatenate([v] * k) if k > 1 else v for name, v in base.items()}
            feed["condition"] = np.repeat(self.conditions, b, axis=0)
            return sess.run([self.output_name], feed)[0][:, cls].reshape(k, b).T  # type: ignore[no-any-return]
        out = np.empty((b, k), np.float32)
        for j in range(k):
            feed = dict(base)
            feed["condition"] = np.ascontiguousarray(
                np.broadcast_to(self.conditions[j], (b, self.conditions.shape[1]))
            )
            out[:, j] = sess.run([self.output_name], feed)[0][:, cls]
        return out


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


def _warn_outside_grid(pp: Preprocess, rows: np.ndarray, names: Sequence[str], model: str) -> None:
    """Warn for hypotheses far outside the trained grid (see the margin below)."""
    grid = pp.paratag.get("grid") or {}
    points = [p for role in grid.values() for p in role] if isinstance(grid, Mapping) else []
    if not points:
        return
    arr = np.asarray(points, float)
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    # far = beyond half the grid's width, and at least 25% of the value, outside it
    margin = np.maximum((hi - lo) / 2, 0.25 * np.maximum(np.abs(lo), np.abs(hi)))
    for x in rows:
        if np.any(x < lo - margin) or np.any(x > hi + margin):
            rng = ", ".join(f"{n} {a:g}-{b:g}" for n, a, b in zip(names, lo, hi, strict=True))
            hyp = {n: float(v) for n, v in zip(names, x, strict=True)}
            warnings.warn(
                f"{model}: hypothesis {hyp} is far outside the grid the model was trained "
                f"and validated on ({rng}); its scores are an extrapolation",
                UserWarning,
                stacklevel=5,
            )
