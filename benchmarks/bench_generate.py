"""Events/s of `paratag generate` against a bare Pythia8 `next()` loop, same settings, same run.

The overhead is (clustering + detector simulation + writing + event extraction);
initialisation is excluded from both sides, and rates are per CPU-second of the
process (time.process_time), so other load on the machine does not bias the ratio. Run:

    python benchmarks/bench_generate.py --events 500 --processes HplusToWA TTbar WZ
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
    args = ap.parse_args()

    config = GenerateConfig.preset(args.preset)
    if args.pileup_mu > 0:
        config = dataclasses.replace(
            config, pileup=dataclasses.replace(config.pileup, enabled=True, mu=args.pileup_mu)
        )
    jobs = {}
    for job in config.jobs(args.events, seed=1):
        if job.process.name in args.processes and job.process.name not in jobs:
            jobs[job.process.name] = job
    print(
        f"{'process':<26}{'bare ev/cpu-s':>15}{'paratag ev/cpu-s':>18}{'ratio':>8}{'overhead':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs.values():
            bare = bare_loop(job, config, args.events)
            meta = run_job(job, config, tmp)["metadata"]
            ours = args.events / meta["cpu_seconds_loop"]
            print(
                f"{job.dataset:<26}{bare:>15.1f}{ours:>18.1f}{bare / ours:>8.2f}"
                f"{100 * (bare / ours - 1):>9.0f}%"
            )


if __name__ == "__main__":
    main()
