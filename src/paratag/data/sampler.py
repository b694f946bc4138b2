"""Batch samplers: deterministic per-epoch order, shard-aware shuffling, DDP and curricula.

:class:`EpochBatchSampler` yields ``(epoch, positions)`` keys for
:class:`paratag.data.dataset.GraphDataset`. The order of epoch ``e`` is a pure
function of ``(seed, e)``, so a resumed run sees exactly the batches an
uninterrupted one would (call :meth:`EpochBatchSampler.set_epoch` like
``DistributedSampler``). Shuffling is shard-aware: files are visited in a
random order, ``window`` files at a time, and rows are shuffled within the
window, so an LRU cache of ``window`` decoded files never thrashes.

Under DDP every global batch is split into ``world_size`` contiguous slices
and rank ``r`` gets slice ``r``: the union over ranks of each step is exactly
the single-process batch, so averaged gradients match single-process ones.

A curriculum is a list of phases ``(first_epoch, active positions)``; the
sampler draws only from the phase active at the current epoch.

With ``lengths`` (constituents per row) and ``bucket`` > 0, the shuffled order is
cut into buckets of ``bucket`` batches, each bucket is sorted by length and cut
into batches, and the batches of the epoch are shuffled: every batch holds graphs
of similar size, so a dataset that trims each batch to its own longest graph
(:class:`paratag.data.dataset.GraphDataset` with ``trim``) pays only for real
constituents. Every row of the epoch is still used exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["EpochBatchSampler"]


class EpochBatchSampler:
    """Yield ``(epoch, positions)`` batches of a dataset of ``n`` rows.

    Args:
        n: number of rows in the dataset.
        batch_size: global batch size (summed over DDP ranks).
        shuffle: shuffle every epoch (False: sequential, for validation).
        seed: run seed.
        drop_last: drop a final batch smaller than the batch size; by default a
            final training batch is dropped only when it is too small to split
            over ranks (fewer than 2 rows per rank).
        files: per-row file index for shard-aware shuffling (None: plain shuffle).
        window: number of files shuffled together (the LRU cache size).
        rank, world_size: DDP rank and world size.
        phases: curriculum phases ``[(first_epoch, positions), ...]`` sorted by epoch.
        lengths: constituents per row, for length bucketing (None: off).
        bucket: batches per length bucket (0: off).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool | None = None,
        files: np.ndarray | None = None,
        window: int = 8,
        rank: int = 0,
        world_size: int = 1,
        phases: Sequence[tuple[int, np.ndarray]] | None = None,
        lengths: np.ndarray | None = None,
        bucket: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.files = None if files is None else np.asarray(files, dtype=np.int64)
        self.window = max(1, int(window))
        self.rank, self.world_size = int(rank), int(world_size)
        self.phases = (
            sorted(((int(e), np.asarray(p, np.int64)) for e, p in phases), key=lambda t: t[0])
            if phases
            else []
        )
        self.lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)
        if self.lengths is not None and len(self.lengths) != self.n:
            raise ValueError(f"lengths has {len(self.lengths)} rows for a dataset of {self.n}")
        self.bucket = max(0, int(bucket))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def active(self, epoch: int | None = None) -> np.ndarray:
        """Positions the sampler draws from at ``epoch`` (curriculum phase)."""
        epoch = self.epoch if epoch is None else epoch
        active = np.arange(self.n, dtype=np.int64)
        for first, positions in self.phases:
            if epoch >= first:
                active = positions
        return active

    def order(self, epoch: int | None = None) -> np.ndarray:
        """All positions of ``epoch`` in the order they are batched."""
        epoch = self.epoch if epoch is None else epoch
        pos = self.active(epoch)
        if not self.shuffle:
            return pos
        rng = np.random.default_rng([self.seed & 0x7FFFFFFF, epoch & 0x7FFFFFFF, 7])
        if self.files is None:
            return pos[rng.permutation(len(pos))]
        files = self.files[pos]
        uniq = np.unique(files)
        uniq = uniq[rng.permutation(len(uniq))]
        out = []
        for start in range(0, len(uniq), self.window):
            sel = pos[np.isin(files, uniq[start : start + self.window])]
            out.append(sel[rng.permutation(len(sel))])
        return np.concatenate(out) if out else pos

    def _batches(self) -> list[np.ndarray]:
        order = self.order()
        bucketed = self.shuffle and self.bucket and self.lengths is not None
        batches = self._sorted_buckets(order) if bucketed else self._cut(order)
        if batches and len(batches[-1]) < self.batch_size:
            too_small = len(batches[-1]) < 2 * self.world_size and self.shuffle
            if self.drop_last or (self.drop_last is None and too_small):
                batches.pop()
        if bucketed:
            rng = np.random.default_rng([self.seed & 0x7FFFFFFF, self.epoch & 0x7FFFFFFF, 11])
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _cut(self, order: np.ndarray) -> list[np.ndarray]:
        bs = self.batch_size
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    def _sorted_buckets(self, order: np.ndarray) -> list[np.ndarray]:
        """Batches of similar length: each bucket of the order sorted by length, then cut."""
        assert self.lengths is not None
        span = self.batch_size * self.bucket
        batches = []
        for start in range(0, len(order), span):
            chunk = order[start : start + span]
            batches += self._cut(chunk[np.argsort(self.lengths[chunk], kind="stable")])
        return batches

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for batch in self._batches():
            part = np.array_split(batch, self.world_size)[self.rank]
            yield self.epoch, part

    def __len__(self) -> int:
        return len(self._batches())
