"""Run generation jobs (one per process and mass point) and write the fileset.

Each job owns its Pythia instances and a NumPy generator seeded from
(seed, dataset name), so a file's content depends only on those two and
never on worker scheduling. Jobs run in a process pool when ``workers > 1``.
A dataset above ``max_events_per_file`` is split into parts (files) with seeds
of their own, listed together under the dataset in the fileset.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from paratag.config import dump, to_dict
from paratag.errors import ConfigError
from paratag.generate.config import GROUP_LABELS, GenerateConfig, Job
from paratag.generate.detector import stack_events
from paratag.generate.jets import fastjet_banner
from paratag.generate.nanoaod import NanoWriter, assemble
from paratag.generate.pileup import MinBiasPool, overlay
from paratag.generate.processes import minbias_settings, pythia_settings, signal_xsec_pb
from paratag.generate.pythia_io import PythiaSource

__all__ = ["generate", "run_job"]

FILESET_NAME = "fileset.json"


def _settings(job: Job, config: GenerateConfig) -> list[list[str]]:
    if job.process.kind == "charged_higgs":  # both charge assignments, half the events each
        return [pythia_settings(job, config.ecm_gev, c) for c in (False, True)]
    return [pythia_settings(job, config.ecm_gev)]


def run_job(
    job: Job, config: GenerateConfig, out_dir: Path, progress: Any = None
) -> dict[str, Any]:
    """Generate, simulate and write one job's file; return its fileset entry."""
    t_init = time.perf_counter()
    source = PythiaSource(_settings(job, config))
    pu_cfg = config.pileup
    pool = None
    if pu_cfg.active:
        minbias = PythiaSource(
            [minbias_settings(config.ecm_gev, (job.seed + 7919) % 900_000_000)], gen_record=False
        )
        pool = MinBiasPool(minbias, pu_cfg.pool_size, np.random.default_rng(job.seed + 2))
    rng = np.random.default_rng(job.seed)
    pu_rng = np.random.default_rng(job.seed + 1)
    path = Path(out_dir) / f"{job.file_stem}.root"
    writer = NanoWriter(path)
    sumw = sumw2 = 0.0
    t0 = time.perf_counter()
    c0 = time.process_time()
    t_init = t0 - t_init
    for start in range(0, job.n_events, config.chunk_size):
        m = min(config.chunk_size, job.n_events - start)
        events = source.next_events(m)
        pvs, n_pus = np.zeros((m, 3)), np.zeros(m, np.int64)
        mu = pu_cfg.draw_mu(m, pu_rng)
        if pool is not None:
            pvs, n_pus = overlay(events, pool, mu, pu_cfg.beamspot_z_mm, pu_rng)
        chunk = stack_events(events, pvs, n_pus, mu)
        sumw += float(chunk.weight.sum())
        sumw2 += float((chunk.weight**2).sum())
        writer.write(assemble(chunk, config, rng, job.first_event + start))
        if progress is not None:
            progress.put(m)
    writer.close(config.run, job.n_events, sumw, sumw2)

    proc = job.process
    sigma_pythia = source.sigma_pb()
    if proc.xsec_pb is not None:
        xsec = proc.xsec_pb
    elif proc.kind == "charged_higgs":
        xsec = signal_xsec_pb(proc.leptonic)
    else:
        xsec = sigma_pythia
    meta: dict[str, Any] = {
        "process": proc.name,
        "kind": proc.kind,
        "group": proc.group,
        "label": GROUP_LABELS[proc.group] if proc.label is None else proc.label,
        **{k: float(v) for k, v in job.masses.items()},
        "xsec_pb": float(xsec),
        "xsec_pythia_pb": sigma_pythia,
        "n_generated": job.n_events,
        "sumw": sumw,
        "pileup_mu": float(pu_cfg.mu) if pu_cfg.enabled else 0.0,
        **(
            {"pileup_mu_choices": list(pu_cfg.mu_choices)}
            if pu_cfg.enabled and pu_cfg.mu_choices
            else {}
        ),
        "pileup_fresh": pool.n_fresh if pool is not None else 0,
        "pileup_reused": pool.n_reused if pool is not None else 0,
        "leptonic": proc.leptonic,
        "seed": job.seed,
        "seconds_init": round(t_init, 3),
        "seconds_loop": round(time.perf_counter() - t0, 3),
        "cpu_seconds_loop": round(time.process_time() - c0, 3),
    }
    return {"files": {str(path.resolve()): "Events"}, "metadata": meta}


def _run_job_star(args: tuple) -> tuple[str, dict[str, Any]]:
    job, config, out_dir, queue = args
    return job.file_stem, run_job(job, config, out_dir, queue)


#: per-file metadata summed over the parts of a split dataset
_SUMMED = (
    "n_generated",
    "sumw",
    "pileup_fresh",
    "pileup_reused",
    "seconds_init",
    "seconds_loop",
    "cpu_seconds_loop",
)


def merge_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One fileset entry for the files of a split dataset (in part order).

    Files are listed together; event counts, sums of weights and times are summed;
    Pythia's cross-section estimate (and a cross section taken from it) is the
    event-weighted mean of the parts'; ``seeds`` lists every part's seed.
    """
    if len(parts) == 1:
        return parts[0]
    metas = [p["metadata"] for p in parts]
    meta = dict(metas[0])
    n = np.array([m["n_generated"] for m in metas], np.float64)
    for key in _SUMMED:
        total = sum(m[key] for m in metas)
        meta[key] = round(total, 3) if "seconds" in key else total
    for key in ("xsec_pythia_pb", "xsec_pb"):  # equal in every part unless taken from Pythia
        meta[key] = float(np.average([m[key] for m in metas], weights=n))
    meta["seeds"] = [m["seed"] for m in metas]
    files = {f: t for p in parts for f, t in p["files"].items()}
    return {"files": files, "metadata": meta}


def generate(
    config: GenerateConfig,
    out_dir: str | Path,
    n_events: int,
    workers: int = 1,
    seed: int = 1,
    progress: bool = True,
) -> Path:
    """Generate every process/mass point of ``config`` into ``out_dir``.

    Args:
        config: processes, detector and pileup settings.
        out_dir: folder for one ROOT file per job, ``fileset.json`` and the resolved config.
        n_events: events per job (times each process's ``events_scale``).
        workers: parallel processes (jobs are distributed largest first, each job is sequential).
        seed: master seed; the same seed gives identical arrays.
        progress: show a progress bar over all events.

    Returns:
        Path of the coffea-style ``fileset.json``.
    """
    if n_events <= 0:
        raise ConfigError(f"n_events must be > 0, got {n_events}")
    if workers <= 0:
        raise ConfigError(f"workers must be > 0, got {workers}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = config.jobs(n_events, seed)
    dump(config, out / "generate_config.yaml")
    total = sum(j.n_events for j in jobs)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="ev", desc="paratag generate", disable=not progress)
    entries: dict[str, dict[str, Any]] = {}
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            entries[job.file_stem] = run_job(job, config, out)
            bar.update(job.n_events)
    else:
        ctx = multiprocessing.get_context("spawn")
        fastjet_banner(show=True)  # once per run, not once per worker process
        with (
            ctx.Manager() as manager,
            ProcessPoolExecutor(
                min(workers, len(jobs)),
                mp_context=ctx,
                initializer=fastjet_banner,
                initargs=(False,),
            ) as pool,
        ):
            queue = manager.Queue()
            # largest jobs first: a large job left for last runs alone on an idle pool
            order = sorted(jobs, key=lambda j: -j.n_events)
            pending = {pool.submit(_run_job_star, (j, config, out, queue)) for j in order}
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while not queue.empty():
                    bar.update(queue.get())
                for fut in done:
                    name, entry = fut.result()
                    entries[name] = entry
            while not queue.empty():
                bar.update(queue.get())
    bar.close()
    datasets = dict.fromkeys(j.dataset for j in jobs)
    fileset = {
        d: merge_parts([entries[j.file_stem] for j in jobs if j.dataset == d]) for d in datasets
    }
    path = out / FILESET_NAME
    path.write_text(json.dumps(fileset, indent=2) + "\n")
    (out / "generate_run.json").write_text(
        json.dumps(
            {"n_events": n_events, "seed": seed, "workers": workers, "config": to_dict(config)},
            indent=2,
        )
        + "\n"
    )
    return path
