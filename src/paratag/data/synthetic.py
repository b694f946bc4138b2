"""Synthetic-but-physical charged-Higgs shards for tests and quick demos.

Writes shards in exactly the layout ``paratag build`` produces with the
``event`` preset (objects: muons, electrons, jets, MET), but generated in
numpy in a second instead of with Pythia. The kinematics are simple but
physical: tops are produced with falling pT, decayed with exact two-body
decays and boosts, and objects get resolution smearing and acceptance cuts.

- signal ``HplusToWA_mHc<m>_mA<m>`` (label 0): tt -> b H+ b W-, H+ -> W* A,
  A -> mu mu, W* -> l nu, W- -> q q'. The dimuon mass peaks at mA and the
  W* lepton is softer the closer mA is to mHc, so features depend on (mHc, mA).
- ``WZ`` (label 1): Z -> mu mu (Breit-Wigner at 91.19 GeV), W -> l nu, light ISR jets.
- ``TTbar`` (label 1): dileptonic tt with a non-prompt muon from a b decay.
- ``FlatMass`` (label 1, on request): the signal topology at mHc = 130 GeV with mA flat in
  [70, 110] GeV — only a model that uses its mass hypothesis can reject it.

Background metadata carries ``xsec_pb`` (:data:`XSEC_PB`) like ``paratag generate``
output, for ``data.xsec_key``. Spectators: ``event`` (unique per dataset), ``met_pt`` and ``mll`` (the
opposite-sign dimuon mass closest to the Z, a mass to decorrelate from).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from paratag.conditions import point_name

__all__ = ["make_synthetic_shards", "simulate_events"]

M_TOP, M_W, M_Z, M_B, M_MU = 172.5, 80.38, 91.19, 4.8, 0.1057
#: Cross sections x BR (pb, 13.6 TeV, rounded) stored as ``xsec_pb`` in the background metadata.
XSEC_PB = {"WZ": 4.4, "TTbar": 88.3, "FlatMass": 1.0}


def _p4(pt, eta, phi, m):
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.stack([np.sqrt(px**2 + py**2 + pz**2 + m**2), px, py, pz], axis=-1)


def _two_body(parent: np.ndarray, m1, m2, rng: np.random.Generator):
    """Decay 4-vectors ``parent`` (N, 4) isotropically into masses m1, m2."""
    n = len(parent)
    e, p = parent[:, 0], parent[:, 1:]
    mass = np.sqrt(np.maximum(e**2 - (p**2).sum(1), 1e-9))
    m1 = np.broadcast_to(np.asarray(m1, float), (n,))
    m2 = np.broadcast_to(np.asarray(m2, float), (n,))
    q = np.sqrt(np.maximum((mass**2 - (m1 + m2) ** 2) * (mass**2 - (m1 - m2) ** 2), 0)) / (2 * mass)
    cos_t, phi = rng.uniform(-1, 1, n), rng.uniform(-np.pi, np.pi, n)
    sin_t = np.sqrt(1 - cos_t**2)
    d = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], 1) * q[:, None]
    out = []
    for mi, sign in ((m1, 1.0), (m2, -1.0)):
        k = np.concatenate([np.sqrt(q**2 + mi**2)[:, None], sign * d], 1)
        out.append(_boost(k, p / e[:, None]))
    return out


def _boost(k: np.ndarray, beta: np.ndarray) -> np.ndarray:
    b2 = np.clip((beta**2).sum(1), 0, 1 - 1e-12)
    gamma = 1 / np.sqrt(1 - b2)
    bp = (beta * k[:, 1:]).sum(1)
    g2 = np.where(b2 > 0, (gamma - 1) / np.maximum(b2, 1e-12), 0.0)
    e = gamma * (k[:, 0] + bp)
    p = k[:, 1:] + (g2 * bp + gamma * k[:, 0])[:, None] * beta
    return np.concatenate([e[:, None], p], 1)


def _kin(v: np.ndarray):
    pt = np.hypot(v[:, 1], v[:, 2])
    eta = np.arcsinh(v[:, 3] / np.maximum(pt, 1e-9))
    m = np.sqrt(np.maximum(v[:, 0] ** 2 - (v[:, 1:] ** 2).sum(1), 0))
    return pt, eta, np.arctan2(v[:, 2], v[:, 1]), m


def _resonance(n, pt_scale, mass, rng, width=0.0):
    m = (
        mass
        if width == 0
        else np.clip(mass + width / 2 * rng.standard_cauchy(n), mass - 15, mass + 15)
    )
    return _p4(
        rng.exponential(pt_scale, n) + 5,
        rng.normal(0, 1.2, n),
        rng.uniform(-np.pi, np.pi, n),
        np.broadcast_to(m, (n,)),
    )


#: One object slot: (4-vectors (n, 4), per-event charge, type 0 mu / 1 e / 2 jet, is b jet).
_Obj = tuple[np.ndarray, np.ndarray, int, bool]
_COLUMNS = ("pt", "eta", "phi", "mass", "charge", "type", "btag")


def _obj(v: np.ndarray, charge: float | np.ndarray, typ: int, is_b: bool = False) -> _Obj:
    """An object slot with the charge broadcast to every event."""
    return v, np.broadcast_to(np.asarray(charge, float), (len(v),)), typ, is_b


def _signal_objects(
    process: str, n: int, rng: np.random.Generator, masses: Sequence[float], sign: np.ndarray
) -> tuple[list[_Obj], np.ndarray]:
    """Signal (or FlatMass) objects and the neutrino: tt -> b H+ b W-, H+ -> W* A, A -> mu mu."""
    # FlatMass: the signal topology with mA drawn flat in [70, 110] GeV at mHc = 130: a
    # background that only the dimuon mass (i.e. the hypothesis) can reject
    m_hc, m_a = (
        (130.0, rng.uniform(70.0, 110.0, n))
        if process == "FlatMass"
        else (float(masses[0]), float(masses[1]))
    )
    t1, t2 = _resonance(n, 80, M_TOP, rng), _resonance(n, 80, M_TOP, rng)
    b1, hc = _two_body(t1, M_B, m_hc, rng)
    m_star = (m_hc - m_a) * rng.beta(3.0, 1.5, n)
    wstar, a = _two_body(hc, m_star, m_a, rng)
    mu1, mu2 = _two_body(a, M_MU, M_MU, rng)
    lep, nu = _two_body(wstar, M_MU, 0.0, rng)
    b2, w = _two_body(t2, M_B, M_W, rng)
    q1, q2 = _two_body(w, 0.0, 0.0, rng)
    objs = [_obj(mu1, sign, 0), _obj(mu2, -sign, 0), _obj(lep, sign, 1)]
    objs += [_obj(b1, 0, 2, True), _obj(b2, 0, 2, True), _obj(q1, 0, 2), _obj(q2, 0, 2)]
    return objs, nu


def _wz_objects(
    n: int, rng: np.random.Generator, sign: np.ndarray
) -> tuple[list[_Obj], np.ndarray]:
    """WZ objects and the neutrino: Z -> mu mu, W -> e nu and two light ISR jets."""
    z, w = _resonance(n, 40, M_Z, rng, width=2.5), _resonance(n, 40, M_W, rng)
    mu1, mu2 = _two_body(z, M_MU, M_MU, rng)
    lep, met = _two_body(w, 0.0005, 0.0, rng)
    objs = [_obj(mu1, sign, 0), _obj(mu2, -sign, 0), _obj(lep, sign, 1)]
    for _ in range(2):
        isr = _p4(
            rng.exponential(30, n) + 15,
            rng.normal(0, 1.5, n),
            rng.uniform(-np.pi, np.pi, n),
            np.full(n, 5.0),
        )
        objs.append(_obj(isr, 0, 2))
    return objs, met


def _ttbar_objects(
    n: int, rng: np.random.Generator, sign: np.ndarray
) -> tuple[list[_Obj], np.ndarray]:
    """Dileptonic tt objects (plus a non-prompt muon inside a b jet) and the neutrinos' sum."""
    t1, t2 = _resonance(n, 80, M_TOP, rng), _resonance(n, 80, M_TOP, rng)
    b1, w1 = _two_body(t1, M_B, M_W, rng)
    b2, w2 = _two_body(t2, M_B, M_W, rng)
    mu1, nu1 = _two_body(w1, M_MU, 0.0, rng)
    l2, nu2 = _two_body(w2, 0.0005, 0.0, rng)
    frac = rng.uniform(0.05, 0.3, n)[:, None]  # non-prompt muon inside b1
    objs = [_obj(mu1, sign, 0), _obj(l2, -sign, 1), _obj(b1 * frac, rng.choice([-1.0, 1.0], n), 0)]
    objs += [_obj(b1 * (1 - frac), 0, 2, True), _obj(b2, 0, 2, True)]
    return objs, nu1 + nu2


def _reco_object(obj: _Obj, rng: np.random.Generator) -> list[np.ndarray]:
    """Smeared :data:`_COLUMNS` of one object slot, NaN where it fails the pT/eta acceptance."""
    v, charge, typ, is_b = obj
    n = len(v)
    pt, eta, phi, m = _kin(v)
    res = 0.02 if typ < 2 else 0.1
    pt = pt * rng.normal(1.0, res, n)
    ok = (pt > (10 if typ < 2 else 20)) & (np.abs(eta) < 2.4)
    btag = rng.beta(5, 1.5, n) if is_b else (rng.beta(1, 6, n) if typ == 2 else np.zeros(n))
    mass = m if typ == 2 else np.full(n, M_MU)
    vals = (pt, eta, phi, mass, charge, np.full(n, float(typ)), btag)
    return [np.where(ok, val, np.nan) for val in vals]


def _reco_met(met: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """:data:`_COLUMNS` of the MET slot (type 3): pT smeared by 15%, eta/mass/charge/btag 0."""
    n = len(met)
    mpt, _, mphi, _ = _kin(met)
    zero = np.zeros(n)  # np.stack copies, so the slot may share it
    return [mpt * rng.normal(1, 0.15, n), zero, mphi, zero, zero, np.full(n, 3.0), zero]


def simulate_events(
    process: str, n: int, rng: np.random.Generator, masses: Sequence[float] = ()
) -> dict[str, np.ndarray]:
    """Objects of ``n`` events: arrays (n, S) of pt, eta, phi, mass, charge, type, btag."""
    sign = rng.choice([-1.0, 1.0], n)
    if process in ("signal", "FlatMass"):
        objs, met = _signal_objects(process, n, rng, masses, sign)
    elif process == "WZ":
        objs, met = _wz_objects(n, rng, sign)
    elif process == "TTbar":
        objs, met = _ttbar_objects(n, rng, sign)
    else:
        raise ValueError(
            f"unknown synthetic process {process!r}; use signal, WZ, TTbar or FlatMass"
        )
    slots = [_reco_object(o, rng) for o in objs] + [_reco_met(met, rng)]
    return {k: np.stack([s[j] for s in slots], 1) for j, k in enumerate(_COLUMNS)}


def _dimuon_mass(o: dict[str, np.ndarray]) -> np.ndarray:
    n, s = o["pt"].shape
    best = np.full(n, 0.0)
    mu = (o["type"] == 0) & np.isfinite(o["pt"])
    v = _p4(
        np.nan_to_num(o["pt"]).ravel(),
        np.nan_to_num(o["eta"]).ravel(),
        np.nan_to_num(o["phi"]).ravel(),
        np.full(n * s, M_MU),
    ).reshape(n, s, 4)
    for i in range(s):
        for j in range(i + 1, s):
            ok = mu[:, i] & mu[:, j] & (o["charge"][:, i] * o["charge"][:, j] < 0)
            tot = v[:, i] + v[:, j]
            m = np.sqrt(np.maximum(tot[:, 0] ** 2 - (tot[:, 1:] ** 2).sum(1), 0))
            better = ok & ((best == 0) | (np.abs(m - M_Z) < np.abs(best - M_Z)))
            best = np.where(better, m, best)
    return best


def _to_arrays(o: dict[str, np.ndarray], preset, first_event: int) -> dict[str, np.ndarray]:
    from paratag.features import apply_preprocessing

    cloud = preset.clouds[0]
    n, s = o["pt"].shape
    p = cloud.max_length
    valid = np.isfinite(o["pt"])
    key = np.where(valid, -np.nan_to_num(o["pt"]), np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :p]
    take = {k: np.take_along_axis(v, order, 1) for k, v in o.items()}
    mask = np.take_along_axis(valid, order, 1)
    raw = {
        "pt": take["pt"],
        "eta": take["eta"],
        "phi": take["phi"],
        "mass": take["mass"],
        "charge": take["charge"],
        "type": take["type"],
        "btag": take["btag"],
    }
    exprs = {
        "obj_pt_log": np.log(np.maximum(raw["pt"], 1e-3)),
        "obj_eta": raw["eta"],
        "obj_cosphi": np.cos(raw["phi"]),
        "obj_sinphi": np.sin(raw["phi"]),
        "obj_phi": raw["phi"],
        "obj_mass_log": np.log(raw["mass"] + 1),
        "obj_charge": raw["charge"],
        "obj_isMuon": raw["type"] == 0,
        "obj_isElectron": raw["type"] == 1,
        "obj_isJet": raw["type"] == 2,
        "obj_isMET": raw["type"] == 3,
        "obj_btag": raw["btag"],
    }

    def block(specs) -> np.ndarray:
        rows = np.stack([np.asarray(exprs[sp.name], np.float64).ravel() for sp in specs])
        x = apply_preprocessing(np.nan_to_num(rows), specs).reshape(len(specs), n, -1)
        out = np.zeros((n, len(specs), p), np.float32)
        out[:, :, : x.shape[2]] = x.transpose(1, 0, 2) * mask[:, None, :]
        return out

    m = np.zeros((n, 1, p), np.float32)
    m[:, 0, : mask.shape[1]] = mask
    return {
        "points": block(cloud.points),
        "features": block(cloud.features),
        "mask": m,
        "spec_event": np.arange(first_event, first_event + n, dtype=np.float64),
        "spec_met_pt": np.nan_to_num(o["pt"][:, -1]).astype(np.float64),
        "spec_mll": _dimuon_mass(o),
    }


def make_synthetic_shards(
    out_dir: str | Path,
    signal_points: Sequence[Sequence[float]],
    *,
    n_signal: int = 1000,
    n_background: int = 2000,
    seed: int = 0,
    max_rows: int = 50_000,
    labels: Mapping[str, int] | None = None,
    backgrounds: Sequence[str] = ("WZ", "TTbar"),
) -> Path:
    """Write signal shards for every ``(mHc, mA)`` and WZ + TTbar backgrounds; return the manifest.

    Args:
        out_dir: shard directory to write.
        signal_points: ``(mHc, mA)`` points, one signal dataset each.
        n_signal: events per signal point.
        n_background: events per background process (WZ and TTbar each).
        seed: random seed (the output is a deterministic function of the arguments).
        max_rows: rows per parquet file.
        labels: class label per background (default 1 for both; e.g. ``{"WZ": 2, "TTbar": 1}``
            for a multi-class layout like ``paratag generate``'s).
        backgrounds: background processes among ``WZ``, ``TTbar`` and ``FlatMass``.
    """
    from paratag.presets import load_preset
    from paratag.shards import write_shards

    preset = load_preset("event")
    rng = np.random.default_rng(seed)
    datasets = {}
    jobs = [
        (f"HplusToWA_{point_name(p, ('mHc', 'mA'))}", "signal", tuple(p), n_signal)
        for p in signal_points
    ]
    jobs += [(b, b, (), n_background) for b in backgrounds]
    for name, process, masses, n in jobs:
        arrays = _to_arrays(simulate_events(process, n, rng, masses), preset, first_event=1)
        label = 0 if process == "signal" else int((labels or {}).get(name, 1))
        arrays["label"] = np.full(n, label, np.int64)
        cond = masses if masses else (np.nan, np.nan)
        arrays["condition"] = np.tile(np.asarray(cond, np.float32), (n, 1))
        arrays["weight"] = np.ones(n, np.float32)
        meta = {"label": label, "group": "signal" if label == 0 else name}
        if name in XSEC_PB:
            meta["xsec_pb"] = XSEC_PB[name]
        if masses:
            meta.update(mHc=masses[0], mA=masses[1])
        datasets[name] = {"arrays": arrays, "cutflow": {"all": n}, "metadata": meta}
    return write_shards(
        datasets,
        out_dir,
        preset=preset.to_dict(),
        condition_names=("mHc", "mA"),
        max_rows=max_rows,
        extra={"generator": "paratag.data.synthetic"},
    )
