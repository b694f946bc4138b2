"""Jagged collections → padded point clouds, and the dense kNN every model uses.

This is the one place where variable-length constituents become the fixed
``(N, C, P)`` arrays of the model contract. GraphBuilder (training) and Tagger
(inference) both call :func:`pad_cloud`, so training and inference can never
disagree about inputs.

The padding is a single vectorised numpy scatter: constituents arrive flat
(one row per constituent, grouped by graph, with per-graph ``counts``), are
ordered by a sort key inside each graph with one ``lexsort``, and are written
into a zero-initialised array with one fancy-index assignment. Padded slots are
exactly zero in ``points``, ``features`` and ``mask``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "TRIM_STEP",
    "PaddedCloud",
    "graph_lengths",
    "knn",
    "local_index",
    "pad_cloud",
    "trim_length",
]

#: Padded axes cut to a batch's own longest graph are rounded up to a multiple of this.
TRIM_STEP = 8


@dataclass(frozen=True)
class PaddedCloud:
    """Padded arrays of one point cloud.

    Shapes:
        points: (N, Cp, P) float32
        features: (N, Cf, P) float32
        mask: (N, 1, P) float32, 1 for real constituents and 0 for padding
        counts: (N,) int64, constituents per graph before clipping to P
    """

    points: np.ndarray
    features: np.ndarray
    mask: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return int(self.mask.shape[0])


def local_index(counts: np.ndarray) -> np.ndarray:
    """Position of each flat entry inside its graph, for grouped flat data.

    Example: ``counts=[2, 0, 3]`` gives ``[0, 1, 0, 1, 2]``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts


def _channels(x: np.ndarray | Sequence[np.ndarray], total: int, what: str) -> list[np.ndarray]:
    """Rows of a (C, M) array, or a sequence of (M,) arrays, as float32 views where possible."""
    rows = [np.asarray(r, dtype=np.float32) for r in x]
    for r in rows:
        if r.shape != (total,):
            raise ValueError(f"{what}: every channel must have shape ({total},), got {r.shape}")
    return rows


def pad_cloud(
    points: np.ndarray | Sequence[np.ndarray],
    features: np.ndarray | Sequence[np.ndarray],
    counts: np.ndarray,
    max_particles: int,
    sort_key: np.ndarray | None = None,
    pad_values: np.ndarray | None = None,
) -> PaddedCloud:
    """Sort, clip and pad flat constituents into the padded model inputs.

    Args:
        points: (Cp, M) flat coordinates, M = counts.sum(), grouped by graph
            (or a sequence of Cp arrays of shape (M,), which avoids stacking them).
        features: (Cf, M) flat, already preprocessed features (or a sequence).
        counts: (N,) number of constituents of each graph.
        max_particles: P; graphs with more constituents keep the P with the
            largest ``sort_key``.
        sort_key: (M,) constituents are ordered by it, descending, inside each
            graph (pt by default in the presets); ``None`` keeps input order.
        pad_values: (Cf,) value of padded feature slots (weaver's ``pad``);
            ``None`` means zero, which the model contract expects.

    Returns:
        The padded cloud; float32 throughout.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n_graphs = counts.shape[0]
    total = int(counts.sum())
    points = _channels(points, total, "points")
    features = _channels(features, total, "features")
    if sort_key is not None:
        key = np.asarray(sort_key, dtype=np.float64)
        if key.shape != (total,):
            raise ValueError(f"sort_key has shape {key.shape}, expected ({total},)")
        graph = np.repeat(np.arange(n_graphs, dtype=np.int64), counts)
        # NaN keys sort last; graph index is the primary key so groups stay intact.
        order = np.lexsort((-np.nan_to_num(key, nan=-np.inf), graph))
        points = [r[order] for r in points]
        features = [r[order] for r in features]
    # Boolean-mask assignment fills an (N, P) plane in row-major order, which is exactly
    # the order of the (graph-grouped, sorted) constituents: no index arrays needed.
    clipped = bool(counts.max(initial=0) > max_particles)
    keep = local_index(counts) < max_particles if clipped else slice(None)
    filled = np.arange(max_particles) < np.minimum(counts, max_particles)[:, None]  # (N, P)

    def scatter(rows: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((n_graphs, len(rows), max_particles), dtype=np.float32)
        for c, row in enumerate(rows):
            out[:, c, :][filled] = row[keep]
        return out

    out_points = scatter(points)
    out_features = scatter(features)
    out_mask = filled[:, None, :].astype(np.float32)
    if pad_values is not None and np.any(pad_values):
        pad = np.asarray(pad_values, dtype=np.float32)[None, :, None]
        out_features = np.where(out_mask > 0, out_features, pad).astype(np.float32)
    return PaddedCloud(out_points, out_features, out_mask, counts)


def knn(points, mask, k: int):  # noqa: ANN001, ANN201 - torch is imported lazily
    """Indices of the k nearest real neighbours of every point (dense, ONNX-exportable).

    Padded points are never chosen as neighbours: their distance is shifted by
    a large constant before ``topk``. A real point is never its own neighbour
    (the diagonal is excluded explicitly). Rows of padded points, and graphs
    with fewer than ``k + 1`` real points, get padded slots as neighbours;
    their inputs are zero by the contract and models mask them out. ``P`` must
    be at least ``k + 1``.

    Args:
        points: (N, C, P) torch tensor of coordinates (or learned features).
        mask: (N, 1, P) torch tensor, 1 for real points, 0 for padding.
        k: number of neighbours.

    Returns:
        (N, P, k) int64 tensor of neighbour indices along P.

    Shapes:
        points: (N, C, P); mask: (N, 1, P); output: (N, P, k)
    """
    import torch

    # Squared distance without cdist (cdist is not ONNX-exportable everywhere):
    # |a - b|^2 = |a|^2 - 2 a.b + |b|^2.
    inner = torch.matmul(points.transpose(1, 2), points)  # (N, P, P)
    sq = (points * points).sum(dim=1, keepdim=True)  # (N, 1, P)
    dist = sq.transpose(1, 2) - 2.0 * inner + sq  # (N, P, P)
    # Push candidates of the other kind (real vs padded) far away, so real points never
    # pick padding while k + 1 real points exist, and padded rows pick padding (zero
    # inputs, as weaver's coordinate shift does). Self is excluded explicitly, further
    # still: dropping the first topk hit (weaver's way) drops a *duplicate* instead of
    # self when two constituents share coordinates (a lepton inside its jet), and
    # torch and onnxruntime break that tie differently.
    arange = torch.arange(points.shape[-1], device=points.device)
    is_self = (arange.unsqueeze(0) == arange.unsqueeze(1)).to(points.dtype)  # (P, P)
    dist = dist + (mask.transpose(1, 2) - mask).abs() * 1e9 + is_self * 1e10  # (N, P, P)
    # Break exact ties (duplicate coordinates) by column index, identically in torch and
    # onnxruntime: in float64 the 1e-9 steps sit far below float32 resolution, so only
    # exactly equal distances are reordered.
    key = dist.double() + arange.double() * 1e-9
    return key.topk(k, dim=-1, largest=False, sorted=True).indices


def graph_lengths(mask: np.ndarray) -> np.ndarray:
    """Per graph ``(N,)``, the slot after its last real element in ``mask (N, 1, P)`` (0: empty)."""
    m = np.asarray(mask)[:, 0] > 0
    last = m.shape[1] - np.argmax(m[:, ::-1], axis=1)
    return np.where(m.any(axis=1), last, 0).astype(np.int64)


def trim_length(lengths: np.ndarray, full: int, minimum: int = 1, step: int = TRIM_STEP) -> int:
    """Padded length to cut a batch of graphs with ``lengths`` to.

    The batch's longest graph, rounded up to a multiple of ``step``, at least ``minimum``
    and at most the padded length ``full``: padding never changes a model's output,
    so nothing real is lost.
    """
    need = int(np.max(lengths)) if len(lengths) else 1
    need = -(-max(need, 1) // step) * step
    return min(int(full), max(need, int(minimum)))
