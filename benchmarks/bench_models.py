"""Throughput of paratag's graph models against their peers, side by side in one run.

1. ParticleNet (Lite and full, weaver's default layout with the fusion layer)
   against weaver-core's ``weaver.nn.model.ParticleNet`` at the same
   configuration: weaver's weights are copied into paratag's model, the
   parameter counts and the outputs (eval and train mode) are checked equal,
   then forward+backward (training) and no-grad forward (inference) jets/s on
   the same inputs are timed alternately, with peak memory of one batch.
   Eval-mode outputs agree to float rounding. Train-mode outputs agree to
   ~1e-3: batch-norm statistics include padded rows (as in weaver), and when a
   graph has 1..k padded slots its padded rows take some real neighbours, which
   weaver picks by float rounding of its 1e9 coordinate shift.
2. ParametricParticleNet's overhead relative to ParticleNet (same backbone).
3. The Interaction Network at the CMS H->bb configuration (30 track features x
   60 tracks, 14 SV features x 5 SVs) in PyTorch and onnxruntime (1 and 2
   threads), against the published CMS IN (../shared/data/cms) timed in the same run,
   padded to the same 60 tracks and 5 SVs.

Install the peer first (it must not touch torch):
    pip install --no-deps weaver-core

Run: ``python benchmarks/bench_models.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from bench_tagger import CMS_IN, cms_in_feed  # CMS's published IN: the peer of part 3

from paratag.config import ModelConfig
from paratag.models import build_model, example_inputs, input_names, positional
from paratag.weaver import weaver_to_paratag

CONFIGS = {
    "lite": {"conv_params": [[7, [32, 32, 32]], [7, [64, 64, 64]]], "fc_params": [[128, 0.1]]},
    "full": {
        "conv_params": [[16, [64, 64, 64]], [16, [128, 128, 128]], [16, [256, 256, 256]]],
        "fc_params": [[256, 0.1]],
    },
}


def jets(n: int, p: int, channels: tuple[int, int], seed: int) -> dict[str, torch.Tensor]:
    """Random padded jets with 20..P constituents (one full jet per batch)."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(20, p + 1, (n,), generator=gen)
    counts[0] = p
    mask = (torch.arange(p).view(1, 1, -1) < counts.view(-1, 1, 1)).float()
    points = torch.randn(n, channels[0], p, generator=gen) * mask
    features = torch.randn(n, channels[1], p, generator=gen) * mask
    return {"points": points, "features": features, "mask": mask}


def time_call(fn: Callable[..., object], *args: object, repeats: int) -> float:
    """Fastest of ``repeats`` calls of ``fn(*args)`` (seconds) after one warm-up."""
    fn(*args)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)  # best of: robust to other load on the machine


def train_step(model: torch.nn.Module, inputs: dict[str, torch.Tensor], weaver: bool) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    if weaver:
        out = model(inputs["points"], inputs["features"], inputs["mask"].bool())
    else:
        out = model(**inputs)
    F.cross_entropy(out, torch.zeros(out.shape[0], dtype=torch.long)).backward()


def infer(model: torch.nn.Module, inputs: dict[str, torch.Tensor], weaver: bool) -> None:
    model.eval()
    with torch.no_grad():
        if weaver:
            model(inputs["points"], inputs["features"], inputs["mask"].bool())
        else:
            model(**inputs)


def build_pair(
    name: str, features: int, trim: bool = False
) -> tuple[torch.nn.Module | None, torch.nn.Module]:
    """weaver's ParticleNet (or None if not installed) and paratag's with the same weights.

    ``trim``: weaver's training-time trimming to a length quantile (off for the
    equality checks: it drops constituents at random, so it is not the same function).
    """
    opts = {**CONFIGS[name], "use_fusion": True, "use_fts_bn": True}
    torch.manual_seed(0)
    ours = build_model(
        ModelConfig("particlenet", options=opts), point_dims=2, feature_dims=features
    )
    try:
        from weaver.nn.model.ParticleNet import ParticleNet as WeaverParticleNet
    except ImportError:
        return None, ours
    theirs = WeaverParticleNet(
        features,
        2,
        conv_params=[(k, tuple(w)) for k, w in opts["conv_params"]],
        fc_params=[tuple(x) for x in opts["fc_params"]],
        use_fusion=True,
        use_fts_bn=True,
        trim=trim,
    )
    state = weaver_to_paratag(theirs.state_dict())
    ours.load_state_dict(
        {**state, "condition_mean": ours.condition_mean, "condition_std": ours.condition_std}
    )
    return theirs, ours


def _memory_child(kind: str, name: str, mode: str, n: int, p: int, features: int, queue) -> None:
    torch.set_num_threads(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, ours = build_pair(name, features)
    model = theirs if kind == "weaver" else ours
    inputs = jets(n, p, (2, features), seed=1)
    step = train_step if mode == "train" else infer
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
        f.write("5")
    before = _status_kib("VmRSS")
    step(model, inputs, kind == "weaver")
    queue.put((_status_kib("VmHWM") - before) / 1024.0)


def _status_kib(field: str) -> int:
    """A memory field of /proc/self/status in KiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_mb(kind: str, name: str, mode: str, n: int, p: int, features: int) -> float:
    """Peak RSS growth (MiB) during one batch, in a fresh process (Linux /proc).

    The peak is reset after the model and the inputs exist, so this is the
    working set of one step (plus the thread pools' one-off buffers).
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(kind, name, mode, n, p, features, queue))
    proc.start()
    value = queue.get()
    proc.join()
    return float(value)


def bench_particlenet(args: argparse.Namespace) -> None:
    print(
        f"\n== ParticleNet vs weaver-core (threads={args.threads}, P={args.p}, "
        f"features={args.features}, batch={args.batch}) =="
    )
    for name in args.configs:
        theirs, ours = build_pair(name, args.features)
        n_ours = sum(p.numel() for p in ours.parameters())
        inputs = jets(args.batch, args.p, (2, args.features), seed=0)
        print(f"-- {name}: paratag parameters {n_ours:,}")
        if theirs is None:
            print("   weaver-core is not installed: pip install --no-deps weaver-core")
            continue
        n_theirs = sum(p.numel() for p in theirs.parameters())
        assert n_ours == n_theirs, (n_ours, n_theirs)
        for model in (ours, theirs):
            model.eval()
        with torch.no_grad():
            diff_eval = (
                (
                    ours(**inputs)
                    - theirs(inputs["points"], inputs["features"], inputs["mask"].bool())
                )
                .abs()
                .max()
                .item()
            )
            for model in (ours, theirs):  # batch-statistics batch norm, dropout off
                model.train()
                for mod in model.modules():
                    if isinstance(mod, torch.nn.Dropout):
                        mod.eval()
            diff_train = (
                (
                    ours(**inputs)
                    - theirs(inputs["points"], inputs["features"], inputs["mask"].bool())
                )
                .abs()
                .max()
                .item()
            )
        print(
            f"   same parameter count ({n_theirs:,}); max |logit diff| eval {diff_eval:.2e}, "
            f"train {diff_train:.2e}"
        )
        rows = []
        for mode, step in (("train", train_step), ("infer", infer)):
            t_w, t_o = [], []
            for _ in range(args.rounds):  # alternate so drifts hit both
                t_w.append(time_call(step, theirs, inputs, True, repeats=args.repeats))
                t_o.append(time_call(step, ours, inputs, False, repeats=args.repeats))
            r_w = args.batch / min(t_w)
            r_o = args.batch / min(t_o)
            rows.append((mode, r_w, r_o))
            print(
                f"   {mode:5s}: weaver {r_w:8.1f} jets/s   paratag {r_o:8.1f} jets/s   "
                f"ratio {r_o / r_w:5.2f}x"
            )
        if args.memory:
            for mode in ("train", "infer"):
                m_w = peak_memory_mb("weaver", name, mode, args.batch, args.p, args.features)
                m_o = peak_memory_mb("paratag", name, mode, args.batch, args.p, args.features)
                print(
                    f"   peak memory per {mode} batch: weaver {m_w:7.1f} MiB   "
                    f"paratag {m_o:7.1f} MiB"
                )


def bench_parametric(args: argparse.Namespace) -> None:
    print(
        f"\n== ParametricParticleNet overhead vs ParticleNet (same backbone, batch={args.batch}) =="
    )
    for name in args.configs:
        opts = {**CONFIGS[name], "use_fusion": True}
        plain = build_model(
            ModelConfig("particlenet", options=opts), point_dims=2, feature_dims=args.features
        )
        param = build_model(
            ModelConfig("parametric_particlenet", condition_names=("mHc", "mA"), options=opts),
            point_dims=2,
            feature_dims=args.features,
        )
        inputs = jets(args.batch, args.p, (2, args.features), seed=0)
        cond = {**inputs, "condition": torch.randn(args.batch, 2)}
        n_plain = sum(p.numel() for p in plain.parameters())
        n_param = sum(p.numel() for p in param.parameters())
        print(f"-- {name}: parameters {n_plain:,} -> {n_param:,}")
        for mode, step in (("train", train_step), ("infer", infer)):
            t_p = time_call(step, plain, inputs, False, repeats=args.repeats)
            t_c = time_call(step, param, cond, False, repeats=args.repeats)
            print(
                f"   {mode:5s}: ParticleNet {args.batch / t_p:8.1f} jets/s   Parametric "
                f"{args.batch / t_c:8.1f} jets/s   overhead {t_c / t_p:5.2f}x time"
            )


def bench_interaction_net(args: argparse.Namespace) -> None:
    import onnxruntime as ort

    print(f"\n== Interaction Network, CMS H->bb configuration (batch={args.in_batch}) ==")
    torch.manual_seed(0)
    model = build_model(ModelConfig("interaction_net"), point_dims=2, feature_dims=28, sv_dims=14)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"   parameters {n_params:,} (CMS IN: 18,162); inputs 30 x 60 tracks, 14 x 5 SVs")
    inputs = example_inputs(model, n=args.in_batch, p=60, seed=0, n_sv=5)
    names = input_names(model)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = {k: {0: "N"} for k in names}
        torch.onnx.export(
            positional(model),
            tuple(inputs.values()),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=names,
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "N"}},
        )
    feed = {k: v.numpy() for k, v in inputs.items()}
    for threads in (1, 2):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(buffer.getvalue(), opts, providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(
            sess.run(None, feed)[0], model(**inputs).detach().numpy(), atol=1e-4
        )
        t_ort = time_call(sess.run, None, feed, repeats=args.repeats)
        torch.set_num_threads(threads)
        t_pt = time_call(infer, model, inputs, False, repeats=args.repeats)
        rate = args.in_batch / t_ort
        line = (
            f"   {threads} thread(s): onnxruntime {rate:8.1f} jets/s   PyTorch "
            f"{args.in_batch / t_pt:8.1f} jets/s"
        )
        if CMS_IN.is_file():  # the peer, same batch, same threads, same padded sizes
            cms = ort.InferenceSession(str(CMS_IN), opts, providers=["CPUExecutionProvider"])
            cms_feed = cms_in_feed(args.in_batch)
            ref = args.in_batch / time_call(cms.run, None, cms_feed, repeats=args.repeats)
            line += f"   CMS IN {ref:8.1f} jets/s   ratio {rate / ref:5.2f}x"
        else:
            line += f"   (no CMS IN at {CMS_IN}: no peer)"
        print(line)
    torch.set_num_threads(args.threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--in-batch", type=int, default=256)
    parser.add_argument("--p", type=int, default=100)
    parser.add_argument("--features", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=["lite", "full"], choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.in_batch, args.repeats, args.rounds, args.memory = 16, 32, 1, 1, False
        args.configs = ["lite"]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    bench_particlenet(args)
    bench_parametric(args)
    bench_interaction_net(args)


if __name__ == "__main__":
    main()
