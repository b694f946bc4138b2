"""``paratag validate`` chains on X→bb̄ jets: the jet-tagger table and mass decorrelation.

Both chains share ``xbb_generate`` → ``xbb_build``: X→bb̄ at the train config's mass
points plus any interpolation point, and QCD; jet truth labels (the ``jet`` preset's
``truth:``). Every step is cached like the other validate steps.

Chain ``xbb`` (the jet table):

- ``xbb_train``, in parallel processes: the mX-conditioned Interaction Network (the
  parametric variant, with the train config's wrong-mass negatives) and the
  unconditioned taggers of :data:`JET_TAGGERS` trained on all mass points together
  (:func:`paratag.training.train_inclusive`);
- ``xbb_evaluate``: every model on the same test jets — AUC and 1/εB at εS = 30%,
  50% with bootstrap σ, per mass point and pooled — the mass-awareness study, and
  the permutation importance and saliency images of the conditioned IN.

Chain ``disco`` (mass decorrelation):

- ``disco_generate`` → ``disco_build``: a separate QCD-only sample whose jets (all of
  them) give the sculpting study's soft-drop-mass shapes, so that thousands of QCD
  jets pass even a 1/εB = 20 cut (the test fold alone leaves a few dozen);
- ``disco_train``: the conditioned IN without DisCo and with DisCo at each λ, all
  without wrong-mass negatives (those teach the tagger to prefer jets near the
  hypothesis, the opposite of decorrelation), for ``disco_epochs`` epochs each on
  ``disco_fraction`` of the training events;
- ``disco_evaluate``: per run (in parallel), AUC on the test jets and 1/εB, JSD and the
  jets passing at each signal efficiency on the sculpting sample — the 1/JSD vs 1/εB
  curve.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paratag.jobs import (
    config_crc32,
    evaluate_job,
    run_parallel,
    sample_inputs,
    scaled_schedule,
    train_inclusive_job,
    train_parallel,
)

__all__ = ["JET_TAGGERS", "SCULPTING_SEED_OFFSET", "disco_key", "jet_chains"]


def _image_options() -> dict[str, Any]:
    """ResNet-15's images: pT in GeV, charged pT and displaced-track pT.

    pT fractions lose the jet's pT, hence its mass scale, and the b tag: test AUC 0.891
    against 0.990 on the same X→bb jets. Imported here, not at module level: the table
    below is read by ``ValidateConfig``'s checks, which must not import torch.
    """
    from paratag.baselines.resnet import ABSOLUTE_PT

    return dict(ABSOLUTE_PT)


#: Unconditioned taggers of the jet table: name -> (registered model, its options when it
#: is trained, use SVs). ``None`` keeps the train config's options (the CMS H→bb IN widths).
JET_TAGGERS: dict[str, tuple[str, Callable[[], dict[str, Any]] | None, bool]] = {
    "interaction_net": ("interaction_net", None, True),
    "particlenet_lite": ("particlenet", functools.partial(dict, preset="particlenet_lite"), False),
    "resnet15_image": ("resnet15_image", _image_options, False),
}

#: relative training time per epoch on one thread (2026-12-07, 3 000-event samples): the
#: side tasks queue longest first, so the core beside the conditioned IN finishes with it
TRAIN_COST = {"resnet15_image": 1.05, "interaction_net": 1.0, "particlenet_lite": 0.47}

#: test jets for the permutation importance and saliency images of the conditioned IN
IMPORTANCE_EVENTS = 2000
#: the sculpting sample's generation seed is the chain's plus this: independent QCD events
SCULPTING_SEED_OFFSET = 7919
#: studies the DisCo runs' evaluations leave out: the curve needs only the overall test
#: metrics and the sculpting jets (the per-point scores at every hypothesis took 320 s of
#: ≈ 900 s per run on 2026-12-07, the training fold 190 s)
DISCO_SKIP = ("points", "overtraining")

Step = Callable[..., dict[str, Any]]


def disco_key(lam: float) -> str:
    """Run key of the conditioned IN trained with DisCo strength ``lam`` (0: ``no_disco``)."""
    return "no_disco" if lam == 0 else f"disco_{lam:g}"


def _tagger_config(base: Any, name: str, run_dir: Path) -> Any:
    """``base`` (the X→bb train config) for the unconditioned tagger ``name``, no DisCo."""
    model_name, options, use_sv = JET_TAGGERS[name]
    model = dataclasses.replace(
        base.model, name=model_name, options=base.model.options if options is None else options()
    )
    return dataclasses.replace(
        base,
        run_dir=str(run_dir),
        model=model,
        data=dataclasses.replace(base.data, use_sv=use_sv, wrong_mass_weight=0.0),  # stage 3 only
        loss=dataclasses.replace(base.loss, disco_lambda=0.0),
        progress=False,
    )


def _conditioned_config(
    base: Any, run_dir: Path, lam: float | None, ragged: bool = False, fraction: float = 1.0
) -> Any:
    """The conditioned IN: ``lam`` None is the jet table's (wrong-mass negatives, no DisCo).

    A number is a run of the DisCo curve, trained without wrong-mass negatives (a
    mass-decorrelated tagger must not prefer QCD jets near the hypothesis, which is
    what those negatives teach) and, unless ``ragged``, on padded, shuffled batches:
    DisCo's distance correlation is a batch statistic, and length-bucketed batches hold
    jets of similar multiplicity, hence of a narrower mass range; on ``fraction`` of the
    training and validation events.
    """
    if lam is None:
        data, loss = base.data, dataclasses.replace(base.loss, disco_lambda=0.0)
    else:
        data = dataclasses.replace(
            base.data, wrong_mass_weight=0.0, ragged=ragged, fit_fraction=fraction
        )
        loss = dataclasses.replace(base.loss, disco_lambda=lam)
    return dataclasses.replace(base, run_dir=str(run_dir), progress=False, data=data, loss=loss)


def _shared_samples(cfg: Any, out: Path, step: Step, gen: Step, build: Step) -> tuple[Path, Any]:
    """``xbb_generate`` → ``xbb_build`` (shared by both chains) -> (shards, base train config)."""
    from paratag.generate import GenerateConfig
    from paratag.training import load_train_config

    xcfg = GenerateConfig.from_file(cfg.xbb_generate_config)
    n_x = cfg.xbb_events or cfg.events
    xin = sample_inputs(cfg.xbb_generate_config, xcfg, n_x, cfg.seed)
    chains = ("xbb", "disco")
    gx = step(chains, "xbb_generate", lambda: gen(xcfg, "xbb/generated", n_x, cfg.seed), xin)
    step(chains, "xbb_build", lambda: build(gx["fileset"], "xbb/shards", "jet", ("mX",)), xin)
    shards = out / "xbb" / "shards"
    base = scaled_schedule(
        load_train_config(cfg.xbb_train_config, shards=str(shards), seed=cfg.seeds[0]),
        cfg.stage1_epochs,
        cfg.stage3_epochs,
    )
    return shards, base


def _train_inputs(cfg: Any, base: Any, runs: list[Any], **extra: Any) -> dict[str, Any]:
    """Cache key of a training step: every run's whole config (editing the YAML redoes it)."""
    return {
        "config": cfg.xbb_train_config,
        "config_crc32": [config_crc32(c) for c in runs],
        "seed": cfg.seeds[0],
        "stage1_epochs": base.stage1.epochs,
        "stage3_epochs": base.stage3.epochs,
        **extra,
    }


def jet_chains(
    cfg: Any, out: Path, step: Step, gen: Step, build: Step, chains: set[str] | frozenset[str]
) -> None:
    """The ``xbb`` and/or ``disco`` chains of ``cfg`` (a :class:`paratag.validate.ValidateConfig`)."""
    shards, base = _shared_samples(cfg, out, step, gen, build)
    if "xbb" in chains:
        _xbb_chain(cfg, out, step, shards, base)
    if "disco" in chains:
        _disco_chain(cfg, out, step, gen, build, shards, base)


def _xbb_chain(cfg: Any, out: Path, step: Step, shards: Path, base: Any) -> None:
    """The jet table into ``out/xbb``."""
    run_dir = out / "xbb" / "run_conditioned"
    taggers = {t: _tagger_config(base, t, out / "xbb" / f"tagger_{t}") for t in cfg.xbb_taggers}

    conditioned = _conditioned_config(base, run_dir, None)

    def do_train() -> dict[str, Any]:
        order = sorted(taggers, key=lambda t: -TRAIN_COST.get(t, 1.0))
        side = [functools.partial(train_inclusive_job, taggers[t]) for t in order]
        res = train_parallel([conditioned], cfg.workers, side)
        done = dict(zip(order, res[1:], strict=True))
        return {
            "conditioned": res[0],
            "taggers": {t: done[t] for t in taggers},
            "stage3_epochs": base.stage3.epochs,
        }

    tin = _train_inputs(cfg, base, [conditioned, *taggers.values()], taggers=list(taggers))
    trained = step("xbb", "xbb_train", do_train, tin)

    def do_evaluate() -> dict[str, Any]:
        from paratag.evaluate.run import evaluate_run

        models = {t: v["model"] for t, v in trained["taggers"].items()}
        md = evaluate_run(
            run_dir,
            shards,
            out / "xbb" / "evaluation_conditioned",
            n_boot=cfg.n_boot,
            compare=models,
            inclusive_model=models.get("interaction_net"),
            importance=IMPORTANCE_EVENTS,
            progress=False,
        )
        return {"results": str(Path(md).parent / "results.json")}

    ein = {"n_boot": cfg.n_boot, "importance": IMPORTANCE_EVENTS}
    step("xbb", "xbb_evaluate", do_evaluate, ein)


def _disco_chain(
    cfg: Any, out: Path, step: Step, gen: Step, build: Step, shards: Path, base: Any
) -> None:
    """The DisCo curve into ``out/xbb/disco``: one conditioned IN per λ (0 included).

    The sculpting sample's steps form their own chain (``disco_qcd``): regenerating the
    X→bb jets does not redo them; the evaluation depends on both.
    """
    from paratag.generate import GenerateConfig

    where = out / "xbb" / "disco"
    qcfg = GenerateConfig.from_file(cfg.disco_generate_config)
    n_q, q_seed = cfg.disco_qcd_events, cfg.seed + SCULPTING_SEED_OFFSET
    qin = sample_inputs(cfg.disco_generate_config, qcfg, n_q, q_seed)
    gq = step(
        "disco_qcd", "disco_generate", lambda: gen(qcfg, "xbb/disco/generated", n_q, q_seed), qin
    )
    sculpt = where / "sculpting_shards"
    step(
        "disco_qcd",
        "disco_build",
        lambda: build(gq["fileset"], "xbb/disco/sculpting_shards", "jet", ("mX",), True),
        qin,
    )
    lambdas = cfg.xbb_disco_lambdas or (base.loss.disco_lambda,)
    runs = {disco_key(lam): lam for lam in (0.0, *lambdas)}
    run_dirs = {k: where / f"run_{k}" for k in runs}

    epochs = min(cfg.disco_epochs or base.stage3.epochs, base.stage3.epochs)
    short = scaled_schedule(base, None, epochs)
    ragged = cfg.disco_batches == "ragged"
    confs = [
        _conditioned_config(short, run_dirs[k], lam, ragged, cfg.disco_fraction)
        for k, lam in runs.items()
    ]

    def do_train() -> dict[str, Any]:
        done = train_parallel(confs, cfg.workers)
        return {"runs": dict(zip(runs, done, strict=True)), "epochs": epochs}

    tin = _train_inputs(cfg, short, confs, disco_lambdas=list(lambdas))
    step("disco", "disco_train", do_train, tin)

    def do_evaluate() -> dict[str, Any]:
        jobs = [
            functools.partial(
                evaluate_job,
                str(r),
                str(shards),
                str(where / f"evaluation_{k}"),
                n_boot=0,
                sculpting_shards=str(sculpt),
                skip=DISCO_SKIP,
                progress=False,
            )
            for k, r in run_dirs.items()
        ]
        done = run_parallel(jobs, cfg.workers)
        return {
            "results": {k: d["results"] for k, d in zip(run_dirs, done, strict=True)},
            "run_times_s": {k: d["time_s"] for k, d in zip(run_dirs, done, strict=True)},
        }

    step(("disco", "disco_qcd"), "disco_evaluate", do_evaluate, {"sculpting_events": n_q})
