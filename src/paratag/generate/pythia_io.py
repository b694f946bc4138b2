"""Pythia8 instances and the extraction of one event into NumPy arrays.

Only what the detector simulation needs crosses the Python/C++ boundary:
final-state particles (id, four-momentum, production vertex), the weakly
decaying b/c hadrons and taus behind displaced vertices (ghosts for jet
flavour, seeds of secondary vertices), the origin class of final e/mu
(``genPartFlav``) and the hard-process record (``GenPart``). Events come in
batches from ``Pythia.nextBatch`` (one awkward array per batch, so the event
record crosses into NumPy without per-particle calls); the hard-process record,
which the batch lacks, is copied by a ``UserHooks`` callback after each
process-level step and matched to its event by the incoming partons.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any

import awkward as ak
import numpy as np

from paratag.errors import ConfigError, require

__all__ = ["PythiaSource", "TruthEvent", "heavy_flavour", "make_pythia"]

_NEUTRINOS = (12, 14, 16)
_BOSONS = (6, 23, 24, 25, 32, 34, 35, 36, 37)
_PARTONS = (1, 2, 3, 4, 5, 6, 7, 8, 21)
MIN_TAU0_MM = 1e-3  # excludes strong/EM decays (D*, pi0) from "weakly decaying"
STATUS_FLAGS_HARD = 1 | 128 | 256 | 4096 | 8192  # prompt, hard, fromHard, first, last copy


@lru_cache(maxsize=4096)
def heavy_flavour(pid_abs: int) -> int:
    """5 for b hadrons, 4 for c hadrons (quarkonia excluded), 0 otherwise."""
    if pid_abs < 100:
        return 0
    q_baryon = (pid_abs // 1000) % 10
    q1 = (pid_abs // 100) % 10
    q2 = (pid_abs // 10) % 10
    if q_baryon == 0 and q1 == q2:
        return 0  # quarkonium
    heavy = max(q_baryon, q1)
    return heavy if heavy in (4, 5) else 0


@dataclasses.dataclass
class TruthEvent:
    """Generator-level content of one (hard + pileup) event; vertices in mm.

    Attributes:
        pid: PDG id of visible final-state particles.
        charge: their electric charge.
        p4: (n, 4) px, py, pz, E in GeV.
        vtx: (n, 3) production vertex in mm.
        hf: index into ``hadrons`` of the displaced b/c/tau decay that produced the
            particle (charged particles only), -1 otherwise.
        lepflav: NanoAOD ``genPartFlav`` class for e/mu (1, 15, 5, 4, 3, 22, 0).
        pu: 0 for the hard interaction, k for the k-th pileup vertex.
        had_pid: ids of the weakly decaying b/c hadrons and taus.
        had_p4: their (m, 4) four-momenta.
        had_vtx: their (m, 3) decay vertices in mm.
        gen: hard-process record columns for ``GenPart``.
        weight: generator weight.
    """

    pid: np.ndarray
    charge: np.ndarray
    p4: np.ndarray
    vtx: np.ndarray
    hf: np.ndarray
    lepflav: np.ndarray
    pu: np.ndarray
    had_pid: np.ndarray
    had_p4: np.ndarray
    had_vtx: np.ndarray
    gen: dict[str, np.ndarray]
    weight: float


def make_pythia(settings: list[str], hooks: Any = None) -> Any:
    """Create and initialise a quiet Pythia instance (with optional UserHooks), or raise ConfigError."""
    pythia8: Any = require("pythia8mc", "gen")
    pythia = pythia8.Pythia("", False)
    for line in settings:
        if not pythia.readString(line):
            raise ConfigError(f"Pythia rejected the setting {line!r}; check extra_settings")
    if hooks is not None:
        pythia.setUserHooksPtr(hooks)
    if not pythia.init():
        raise ConfigError(f"Pythia failed to initialise with settings {settings}")
    return pythia


class _PdgTable:
    """Cached PDG id -> (charge, tau0) lookups from Pythia's particle data."""

    def __init__(self, pythia: Any) -> None:
        self._pd = pythia.particleData
        self._charge: dict[int, float] = {}
        self.tau0: dict[int, float] = {}

    def charge(self, pid: np.ndarray) -> np.ndarray:
        """Electric charge of each id."""
        uniq, inv = np.unique(pid, return_inverse=True)
        vals = np.empty(len(uniq))
        for i, u in enumerate(uniq.tolist()):
            c = self._charge.get(u)
            if c is None:
                c = self._charge[u] = float(self._pd.charge(u))
            vals[i] = c
        return vals[inv.reshape(-1)]

    def fill_tau0(self, pid_abs: np.ndarray) -> None:
        """Make sure ``tau0`` holds every id of ``pid_abs``."""
        for u in np.unique(pid_abs).tolist():
            if u not in self.tau0:
                self.tau0[u] = float(self._pd.tau0(u))


def _process_hook_class() -> Any:
    """A UserHooks subclass recording the hard-process (``GenPart``) rows of every attempt."""
    pythia8: Any = require("pythia8mc", "gen")

    class ProcessRecorder(pythia8.UserHooks):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.records: list[tuple[tuple[float, float], list[tuple[Any, ...]]]] = []

        def canVetoProcessLevel(self) -> bool:  # noqa: N802 (Pythia's name)
            return True

        def doVetoProcessLevel(self, process: Any) -> bool:  # noqa: N802
            rows = []
            parts = process.particles()
            for i, p in enumerate(parts):
                st = p.status()
                if i < 3 or abs(st) == 21 or abs(st) == 12:
                    continue
                rows.append((i, p.id(), abs(st), p.mother1(), p.px(), p.py(), p.pz(), p.m()))
            key = (float(parts[3].pz()), float(parts[4].pz())) if len(parts) > 4 else (0.0, 0.0)
            self.records.append((key, rows))
            return False

    return ProcessRecorder


def _gen_record(rows: list[tuple[float, ...]]) -> dict[str, np.ndarray]:
    index_map = {int(r[0]): k for k, r in enumerate(rows)}
    arr = np.array([r[1:] for r in rows], dtype=float).reshape(-1, 7)
    pt = np.hypot(arr[:, 3], arr[:, 4])
    return {
        "pdgId": arr[:, 0].astype(np.int32),
        "status": arr[:, 1].astype(np.int32),
        "genPartIdxMother": np.array(
            [index_map.get(int(m), -1) for m in arr[:, 2]], dtype=np.int32
        ),
        "pt": pt,
        "eta": np.arcsinh(np.divide(arr[:, 5], pt, out=np.zeros_like(pt), where=pt > 0)),
        "phi": np.arctan2(arr[:, 4], arr[:, 3]),
        "mass": arr[:, 6],
        "statusFlags": np.full(len(arr), STATUS_FLAGS_HARD, dtype=np.int32),
    }


@dataclasses.dataclass
class _Batch:
    """Flat event records of a batch of events (all particles, not only final ones)."""

    offsets: np.ndarray
    pid: np.ndarray
    status: np.ndarray
    mother1: np.ndarray
    p4: np.ndarray  # (n, 4)
    m: np.ndarray
    tau: np.ndarray
    vprod: np.ndarray  # (n, 3)
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1


def _to_batch(arr: Any) -> _Batch:
    """Flat NumPy views of a ``nextBatch`` array, read from its layout (no copies, no ak calls)."""
    prt = arr.layout.content("prt")
    raw_off = np.asarray(prt.offsets.data, dtype=np.int64)
    lo, hi = int(raw_off[0]), int(raw_off[-1])
    rec = prt.content

    def col(name: str, parent: Any = rec) -> np.ndarray:
        return np.asarray(parent.content(name).data)[lo:hi]

    mom = rec.content("p")
    p4 = np.stack([col(k, mom) for k in ("px", "py", "pz", "e")], 1)
    vp = rec.content("vProd")  # option type: None where the particle has no vertex
    if not isinstance(vp, ak.contents.IndexedOptionArray):
        vp = vp.to_IndexedOptionArray64()
    index = np.asarray(vp.index.data)[lo:hi]
    has = index >= 0
    vprod = np.zeros((hi - lo, 3))
    for j, k in enumerate(("px", "py", "pz")):
        vprod[has, j] = np.asarray(vp.content.content(k).data)[index[has]]
    w = arr.layout.content("info").content("weights")
    w_off = np.asarray(w.offsets.data, dtype=np.int64)
    w_val = np.asarray(w.content.data, dtype=float)
    has_w = w_off[1:] > w_off[:-1]
    weight = np.ones(len(w_off) - 1)
    weight[has_w] = w_val[w_off[:-1][has_w]]
    return _Batch(
        offsets=raw_off - lo,
        pid=col("id").astype(np.int32, copy=False),
        status=col("status").astype(np.int32, copy=False),
        mother1=col("mother1").astype(np.int64),
        p4=p4,
        m=col("m").astype(float, copy=False),
        tau=col("tau").astype(float, copy=False),
        vprod=vprod,
        weight=weight,
    )


def _heavy_flavour_np(a: np.ndarray) -> np.ndarray:
    """Vectorised :func:`heavy_flavour` of absolute PDG ids."""
    q_baryon, q1, q2 = (a // 1000) % 10, (a // 100) % 10, (a // 10) % 10
    heavy = np.maximum(q_baryon, q1)
    flav = np.where((heavy == 4) | (heavy == 5), heavy, 0)
    return np.where((a < 100) | ((q_baryon == 0) & (q1 == q2)), 0, flav)


class _Walker:
    """Vectorised walks up the ``mother1`` chain of a batch (local indices per event)."""

    def __init__(self, b: _Batch, pdg: _PdgTable) -> None:
        self.off = b.offsets
        self.mother1 = b.mother1
        self.pid_abs = np.abs(b.pid)
        self.pdg = pdg

    def tau0(self, a: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(a, return_inverse=True)
        self.pdg.fill_tau0(uniq)
        return np.array([self.pdg.tau0[u] for u in uniq.tolist()], dtype=float)[inv.reshape(-1)]

    def weak_ancestor(self, ev: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Local index of the first ancestor with c*tau0 > 1 um (the weakly decaying one)."""
        i = self.mother1[self.off[ev] + j]
        todo = np.arange(len(i))
        for _ in range(12):
            g = self.off[ev[todo]] + i[todo]
            stop = (i[todo] <= 2) | (self.tau0(self.pid_abs[g]) > MIN_TAU0_MM)
            move = todo[~stop]
            i[move] = self.mother1[g[~stop]]
            todo = move
            if not len(todo):
                break
        return i

    def b_ancestor(self, ev: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Local index of the weakly decaying b hadron above ``j`` (-1: none)."""
        i = self.mother1[self.off[ev] + j]
        res = np.full(len(i), -1)
        todo = np.arange(len(i))
        for _ in range(12):
            g = self.off[ev[todo]] + i[todo]
            a = self.pid_abs[g]
            none = (i[todo] <= 2) | np.isin(a, _PARTONS)
            found = ~none & (_heavy_flavour_np(a) == 5) & (self.tau0(a) > MIN_TAU0_MM)
            res[todo[found]] = i[todo[found]]
            move = ~none & ~found
            i[todo[move]] = self.mother1[g[move]]
            todo = todo[move]
            if not len(todo):
                break
        return res

    def lepton_flavour(self, ev: np.ndarray, j: np.ndarray) -> np.ndarray:
        """NanoAOD genPartFlav: 1 prompt, 15 from prompt tau, 5/4/3 from b/c/light, 22 photon."""
        i = self.mother1[self.off[ev] + j]
        res = np.zeros(len(i), dtype=np.uint8)
        from_tau = np.zeros(len(i), dtype=bool)
        todo = np.arange(len(i))
        for _ in range(30):
            it = i[todo]
            done = it <= 2  # result 0
            a = self.pid_abs[self.off[ev[todo]] + np.maximum(it, 0)]
            boson = ~done & np.isin(a, _BOSONS)
            res[todo[boson]] = np.where(from_tau[todo[boson]], 15, 1)
            done |= boson
            from_tau[todo[~done & (a == 15)]] = True
            photon = ~done & (a == 22)
            res[todo[photon]] = 22
            done |= photon
            had = ~done & (a != 15) & (a > 100)
            hf = _heavy_flavour_np(a[had])
            res[todo[had]] = np.where(hf > 0, hf, 3)
            done |= had
            todo = todo[~done]
            i[todo] = self.mother1[self.off[ev[todo]] + i[todo]]
            if not len(todo):
                break
        return res


def _number_hadrons(
    b: _Batch, ev_all: np.ndarray, g_ev: np.ndarray, seq_had: np.ndarray, seq_ok: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hadrons numbered by first appearance in ``seq_had``: global index, offsets, numbers."""
    seq_ev = np.repeat(g_ev, 2).reshape(-1, 2)
    s_glob = (b.offsets[seq_ev] + seq_had)[seq_ok]
    uniq, first_pos, inv = np.unique(s_glob, return_index=True, return_inverse=True)
    by_first = np.argsort(first_pos, kind="stable")
    had_g = uniq[by_first]  # global index of each hadron, in numbering order
    rank_sorted = np.empty(len(uniq), dtype=np.int64)
    rank_sorted[by_first] = np.arange(len(uniq))
    had_ev = ev_all[had_g]
    had_counts = np.bincount(had_ev, minlength=len(b))
    had_off = np.concatenate([[0], np.cumsum(had_counts)])
    had_idx = rank_sorted - had_off[ev_all[uniq]]  # per-event number of each uniq entry
    seq_idx = np.full(seq_had.shape, -1, dtype=np.int64)
    seq_idx[seq_ok] = had_idx[inv.reshape(-1)]
    return had_g, had_off, seq_idx


def _displaced_hadrons(
    b: _Batch, walk: _Walker, ev_all: np.ndarray, fin: np.ndarray, disp: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hadrons behind displaced vertices: ``hf`` per final particle, global indices, offsets."""
    # vertices are grouped per event in (x, y, z) order, as np.unique(axis=0) orders them
    dv, de = b.vprod[fin[disp]], ev_all[fin[disp]]
    order = np.lexsort((dv[:, 2], dv[:, 1], dv[:, 0], de))
    sv, se = dv[order], de[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (se[1:] != se[:-1]) | np.any(sv[1:] != sv[:-1], axis=1)
    group = np.cumsum(new) - 1
    first = fin[disp[order[new]]]  # lowest index of each group (lexsort is stable)
    g_ev = ev_all[first]
    anc = walk.weak_ancestor(g_ev, first - b.offsets[g_ev])
    a = walk.pid_abs[b.offsets[g_ev] + anc]
    flav = np.where(a == 15, 15, _heavy_flavour_np(a))
    valid = (anc > 2) & (flav != 0)
    b_anc = np.full(len(anc), -1)
    is_c = valid & (flav == 4)
    b_anc[is_c] = walk.b_ancestor(g_ev[is_c], anc[is_c])
    # hadron numbering per event: order of first appearance in (ancestor, its b) per group
    seq_had, seq_ok = np.stack([anc, b_anc], 1), np.stack([valid, b_anc >= 0], 1)
    had_g, had_off, seq_idx = _number_hadrons(b, ev_all, g_ev, seq_had, seq_ok)
    hf = np.full(len(fin), -1, dtype=np.int32)
    hf[disp[order]] = np.where(valid, seq_idx[:, 0], -1)[group]
    return hf, had_g, had_off


class PythiaSource:
    """A generator of :class:`TruthEvent` objects from one or more Pythia instances.

    Several setting lists (the two charge assignments of the signal) alternate
    event by event, so each gets half the events. Events are generated in
    batches of exactly the requested size, so the random streams (and
    ``sigmaGen``) are the same as for an event-by-event ``next()`` loop.
    """

    def __init__(self, settings: list[list[str]], gen_record: bool = True) -> None:
        hook_cls = _process_hook_class() if gen_record else None
        self.hooks = [hook_cls() if hook_cls else None for _ in settings]
        self.pythias = [make_pythia(s, h) for s, h in zip(settings, self.hooks, strict=True)]
        self._pdg = _PdgTable(self.pythias[0])
        self._count = 0

    def sigma_pb(self) -> float:
        """Mean generated cross-section over the instances (pb)."""
        return float(np.mean([p.infoPython().sigmaGen() * 1e9 for p in self.pythias]))

    def _batch(self, k: int, n: int) -> _Batch:
        """Exactly ``n`` successful events of instance ``k`` (failed ones are skipped)."""
        pythia = self.pythias[k]
        parts = []
        got = failures = 0
        while got < n:
            arr = pythia.nextBatch(n - got, "skip")
            if len(arr) == 0:
                failures += 1
                if failures >= 100:
                    raise RuntimeError("Pythia failed to generate an event 100 times in a row")
                continue
            failures = 0
            got += len(arr)
            parts.append(arr)
        return _to_batch(parts[0] if len(parts) == 1 else ak.concatenate(parts))

    def _split(self, n: int) -> list[list[int]]:
        """Positions (0..n-1) of the next ``n`` events taken by each instance."""
        k = len(self.pythias)
        slots = [[i for i in range(n) if (self._count + i) % k == j] for j in range(k)]
        self._count += n
        return slots

    def next_finals(self, n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Visible final states (pid, charge, p4, vtx) of the next ``n`` events (for pileup)."""
        out: list[Any] = [None] * n
        for k, slots in enumerate(self._split(n)):
            if not slots:
                continue
            b = self._batch(k, len(slots))
            fin = b.status > 0
            vis = fin & ~np.isin(np.abs(b.pid), _NEUTRINOS)
            idx = np.flatnonzero(vis)
            cnt = np.add.reduceat(vis, b.offsets[:-1]) if len(b.pid) else np.zeros(len(b), int)
            pid, p4, vtx = b.pid[idx], b.p4[idx], b.vprod[idx]
            charge = self._pdg.charge(pid)
            off = np.concatenate([[0], np.cumsum(cnt)])
            for e, pos in enumerate(slots):
                s = slice(off[e], off[e + 1])
                out[pos] = (pid[s], charge[s], p4[s], vtx[s])
        return out

    def next_events(self, n: int) -> list[TruthEvent]:
        """Generate and extract the next ``n`` events."""
        out: list[Any] = [None] * n
        for k, slots in enumerate(self._split(n)):
            if not slots:
                continue
            hook = self.hooks[k]
            b = self._batch(k, len(slots))
            gen_rows: list[list] = [[] for _ in slots]
            if hook is not None:
                records, r = hook.records, 0
                for e in range(len(slots)):
                    lo, hi = int(b.offsets[e]), int(b.offsets[e + 1])
                    key = (float(b.p4[lo + 3, 2]), float(b.p4[lo + 4, 2])) if hi - lo > 4 else None
                    while r < len(records) and records[r][0] != key:
                        r += 1
                    if r < len(records):
                        gen_rows[e] = records[r][1]
                        r += 1
                hook.records.clear()
            for pos, event in zip(slots, self._extract(b, gen_rows), strict=True):
                out[pos] = event
        return out

    def next(self) -> TruthEvent:
        """Generate the next event and extract it."""
        return self.next_events(1)[0]

    def _extract(self, b: _Batch, gen_rows: list[list]) -> list[TruthEvent]:
        """TruthEvents of every event of a batch (vectorised over the batch)."""
        n_ev = len(b)
        ev_all = np.repeat(np.arange(n_ev), np.diff(b.offsets))
        fin = np.flatnonzero(b.status > 0)
        ev = ev_all[fin]
        local = fin - b.offsets[ev]
        pid = b.pid[fin]
        pid_abs = np.abs(pid)
        p4, vtx = b.p4[fin], b.vprod[fin]
        keep = ~np.isin(pid_abs, _NEUTRINOS)
        charge = self._pdg.charge(pid)
        walk = _Walker(b, self._pdg)
        disp = np.flatnonzero((charge != 0) & (np.einsum("ij,ij->i", vtx, vtx) > 1e-6) & keep)
        hf, had_g, had_off = _displaced_hadrons(b, walk, ev_all, fin, disp)

        hp4 = b.p4[had_g]
        hv = b.vprod[had_g]
        tau, m = b.tau[had_g], b.m[had_g]
        dec = (tau > 0.0) & (m > 0.0)
        had_vtx = np.where(
            dec[:, None], hv + (tau[:, None] * hp4[:, :3]) / np.where(dec, m, 1.0)[:, None], hv
        )
        had_pid = b.pid[had_g]

        lepflav = np.zeros(len(pid), dtype=np.uint8)
        leps = np.flatnonzero((pid_abs == 11) | (pid_abs == 13))
        lepflav[leps] = walk.lepton_flavour(ev[leps], local[leps])

        kept = np.flatnonzero(keep)
        counts = np.bincount(ev[kept], minlength=n_ev)
        off = np.concatenate([[0], np.cumsum(counts)]).tolist()
        k_pid, k_charge, k_p4, k_vtx = pid[kept], charge[kept], p4[kept], vtx[kept]
        k_hf, k_lepflav = hf[kept], lepflav[kept]
        hoff = had_off.tolist()
        events = []
        for e in range(n_ev):
            s, h = slice(off[e], off[e + 1]), slice(hoff[e], hoff[e + 1])
            events.append(
                TruthEvent(
                    pid=k_pid[s],
                    charge=k_charge[s],
                    p4=k_p4[s],
                    vtx=k_vtx[s],
                    hf=k_hf[s],
                    lepflav=k_lepflav[s],
                    pu=np.zeros(off[e + 1] - off[e], dtype=np.int32),
                    had_pid=had_pid[h],
                    had_p4=hp4[h],
                    had_vtx=had_vtx[h],
                    gen=_gen_record(gen_rows[e]),
                    weight=float(b.weight[e]),
                )
            )
        return events
