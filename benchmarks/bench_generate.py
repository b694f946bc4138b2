"""Events/s of `paratag generate` against a bare Pythia8 `next()` loop, same settings, same run.

The overhead is (clustering + detector simulation + writing + event extraction);
initialisation (Pythia init, ~1.5 s per instance) is excluded from both sides and
printed separately, and rates are per CPU-second of the process
(time.process_time), so other load on the machine does not bias the ratio much
(on a busy machine, CPU time still varies by several percent with cache and core
contention, so ``--repeat`` runs both sides alternately and keeps each side's best). Run:

    python benchmarks/bench_generate.py --events 400 --processes HplusToWA TTbar WZ DY
    python benchmarks/bench_generate.py --events 300 --processes TTbar --pileup-mu 60 \
        --pileup-pool 0      # every pileup vertex a fresh minimum-bias event (default: 5000)
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

from paratag.generate import GenerateConfig, run_job
from paratag.generate.pythia_io import make_pythia
from paratag.generate.runner import _settings


def bare_loop(job, config, n: int) -> float:
    pythias = [make_pythia(s) for s in _settings(job, config)]
    t0 = time.process_time()
    for i in range(n):
        while not pythias[i % len(pythias)].next():
            pass
    return n / (time.process_time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="charged_higgs")
    ap.add_argument("--events", type=int, default=500)
    ap.add_argument("--processes", nargs="*", default=["HplusToWA", "TTbar", "WZ"])
    ap.add_argument("--pileup-mu", type=float, default=0.0, help="> 0 enables pileup overlay")
    ap.add_argument(
        "--pileup-pool",
        type=int,
        default=None,
        help="minimum-bias events reused per job (PileupConfig.pool_size; 0: all fresh)",
    )
    ap.add_argument("--repeat", type=int, default=2, help="alternating runs per side (best kept)")
    args = ap.parse_args()

    config = GenerateConfig.preset(args.preset)
    if args.pileup_mu > 0:
        config = dataclasses.replace(
            config, pileup=dataclasses.replace(config.pileup, enabled=True, mu=args.pileup_mu)
        )
    if args.pileup_pool is not None:
        pileup = dataclasses.replace(config.pileup, pool_size=args.pileup_pool)
        config = dataclasses.replace(config, pileup=pileup)
    jobs = {}
    for job in config.jobs(args.events, seed=1):
        if job.process.name in args.processes and job.process.name not in jobs:
            jobs[job.process.name] = job
    print(
        f"{'process':<26}{'bare ev/cpu-s':>15}{'paratag ev/cpu-s':>18}{'ratio':>8}"
        f"{'overhead':>10}{'init s':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs.values():
            bare = ours = 0.0
            for r in range(args.repeat):  # same seed each time: identical work on both sides
                for side in ("bare", "ours") if r % 2 == 0 else ("ours", "bare"):
                    if side == "bare":
                        bare = max(bare, bare_loop(job, config, args.events))
                    else:
                        meta = run_job(job, config, tmp)["metadata"]
                        ours = max(ours, args.events / meta["cpu_seconds_loop"])
            print(
                f"{job.dataset:<26}{bare:>15.1f}{ours:>18.1f}{bare / ours:>8.2f}"
                f"{100 * (bare / ours - 1):>9.0f}%{meta['seconds_init']:>8.1f}"
            )


if __name__ == "__main__":
    main()
