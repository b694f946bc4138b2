"""Score a fileset with a paratag model on a Dask ``distributed`` cluster.

By default a LocalCluster on 127.0.0.1 is started for the duration of the run;
``--scheduler tcp://host:8786`` connects to an existing scheduler instead (the
workers there need paratag installed and must see the model and input files at
the same paths). Every worker builds its own onnxruntime session once; the
Tagger itself is shipped as a small picklable object.

Example::

    python examples/dask_scoring.py --fileset gen/fileset.json --model export/model.onnx \
        --hypotheses "mHc=130,mA=90;mHc=160,mA=90" --workers 2 --out scores/

Writes ``OUT/hists.pkl`` and ``OUT/scores.root`` (score histograms per dataset and
hypothesis) and ``OUT/scores.parquet`` (run, luminosityBlock, event, scores).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from coffea import processor
from coffea.nanoevents import NanoAODSchema
from paratag.processors import Tagger
from paratag.processors.tagger import parse_hypotheses, write_scores

from paratag.build import load_fileset

warnings.filterwarnings("ignore", message="Missing cross-reference index", category=RuntimeWarning)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--fileset", required=True, help="coffea fileset JSON/YAML")
    p.add_argument(
        "--model", required=True, help="exported model.onnx (preprocess.json next to it)"
    )
    p.add_argument("--hypotheses", default="", help='"mHc=130,mA=90;mHc=160,mA=90" (parametric)')
    p.add_argument("--scheduler", default=None, help="tcp://host:port of a running scheduler")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster workers (no --scheduler)")
    p.add_argument("--chunksize", type=int, default=50_000, help="events per chunk")
    p.add_argument("--out", default="dask_scores", help="output folder")
    return p.parse_args(argv)


@contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` if given, else to a loopback LocalCluster."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    tagger = Tagger(args.model, parse_hypotheses(args.hypotheses), output="both")
    fileset = load_fileset(args.fileset)
    with dask_client(args.scheduler, args.workers) as client:
        print(f"scheduler {client.scheduler.address}, {len(client.nthreads())} workers")
        executor = processor.DaskExecutor(client=client, status=False)
        runner = processor.Runner(executor, schema=NanoAODSchema, chunksize=args.chunksize)
        t0 = time.perf_counter()
        result = runner(fileset, processor_instance=tagger, treename="Events")
        elapsed = time.perf_counter() - t0
    for ds, acc in sorted(result.items()):
        if ds == "hist":
            continue
        arrays, flow = acc["arrays"], acc["cutflow"]
        scores = np.stack([arrays[n] for n in tagger.names], axis=1)
        finite = scores[np.isfinite(scores)]
        span = f"[{finite.min():.3f}, {finite.max():.3f}]" if finite.size else "-"
        print(f"{ds:<28} events {flow['events']:>7}  scored {flow['scored']:>7}  scores {span}")
    print(f"scored in {elapsed:.1f} s")
    for path in write_scores(result, args.out, parquet=True):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
