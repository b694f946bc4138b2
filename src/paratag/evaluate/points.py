"""The studies of :func:`~paratag.evaluate.run.evaluate_run` made at each mass point.

Dedicated models (the run's stage-1 models, or trained on demand), the hypothesis
study of :mod:`paratag.evaluate.hypotheses` with the preset's physics reference,
and the per-point AUCs of runs trained with other seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paratag.conditions import point_name
from paratag.errors import ConfigError
from paratag.evaluate.hypotheses import hypothesis_study
from paratag.evaluate.inference import Scorer, diagonal_aucs
from paratag.evaluate.reference import reference_from_preset
from paratag.evaluate.runs import EvalSample, LoadedRun, load_model_for_eval, load_run
from paratag.evaluate.studies import point_label

__all__ = [
    "DedicatedTrainer",
    "dedicated_aucs",
    "dedicated_models",
    "hypothesis_study_of",
    "preset_reference",
    "seed_aucs",
]

Point = tuple[float, ...]
#: ``trainer(point, folder) -> checkpoint or why not``: dedicated models on demand (workflow layer)
DedicatedTrainer = Callable[[Point, Path], "Path | str"]


def preset_reference(sample: EvalSample, names: Sequence[str]) -> Any:
    """The shards' preset reference scorer (None when the preset declares none)."""
    from paratag.presets import builtin_presets, load_preset

    preset = sample.store.manifest.get("preset")
    if not preset:
        return None
    if not preset.get("reference") and preset.get("name") in builtin_presets():
        # shards built before presets declared references: take the packaged preset's
        preset = {**preset, "reference": dict(load_preset(preset["name"]).reference)}
    return reference_from_preset(load_preset(preset), names)


def hypothesis_study_of(
    run: LoadedRun,
    scorer: Scorer,
    test: EvalSample,
    hyps: list[Point],
    parametric: tuple[np.ndarray, np.ndarray],
    dedicated: Mapping[Point, Path],
    inclusive_model: str | Path | None,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """The hypothesis study; ``parametric`` is the model's discriminant and mean-score matrix."""
    dev = scorer.device
    inclusive = None
    if inclusive_model is not None:
        path = Path(inclusive_model)
        inc = load_model_for_eval(path, dev)
        inclusive = (path, tuple(inc.info.get("inclusive_condition", hyps[0])))
    names = run.grid.names
    return hypothesis_study(
        hyps=hyps,
        names=names,
        test=test,
        scorer=scorer,
        parametric=run.model,
        parametric_disc=parametric[0],
        parametric_mean=parametric[1],
        dedicated=dedicated,
        inclusive=inclusive,
        reference=preset_reference(test, names),
        load=lambda path: load_model_for_eval(Path(path), dev),
        n_boot=n_boot,
        seed=seed,
    )


def dedicated_aucs(
    study: Mapping[str, Any], dedicated: Mapping[Point, Path], names: Sequence[str]
) -> dict[Point, float]:
    """Each dedicated model's AUC against every background, from the hypothesis study's scores."""
    out = {}
    for p in dedicated:
        entry = study["per_point"].get(point_name(p, names), {})
        if "dedicated" in entry:
            out[p] = float(entry["dedicated"]["all"]["auc"])
    return out


def seed_aucs(
    run: LoadedRun,
    scorer: Scorer,
    test: EvalSample,
    hyps: list[Point],
    par_aucs: dict[Point, float],
    seeds_runs: Sequence[str | Path],
    dev: torch.device,
) -> dict[int, dict[Point, float]]:
    """Per-point parametric AUCs of this run and of runs trained with other seeds."""
    if not seeds_runs:
        return {}
    names = run.grid.names
    out = {int(run.cfg.seed): par_aucs}
    for other_dir in seeds_runs:
        other = load_run(other_dir, dev)
        if other.grid.names != names:
            raise ConfigError(
                f"{other_dir}: conditions {list(other.grid.names)} differ from {list(names)}"
            )
        if int(other.cfg.seed) in out:
            raise ConfigError(
                f"{other_dir}: seed {other.cfg.seed} is already used by another run; "
                "seed stability needs runs trained with different seeds"
            )
        tag = f"seed {other.cfg.seed}"
        out[int(other.cfg.seed)] = diagonal_aucs(scorer, other.model, test, hyps, tag)
    return out


def dedicated_models(
    run: LoadedRun, hyps: list[Point], out: Path, trainer: DedicatedTrainer | None
) -> tuple[dict[Point, Path], dict[Point, str]]:
    """Checkpoint of a dedicated model per point, or why there is none."""
    src: dict[Point, Path] = {}
    why: dict[Point, str] = {}
    for p in hyps:
        label = point_label(p, run.grid.names)
        if p in run.dedicated:
            src[p] = run.dedicated[p]
        elif run.grid.role_of(p) == "train":
            why[p] = f"no dedicated model for {label} (no stage-1 model in {run.path / 'stage1'})"
        elif trainer is None:
            why[p] = (
                f"no dedicated model for {label} (pass --train-dedicated to train one on demand)"
            )
        else:
            got = trainer(p, out / run.grid.name(p))
            if isinstance(got, Path):
                src[p] = got
            else:
                why[p] = f"no dedicated model for {label} ({got})"
    return src, why
