"""``paratag validate``: the larger run behind the physics claims (issue 9), with cached steps.

Independent chains, each step one library call cached like :mod:`paratag.demo`:

1. charged Higgs — ``generate`` (grid with training, interpolation and
   extrapolation points + backgrounds) → ``build`` → ``train`` (the three-stage
   schedule, one run per seed, run in parallel) → ``evaluate`` (parametric vs
   dedicated with dedicated models trained on demand at untrained points, seed
   spread, mass awareness; with the ``pileup`` chain also the parametric model on the
   pileup samples);
   chain ``pileup`` (:mod:`paratag.validate_pileup`) — an event tagger and a jet
   tagger, each trained at μ = 0 and on mixed μ, scored on the same hard scatters at
   μ = 0 and every ``pileup_mu`` level;
2. X→bb̄ jets (:mod:`paratag.validate_xbb`), sharing ``xbb_generate`` → ``xbb_build``:
   chain ``xbb`` — ``xbb_train`` (the mX-conditioned Interaction Network and the
   unconditioned IN, ParticleNet-Lite and ResNet-15 on jet images) → ``xbb_evaluate``
   (the jet-tagger table on the same test jets, mass awareness, importance); chain
   ``disco`` — ``disco_generate`` → ``disco_build`` (a QCD-only sculpting sample) →
   ``disco_train`` (the conditioned IN at each DisCo λ) → ``disco_evaluate`` (1/JSD vs
   1/εB at 50% signal efficiency, with the QCD jets passing each cut);
3. ``summary`` — ``validation.json`` and the markdown table ``validation.md``.

A finished step writes ``OUT/steps/<step>.json``; rerunning skips it unless ``force``
is set or an earlier step of the same chain was redone.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from paratag.conditions import MassGrid
from paratag.errors import ConfigError
from paratag.jobs import config_crc32, sample_inputs, scaled_schedule, train_parallel
from paratag.pipeline import Steps
from paratag.validation_summary import CHAINS, TARGETS, render_markdown, summarize

__all__ = ["CHAINS", "TARGETS", "ValidateConfig", "render_markdown", "run_validate", "summarize"]


@dataclasses.dataclass(frozen=True)
class ValidateConfig:
    """Sizes and inputs of ``paratag validate`` (defaults: 10k events per point and background).

    Attributes:
        out: output directory.
        events: generated events per signal mass point and per background process.
        xbb_events: events per X mass point and of QCD (None: ``events``), times each
            process's ``events_scale`` in the generate config (``validate_xbb``: 1.42 and
            2.84, so that 10 000 gives >= 10 000 truth-matched jets per mass point).
        pileup_events: events per process of each pileup evaluation sample (None:
            ``events // 10``).
        pileup_train_events: events per process of each pileup training sample (None:
            ``events // 4``).
        pileup_mu: the pileup levels besides μ = 0 (empty skips the pileup study).
        seeds: training seeds of the charged-Higgs run (the first one is evaluated in full).
        workers: parallel generation/build processes and parallel training runs.
        seed: generation seed.
        stage1_epochs: override of stage-1 epochs (None: the train config's).
        stage3_epochs: override of stage-3 epochs; the curriculum is scaled to it.
        generate_config: charged-Higgs generate preset name or YAML.
        pileup_config: generate preset/YAML of the event tagger's pileup samples.
        pileup_xbb_config: generate preset/YAML of the jet tagger's pileup samples.
        xbb_generate_config: X→bb generate preset/YAML ("" skips the ``xbb`` and ``disco``
            chains).
        disco_generate_config: generate preset/YAML of the QCD-only sculpting sample.
        disco_qcd_events: events of the sculpting sample (about 1.95 jets each): 40 000
            let ≥ 2 000 QCD jets pass a cut up to 1/εB ≈ 39.
        train_config: charged-Higgs train config name or YAML.
        xbb_train_config: X→bb train config name or YAML.
        xbb_taggers: unconditioned taggers of the jet table
            (:data:`paratag.validate_xbb.JET_TAGGERS`).
        xbb_disco_lambdas: DisCo strengths of the ``disco`` chain's conditioned IN runs
            (one run each, plus one without DisCo); empty: the train config's ``disco_lambda``.
        disco_epochs: epochs of each ``disco`` run, at most the train config's stage 3 (None:
            those).
        disco_fraction: share of the X→bb training and validation events the ``disco``
            runs train on (``data.fit_fraction``; the test fold is whole): 0.3 of the
            default sample is the 3 000-event sample on which DisCo met its target.
        disco_batches: ``padded`` (shuffled batches at the full padded length: every batch
            spans the whole mass range, which DisCo's batch statistic needs) or ``ragged``
            (the train config's length-bucketed, trimmed batches: about 3x faster).
        n_boot: bootstrap replicas of the evaluation metrics.
        only: chains to run, among ``higgs`` (generate, build, train, evaluate), ``pileup``
            (event and jet taggers trained without and with pileup, scored at every level;
            :mod:`paratag.validate_pileup`), ``xbb`` (the jet table) and ``disco`` (X→bb
            mass decorrelation); empty: all.
    """

    out: str = "validation_output"
    events: int = 10_000
    xbb_events: int | None = None
    pileup_events: int | None = None
    pileup_train_events: int | None = None
    pileup_mu: tuple[float, ...] = (20.0, 40.0, 60.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    workers: int = 2
    seed: int = 1
    stage1_epochs: int | None = None
    stage3_epochs: int | None = None
    generate_config: str = "validate"
    pileup_config: str = "validate_pileup"
    pileup_xbb_config: str = "validate_pileup_xbb"
    xbb_generate_config: str = "validate_xbb"
    disco_generate_config: str = "validate_disco_qcd"
    disco_qcd_events: int = 40_000
    train_config: str = "validate"
    xbb_train_config: str = "validate_xbb"
    xbb_taggers: tuple[str, ...] = ("interaction_net", "particlenet_lite", "resnet15_image")
    xbb_disco_lambdas: tuple[float, ...] = (10.0, 30.0, 100.0)
    disco_epochs: int | None = 3
    disco_fraction: float = 0.3
    disco_batches: Literal["padded", "ragged"] = "padded"
    n_boot: int = 50
    only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.only) - set(CHAINS))
        if unknown:
            raise ConfigError(
                f"validate: unknown chain(s) {unknown} in --only; choose among {', '.join(CHAINS)}"
            )
        sizes = (self.events, self.xbb_events or 1, self.disco_qcd_events, self.disco_epochs or 1)
        if min(sizes) <= 0:
            raise ConfigError(f"validate: events and epochs must be > 0, got {sizes}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"validate: seeds must be distinct and non-empty, got {self.seeds}")
        from paratag.validate_xbb import JET_TAGGERS

        if set(self.xbb_taggers) - set(JET_TAGGERS) or any(x <= 0 for x in self.xbb_disco_lambdas):
            raise ConfigError(
                f"validate: xbb_taggers {list(self.xbb_taggers)} must be among "
                f"{sorted(JET_TAGGERS)} and xbb_disco_lambdas {list(self.xbb_disco_lambdas)} > 0"
            )
        if not 0.0 < self.disco_fraction <= 1.0:
            raise ConfigError(
                f"validate: disco_fraction must be in (0, 1], got {self.disco_fraction}"
            )
        if self.disco_batches not in ("padded", "ragged"):
            raise ConfigError(
                f"validate: disco_batches must be padded or ragged, got {self.disco_batches!r}"
            )
        if self.workers < 1 or any(m <= 0 for m in self.pileup_mu):
            raise ConfigError(
                f"validate: need workers >= 1 and pileup levels > 0, got {self.workers} and "
                f"{list(self.pileup_mu)}"
            )


def _train_dedicated_models(
    cfg: Any, points: Sequence[Sequence[float]], out: Path
) -> dict[str, Any]:
    """Dedicated models at the run's untrained points, ahead of the evaluation (which reuses them)."""
    from paratag.training.dedicated import train_dedicated

    t0 = time.perf_counter()
    grid = MassGrid.from_config(cfg.grid)
    for p in points:
        got = train_dedicated(cfg, p, out / grid.name(p))
        if not isinstance(got, Path):
            raise ConfigError(f"validate: no dedicated model at {grid.name(p)}: {got}")
    return {"dedicated": len(points), "time_s": time.perf_counter() - t0}


def run_validate(
    cfg: ValidateConfig = ValidateConfig(),
    *,
    force: bool = False,
    command: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the validation chains; write ``validation.json`` and ``validation.md``.

    Args:
        cfg: sizes and configs.
        force: redo every step.
        command: the command line recorded in the outputs.
        log: progress messages.

    Returns:
        The summary written to ``validation.json``.
    """
    from paratag.build import BuildConfig, build_shards
    from paratag.generate import GenerateConfig, generate

    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = Steps(out, force=force, log=log)
    steps = cache.done

    def step(
        chains: str | tuple[str, ...],
        name: str,
        fn: Callable[[], Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> dict[str, Any]:
        return cache.run(name, fn, inputs=inputs, chains=chains)

    def gen(config: GenerateConfig, where: str, n: int, seed: int) -> dict[str, Any]:
        fs = generate(config, out / where, n, workers=cfg.workers, seed=seed, progress=False)
        return {"fileset": str(fs), "events_per_job": n, "jobs": len(config.jobs(n, seed))}

    def build(
        fileset: str,
        where: str,
        preset: str,
        condition: tuple[str, ...],
        background_only: bool = False,
    ) -> dict[str, Any]:
        manifest = build_shards(
            fileset,
            out / where,
            BuildConfig(preset=preset, condition=condition, background_only=background_only),
            executor="futures" if cfg.workers > 1 else "iterative",
            workers=cfg.workers,
        )
        return {"manifest": str(manifest)}

    chains = set(cfg.only or CHAINS)
    if "higgs" in chains:
        _higgs_chain(cfg, out, step, gen, build, chains)

    if "pileup" in chains and cfg.pileup_mu:
        from paratag.validate_pileup import pileup_chain

        pileup_chain(cfg, out, step, gen, build)

    if cfg.xbb_generate_config and chains & {"xbb", "disco"}:
        from paratag.validate_xbb import jet_chains

        jet_chains(cfg, out, step, gen, build, chains)

    summary = summarize(out, cfg, command=command, steps=list(steps))
    (out / "validation.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "validation.md").write_text(render_markdown(summary))
    log(f"wrote {out / 'validation.json'} and {out / 'validation.md'}")
    return summary


def _train_inclusive_model(cfg: Any) -> dict[str, Any]:
    """The inclusive baseline of ``cfg`` (reused when already trained); its path and time."""
    from paratag.training import train_inclusive

    t0 = time.perf_counter()
    return {"model": str(train_inclusive(cfg)), "time_s": time.perf_counter() - t0}


def _epochs(cfg: Any) -> dict[str, int]:
    """The stage-1 and stage-3 epochs of a train config (recorded with the train step)."""
    return {"stage1_epochs": cfg.stage1.epochs, "stage3_epochs": cfg.stage3.epochs}


def _higgs_chain(
    cfg: ValidateConfig,
    out: Path,
    step: Callable[..., dict[str, Any]],
    gen: Callable[..., dict[str, Any]],
    build: Callable[..., dict[str, Any]],
    chains: set[str],
) -> None:
    """Charged Higgs: generate, build, train (one run per seed), pileup samples, inclusive, evaluate."""
    from paratag.generate import GenerateConfig
    from paratag.training import load_train_config

    ch = GenerateConfig.from_file(cfg.generate_config)
    gin = sample_inputs(cfg.generate_config, ch, cfg.events, cfg.seed)
    g = step("higgs", "generate", lambda: gen(ch, "generated", cfg.events, cfg.seed), gin)
    step("higgs", "build", lambda: build(g["fileset"], "shards", "event", ("mHc", "mA")), gin)
    base = scaled_schedule(
        load_train_config(cfg.train_config, shards=str(out / "shards")),
        cfg.stage1_epochs,
        cfg.stage3_epochs,
    )
    runs = [out / "runs" / f"seed{s}" for s in cfg.seeds]
    # a run folder of its own, so that it can train beside the seeds' runs
    inclusive_cfg = dataclasses.replace(
        base, seed=cfg.seeds[0], run_dir=str(out / "inclusive"), progress=False
    )

    def do_train() -> dict[str, Any]:
        cfgs = [
            dataclasses.replace(base, seed=s, run_dir=str(r), progress=False)
            for s, r in zip(cfg.seeds, runs, strict=True)
        ]
        # the evaluation's dedicated models at untrained points (run of the first seed)
        grid = MassGrid.from_config(base.grid)
        untrained = [p for p in grid.points() if grid.role_of(p) != "train"]
        side = [
            functools.partial(
                _train_dedicated_models, cfgs[0], untrained, out / "evaluation" / "dedicated"
            ),
            functools.partial(_train_inclusive_model, inclusive_cfg),
        ]
        *done, dedicated, inclusive = train_parallel(cfgs, cfg.workers, side)
        return {"runs": done, "dedicated": dedicated, "inclusive": inclusive, **_epochs(base)}

    tin = {
        "config": cfg.train_config,
        # the whole schedule: editing the YAML redoes the step (unchanged stage-1 models are kept)
        "config_crc32": config_crc32(base),
        "seeds": list(cfg.seeds),
        **_epochs(base),
    }
    step("higgs", "train", do_train, tin)

    pileup = {}
    if "pileup" in chains and cfg.pileup_mu:  # the pileup chain's event samples (cached there)
        from paratag.validate_pileup import FAMILIES, pileup_samples

        pileup = pileup_samples(cfg, FAMILIES[0], out, step, gen, build)

    # trained in the train step beside the third seed; here only when that step was cached
    inc = step("higgs", "inclusive", lambda: _train_inclusive_model(inclusive_cfg), tin)

    def do_evaluate() -> dict[str, Any]:
        from paratag.evaluate.run import evaluate_run
        from paratag.training import dedicated_trainer

        report = evaluate_run(
            runs[0],
            out / "shards",
            out / "evaluation",
            n_boot=cfg.n_boot,
            seeds_runs=runs[1:],
            pileup_shards=pileup or None,
            dedicated_trainer=dedicated_trainer(runs[0]),
            inclusive_model=inc["model"],
            progress=False,
        )
        return {"report": str(report), "results": str(Path(report).parent / "results.json")}

    step(("higgs", "pileup"), "evaluate", do_evaluate, {"pileup": pileup, "n_boot": cfg.n_boot})
