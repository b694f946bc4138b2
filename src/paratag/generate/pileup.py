"""Minimum-bias pileup overlay: Poisson(μ) interactions added to every hard event.

A minimum-bias event costs ≈ 2 ms of Pythia time, so a fresh one for every pileup
vertex makes μ = 60 about ten times slower to generate than the hard scatters alone.
Like the pre-mixed pileup libraries of CMS production, a job can instead keep a pool
of ``pool_size`` minimum-bias events: the first ``pool_size`` draws are fresh events
(kept), every later draw reuses a pool event chosen at random, rotated by a random
azimuth and mirrored in z with probability 1/2 (symmetries of pp minimum bias), and
placed at a vertex z of its own like any pileup vertex. A job whose draws fit in the
pool is identical to one without a pool; ``MinBiasPool.n_reused`` counts the reuses.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from paratag.generate.pythia_io import TruthEvent

__all__ = ["MinBiasPool", "overlay"]

#: visible final state of one minimum-bias event: pid, charge, p4 (px, py, pz, E), vertex (mm)
Final = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class FinalsSource(Protocol):
    """What the pool draws fresh events from (:class:`~paratag.generate.pythia_io.PythiaSource`)."""

    def next_finals(self, n: int) -> list[Final]:
        """Visible final states of the next ``n`` events."""
        ...


def _rotate(final: Final, phi: float, mirror: bool) -> Final:
    """``final`` rotated by ``phi`` about the beam axis, then mirrored in z if ``mirror``."""
    pid, charge, p4, vtx = final
    c, s = np.cos(phi), np.sin(phi)
    p4, vtx = p4.copy(), vtx.copy()
    for arr in (p4, vtx):
        x, y = arr[:, 0].copy(), arr[:, 1]
        arr[:, 0] = c * x - s * y
        arr[:, 1] = s * x + c * y
        if mirror:
            arr[:, 2] *= -1.0
    return pid, charge, p4, vtx


class MinBiasPool:
    """The minimum-bias events of one job: fresh until ``size`` are held, then reused.

    Args:
        source: the minimum-bias generator.
        size: events kept for reuse; 0 draws a fresh event for every pileup vertex.
        rng: draws the reused events and their rotations (a stream of its own, so the
            fresh events and everything else in the job do not depend on ``size``).
    """

    def __init__(self, source: FinalsSource, size: int, rng: np.random.Generator) -> None:
        self.source, self.size, self.rng = source, size, rng
        self.events: list[Final] = []
        self.n_fresh = 0
        self.n_reused = 0

    def take(self, n: int) -> list[Final]:
        """``n`` minimum-bias events for the overlay (fresh ones first)."""
        n_new = n if self.size <= 0 else min(n, self.size - len(self.events))
        fresh = self.source.next_finals(n_new) if n_new > 0 else []
        if self.size > 0:
            self.events.extend(fresh)
        picks = self.rng.integers(0, max(len(self.events), 1), n - n_new)
        phis = self.rng.uniform(0.0, 2.0 * np.pi, len(picks))
        mirrors = self.rng.random(len(picks)) < 0.5
        reused = [
            _rotate(self.events[i], phi, m) for i, phi, m in zip(picks, phis, mirrors, strict=True)
        ]
        self.n_fresh += len(fresh)
        self.n_reused += len(reused)
        return fresh + reused


def overlay(
    events: list[TruthEvent],
    pool: MinBiasPool,
    mu: np.ndarray,
    sigma_z: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Shift each hard event to a random z and add Poisson(mu[i]) minimum-bias events.

    Returns the true primary vertices (mm) and the pileup multiplicities.
    """
    draws = []
    for mu_i in mu:
        z0 = rng.normal(0.0, sigma_z)
        n_pu = int(rng.poisson(mu_i))
        draws.append((z0, n_pu, [rng.normal(0.0, sigma_z) for _ in range(n_pu)]))
    finals = iter(pool.take(sum(d[1] for d in draws)))
    pvs = np.zeros((len(events), 3))
    n_pus = np.zeros(len(events), np.int64)
    for i, (event, (z0, n_pu, zs)) in enumerate(zip(events, draws, strict=True)):
        shift = np.array([0.0, 0.0, z0])
        event.vtx = event.vtx + shift
        event.had_vtx = event.had_vtx + shift
        parts = [(event.pid, event.charge, event.p4, event.vtx, event.pu)]
        for k, z in enumerate(zs, start=1):
            pid, charge, p4, vtx = next(finals)
            vtx = vtx + np.array([0.0, 0.0, z])
            parts.append((pid, charge, p4, vtx, np.full(len(pid), k, np.int32)))
        if n_pu:
            n_extra = sum(len(p[0]) for p in parts[1:])
            event.pid, event.charge, event.p4, event.vtx, event.pu = (
                np.concatenate([p[j] for p in parts]) for j in range(5)
            )
            event.hf = np.concatenate([event.hf, np.full(n_extra, -1, np.int32)])
            event.lepflav = np.concatenate([event.lepflav, np.zeros(n_extra, np.uint8)])
        pvs[i], n_pus[i] = shift, n_pu
    return pvs, n_pus
