"""Batched inference of loaded models on selected test rows, and the per-model AUC tables.

:class:`Scorer` holds the inference settings of one evaluation; the helpers score
the run's parametric model per hypothesis, each dedicated model at its point, and
further taggers beside them (:func:`compare_run`) on the same rows of an
:class:`~paratag.evaluate.runs.EvalSample`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paratag.data.dataset import trim_padding
from paratag.errors import ConfigError
from paratag.evaluate.comparison import ModelComparison, compare_models
from paratag.evaluate.hypotheses import signal_layout, weighted_mean
from paratag.evaluate.importance import Importance, permutation_importance, saliency_images
from paratag.evaluate.metrics import roc_auc
from paratag.evaluate.results import ScoredSample
from paratag.evaluate.runs import EvalSample, LoadedModel, LoadedRun, load_model_for_eval
from paratag.parity import min_particles
from paratag.presets import cloud_keys

__all__ = ["Scorer", "compare_run", "diagonal_aucs", "importance_of", "per_point"]

Point = tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Scorer:
    """Inference settings shared by every scoring call."""

    signal_index: int
    background_weights: Any
    batch_size: int
    device: torch.device
    show: bool
    memory_mb: float = 2000.0

    @torch.no_grad()
    def probs(
        self,
        model: LoadedModel,
        sample: EvalSample,
        rows: np.ndarray,
        conditions: Sequence[np.ndarray],
        desc: str,
    ) -> np.ndarray:
        """Class probabilities ``(len(rows), len(conditions), C)`` of ``model``.

        Each condition is a physical point ``(K,)`` for every row or ``(len(rows), K)``;
        the inputs of each batch are read once and scored at every condition.
        """
        from paratag.runtime import progress

        # files in order (the store's cache), by length within a file: each batch is cut
        # to its own longest graph, which does not change a model's output
        store = sample.store
        lengths = store.lengths()[rows]
        order = np.lexsort((lengths, store.table["file"][rows]))
        low = min_particles(model.module)
        n, k = len(rows), len(model.space.names)
        out = np.zeros(
            (n, len(conditions), int(model.info["model_config"]["n_classes"])), np.float32
        )
        starts = self._batches(model, lengths[order], store.shapes)
        for lo, hi in progress(starts, desc=desc, total=len(starts), enabled=self.show):
            idx = order[lo:hi]
            batch = _tensors(store.gather(rows[idx], model.keys), low, self.device)
            for j, c in enumerate(conditions):
                c = np.asarray(c, np.float32)
                phys = np.broadcast_to(c.reshape(1, k), (len(idx), k)) if c.ndim == 1 else c[idx]
                norm = model.space.normalise(phys)
                out[idx, j] = _softmax(model.module, batch, norm, self.device)
        return out

    def _batches(
        self, model: LoadedModel, lengths: np.ndarray, shapes: dict[str, list[int]]
    ) -> list[tuple[int, int]]:
        """``[lo, hi)`` batches of at most ``batch_size`` rows within ``memory_mb``.

        The working memory of a batch grows with its longest graph (quadratically for
        the Interaction Network), so batches of long graphs hold fewer rows.
        """
        from paratag.models.footprint import estimate_graph_bytes

        s = int(shapes[cloud_keys(model.secondary, 1)[2]][-1]) if model.use_sv else 0
        out, lo, n = [], 0, len(lengths)
        while lo < n:
            p = int(lengths[lo : lo + self.batch_size].max(initial=1))
            per_graph = estimate_graph_bytes(model.module, [p, s])
            hi = lo + max(1, min(self.batch_size, int(self.memory_mb * 2**20 // per_graph)))
            out.append((lo, min(hi, n)))
            lo = min(hi, n)
        return out

    def disc(self, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """1-D signal discriminant of ``(N, C)`` probabilities."""
        return ScoredSample(probs, labels).discriminant(self.signal_index, self.background_weights)

    @staticmethod
    def auc(s_sig: np.ndarray, s_bkg: np.ndarray, w_sig: np.ndarray, w_bkg: np.ndarray) -> float:
        """Weighted AUC of signal vs background scores."""
        y = np.r_[np.ones(len(s_sig)), np.zeros(len(s_bkg))]
        return roc_auc(y, np.r_[s_sig, s_bkg], np.r_[w_sig, w_bkg])


def per_point(
    scorer: Scorer, model: LoadedModel, sample: EvalSample, hyps: list[Point], tag: str
) -> tuple[dict[Point, float], np.ndarray, np.ndarray]:
    """Parametric AUC per point, the wrong-hypothesis matrix and the discriminant ``(rows, H)``.

    Rows are every point's signal (in ``hyps`` order) followed by the backgrounds.
    """
    rows, slices, bkg = signal_layout(sample, hyps)
    probs = scorer.probs(
        model, sample, rows, [np.asarray(h) for h in hyps], f"{tag}: {len(hyps)} hypotheses"
    )
    labels, w = sample.label[rows], sample.weight[rows]
    disc = np.stack([scorer.disc(probs[:, j], labels) for j in range(len(hyps))], axis=1)
    aucs: dict[Point, float] = {}
    matrix = np.zeros((len(hyps), len(hyps)))
    for i, (p, sl) in enumerate(zip(hyps, slices, strict=True)):
        aucs[p] = scorer.auc(disc[sl, i], disc[bkg, i], w[sl], w[bkg])
        matrix[i] = [weighted_mean(disc[sl, j], w[sl]) for j in range(len(hyps))]
    return aucs, matrix, disc


def diagonal_aucs(
    scorer: Scorer, model: LoadedModel, sample: EvalSample, hyps: list[Point], tag: str
) -> dict[Point, float]:
    """Parametric AUC per point, each signal scored only at its own hypothesis.

    The AUCs of :func:`per_point` without its wrong-hypothesis matrix: the backgrounds
    are scored at every hypothesis, each signal at one (for seed-stability runs).
    """
    rows, slices, bkg = signal_layout(sample, hyps)
    sig_rows, bkg_rows = rows[: bkg.start], rows[bkg]
    own = np.concatenate(
        [
            np.tile(np.asarray(p, np.float32), (sl.stop - sl.start, 1))
            for p, sl in zip(hyps, slices, strict=True)
        ]
    )
    labels, w = sample.label[rows], sample.weight[rows]
    s_sig = scorer.probs(model, sample, sig_rows, [own], f"{tag}: signal")[:, 0]
    d_sig = scorer.disc(s_sig, labels[: bkg.start])
    p_bkg = scorer.probs(
        model, sample, bkg_rows, [np.asarray(h) for h in hyps], f"{tag}: background"
    )
    out: dict[Point, float] = {}
    for i, (p, sl) in enumerate(zip(hyps, slices, strict=True)):
        d_bkg = scorer.disc(p_bkg[:, i], labels[bkg])
        out[p] = scorer.auc(d_sig[sl], d_bkg, w[sl], w[bkg])
    return out


def compare_run(
    run: LoadedRun,
    scorer: Scorer,
    test: EvalSample,
    hyps: list[Point],
    compare: Mapping[str, str | Path],
    dev: torch.device,
    n_boot: int,
    seed: int,
) -> ModelComparison | None:
    """The run's parametric model and the ``compare`` checkpoints on the same test events."""
    if not compare or not len(test.background):
        return None

    def score(model: LoadedModel, rows: np.ndarray, points: Sequence[Point]) -> np.ndarray:
        conds = [np.asarray(p if model.space.names else (), np.float32) for p in points]
        probs = scorer.probs(model, test, rows, conds, f"compare: {len(rows)} events")
        return np.stack([scorer.disc(probs[:, j], test.label[rows]) for j in range(len(points))], 1)

    if "parametric" in compare:
        raise ConfigError("compare: 'parametric' names the run's own model; choose another name")
    models = {"parametric": run.model}
    models.update({name: load_model_for_eval(Path(p), dev) for name, p in compare.items()})
    return compare_models(
        models,
        signal={p: test.points[p] for p in hyps},
        background=test.background,
        weight=test.weight,
        train_points=list(run.grid.train),
        point_name=run.grid.name,
        score=score,
        conditioned=lambda m: bool(getattr(m.module, "uses_condition", False)),
        n_boot=n_boot,
        seed=seed,
    )


def importance_of(run: LoadedRun, test: EvalSample, n_events: int, seed: int) -> Importance | None:
    """Permutation importance and saliency images of the run's model on ``n_events`` test events.

    Signal of the training points at their own hypothesis and backgrounds at a
    training point drawn per event (seeded); unweighted, both classes subsampled to
    at most half of ``n_events`` each. None when the test sample lacks either class.
    """
    rng = np.random.default_rng(seed)
    points = [p for p in run.grid.train if p in test.points and len(test.points[p])]
    if not points or not len(test.background):
        return None
    sig = np.concatenate([test.points[p] for p in points])
    pick = [rng.permutation(r)[: max(1, n_events // 2)] for r in (sig, test.background)]
    rows = np.concatenate(pick)
    rows = rows[np.argsort(test.store.lengths()[rows], kind="stable")]  # batches trim well
    labels = (test.label[rows] == run.cfg.data.signal_label).astype(np.float64)
    point_of = {int(r): p for p in points for r in test.points[p]}
    drawn = rng.integers(0, len(points), len(rows))
    phys = np.asarray(
        [point_of.get(int(r), points[d]) for r, d in zip(rows, drawn, strict=True)], np.float32
    )
    model, space = run.model.module, run.model.space
    cond = space.normalise(phys.reshape(len(rows), -1)).astype(np.float32)
    preset = test.store.manifest.get("preset") or {}
    names = {
        c["name"]: [x["name"] for x in (*c["points"], *c["features"])]
        for c in preset.get("clouds", [])
    }
    inputs = test.store.gather(rows, run.model.keys)
    index, low = run.cfg.data.signal_label, min_particles(model)

    @torch.no_grad()
    def score(x: Mapping[str, np.ndarray]) -> np.ndarray:
        cpu, out = torch.device("cpu"), []
        for lo in range(0, len(rows), 1024):
            batch = _tensors({k: v[lo : lo + 1024] for k, v in x.items()}, low, cpu)
            out.append(_softmax(model, batch, cond[lo : lo + 1024], cpu)[:, index])
        return np.concatenate(out)

    imp = permutation_importance(score, inputs, labels, None, names, seed=seed)
    images = saliency_images(model, inputs, labels, signal_index=index, condition=cond, minimum=low)
    return dataclasses.replace(imp, saliency=images)


def _tensors(arrays: Mapping[str, np.ndarray], low: int, device: torch.device) -> dict[str, Any]:
    """One batch's gathered arrays cut to its longest graph, as tensors on ``device``."""
    return {k: torch.from_numpy(v).to(device) for k, v in trim_padding(arrays, low).items()}


def _softmax(
    module: torch.nn.Module, batch: dict[str, Any], condition: np.ndarray, device: torch.device
) -> np.ndarray:
    """Class probabilities ``(B, C)`` of one batch at the normalised ``condition`` ``(B, K)``."""
    from paratag.models.io import graph_forward

    batch["condition"] = torch.from_numpy(np.ascontiguousarray(condition)).to(device)
    return torch.softmax(graph_forward(module, batch).float(), dim=1).cpu().numpy()
