"""``paratag validate`` chain 2: X→bb̄ jets — the jet-tagger table and mass decorrelation.

Steps (cached like every validate step):

- ``xbb_generate`` → ``xbb_build``: X→bb̄ at the train config's mass points plus any
  interpolation point, and QCD; jet truth labels (the ``jet`` preset's ``truth:``);
- ``xbb_train``, in parallel processes: the mX-conditioned Interaction Network (the
  parametric variant) without DisCo and with DisCo at each λ, and the unconditioned
  taggers of :data:`JET_TAGGERS` trained on all mass points together
  (:func:`paratag.training.train_inclusive`);
- ``xbb_evaluate``: every model on the same test jets — the model-comparison table
  (AUC and 1/εB at εS = 30%, 50% with bootstrap σ, per mass point and pooled), the
  mass-awareness study, permutation importance and saliency images of the
  conditioned IN, and the QCD soft-drop-mass sculpting (JSD at εS = 50%) of each
  DisCo run.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paratag.jobs import config_crc32, scaled_schedule, train_inclusive_job, train_parallel

__all__ = ["JET_TAGGERS", "disco_key", "xbb_chain"]

#: Unconditioned taggers of the jet table: name -> (registered model, options, use SVs).
#: ``None`` options keep the train config's (the CMS H→bb IN widths).
JET_TAGGERS: dict[str, tuple[str, dict[str, Any] | None, bool]] = {
    "interaction_net": ("interaction_net", None, True),
    "particlenet_lite": ("particlenet", {"preset": "particlenet_lite"}, False),
    "resnet15_image": ("resnet15_image", {}, False),
}


#: test jets for the permutation importance and saliency images of the conditioned IN
IMPORTANCE_EVENTS = 2000


def disco_key(lam: float) -> str:
    """Run key of the conditioned IN trained with DisCo strength ``lam`` (0: ``no_disco``)."""
    return "no_disco" if lam == 0 else f"disco_{lam:g}"


def _tagger_config(base: Any, name: str, run_dir: Path) -> Any:
    """``base`` (the X→bb train config) for the unconditioned tagger ``name``, no DisCo."""
    model_name, options, use_sv = JET_TAGGERS[name]
    model = dataclasses.replace(
        base.model, name=model_name, options=base.model.options if options is None else options
    )
    return dataclasses.replace(
        base,
        run_dir=str(run_dir),
        model=model,
        data=dataclasses.replace(base.data, use_sv=use_sv, wrong_mass_weight=0.0),  # stage 3 only
        loss=dataclasses.replace(base.loss, disco_lambda=0.0),
        progress=False,
    )


def _conditioned_config(base: Any, run_dir: Path, lam: float) -> Any:
    """The conditioned IN with DisCo strength ``lam``; DisCo runs get no wrong-mass copies.

    A mass-decorrelated tagger must not prefer QCD jets near the hypothesis, which is
    what the wrong-mass negatives teach, so the two are not combined.
    """
    data = base.data if lam == 0 else dataclasses.replace(base.data, wrong_mass_weight=0.0)
    loss = dataclasses.replace(base.loss, disco_lambda=lam)
    return dataclasses.replace(base, run_dir=str(run_dir), progress=False, data=data, loss=loss)


def xbb_chain(
    cfg: Any,
    out: Path,
    step: Callable[..., dict[str, Any]],
    gen: Callable[..., dict[str, Any]],
    build: Callable[..., dict[str, Any]],
) -> None:
    """Run the X→bb chain of ``cfg`` (a :class:`paratag.validate.ValidateConfig`) into ``out/xbb``."""
    from paratag.generate import GenerateConfig
    from paratag.training import load_train_config

    xcfg = GenerateConfig.from_file(cfg.xbb_generate_config)
    n_x = cfg.xbb_events or cfg.events
    xin = {"config": cfg.xbb_generate_config, "events": n_x, "seed": cfg.seed}
    gx = step("xbb", "xbb_generate", lambda: gen(xcfg, "xbb/generated", n_x, cfg.seed), xin)
    shards = out / "xbb" / "shards"
    step("xbb", "xbb_build", lambda: build(gx["fileset"], "xbb/shards", "jet", ("mX",)), xin)
    base = scaled_schedule(
        load_train_config(cfg.xbb_train_config, shards=str(shards), seed=cfg.seeds[0]),
        cfg.stage1_epochs,
        cfg.stage3_epochs,
    )
    lambdas = cfg.xbb_disco_lambdas or (base.loss.disco_lambda,)
    runs = {disco_key(lam): lam for lam in (0.0, *lambdas)}
    run_dirs = {k: out / "xbb" / f"run_{k}" for k in runs}
    taggers = {t: _tagger_config(base, t, out / "xbb" / f"tagger_{t}") for t in cfg.xbb_taggers}

    def do_train() -> dict[str, Any]:
        conditioned = [_conditioned_config(base, run_dirs[k], lam) for k, lam in runs.items()]
        side = [functools.partial(train_inclusive_job, c) for c in taggers.values()]
        res = train_parallel(conditioned, cfg.workers, side)
        return {
            "runs": dict(zip(runs, res[: len(runs)], strict=True)),
            "taggers": dict(zip(taggers, res[len(runs) :], strict=True)),
            "disco_lambdas": list(lambdas),
            "stage1_epochs": base.stage1.epochs if base.stage1.enabled else 0,
            "stage3_epochs": base.stage3.epochs,
        }

    tin = {
        "config": cfg.xbb_train_config,
        # the whole schedule: editing the YAML redoes the step
        "config_crc32": config_crc32(base),
        "seed": cfg.seeds[0],
        "stage1_epochs": base.stage1.epochs,
        "stage3_epochs": base.stage3.epochs,
        "disco_lambdas": list(lambdas),
        "taggers": list(taggers),
    }
    trained = step("xbb", "xbb_train", do_train, tin)

    step(
        "xbb",
        "xbb_evaluate",
        lambda: _evaluate(cfg, out, run_dirs, trained),
        {"n_boot": cfg.n_boot, "importance": IMPORTANCE_EVENTS},
    )


def _evaluate(
    cfg: Any, out: Path, run_dirs: dict[str, Path], trained: dict[str, Any]
) -> dict[str, Any]:
    """Every conditioned IN run on the same test jets; the table and studies on ``no_disco``."""
    from paratag.evaluate.run import evaluate_run

    res = {}
    models = {t: v["model"] for t, v in trained["taggers"].items()}
    for k, r in run_dirs.items():
        main = k == "no_disco"  # the table and the mass awareness: the conditioned IN
        md = evaluate_run(
            r,
            out / "xbb" / "shards",
            out / "xbb" / f"evaluation_{k}",
            n_boot=cfg.n_boot,
            compare=models if main else {},
            inclusive_model=models.get("interaction_net") if main else None,
            importance=IMPORTANCE_EVENTS if main else 0,
            progress=False,
        )
        res[k] = str(Path(md).parent / "results.json")
    return {"results": res}
