"""Pythia8 instances and the extraction of one event into NumPy arrays.

Only what the detector simulation needs crosses the Python/C++ boundary:
final-state particles (id, four-momentum, production vertex), the weakly
decaying b/c hadrons and taus behind displaced vertices (ghosts for jet
flavour, seeds of secondary vertices), the origin class of final e/mu
(``genPartFlav``) and the hard-process record (``GenPart``). Attribute access
uses ``map`` over unbound methods, the cheapest way through pybind11.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from paratag.errors import ConfigError, require

__all__ = ["PythiaSource", "TruthEvent", "heavy_flavour", "make_pythia"]

_NEUTRINOS = (12, 14, 16)
_BOSONS = (6, 23, 24, 25, 32, 34, 35, 36, 37)
_PARTONS = (1, 2, 3, 4, 5, 6, 7, 8, 21)
MIN_TAU0_MM = 1e-3  # excludes strong/EM decays (D*, pi0) from "weakly decaying"
STATUS_FLAGS_HARD = 1 | 128 | 256 | 4096 | 8192  # prompt, hard, fromHard, first, last copy


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


def make_pythia(settings: list[str]) -> Any:
    """Create and initialise a quiet Pythia instance, or raise ConfigError."""
    pythia8: Any = require("pythia8mc", "gen")
    pythia = pythia8.Pythia("", False)
    for line in settings:
        if not pythia.readString(line):
            raise ConfigError(f"Pythia rejected the setting {line!r}; check extra_settings")
    if not pythia.init():
        raise ConfigError(f"Pythia failed to initialise with settings {settings}")
    return pythia


class _ChargeTable:
    """Cached PDG id -> charge lookup."""

    def __init__(self, pythia: Any) -> None:
        self._pd = pythia.particleData
        self._cache: dict[int, float] = {}

    def __call__(self, pid: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(pid, return_inverse=True)
        vals = np.empty(len(uniq))
        for i, u in enumerate(uniq.tolist()):
            c = self._cache.get(u)
            if c is None:
                c = self._cache[u] = float(self._pd.charge(u))
            vals[i] = c
        return vals[inv]


def _finals(
    pythia: Any, particle_cls: Any
) -> tuple[list, list, np.ndarray, np.ndarray, np.ndarray]:
    parts = pythia.event.particles()
    fin = list(filter(particle_cls.isFinal, parts))
    n = len(fin)
    pid = np.fromiter(map(particle_cls.id, fin), np.int32, n)
    p4 = np.empty((n, 4))
    vtx = np.empty((n, 3))
    for j, f in enumerate((particle_cls.px, particle_cls.py, particle_cls.pz, particle_cls.e)):
        p4[:, j] = np.fromiter(map(f, fin), float, n)
    for j, f in enumerate((particle_cls.xProd, particle_cls.yProd, particle_cls.zProd)):
        vtx[:, j] = np.fromiter(map(f, fin), float, n)
    return parts, fin, pid, p4, vtx


def _weak_ancestor(parts: list, p: Any) -> tuple[int, Any]:
    """First ancestor of ``p`` with c*tau0 > 1 um (the weakly decaying particle behind it).

    Indices are tracked explicitly: ``Particle.index()`` is meaningless on the
    copies that ``Event.particles()`` returns.
    """
    i = p.mother1()
    for _ in range(12):
        m = parts[i]
        if i <= 2 or m.tau0() > MIN_TAU0_MM:
            return i, m
        i = m.mother1()
    return i, parts[i]


def _b_ancestor(parts: list, p: Any) -> tuple[int, Any] | None:
    i = p.mother1()
    for _ in range(12):
        m = parts[i]
        a = m.idAbs()
        if i <= 2 or a in _PARTONS:
            return None
        if heavy_flavour(a) == 5 and m.tau0() > MIN_TAU0_MM:
            return i, m
        i = m.mother1()
    return None


def _lepton_flavour(parts: list, p: Any) -> int:
    """NanoAOD genPartFlav: 1 prompt, 15 from prompt tau, 5/4/3 from b/c/light, 22 photon."""
    i = p.mother1()
    from_tau = False
    for _ in range(30):
        if i <= 2:
            return 0
        m = parts[i]
        a = m.idAbs()
        if a in _BOSONS:
            return 15 if from_tau else 1
        if a == 15:
            from_tau = True
        elif a == 22:
            return 22
        elif a > 100:
            return heavy_flavour(a) or 3
        i = m.mother1()
    return 0


def _gen_record(pythia: Any) -> dict[str, np.ndarray]:
    rows: list[tuple[float, ...]] = []
    index_map: dict[int, int] = {}
    for i, p in enumerate(pythia.process):
        st = p.status()
        if i < 3 or abs(st) == 21 or abs(st) == 12:
            continue
        index_map[i] = len(rows)
        rows.append((p.id(), abs(st), p.mother1(), p.px(), p.py(), p.pz(), p.m()))
    arr = np.array(rows, dtype=float).reshape(-1, 7)
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


class PythiaSource:
    """A generator of :class:`TruthEvent` objects from one or more Pythia instances.

    Several setting lists (the two charge assignments of the signal) alternate
    event by event, so each gets half the events.
    """

    def __init__(self, settings: list[list[str]]) -> None:
        self.pythias = [make_pythia(s) for s in settings]
        self._particle = require("pythia8mc", "gen").Particle  # type: ignore[attr-defined]
        self._charge = _ChargeTable(self.pythias[0])
        self._count = 0

    def next_raw(self) -> Any:
        """Advance the next instance (no extraction) and return it."""
        pythia = self.pythias[self._count % len(self.pythias)]
        self._count += 1
        for _ in range(100):
            if pythia.next():
                return pythia
        raise RuntimeError("Pythia failed to generate an event 100 times in a row")

    def sigma_pb(self) -> float:
        """Mean generated cross-section over the instances (pb)."""
        return float(np.mean([p.infoPython().sigmaGen() * 1e9 for p in self.pythias]))

    def next_finals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Next event's visible final state only: pid, charge, p4, vtx (for pileup)."""
        pythia = self.next_raw()
        _, _, pid, p4, vtx = _finals(pythia, self._particle)
        keep = ~np.isin(np.abs(pid), _NEUTRINOS)
        pid, p4, vtx = pid[keep], p4[keep], vtx[keep]
        return pid, self._charge(pid), p4, vtx

    def next(self) -> TruthEvent:
        """Generate the next event and extract it."""
        pythia = self.next_raw()
        parts, fin, pid, p4, vtx = _finals(pythia, self._particle)
        keep = ~np.isin(np.abs(pid), _NEUTRINOS)
        charge = self._charge(pid)
        n = len(pid)
        hf = np.full(n, -1, dtype=np.int32)
        lepflav = np.zeros(n, dtype=np.uint8)

        # displaced vertices of charged particles -> the weakly decaying hadron behind them
        disp = np.flatnonzero((charge != 0) & (np.einsum("ij,ij->i", vtx, vtx) > 1e-6) & keep)
        hadrons: dict[int, tuple] = {}
        if len(disp):
            uniq, first, inv = np.unique(vtx[disp], axis=0, return_index=True, return_inverse=True)
            for k in range(len(uniq)):
                i, m = _weak_ancestor(parts, fin[disp[first[k]]])
                a = m.idAbs()
                flav = 15 if a == 15 else heavy_flavour(a)
                if i <= 2 or not flav:
                    continue
                hf[disp[inv.reshape(-1) == k]] = self._add_hadron(hadrons, i, m)
                if flav == 4:
                    b = _b_ancestor(parts, m)
                    if b is not None:
                        self._add_hadron(hadrons, *b)
        for j in np.flatnonzero(np.isin(np.abs(pid), (11, 13))):
            lepflav[j] = _lepton_flavour(parts, fin[j])

        had = list(hadrons.values())
        return TruthEvent(
            pid=pid[keep],
            charge=charge[keep],
            p4=p4[keep],
            vtx=vtx[keep],
            hf=hf[keep],
            lepflav=lepflav[keep],
            pu=np.zeros(int(keep.sum()), dtype=np.int32),
            had_pid=np.array([h[1] for h in had], dtype=np.int32),
            had_p4=np.array([h[2] for h in had], dtype=float).reshape(-1, 4),
            had_vtx=np.array([h[3] for h in had], dtype=float).reshape(-1, 3),
            gen=_gen_record(pythia),
            weight=float(pythia.infoPython().weight()),
        )

    @staticmethod
    def _add_hadron(hadrons: dict[int, tuple], key: int, m: Any) -> int:
        if key not in hadrons:
            hadrons[key] = (
                len(hadrons),
                m.id(),
                (m.px(), m.py(), m.pz(), m.e()),
                (m.xDec(), m.yDec(), m.zDec()),
            )
        return int(hadrons[key][0])
