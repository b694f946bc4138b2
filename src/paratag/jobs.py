"""Training and evaluation runs as picklable jobs for the workflows, run in parallel.

Workflow layer (used by :mod:`paratag.validate` and :mod:`paratag.validate_xbb`):
each job is one :func:`paratag.training.train`, :func:`paratag.training.train_inclusive`
or :func:`paratag.evaluate.run.evaluate_run` call in its own process.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

__all__ = [
    "config_crc32",
    "evaluate_job",
    "run_parallel",
    "sample_inputs",
    "scaled_schedule",
    "train_inclusive_job",
    "train_one",
    "train_parallel",
]

#: TrainConfig fields that change how a run executes, not what it trains
RUNTIME_FIELDS = ("run_dir", "device", "progress", "tensorboard", "threads", "heap")


def config_crc32(cfg: Any) -> int:
    """CRC-32 of a train or generate config without its :data:`RUNTIME_FIELDS` (a cache key).

    Editing the schedule, model, loss or data of a workflow's train YAML (or anything
    in a generate YAML) changes it; the output folder, device, threads, heap policy or
    progress bars do not.
    """
    from paratag.config import to_dict

    d = {k: v for k, v in to_dict(cfg).items() if k not in RUNTIME_FIELDS}
    return zlib.crc32(json.dumps(d, sort_keys=True, default=str).encode())


def sample_inputs(name: str, config: Any, events: int, seed: int, **extra: Any) -> dict[str, Any]:
    """Cache key of a generate step: the config's name and CRC, the events and the seed."""
    return {
        "config": name,
        "config_crc32": config_crc32(config),  # editing the generate YAML redoes the samples
        "events": events,
        "seed": seed,
        **extra,
    }


def scaled_schedule(cfg: Any, stage1_epochs: int | None, stage3_epochs: int | None) -> Any:
    """``cfg`` with fewer epochs; curriculum phases keep their share of stage 3."""
    from paratag.training.schedule import CurriculumPhase

    if stage1_epochs is not None:
        cfg = dataclasses.replace(cfg, stage1=dataclasses.replace(cfg.stage1, epochs=stage1_epochs))
    if stage3_epochs is not None:
        s3 = cfg.stage3
        total = sum(p.epochs for p in s3.curriculum) or 1
        phases = [max(1, round(p.epochs * stage3_epochs / total)) for p in s3.curriculum]
        if phases:
            phases[-1] = max(1, stage3_epochs - sum(phases[:-1]))
        curriculum = tuple(
            CurriculumPhase(n, p.masses) for n, p in zip(phases, s3.curriculum, strict=True)
        )
        patience = None if s3.patience is None else min(s3.patience, stage3_epochs)
        cfg = dataclasses.replace(
            cfg,
            stage3=dataclasses.replace(
                s3, epochs=sum(phases) or stage3_epochs, curriculum=curriculum, patience=patience
            ),
        )
    return cfg


def train_one(cfg: Any) -> dict[str, Any]:
    """Train one run (in a worker process); stage wall times and best AUCs."""
    from paratag.training import train

    t0 = time.perf_counter()
    summary = train(cfg, reuse=True)  # stage-1 models of an identical earlier run are kept
    return {
        "run_dir": cfg.run_dir,
        "seed": cfg.seed,
        "time_s": time.perf_counter() - t0,
        "stage_times_s": {
            k: v.get("time_s")
            for k, v in summary.items()
            if k.startswith("stage") and isinstance(v, dict)
        },
    }


def train_inclusive_job(cfg: Any) -> dict[str, Any]:
    """Train (or reuse) the inclusive model of ``cfg`` (in a worker process); its wall time."""
    from paratag.training import train_inclusive

    t0 = time.perf_counter()
    path = train_inclusive(cfg)
    return {"run_dir": cfg.run_dir, "model": str(path), "time_s": time.perf_counter() - t0}


def evaluate_job(run_dir: str, shards: str, out: str, **kwargs: Any) -> dict[str, Any]:
    """Evaluate one run on one thread (in a worker process); its results.json and wall time.

    ``kwargs`` go to :func:`paratag.evaluate.run.evaluate_run`.
    """
    import torch

    from paratag.evaluate.run import evaluate_run

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    md = evaluate_run(run_dir, shards, out, **kwargs)
    return {"results": str(Path(md).parent / "results.json"), "time_s": time.perf_counter() - t0}


def _call(task: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return task()


def run_parallel(
    tasks: Sequence[Callable[[], dict[str, Any]]], workers: int
) -> list[dict[str, Any]]:
    """Call picklable ``tasks``, ``workers`` at a time in separate processes, in order."""
    if workers <= 1 or len(tasks) <= 1:
        return [t() for t in tasks]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        return list(pool.map(_call, tasks))


def train_parallel(
    cfgs: Sequence[Any], workers: int, side: Sequence[Callable[[], dict[str, Any]]] = ()
) -> list[dict[str, Any]]:
    """Train several runs, ``workers`` at a time in separate processes (1 thread each).

    ``side`` tasks (picklable callables) queue behind the runs, on the core a
    run count that does not divide evenly leaves idle.
    """
    return run_parallel([functools.partial(train_one, c) for c in cfgs] + list(side), workers)
