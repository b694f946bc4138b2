"""How much does a sample tell two signal mass points apart? A gradient-boosting check.

Trains scikit-learn's HistGradientBoostingClassifier on signal of point A against
signal of point B (event-preset shards, folds by event number as in training) on

* the raw per-object features (every slot of the padded event), and
* high-level masses: the opposite-sign dimuon nearest ``--ma``, its pT, its
  three-body masses with the three most b-like jets and with the leading other
  lepton, the jets' pT, the visible mass, the jet count and MET,

and prints the test-fold AUC of each. docs/validation.md uses it to show that two
points sharing mA differ only weakly (the mHc information a network can reach)::

    python examples/mass_information.py validation_output/shards \\
        HplusToWA_mHc130_mA85 HplusToWA_mHc100_mA85 --ma 85
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from paratag.presets import load_preset
from paratag.shards import read_manifest, read_shard


def load(shards: Path, name: str) -> dict[str, np.ndarray]:
    """Every row of dataset ``name``: features, points, mask and event number."""
    man = read_manifest(shards)
    match = [d for d in man["datasets"] if d["name"] == name]
    if not match:
        raise SystemExit(
            f"{shards}: no dataset {name!r}; have {[d['name'] for d in man['datasets']]}"
        )
    parts = [read_shard(shards / f["path"], man["shapes"]) for f in match[0]["files"]]
    keys = ("features", "points", "mask", "spec_event")
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def four_vectors(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Massless (E, px, py, pz), last axis."""
    return np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)


def mass(v: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(v[..., 0] ** 2 - (v[..., 1:] ** 2).sum(-1), 0.0))


def high_level(arrays: dict[str, np.ndarray], ma: float) -> np.ndarray:
    """The high-level masses of the module docstring, one row per event (-1: absent)."""
    cloud = load_preset("event").clouds[0]
    names = [f.name for f in cloud.features]

    def raw(name: str) -> np.ndarray:
        spec = cloud.features[names.index(name)]
        return arrays["features"][:, names.index(name)] / spec.norm_factor + spec.median

    real = arrays["mask"][:, 0] > 0
    pt = np.exp(raw("obj_pt_log")) * real
    p4 = four_vectors(pt, raw("obj_eta"), arrays["points"][:, 1])
    charge, btag, met = raw("obj_charge"), raw("obj_btag"), raw("obj_isMET") > 0.5
    muon, lepton = raw("obj_isMuon") > 0.5, (raw("obj_isMuon") + raw("obj_isElectron")) > 0.5
    jet = raw("obj_isJet") > 0.5
    out = np.full((len(pt), 12), -1.0)
    for i in range(len(pt)):
        mu = np.flatnonzero(muon[i] & real[i])
        pairs = [(a, b) for a in mu for b in mu if a < b and charge[i, a] * charge[i, b] < 0]
        if not pairs:
            continue
        a, b = min(pairs, key=lambda q: abs(mass(p4[i, q[0]] + p4[i, q[1]]) - ma))
        cand = p4[i, a] + p4[i, b]
        jets = sorted(np.flatnonzero(jet[i] & real[i]), key=lambda k: -btag[i, k])[:3]
        others = [k for k in np.flatnonzero(lepton[i] & real[i]) if k not in (a, b)]
        m_jets = [mass(cand + p4[i, k]) for k in jets] + [-1.0] * (3 - len(jets))
        pt_jets = [pt[i, k] for k in jets] + [-1.0] * (3 - len(jets))
        visible = p4[i][real[i] & ~met[i]].sum(0)
        out[i] = [
            mass(cand), np.hypot(cand[1], cand[2]), *m_jets,
            mass(cand + p4[i, others[0]]) if others else -1.0,
            *pt_jets, mass(visible), len(jets), pt[i][met[i]].sum(),
        ]  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("shards", type=Path)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--ma", type=float, required=True, help="mA of both points (GeV)")
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    data = [load(args.shards, n) for n in (args.a, args.b)]
    label = np.concatenate([np.full(len(d["features"]), 1 - i) for i, d in enumerate(data)])
    test = np.concatenate([d["spec_event"] for d in data]) % args.folds == 0
    inputs = {
        "raw object features": np.concatenate(
            [d["features"].reshape(len(d["features"]), -1) for d in data]
        ),
        "high-level masses": np.concatenate([high_level(d, args.ma) for d in data]),
    }
    for what, x in inputs.items():
        clf = HistGradientBoostingClassifier(max_iter=300, random_state=0).fit(
            x[~test], label[~test]
        )
        auc = roc_auc_score(label[test], clf.predict_proba(x[test])[:, 1])
        print(f"{args.a} vs {args.b}, {what}: test AUC {auc:.4f} ({test.sum()} events)")


if __name__ == "__main__":
    main()
