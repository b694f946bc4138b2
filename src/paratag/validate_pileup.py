"""``paratag validate`` chain ``pileup``: taggers trained without and with pileup, at every μ.

Two tagger families, each at one mass point (:data:`FAMILIES`): the event tagger of the
charged-Higgs search at (mHc, mA) = (130, 90) (``generate_validate_pileup.yaml``) and
the X→bb̄ jet tagger at mX = 100 GeV (``generate_validate_pileup_xbb.yaml``, the
Interaction Network of ``train_validate_xbb.yaml``, PUPPI weight among its inputs).
For each family:

- ``generate_pileup[_jet]_mu<μ>`` → ``build_…``: the evaluation samples, the *same
  hard scatters* (one seed) at μ = 0 and at each ``pileup_mu`` level, so the AUC
  change from one level to the next is the pileup's alone;
- ``generate_pileup_<family>_train_<kind>`` → ``build_…``: the training samples
  (other seeds), ``nominal`` at μ = 0 and ``mixed`` with each event's μ drawn from
  all levels (:attr:`paratag.generate.PileupConfig.mu_choices`);
- ``<family>_pileup_train``: the family's network on each (stage 3 only, one point,
  the two runs in parallel);
- ``<family>_pileup_evaluate``: each model on every level (the evaluation's pileup
  study): AUC per level and its drop from μ = 0 to the highest μ.

The charged-Higgs chain also scores its parametric model on the event family's
evaluation samples when both chains run.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paratag.jobs import config_crc32, sample_inputs, train_parallel
from paratag.validation_targets import target_entry

__all__ = [
    "DROP_TARGET",
    "FAMILIES",
    "Family",
    "pileup_chain",
    "pileup_markdown",
    "pileup_samples",
    "pileup_verdict",
    "single_point_config",
    "summarize_pileup",
]

Step = Callable[..., dict[str, Any]]
#: seed offsets of the two training samples (the evaluation samples use the chain's seed)
TRAIN_SEED_OFFSETS = {"nominal": 2003, "mixed": 3001}


@dataclasses.dataclass(frozen=True)
class Family:
    """One tagger of the pileup study.

    Attributes:
        name: ``event`` or ``jet`` (the step and folder prefix).
        generate: the :class:`~paratag.validate.ValidateConfig` field naming the generate
            preset of its samples (pileup switched on by the chain).
        preset: the GraphBuilder preset of its shards.
        condition: the condition names of its shards.
        train_config: the :class:`~paratag.validate.ValidateConfig` field naming its
            train config (the network and optimiser; the chain narrows it to ``point``).
        point: the mass point it is trained and evaluated at.
    """

    name: str
    generate: str
    preset: str
    condition: tuple[str, ...]
    train_config: str
    point: tuple[float, ...]


FAMILIES = (
    Family("event", "pileup_config", "event", ("mHc", "mA"), "train_config", (130.0, 90.0)),
    Family("jet", "pileup_xbb_config", "jet", ("mX",), "xbb_train_config", (100.0,)),
)


def _levels(cfg: Any) -> dict[str, float]:
    """``{"mu0": 0, "mu20": 20, ...}``: μ = 0 and every ``pileup_mu`` level."""
    return {f"mu{m:g}": float(m) for m in (0.0, *cfg.pileup_mu)}


def _sample(
    cfg: Any,
    family: Family,
    steps: tuple[Step, Step, Step],
    pileup: Any,
    key: str,
    n: int,
    seed: int,
) -> str:
    """Generate and build one sample of ``family`` with ``pileup``; its shard folder (relative).

    ``key`` names the steps (``generate_<key>``, ``build_<key>``) and the folder
    ``pileup/<key>``; the cache key holds the generate config, size, seed and pileup.
    """
    from paratag.generate import GenerateConfig

    step, gen, build = steps
    name = getattr(cfg, family.generate)
    pcfg = dataclasses.replace(GenerateConfig.from_file(name), pileup=pileup)
    where = f"pileup/{key}"
    pin = sample_inputs(name, pcfg, n, seed, mu=list(pileup.mu_choices) or pileup.mu)
    g = step(
        "pileup",
        f"generate_{key}",
        functools.partial(gen, pcfg, f"{where}/generated", n, seed),
        pin,
    )
    step(
        "pileup",
        f"build_{key}",
        functools.partial(build, g["fileset"], f"{where}/shards", family.preset, family.condition),
        pin,
    )
    return f"{where}/shards"


def pileup_samples(
    cfg: Any, family: Family, out: Path, step: Step, gen: Step, build: Step
) -> dict[str, str]:
    """The family's evaluation samples, same hard scatters at every level -> shard dirs."""
    from paratag.generate import PileupConfig

    n = cfg.pileup_events or max(1, cfg.events // 10)
    prefix = "pileup_" if family.name == "event" else f"pileup_{family.name}_"
    return {
        level: str(
            out
            / _sample(
                cfg,
                family,
                (step, gen, build),
                PileupConfig(enabled=mu > 0, mu=mu),
                f"{prefix}{level}",
                n,
                cfg.seed + 1000,
            )
        )
        for level, mu in _levels(cfg).items()
    }


def _training_samples(
    cfg: Any, family: Family, out: Path, step: Step, gen: Step, build: Step
) -> dict[str, Path]:
    """``nominal`` (μ = 0) and ``mixed`` (μ drawn from every level) training shards."""
    from paratag.generate import PileupConfig

    n = cfg.pileup_train_events or max(1, cfg.events // 4)
    mus = tuple(_levels(cfg).values())
    pileups = {
        "nominal": PileupConfig(enabled=False, mu=0.0),
        "mixed": PileupConfig(enabled=True, mu=max(mus), mu_choices=mus),
    }
    return {
        kind: out
        / _sample(
            cfg,
            family,
            (step, gen, build),
            pu,
            f"pileup_{family.name}_train_{kind}",
            n,
            cfg.seed + TRAIN_SEED_OFFSETS[kind],
        )
        for kind, pu in pileups.items()
    }


def single_point_config(base: Any, point: tuple[float, ...], shards: Path, run_dir: Path) -> Any:
    """``base`` trained at ``point`` alone: stage 3 from scratch, no curriculum, no extras.

    The condition normalisation stays the base grid's, so the network sees the values
    it would in the full run.
    """
    from paratag.conditions import MassGrid

    grid = MassGrid.from_config(base.grid)
    mean, std = grid.model_normalisation()
    model = dataclasses.replace(
        base.model, condition_names=tuple(grid.names), condition_mean=mean, condition_std=std
    )
    one = dataclasses.replace(
        base.grid, train=(tuple(point),), validation=(), interpolation=(), extrapolation=()
    )
    return dataclasses.replace(
        base,
        grid=one,
        model=model,
        run_dir=str(run_dir),
        progress=False,
        data=dataclasses.replace(base.data, shards=str(shards), wrong_mass_weight=0.0),
        loss=dataclasses.replace(base.loss, disco_lambda=0.0),
        stage1=dataclasses.replace(base.stage1, enabled=False),
        stage2=dataclasses.replace(base.stage2, enabled=False),
        stage3=dataclasses.replace(base.stage3, curriculum=(), curriculum_enabled=False),
        ratio=dataclasses.replace(base.ratio, enabled=False),
    )


def pileup_chain(cfg: Any, out: Path, step: Step, gen: Step, build: Step) -> dict[str, str]:
    """Both families' samples, trainings and evaluations; the event family's sample dirs.

    The returned ``{level: shard dir}`` of the event family is what the charged-Higgs
    evaluation scores its parametric model on.
    """
    event_samples: dict[str, str] = {}
    for family in FAMILIES:
        samples = pileup_samples(cfg, family, out, step, gen, build)
        if family.name == "event":
            event_samples = samples
        _train_and_evaluate(cfg, family, out, step, gen, build, samples)
    return event_samples


def _train_and_evaluate(
    cfg: Any,
    family: Family,
    out: Path,
    step: Step,
    gen: Step,
    build: Step,
    samples: dict[str, str],
) -> None:
    """One family's training samples, its two runs and their evaluation on every level."""
    from paratag.jobs import scaled_schedule
    from paratag.run_config import load_train_config

    train_shards = _training_samples(cfg, family, out, step, gen, build)
    base = scaled_schedule(
        load_train_config(getattr(cfg, family.train_config)), None, cfg.stage3_epochs
    )
    where = out / "pileup" / f"{family.name}_runs"
    runs = {
        kind: single_point_config(base, family.point, shards, where / kind)
        for kind, shards in train_shards.items()
    }

    def do_train() -> dict[str, Any]:
        done = train_parallel(list(runs.values()), cfg.workers)
        return {"runs": dict(zip(runs, done, strict=True))}

    tin = {"config_crc32": [config_crc32(c) for c in runs.values()], "point": list(family.point)}
    step("pileup", f"{family.name}_pileup_train", do_train, tin)

    def do_evaluate() -> dict[str, Any]:
        from paratag.evaluate.run import evaluate_run

        res = {}
        for kind in runs:
            md = evaluate_run(
                where / kind,
                samples["mu0"],
                out / "pileup" / f"{family.name}_evaluation_{kind}",
                n_boot=cfg.n_boot,
                pileup_shards=samples,
                progress=False,
            )
            res[kind] = str(Path(md).parent / "results.json")
        return {"results": res, "levels": list(samples)}

    ein = {"levels": list(samples), "n_boot": cfg.n_boot}
    step("pileup", f"{family.name}_pileup_evaluate", do_evaluate, ein)


#: the AUC drop from μ = 0 to the highest μ allowed for the pileup-trained model (issue 14)
DROP_TARGET = 0.01


def summarize_pileup(out: Path, done: dict[str, Any]) -> dict[str, Any]:
    """``{family: {kind: {level: {"auc", "sigma"}}}}`` of the finished evaluate steps.

    ``sigma`` is the AUC's bootstrap spread on that level's sample (None without bootstrap).
    """
    from paratag.validation_jets import read_json

    table: dict[str, Any] = {}
    for family in FAMILIES:
        ev = done.get(f"{family.name}_pileup_evaluate")
        if not ev:
            continue
        table[family.name] = {}
        for kind, path in ev["results"].items():
            pu = read_json(Path(path)).get("pileup") or {}
            table[family.name][kind] = {
                lvl: {
                    "auc": v["metrics"]["values"].get("auc"),
                    "sigma": (v.get("bootstrap") or {}).get("std", {}).get("auc"),
                }
                for lvl, v in pu.items()
            }
    return table


def _drop(per_level: dict[str, Any]) -> tuple[str, float | None] | None:
    """``(highest level, AUC at μ = 0 minus AUC there)`` of one model; None without both.

    The drop is None when either AUC was not measured.
    """
    if "mu0" not in per_level or len(per_level) < 2:
        return None
    top = max((k for k in per_level if k != "mu0"), key=lambda k: float(k[2:]))
    first, last = per_level["mu0"]["auc"], per_level[top]["auc"]
    return top, (None if first is None or last is None else first - last)


def pileup_verdict(study: dict[str, Any]) -> dict[str, Any]:
    """Per family: the mixed-μ model's AUC drop from μ = 0 to the highest μ < :data:`DROP_TARGET`."""
    out = {}
    for family, kinds in study.items():
        found = _drop(kinds.get("mixed") or {})
        if found is None:
            continue
        top, drop = found
        out[f"pileup_drop_{family}"] = target_entry(
            drop,
            DROP_TARGET,
            f"< {DROP_TARGET} (mixed-μ training, μ = 0 → {top[2:]})",
            None if drop is None else DROP_TARGET - drop,
            strict=True,
        )
    return out


def pileup_markdown(study: dict[str, Any]) -> list[str]:
    """The pileup table: AUC per level of each family's two models, and the drop."""
    if not study:
        return []
    from paratag.validation_jets import fmt

    lines = [
        "",
        "## Pileup robustness (the same hard scatters at every μ)",
        "",
        "`nominal`: trained at μ = 0; `mixed`: trained with each event's μ drawn from every "
        "level. AUC ± bootstrap σ on each level's sample; the drop is μ = 0 minus the "
        "highest μ (the levels share their hard scatters, so its σ is at most √2 × theirs).",
    ]
    for family, kinds in study.items():
        levels = list(next(iter(kinds.values())))
        lines += [
            "",
            f"| {family} tagger | " + " | ".join(levels) + " | drop |",
            "|---|" + "---|" * (len(levels) + 1),
        ]
        for kind, per_level in kinds.items():
            drop = (_drop(per_level) or ("", None))[1]
            cells = [_auc_cell(per_level.get(lvl) or {}) for lvl in levels]
            lines.append(f"| {kind} | " + " | ".join(cells) + f" | {fmt(drop, '+.4f')} |")
    return lines


def _auc_cell(entry: dict[str, Any]) -> str:
    """``0.9512 ± 0.0031`` (the σ left out when there is none)."""
    from paratag.validation_jets import fmt

    auc, sigma = fmt(entry.get("auc"), ".4f"), entry.get("sigma")
    return auc if sigma is None else f"{auc} ± {fmt(sigma, '.4f')}"
