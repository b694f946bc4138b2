"""Tagger benchmark: paratag (onnxruntime) vs coffea.ml_tools.torch_wrapper (TorchScript).

All parts run in one process on the same events: the real PFNano fixture
(tests/data/pfnano.root, 24 AK8 jets) replicated to ``--jets`` jets, scored by
the full ParticleNet (k=16, EdgeConv 64/128/256, P=100) with random weights.

1. Tagger(model.onnx), ragged (default) and fully padded, vs coffea's
   ``torch_wrapper`` with coffea's ``prepare_awkward`` pattern running the peers a
   user would run instead: coffea's own TorchScript ParticleNet test model
   (../shared/data/peers, weaver architecture k=16, 64/128/256, 5 features) and,
   when weaver-core is installed (``make bench`` installs it), a trace of
   ``weaver.nn.model.ParticleNet`` at the jet preset's sizes -> jets/s and ratios.
2. K hypotheses of a shared-trunk ParametricParticleNet (options.shared_trunk,
   exported with hypotheses_axis=True): one call of model_hypotheses.onnx per
   micro-batch vs K separate calls, in wall time and in process CPU time (steadier
   on a loaded machine) -> ratio. With ``--unshared``, also the default
   ParametricParticleNet (condition inside every block), strategies "replicate" and
   "loop" vs K separate passes: ≈ 1x is expected there, since each hypothesis costs
   a full forward pass; it is off by default to keep the run within 10 minutes.
   Also the Tagger's achieved GFLOP/s (FLOPs counted by torch's FlopCounterMode at the
   micro-batches' real, trimmed lengths) next to the single-thread sgemm GFLOP/s
   measured in the same run.
3. coffea Runner on a Dask LocalCluster, 2 workers vs 1, ≥ 20,000 jets scored by the
   Interaction Network (jet preset, particles + SVs) -> ratio.
4. Peak RSS of a worker scoring a 1000-jet chunk: micro-batched (memory_mb=2000)
   vs one onnxruntime call for the whole chunk.
5. The Interaction Network in the Tagger (jet preset, CMS H->bb IN widths, ragged) vs
   CMS's published H->bb Interaction Network (../shared/data/cms, ONNX, what CMSSW
   runs: 60 tracks x 30 features, 5 SVs x 14 features, always padded) on the same
   number of jets, 1 thread each -> jets/s and ratio (target >= 3x); also the IN timed in
   onnxruntime alone on the Tagger's own micro-batches (the CMS number has no input
   building in it). The CMS model
   needs CMS-only track features, so it gets random inputs of its own shape: its cost
   does not depend on the values.

Usage: python benchmarks/bench_tagger.py [--jets 4000] [--peer-jets 2000] [--k 12]
       [--own-trace] [--unshared] [--skip 3 4]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import awkward as ak
import torch

ROOT = Path(__file__).resolve().parents[1]
PFNANO = ROOT / "tests" / "data" / "pfnano.root"
HYPS = [{"mHc": m, "mA": a} for m in (100, 130, 160, 190) for a in (60, 90, 120)]


def _events(n_jets: int):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = NanoEventsFactory.from_root(
            {str(PFNANO): "Events"},
            schemaclass=NanoAODSchema,
            mode="eager",
            metadata={"dataset": "bench"},
        ).events()
    reps = max(1, -(-n_jets // 24))
    return ak.concatenate([ev] * reps), reps * 24


def _models(tmp: Path):
    from paratag.config import ModelConfig
    from paratag.export import export_model
    from paratag.models import build_model

    torch.manual_seed(0)
    pn = build_model(
        ModelConfig(name="particlenet", options={"preset": "particlenet"}),
        point_dims=2,
        feature_dims=15,
    ).eval()
    ppn = build_model(
        ModelConfig(
            name="parametric_particlenet",
            condition_names=("mHc", "mA"),
            options={"preset": "particlenet"},
        ),
        point_dims=2,
        feature_dims=15,
    ).eval()
    shared = build_model(
        ModelConfig(
            name="parametric_particlenet",
            condition_names=("mHc", "mA"),
            options={"preset": "particlenet", "shared_trunk": True},
        ),
        point_dims=2,
        feature_dims=15,
    ).eval()
    export_model(pn, "jet", tmp / "pn")
    export_model(ppn, "jet", tmp / "ppn")
    export_model(shared, "jet", tmp / "shared", hypotheses_axis=True)
    inet = build_model(
        ModelConfig(name="interaction_net", options=IN_OPTIONS),
        point_dims=2,
        feature_dims=15,
        sv_dims=10,
    ).eval()
    export_model(inet, "jet", tmp / "in")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = (torch.zeros(2, 2, 100), torch.ones(2, 15, 100), torch.ones(2, 1, 100))
        scripted = torch.jit.trace(pn, ex)
    scripted.save(str(tmp / "pn.pt"))
    return pn, tmp / "pn" / "model.onnx", tmp / "ppn" / "model.onnx", tmp / "pn.pt", tmp / "shared"


def sgemm_gflops(n: int = 1024, repeat: int = 5) -> float:
    """Single-thread float32 matrix-multiply rate of this machine (best of ``repeat``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    t = _timeit(lambda: torch.mm(a, b), repeat)
    torch.set_num_threads(threads)
    return 2.0 * n**3 / t / 1e9


def tagger_flops(model: torch.nn.Module, events, tagger) -> float:
    """FLOPs the Tagger's ragged micro-batches cost: per batch, its size x FLOPs of one jet
    at the batch's trimmed length (torch FlopCounterMode; EdgeConv cost is linear in N)."""
    import numpy as np
    from torch.utils.flop_counter import FlopCounterMode

    from paratag.graphs import graph_lengths, trim_length
    from paratag.inputs import build_inputs

    mask = build_inputs(events, "jet").clouds["pf"].mask
    lengths = np.sort(graph_lengths(mask))
    rows, low = tagger.rows_per_call(), tagger.scorer.min_particles
    per_length: dict[int, int] = {}
    for start in range(0, len(lengths), rows):
        p = trim_length(lengths[start : start + rows], mask.shape[-1], low)
        per_length[p] = per_length.get(p, 0) + len(lengths[start : start + rows])
    total = 0.0
    for p, n in per_length.items():
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 2, p), torch.zeros(1, 15, p), torch.ones(1, 1, p))
        total += n * counter.get_total_flops()
    return total


COFFEA_PN = ROOT.parent / "shared" / "data" / "peers" / "coffea_pn_test_model.pt"
CMS_IN = ROOT.parent / "shared" / "data" / "cms" / "higgs_interactionnet_model.onnx"


def cms_in_feed(batch: int) -> dict:
    """Inputs of CMS's IN at its padded shapes (60 tracks x 30, 5 SVs x 14): random, since
    its cost does not depend on the values and its CMS-only track features are not in PFNano."""
    import numpy as np

    rng = np.random.default_rng(0)
    return {
        "input_cpf": rng.normal(size=(batch, 30, 60)).astype(np.float32),
        "input_sv": rng.normal(size=(batch, 14, 5)).astype(np.float32),
    }


#: the CMS H->bb IN widths (arXiv:1909.12285), as in train_validate_xbb.yaml
IN_OPTIONS = {
    "relational_hidden": [60, 30],
    "edge_dim": 20,
    "object_hidden": [60, 30],
    "object_dim": 24,
}


def _peer(torchscript: Path, n_features: int | None = None):
    """coffea.ml_tools.torch_wrapper around a TorchScript ParticleNet (coffea's own pattern).

    ``n_features`` feeds the first channels only (coffea's pn_test model takes 5).
    """
    from coffea.ml_tools.torch_wrapper import torch_wrapper

    from paratag.inputs import build_inputs

    class ParticleNetWrapper(torch_wrapper):
        """coffea's prepare_awkward pattern: awkward in, (args, kwargs) of arrays out."""

        def prepare_awkward(self, events):
            inputs = build_inputs(events, "jet")
            pf = inputs.clouds["pf"]
            fts = pf.features if n_features is None else pf.features[:, :n_features]
            return (ak.Array(pf.points), ak.Array(fts), ak.Array(pf.mask)), {}

    return ParticleNetWrapper(str(torchscript))


def _weaver_trace(tmp: Path) -> Path | None:
    """TorchScript trace of weaver-core's ParticleNet (k=16, 64/128/256) at the jet preset's sizes."""
    try:
        from weaver.nn.model.ParticleNet import ParticleNet
    except ImportError:
        return None
    net = ParticleNet(
        input_dims=15,
        num_classes=2,
        conv_params=[(16, (64, 64, 64)), (16, (128, 128, 128)), (16, (256, 256, 256))],
        fc_params=[(256, 0.1)],
        use_fusion=False,
    ).eval()
    ex = (torch.randn(2, 2, 100), torch.randn(2, 15, 100), torch.ones(2, 1, 100))
    path = tmp / "weaver_pn.pt"
    with torch.no_grad():
        torch.jit.trace(net, ex, check_trace=False).save(str(path))
    return path


def _timeit(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _timeit_both(fn, repeat: int = 1) -> tuple[float, float]:
    """Best wall time and best process CPU time of ``repeat`` runs."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu


def sweep(events, onnx_pn) -> None:
    from paratag.processors import Tagger

    n = int(ak.sum(ak.num(events.FatJet)))
    for rows in (8, 16, 32, 64, 128, 256):
        t = Tagger(onnx_pn, batch_size=rows)
        t(events[:10])
        print(f"[0] rows per call {rows:4d}: {n / _timeit(lambda t=t: t(events)):.1f} jets/s")


def part1(
    events, n_jets, peer_events, n_peer, pn, onnx_pn, ts_path, tmp: Path, own_trace: bool = False
) -> None:
    """paratag's Tagger (ragged and fully padded) vs coffea's torch_wrapper running the peers."""
    from paratag.processors import Tagger

    torch.set_num_threads(1)
    rates = {}
    for name, ragged in (("paratag Tagger, ragged", True), ("paratag Tagger, padded", False)):
        tagger = Tagger(onnx_pn, ragged=ragged)
        tagger(peer_events[:10])  # session warm-up
        t = _timeit(lambda tagger=tagger: tagger(events))
        rates[name] = n_jets / t
        print(f"[1] {name} (onnxruntime, 1 thread): {rates[name]:8.1f} jets/s ({n_jets} jets)")
        if ragged:
            flops, peak = tagger_flops(pn, events, tagger), sgemm_gflops()
            rate = flops / t / 1e9
            print(
                f"[1]   {flops / n_jets / 1e9:.3f} GFLOP per jet at the real lengths: "
                f"{rate:.1f} GFLOP/s = {rate / peak:.0%} of this run's 1-thread sgemm "
                f"{peak:.1f} GFLOP/s (target >= 50%)"
            )
    peers = []
    if COFFEA_PN.is_file():
        peers.append(("coffea pn_test TorchScript (k=16, 64/128/256, 5 features)", COFFEA_PN, 5))
    weaver = _weaver_trace(tmp)
    if weaver is not None:
        peers.append(("weaver-core ParticleNet trace (same config, 15 features)", weaver, None))
    if own_trace:
        peers.append(("trace of paratag's own ParticleNet (not a real peer)", ts_path, None))
    best = rates["paratag Tagger, ragged"]
    for name, path, n_fts in peers:
        wrapper = _peer(path, n_fts)
        wrapper(peer_events[:10])
        t = _timeit(lambda wrapper=wrapper: wrapper(peer_events))
        r = n_peer / t
        print(f"[1] coffea torch_wrapper + {name}: {r:8.1f} jets/s ({n_peer} jets)")
        print(f"[1]   ratio paratag (ragged) / this peer = {best / r:.2f}x (target >= 5x)")


def part2(events, n_jets, onnx_ppn, k: int) -> None:
    from paratag.processors import Tagger

    hyps = HYPS[:k]
    t_ref = float("inf")
    for strategy in ("replicate", "loop"):
        one = Tagger(onnx_ppn, hyps, strategy=strategy)
        one(events[:10])
        t_one = _timeit(lambda one=one: one(events))
        print(
            f"[2] {k} hypotheses in one pass ({strategy}): {t_one:.2f} s = {n_jets * k / t_one:.1f} jet-hypotheses/s"
        )
        t_ref = min(t_ref, t_one)
    singles = [Tagger(onnx_ppn, [h]) for h in hyps]
    singles[0](events[:10])
    t_sep = _timeit(lambda: [s(events) for s in singles])
    print(f"[2] {k} separate passes: {t_sep:.2f} s")
    print(f"[2] ratio separate / best one pass = {t_sep / t_ref:.2f} (target >= {0.5 * k:.1f})")


def part2_shared(events, n_jets, shared_dir: Path, k: int, repeat: int = 2) -> None:
    from paratag.processors import Tagger

    hyps = HYPS[:k]
    model = shared_dir / "model.onnx"
    one = Tagger(model, hyps)  # strategy "auto" -> "hypotheses" (model_hypotheses.onnx)
    assert one.strategy == "hypotheses"
    one(events[:10])
    w_one, c_one = _timeit_both(lambda: one(events), repeat)
    print(
        f"[2s] shared trunk, {k} hypotheses in one pass (hypotheses graph): {w_one:.2f} s wall, "
        f"{c_one:.2f} s CPU = {n_jets * k / c_one:.1f} jet-hypotheses/CPU-s"
    )
    singles = [Tagger(model, [h], strategy="loop") for h in hyps]
    singles[0](events[:10])
    w_sep, c_sep = _timeit_both(lambda: [s(events) for s in singles], repeat)
    print(
        f"[2s] shared trunk, {k} separate passes (model.onnx): {w_sep:.2f} s wall, {c_sep:.2f} s CPU"
    )
    print(
        f"[2s] ratio separate / one pass = {w_sep / w_one:.2f} wall, {c_sep / c_one:.2f} CPU "
        f"(target >= {0.5 * k:.1f})"
    )


def _slim(n_events: int, path: Path) -> tuple[Path, int]:
    """The fixture replicated to ``n_events`` events, with only the jet preset's branches."""
    import uproot

    from paratag.presets import load_preset

    wanted = load_preset("jet").branches() | {"run", "luminosityBlock", "event"}
    with uproot.open(PFNANO) as f:
        arrays = f["Events"].arrays(sorted(b for b in wanted if b in f["Events"]), library="ak")
    reps = max(1, n_events // 10)
    arrays = ak.concatenate([arrays] * reps)
    flat, colls = {}, {}
    for b in arrays.fields:
        coll, _, field = b.partition("_")
        if field and arrays[b].ndim > 1:
            colls.setdefault(coll, {})[field] = arrays[b]
        else:
            flat[b] = arrays[b]
    flat.update({c: ak.zip(d) for c, d in colls.items()})
    with uproot.recreate(path) as f:
        t = f.mktree(
            "Events",
            {k: v.type for k, v in flat.items()},
            counter_name=lambda c: "n" + c,
            field_name=lambda o, i: i if o == "" else f"{o}_{i}",
        )
        t.extend(flat)
    return path, reps


def part3(onnx_pn, n_events: int, tmp: Path) -> None:
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema
    from paratag.processors import Tagger

    from paratag.runner import make_executor

    path, reps = _slim(n_events, tmp / "replicated.root")
    fileset = {"bench": {"files": {str(path): "Events"}}}
    times = {}
    for workers in (1, 2):
        with make_executor("dask", workers) as ex:
            chunk = max(1, reps * 10 // 8)
            warm = processor.Runner(ex, schema=NanoAODSchema, chunksize=chunk, maxchunks=workers)
            warm(fileset, processor_instance=Tagger(onnx_pn, output="hist"), treename="Events")
            runner = processor.Runner(ex, schema=NanoAODSchema, chunksize=chunk)
            t0 = time.perf_counter()
            runner(fileset, processor_instance=Tagger(onnx_pn, output="hist"), treename="Events")
            times[workers] = time.perf_counter() - t0
    jets = reps * 24
    print(
        f"[3] Dask 1 worker: {jets / times[1]:.1f} jets/s; 2 workers: {jets / times[2]:.1f} jets/s"
    )
    print(f"[3] ratio 2 workers / 1 worker = {times[1] / times[2]:.2f}x (target >= 1.8x)")


_RSS_SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {root!r})
from pathlib import Path
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory
from benchmarks.bench_tagger import _slim
from paratag.processors import Tagger
path, _ = _slim(417, Path({tmp!r}) / "rss.root")  # 1000 jets
events = NanoEventsFactory.from_root({{str(path): "Events"}}, schemaclass=NanoAODSchema, mode="virtual").events()
Tagger({model!r})(events[:2])  # the preset's branches loaded, session created
kw = {kw}
tagger = Tagger({model!r}, **kw)
def hwm():  # peak RSS (MB) since the last reset; ru_maxrss would include the parent's (fork)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the current RSS
start = hwm()
tagger(events)
after = hwm()
print(f"{{after:.0f}} {{after - start:.0f}} {{tagger.rows_per_call()}}")
"""


def part4(onnx_pn, tmp: Path) -> None:
    for label, kw in (
        ("micro-batched (memory_mb=2000)", {}),
        ("one call per chunk", {"batch_size": 1008}),
    ):
        code = _RSS_SCRIPT.format(root=str(ROOT), kw=kw, model=str(onnx_pn), tmp=str(tmp))
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        peak, grew, rows = out.stdout.split()
        print(
            f"[4] 1000-jet chunk, {label}: peak RSS {peak} MB (+{grew} MB while scoring, {rows} rows/call)"
        )


def part5(events, n_jets, onnx_in) -> None:
    """The Interaction Network in the Tagger vs CMS's published H->bb IN, 1 thread each."""
    import onnxruntime as ort
    from paratag.processors import Tagger

    tagger = Tagger(onnx_in)
    tagger(events[:10])
    t_ours = _timeit(lambda: tagger(events), 2)
    print(
        f"[5] paratag Tagger, Interaction Network (ragged, 1 thread): {n_jets / t_ours:8.1f} jets/s"
    )
    sess, feeds = tagger.session, []
    run = sess.run
    sess.run = lambda names, feed: (feeds.append(dict(feed)), run(names, feed))[1]
    try:  # the Tagger's own ragged micro-batches, to time onnxruntime alone
        tagger(events)
    finally:
        del sess.run
    t_model = _timeit(lambda: [run(None, f) for f in feeds], 2)
    print(
        f"[5] the same IN, onnxruntime alone on the Tagger's micro-batches: "
        f"{n_jets / t_model:8.1f} jets/s (inputs built from the events: "
        f"{1 - t_model / t_ours:.0%} of the Tagger's time)"
    )
    if not CMS_IN.is_file():
        print(f"[5] {CMS_IN} not found: no CMS IN comparison")
        return
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(str(CMS_IN), opts, providers=["CPUExecutionProvider"])
    batch = tagger.rows_per_call()
    feed = cms_in_feed(batch)
    sess.run(None, feed)
    calls = -(-n_jets // batch)
    t_cms = _timeit(lambda: [sess.run(None, feed) for _ in range(calls)], 2)
    rate = calls * batch / t_cms
    print(f"[5] CMS H->bb IN (onnxruntime, padded 60 tracks / 5 SVs, 1 thread): {rate:8.1f} jets/s")
    print(f"[5] ratio paratag IN / CMS IN = {n_jets / t_ours / rate:.2f}x (target >= 3x)")
    print(f"[5] ratio onnxruntime alone, paratag IN / CMS IN = {n_jets / t_model / rate:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jets", type=int, default=4_000, help="jets scored by paratag in parts 1-2")
    ap.add_argument(
        "--own-trace",
        action="store_true",
        help="also time torch_wrapper on a trace of paratag's own ParticleNet (not a real peer)",
    )
    ap.add_argument("--peer-jets", type=int, default=2_000, help="jets scored by torch_wrapper")
    ap.add_argument("--k", type=int, default=12, help="hypotheses in part 2")
    ap.add_argument(
        "--dask-events", type=int, default=8_400, help="events in part 3 (2.4 jets each)"
    )
    ap.add_argument(
        "--unshared",
        action="store_true",
        help="part 2: also time the default (not shared-trunk) ParametricParticleNet",
    )
    ap.add_argument("--skip", nargs="*", default=[], help="parts to skip (1 2 3 4 5)")
    ap.add_argument("--sweep", action="store_true", help="also time rows per onnxruntime call")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pn, onnx_pn, onnx_ppn, ts, shared_dir = _models(tmp)
        onnx_in = tmp / "in" / "model.onnx"
        events, n_jets = _events(args.jets)
        peer_events, n_peer = _events(args.peer_jets)
        if args.sweep:
            sweep(events[: max(10, len(events) // 10)], onnx_pn)
        if "1" not in args.skip:
            part1(events, n_jets, peer_events, n_peer, pn, onnx_pn, ts, tmp, args.own_trace)
        if "2" not in args.skip:
            small, n_small = _events(max(24, args.jets // args.k))
            if args.unshared:
                part2(small, n_small, onnx_ppn, args.k)
            part2_shared(small, n_small, shared_dir, args.k)
        if "3" not in args.skip:
            part3(onnx_in, args.dask_events, tmp)
        if "4" not in args.skip:
            part4(onnx_pn, tmp)
        if "5" not in args.skip:
            part5(events, n_jets, onnx_in)


if __name__ == "__main__":
    main()
