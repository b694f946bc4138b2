"""Padded point clouds: paratag vs the coffea ml_tools test pattern, same jets, same run.

The peer is the pattern coffea's own ml_tools tests use to prepare ParticleNet
inputs: per feature ``ak.fill_none(ak.pad_none(x, P, clip=True), 0)``, then
``ak.concatenate`` of ``[:, np.newaxis, :]`` slices and ``ak.to_numpy``.
Both start from the same jagged, pt-sorted per-jet arrays (2 coordinates, 5
features) built from the real PFNano fixture replicated to >= 100k jets; both
outputs are checked equal. A second line times paratag's full NanoEvents →
padded path (link-table grouping, feature expressions, preprocessing, sort,
pad) on the same replicated events.

Run: ``python benchmarks/bench_graphs.py [--jets 100000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from paratag.graphs import pad_cloud
from paratag.inputs import build_inputs

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "pfnano.root"
P = 100


def load_events(n_jets: int) -> ak.Array:
    """The fixture's jet-preset branches as an awkward record array, replicated."""
    tree = uproot.open(FIXTURE)["Events"]
    colls = {
        "FatJet": ["pt", "eta", "phi", "mass", "msoftdrop"],
        "PFCands": [
            "pt",
            "eta",
            "phi",
            "mass",
            "charge",
            "pdgId",
            "d0",
            "d0Err",
            "dz",
            "dzErr",
            "puppiWeight",
        ],
        "FatJetPFCands": ["jetIdx", "pFCandsIdx"],
        "FatJetSVs": [
            "jetIdx",
            "pt",
            "mass",
            "ntracks",
            "dxy",
            "dxysig",
            "d3d",
            "d3dsig",
            "costhetasvpv",
            "ptrel",
            "deltaR",
        ],
    }
    fields = {}
    for coll, names in colls.items():
        arrays = tree.arrays([f"{coll}_{n}" for n in names], library="ak")
        fields[coll] = ak.zip({n: arrays[f"{coll}_{n}"] for n in names})
    for name in ("event", "genWeight"):
        fields[name] = tree[name].array(library="ak")
    events = ak.Array(fields)
    per_copy = int(ak.sum(ak.num(events.FatJet)))
    copies = -(-n_jets // per_copy)
    return ak.concatenate([events] * copies)


def jagged_inputs(events: ak.Array) -> dict[str, ak.Array]:
    """Per-jet jagged, pt-sorted constituent arrays (coffea-style preparation)."""
    inputs = build_inputs(events, "jet", selection="")
    pf = inputs.clouds["pf"]
    counts = pf.mask.sum(axis=(1, 2)).astype(np.int64)
    names = ["etarel", "phirel", "pt_log", "e_log", "logptrel", "deltaR", "charge"]
    rows = np.concatenate([pf.points, pf.features[:, :5]], axis=1)  # (N, 7, P), sorted by pt
    valid = pf.mask[:, 0] > 0
    return {n: ak.unflatten(rows[:, i][valid], counts) for i, n in enumerate(names)}


def coffea_pattern(jagged: dict[str, ak.Array]) -> np.ndarray:
    """The ml_tools test pattern: pad_none/fill_none per feature, concatenate slices."""
    cols = [
        ak.fill_none(ak.pad_none(x, P, clip=True), 0.0)[:, np.newaxis, :] for x in jagged.values()
    ]
    return ak.to_numpy(ak.concatenate(cols, axis=1)).astype(np.float32)


def paratag_pad(jagged: dict[str, ak.Array]) -> np.ndarray:
    """paratag: one flatten per feature and a single vectorised scatter into (N, 7, P)."""
    first = next(iter(jagged.values()))
    counts = np.asarray(ak.num(first, axis=1), dtype=np.int64)
    flat = [np.asarray(ak.to_numpy(ak.flatten(x)), dtype=np.float32) for x in jagged.values()]
    return pad_cloud(flat, [], counts, P).points


def best_of(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    events = load_events(args.jets)
    jagged = jagged_inputs(events)
    n = len(next(iter(jagged.values())))
    t_peer, ref = best_of(lambda: coffea_pattern(jagged), args.repeat)
    t_ours, ours = best_of(lambda: paratag_pad(jagged), args.repeat)
    assert ref.dtype == ours.dtype == np.float32, (ref.dtype, ours.dtype)
    np.testing.assert_array_equal(ours, ref)
    print(f"jets: {n}, P={P}, 2 coordinates + 5 features (outputs identical)")
    print(f"coffea ml_tools pattern : {n / t_peer:12,.0f} jets/s")
    print(f"paratag pad_cloud       : {n / t_ours:12,.0f} jets/s")
    print(f"ratio paratag / pattern : {t_peer / t_ours:12.1f}x   (target >= 20x)")
    t_full, _ = best_of(lambda: build_inputs(events, "jet", selection=""), args.repeat)
    print(
        f"paratag full NanoEvents -> padded (jet preset, 15 features + SV cloud): "
        f"{n / t_full:,.0f} jets/s"
    )


if __name__ == "__main__":
    main()
