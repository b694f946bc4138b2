"""HIGGS-style tabular event features: the UCI HIGGS CSV and the same features from NanoAOD.

The UCI HIGGS benchmark (Baldi, Sadowski, Whiteson 2014) describes each event by 21
low-level features (lepton pT/eta/phi, missing-energy magnitude/phi, four jets with
pT/eta/phi/b-tag) and 7 high-level masses. :func:`load_higgs_csv` reads the public CSV;
:func:`higgs_features` computes the same 28 features from NanoAOD/PFNano events (real or
produced by ``paratag.generate`` with :data:`HIGGS_PROCESSES`), so the masked Transformer
autoencoder and its gradient-boosting peer run on either.

Feature names follow the convention ``<object>_<pt|eta|phi|btag>`` and ``m_<name>``;
:func:`encode_phi` replaces every ``<object>_phi`` by ``<object>_cosphi, <object>_sinphi``,
the names :class:`paratag.baselines.masked_autoencoder.MaskedTransformerAE` understands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from paratag.errors import ConfigError, InputFileError, require

__all__ = [
    "HIGGS_FEATURES",
    "HIGGS_HIGH_LEVEL",
    "HIGGS_LOW_LEVEL",
    "HIGGS_PROCESSES",
    "HiggsSelection",
    "bjet_pairing",
    "encode_phi",
    "generate_higgs_events",
    "higgs_features",
    "higgs_features_from_file",
    "load_higgs_csv",
    "split_higgs",
    "standardize",
]

HIGGS_LOW_LEVEL: tuple[str, ...] = (
    "lepton_pt",
    "lepton_eta",
    "lepton_phi",
    "met_pt",
    "met_phi",
    *(f"jet{i}_{v}" for i in range(1, 5) for v in ("pt", "eta", "phi", "btag")),
)
HIGGS_HIGH_LEVEL: tuple[str, ...] = ("m_jj", "m_jjj", "m_lv", "m_jlv", "m_bb", "m_wbb", "m_wwbb")
HIGGS_FEATURES: tuple[str, ...] = HIGGS_LOW_LEVEL + HIGGS_HIGH_LEVEL

#: Pythia 8 settings of the HIGGS benchmark processes (8 TeV, as in the paper): the signal
#: gg -> H0 -> W-+ H+-, H+- -> W+- h, h -> bb (m_H0 = 425, m_H+- = 325, m_h = 125 GeV) and
#: the dominant tt background. W decays are inclusive; :class:`HiggsSelection` keeps the
#: one-lepton events. For ``paratag.generate`` (one list of ``readString`` lines per process).
HIGGS_PROCESSES: dict[str, tuple[str, ...]] = {
    "higgs_signal": (
        "Beams:eCM = 8000.",
        "Higgs:useBSM = on",
        "HiggsBSM:gg2H2 = on",
        "35:m0 = 425.",
        "35:mWidth = 5.",
        "35:mMin = 410.",
        "35:mMax = 440.",
        "35:onMode = off",
        "35:addChannel = 1 0.5 100 37 -24",
        "35:addChannel = 1 0.5 100 -37 24",
        "37:m0 = 325.",
        "37:mWidth = 5.",
        "37:mMin = 310.",
        "37:mMax = 340.",
        "37:onMode = off",
        "37:onIfMatch = 24 25",
        "25:m0 = 125.",
        "25:onMode = off",
        "25:onIfMatch = 5 -5",
    ),
    "higgs_ttbar": (
        "Beams:eCM = 8000.",
        "Top:gg2ttbar = on",
        "Top:qqbar2ttbar = on",
    ),
}

_M_W = 80.4
_M_TOP = 172.5


# ---------------------------------------------------------------------------------------------
# UCI HIGGS CSV
# ---------------------------------------------------------------------------------------------


def load_higgs_csv(
    path: str | Path, n_features: int = 21, max_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read the UCI HIGGS CSV (no header; label then 28 features; ``.csv`` or ``.csv.gz``).

    Args:
        path: ``HIGGS.csv`` or ``HIGGS.csv.gz``.
        n_features: keep the first 21 (low-level, the plan's choice) or all 28 features.
        max_rows: read only the first rows (quick looks; the default split needs the whole file).

    Returns:
        ``(X, y, names)``: X (N, n_features) float32 in file units, y (N,) int64, and the
        feature names (:data:`HIGGS_FEATURES` prefix).
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise InputFileError(str(p), "file does not exist")
    if n_features not in (21, 28):
        raise ConfigError(f"load_higgs_csv: n_features must be 21 or 28, got {n_features}")
    try:
        df = pd.read_csv(p, header=None, nrows=max_rows, dtype=np.float64)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputFileError(str(p), f"not a numeric CSV ({exc})") from exc
    if df.shape[1] != 29:
        raise InputFileError(
            str(p),
            f"has {df.shape[1]} columns",
            "expected the UCI HIGGS layout: label followed by 28 features, no header",
        )
    data = df.to_numpy()
    y = data[:, 0]
    if not np.all(np.isin(y, (0.0, 1.0))):
        raise InputFileError(str(p), "first column must be the 0/1 label")
    X = data[:, 1 : 1 + n_features].astype(np.float32)
    if not np.all(np.isfinite(X)):
        raise InputFileError(str(p), "features contain NaN or inf")
    return X, y.astype(np.int64), HIGGS_FEATURES[:n_features]


def split_higgs(
    n_events: int, n_train: int | None = 1_100_000, n_test: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    """The plan's split: the first ``n_train`` events for (pre-)training, the last ``n_test`` to test.

    Args:
        n_events: number of events in the file.
        n_train: leading events for training; ``None`` means every event not in the test set.
        n_test: trailing events for testing.

    Returns:
        ``(train_index, test_index)``.
    """
    n_tr = n_events - n_test if n_train is None else n_train
    if n_test <= 0 or n_tr <= 0 or n_tr + n_test > n_events:
        raise ConfigError(
            f"split_higgs: cannot take {n_tr} training and {n_test} test events from "
            f"{n_events}; pass smaller n_train/n_test (the default needs the full 11M-event file)"
        )
    return np.arange(n_tr), np.arange(n_events - n_test, n_events)


def encode_phi(X: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Replace every ``<object>_phi`` column by ``<object>_cosphi`` and ``<object>_sinphi``."""
    cols, out_names = [], []
    for j, name in enumerate(names):
        if name.endswith("_phi"):
            obj = name[: -len("_phi")]
            cols += [np.cos(X[:, j]), np.sin(X[:, j])]
            out_names += [f"{obj}_cosphi", f"{obj}_sinphi"]
        else:
            cols.append(X[:, j])
            out_names.append(name)
    return np.stack(cols, axis=1).astype(np.float32), tuple(out_names)


def standardize(
    X: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``((X - mean) / std, mean, std)``; mean and std are fitted on X when not given."""
    if mean is None or std is None:
        mean = X.mean(axis=0)
        std = np.maximum(X.std(axis=0), 1e-6)
    return ((X - mean) / std).astype(np.float32), mean.astype(np.float32), std.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Features from NanoAOD events
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HiggsSelection:
    """The HIGGS benchmark selection: exactly one lepton and at least four jets.

    Attributes:
        lepton_pt: minimum electron/muon pT in GeV.
        lepton_eta: maximum lepton |eta|.
        jet_pt: minimum jet pT in GeV.
        jet_eta: maximum jet |eta|.
        min_jets: minimum number of jets (missing jets are zero-filled when below 4).
        lepton_jet_dr: jets closer than this Delta R to a selected lepton are removed.
        btag_field: the ``Jet`` b-tag discriminant used as ``jet<i>_btag``.
    """

    lepton_pt: float = 20.0
    lepton_eta: float = 2.5
    jet_pt: float = 20.0
    jet_eta: float = 2.5
    min_jets: int = 4
    lepton_jet_dr: float = 0.4
    btag_field: str = "btagDeepFlavB"

    def __post_init__(self) -> None:
        if not 1 <= self.min_jets <= 4:
            raise ConfigError(f"HiggsSelection.min_jets must be 1..4, got {self.min_jets}")


def _get(events: Any, collection: str, field: str, path: str) -> ak.Array:
    from paratag.baselines.images import nano_field

    return nano_field(events, collection, field, path, "Electron, Muon, Jet and MET")


def _p4(pt, eta, cphi, sphi, xp=np):
    """Massless four-momentum components (E, px, py, pz) from pT, eta, cos/sin phi."""
    return pt * xp.cosh(eta), pt * cphi, pt * sphi, pt * xp.sinh(eta)


def _mass(*vs):
    e = sum(v[0] for v in vs)
    px = sum(v[1] for v in vs)
    py = sum(v[2] for v in vs)
    pz = sum(v[3] for v in vs)
    return np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))


def _neutrino(lep, met_pt, met_phi):
    """Neutrino four-vector from the MET with pz from the W-mass constraint (smaller |pz|)."""
    e_l, px_l, py_l, pz_l = lep
    pt2 = px_l**2 + py_l**2
    mx, my = met_pt * np.cos(met_phi), met_pt * np.sin(met_phi)
    mu = 0.5 * _M_W**2 + px_l * mx + py_l * my
    a = mu * pz_l / pt2
    disc = a**2 - (e_l**2 * met_pt**2 - mu**2) / pt2
    root = np.sqrt(np.maximum(disc, 0.0))
    pz = np.where(np.abs(a - root) < np.abs(a + root), a - root, a + root)
    return np.sqrt(met_pt**2 + pz**2), mx, my, pz


def bjet_pairing(btag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (N, 2) of the two b-jet candidates (highest b-tag, ties -> leading) and the other two."""
    order = np.argsort(-btag, axis=1, kind="stable")
    return np.sort(order[:, :2], axis=1), np.sort(order[:, 2:], axis=1)


def _selected_objects(events: Any, sel: HiggsSelection, path: str) -> tuple[ak.Array, ak.Array]:
    """Selected leptons (electrons then muons) and lepton-cleaned jets sorted by decreasing pT."""
    leptons = []
    for coll in ("Electron", "Muon"):
        pt, eta = _get(events, coll, "pt", path), _get(events, coll, "eta", path)
        good = (pt > sel.lepton_pt) & (np.abs(eta) < sel.lepton_eta)
        leptons.append(
            ak.zip({"pt": pt[good], "eta": eta[good], "phi": _get(events, coll, "phi", path)[good]})
        )
    lep = ak.concatenate(leptons, axis=1)
    jpt, jeta = _get(events, "Jet", "pt", path), _get(events, "Jet", "eta", path)
    jgood = (jpt > sel.jet_pt) & (np.abs(jeta) < sel.jet_eta)
    jphi, jbtag = _get(events, "Jet", "phi", path), _get(events, "Jet", sel.btag_field, path)
    jets = ak.zip({"pt": jpt[jgood], "eta": jeta[jgood], "phi": jphi[jgood], "btag": jbtag[jgood]})
    pairs = ak.cartesian({"j": jets, "l": lep}, axis=1, nested=True)
    dphi = (pairs.j.phi - pairs.l.phi + np.pi) % (2.0 * np.pi) - np.pi
    dr2 = (pairs.j.eta - pairs.l.eta) ** 2 + dphi**2
    jets = jets[ak.all(dr2 > sel.lepton_jet_dr**2, axis=-1)]
    return lep, jets[ak.argsort(jets.pt, axis=1, ascending=False)]


def _low_level(
    lep: ak.Array, jets: ak.Array, met_pt: ak.Array, met_phi: ak.Array, passed: np.ndarray
) -> dict[str, np.ndarray]:
    """The 21 low-level features of the passing events (missing jets zero-filled), as float64."""
    lep1 = lep[passed][:, 0]
    j4 = ak.pad_none(jets[passed], 4, clip=True)
    cols = {
        "lepton_pt": lep1.pt,
        "lepton_eta": lep1.eta,
        "lepton_phi": lep1.phi,
        "met_pt": met_pt[passed],
        "met_phi": met_phi[passed],
    }
    for i in range(4):
        for v in ("pt", "eta", "phi", "btag"):
            cols[f"jet{i + 1}_{v}"] = ak.fill_none(j4[v][:, i], 0.0)
    return {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}


def _high_level(low: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 7 high-level masses from the low-level features (see :func:`higgs_features`)."""
    lv, *jv = (
        _p4(low[f"{o}_pt"], low[f"{o}_eta"], np.cos(low[f"{o}_phi"]), np.sin(low[f"{o}_phi"]))
        for o in ("lepton", "jet1", "jet2", "jet3", "jet4")
    )
    nu = _neutrino(lv, low["met_pt"], low["met_phi"])
    jstack = np.stack([np.stack(v, axis=-1) for v in jv], axis=1)  # (N, 4, 4)
    btag = np.stack([low[f"jet{i}_btag"] for i in range(1, 5)], axis=1)
    b_idx, w_idx = bjet_pairing(btag)
    rows = np.arange(len(btag))[:, None]
    bj, wj = jstack[rows, b_idx], jstack[rows, w_idx]  # (N, 2, 4)
    b1, b2 = tuple(bj[:, 0].T), tuple(bj[:, 1].T)
    w1, w2 = tuple(wj[:, 0].T), tuple(wj[:, 1].T)
    m_jjj_1, m_jjj_2 = _mass(w1, w2, b1), _mass(w1, w2, b2)
    first = np.abs(m_jjj_1 - _M_TOP) <= np.abs(m_jjj_2 - _M_TOP)
    return {
        "m_jj": _mass(w1, w2),
        "m_jjj": np.where(first, m_jjj_1, m_jjj_2),
        "m_lv": _mass(lv, nu),
        "m_jlv": np.where(first, _mass(lv, nu, b2), _mass(lv, nu, b1)),
        "m_bb": _mass(b1, b2),
        "m_wbb": _mass(lv, nu, b1, b2),
        "m_wwbb": _mass(lv, nu, w1, w2, b1, b2),
    }


def higgs_features(
    events, selection: HiggsSelection | None = None, path: str = "<events>"
) -> tuple[np.ndarray, np.ndarray]:
    """Compute the 21 + 7 HIGGS features for the events that pass the selection.

    Objects are massless, as in the masked autoencoder's consistency penalty. The two jets
    with the highest b-tag are the h -> bb candidates (``m_bb``), the other two the hadronic
    W (``m_jj``); the neutrino pz solves the W-mass constraint; ``m_jjj`` takes the b jet that
    brings the hadronic top closest to 172.5 GeV and ``m_jlv`` the other; ``m_wbb`` =
    m(l nu b b), ``m_wwbb`` = m(l nu j j b b).

    Args:
        events: NanoEvents or an awkward record array with ``Electron``/``Muon``
            (pt, eta, phi), ``Jet`` (pt, eta, phi, b-tag field) and ``MET`` (pt, phi).
        selection: lepton/jet cuts and b-tag field.
        path: file name used in error messages.

    Returns:
        ``(X, passed)``: X (n_selected, 28) float32 in GeV and radians with columns
        :data:`HIGGS_FEATURES`, and the boolean per-event selection mask.
    """
    sel = selection or HiggsSelection()
    lep, jets = _selected_objects(events, sel, path)
    met_pt, met_phi = _get(events, "MET", "pt", path), _get(events, "MET", "phi", path)
    passed = np.asarray((ak.num(lep) == 1) & (ak.num(jets) >= sel.min_jets))
    low = _low_level(lep, jets, met_pt, met_phi, passed)
    high = _high_level(low)
    X = np.stack([low[n] for n in HIGGS_LOW_LEVEL] + [high[n] for n in HIGGS_HIGH_LEVEL], axis=1)
    if not np.all(np.isfinite(X)):
        raise InputFileError(path, "HIGGS features contain NaN or inf; check the input branches")
    return X.astype(np.float32), passed


def higgs_features_from_file(
    path: str | Path, selection: HiggsSelection | None = None, tree: str = "Events"
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`higgs_features` for one NanoAOD/PFNano file, read directly with uproot."""
    from paratag.baselines.images import read_collections

    sel = selection or HiggsSelection()
    events = read_collections(
        path,
        {
            "Electron": ("pt", "eta", "phi"),
            "Muon": ("pt", "eta", "phi"),
            "Jet": ("pt", "eta", "phi", sel.btag_field),
            "MET": ("pt", "phi"),
        },
        tree,
    )
    return higgs_features(events, sel, path=str(path))


def _pythia_final_states(
    pythia8mc: Any, settings: Sequence[str], n: int, seed: int
) -> tuple[list[np.ndarray], list[list[tuple[float, float]]]]:
    """Pythia events: visible final states (px, py, pz, E, id) and B hadrons (eta, phi) of each."""
    py = pythia8mc.Pythia("", False)
    for s in (*settings, "Next:numberCount = 0", "Print:quiet = on", "Random:setSeed = on"):
        py.readString(s)
    py.readString(f"Random:seed = {seed}")
    py.init()
    parts: list[np.ndarray] = []
    bhad: list[list[tuple[float, float]]] = []
    while len(parts) < n:
        if not py.next():
            continue
        a = np.array([[p.px(), p.py(), p.pz(), p.e(), p.id()] for p in py.event if p.isFinal()])
        a = a[~np.isin(np.abs(a[:, 4]), (12, 14, 16))]
        b = [
            (p.eta(), p.phi())
            for p in py.event
            if p.pT() > 5 and (abs(p.id()) // 100 % 10 == 5 or abs(p.id()) // 1000 % 10 == 5)
        ]
        parts.append(a)
        bhad.append(b)
    return parts, bhad


def _isolated_leptons(
    ev: ak.Array, pt: ak.Array, eta: ak.Array, phi: ak.Array, visible: ak.Array
) -> tuple[ak.Array, dict[str, ak.Array]]:
    """Mask and ``Electron``/``Muon`` records of leptons with < 20% of their pT within dR 0.3."""
    idx = ak.local_index(pt)
    is_lep = (np.abs(ev.id) == 11) | (np.abs(ev.id) == 13)
    cand = ak.zip({"i": idx, "pt": pt, "eta": eta, "phi": phi, "id": ev.id})[
        is_lep & (pt > 10) & (np.abs(eta) < 2.5)
    ]
    pairs = ak.cartesian(
        {"l": cand, "o": ak.zip({"eta": eta, "phi": phi, "pt": pt})[visible]}, nested=True
    )
    dr2 = (pairs.l.eta - pairs.o.eta) ** 2 + (
        (pairs.l.phi - pairs.o.phi + np.pi) % (2 * np.pi) - np.pi
    ) ** 2
    iso = ak.sum(ak.where(dr2 < 0.09, pairs.o.pt, 0.0), axis=-1) - cand.pt
    iso_lep = cand[iso < 0.2 * cand.pt]
    lep = ak.any(idx[:, :, None] == iso_lep.i[:, None, :], axis=-1)
    leptons = {
        flav: ak.zip({k: iso_lep[k][np.abs(iso_lep.id) == pid] for k in ("pt", "eta", "phi")})
        for flav, pid in (("Electron", 11), ("Muon", 13))
    }
    return lep, leptons


def _stand_in_jets(
    fastjet: Any,
    inputs: ak.Array,
    bhad: list[list[tuple[float, float]]],
    rng: np.random.Generator,
) -> ak.Array:
    """Anti-kT R=0.4 jets (pT > 15 GeV), 10% pT smearing, b tag 70% near a B hadron else 1%."""
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, 0.4)
    sequence = fastjet.ClusterSequence(inputs, jetdef)
    jets = sequence.inclusive_jets(min_pt=15.0)
    jpt = np.hypot(jets.px, jets.py) * (
        1 + 0.1 * ak.unflatten(rng.standard_normal(int(ak.sum(ak.num(jets)))), ak.num(jets))
    )
    jeta = np.arcsinh(jets.pz / np.hypot(jets.px, jets.py))
    jphi = np.arctan2(jets.py, jets.px)
    bh = ak.Array([[{"eta": e, "phi": p} for e, p in b] for b in bhad])
    jb = ak.cartesian({"j": ak.zip({"eta": jeta, "phi": jphi}), "b": bh}, nested=True)
    bdr2 = (jb.j.eta - jb.b.eta) ** 2 + ((jb.j.phi - jb.b.phi + np.pi) % (2 * np.pi) - np.pi) ** 2
    is_b = ak.any(bdr2 < 0.16, axis=-1)
    u = ak.unflatten(rng.random(int(ak.sum(ak.num(jets)))), ak.num(jets))
    tagged = ak.where(is_b, u < 0.7, u < 0.01)
    btag = ak.where(tagged, 0.5 + 0.5 * u, 0.5 * u)
    return ak.zip({"pt": jpt, "eta": jeta, "phi": jphi, "btagDeepFlavB": btag})


def generate_higgs_events(process: str, n: int, seed: int = 0) -> ak.Array:
    """Generate a HIGGS benchmark process with Pythia 8 and a particle-level stand-in detector.

    The embedded default until ``paratag.generate`` runs :data:`HIGGS_PROCESSES` through its
    detector simulation: anti-kT R=0.4 FastJet jets (pT > 15 GeV) from visible particles with
    |eta| < 4.7 minus isolated leptons, 10% jet-pT smearing, isolated electrons and muons
    (pT > 10 GeV, relative isolation < 0.2 in Delta R 0.3), b-tag emulated from B hadrons
    within Delta R 0.4 (70% efficiency, 1% mistag) and MET from the visible momentum
    balance with 5 GeV smearing per component.

    Args:
        process: a key of :data:`HIGGS_PROCESSES`.
        n: number of events.
        seed: Pythia and smearing seed.

    Returns:
        Events with ``Electron``, ``Muon``, ``Jet`` (with ``btagDeepFlavB``) and ``MET``, the
        input :func:`higgs_features` takes.
    """
    if process not in HIGGS_PROCESSES:
        raise ConfigError(
            f"unknown HIGGS process {process!r}; choose one of {sorted(HIGGS_PROCESSES)}"
        )
    pythia8mc = require("pythia8mc", "gen")
    fastjet = require("fastjet", "gen")
    parts, bhad = _pythia_final_states(pythia8mc, HIGGS_PROCESSES[process], n, seed)
    rng = np.random.default_rng(seed)
    ev = ak.Array(
        [{"px": a[:, 0], "py": a[:, 1], "pz": a[:, 2], "E": a[:, 3], "id": a[:, 4]} for a in parts]
    )
    pt = np.hypot(ev.px, ev.py)
    eta = np.arcsinh(ev.pz / np.maximum(pt, 1e-9))
    phi = np.arctan2(ev.py, ev.px)
    visible = np.abs(eta) < 4.7
    lep, leptons = _isolated_leptons(ev, pt, eta, phi, visible)
    inputs = ak.zip({k: ev[k][visible & ~lep] for k in ("px", "py", "pz", "E")})
    jets = _stand_in_jets(fastjet, inputs, bhad, rng)
    vis_px = ak.sum(ev.px[visible], axis=1)
    vis_py = ak.sum(ev.py[visible], axis=1)
    met_x = -np.asarray(vis_px) + 5.0 * rng.standard_normal(n)
    met_y = -np.asarray(vis_py) + 5.0 * rng.standard_normal(n)
    return ak.zip(
        {
            **leptons,
            "Jet": jets,
            "MET": ak.zip({"pt": np.hypot(met_x, met_y), "phi": np.arctan2(met_y, met_x)}),
        },
        depth_limit=1,
    )
