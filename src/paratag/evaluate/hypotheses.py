"""The mass-awareness study of ``paratag evaluate``: does the parametric model use its hypothesis?

:func:`hypothesis_study` takes the parametric scores of every signal sample at
every hypothesis (already computed for the wrong-hypothesis matrix), scores the
same events with each dedicated model, the inclusive model and the preset's
physics reference (:mod:`paratag.evaluate.reference`), and returns one JSON-able
dict with

- ``per_point``: per point and scorer, AUC ± bootstrap σ against every
  background process, all backgrounds (cross-section weighted and at equal
  process weight) and the resonant group;
- ``awareness``: per scorer, the hypothesis-discrimination matrix, the
  mass-awareness index binned in the distance of one condition parameter, and
  the fraction of points whose mean score peaks at their own hypothesis;
- ``sensitivity``: mean |Δscore| per GeV of each condition parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from paratag.conditions import point_name
from paratag.evaluate.mass_awareness import (
    DISTANCE_EDGES,
    MIN_DISTANCES,
    mass_awareness,
    process_aucs,
    sensitivity,
)

__all__ = ["RESONANT_BACKGROUNDS", "hypothesis_study", "signal_layout", "weighted_mean"]

Point = tuple[float, ...]
#: Default resonant group: processes with a Z -> ll peak a few GeV from the mA values.
RESONANT_BACKGROUNDS: tuple[str, ...] = ("WZ", "ZZ", "DY")


def signal_layout(test: Any, hyps: Sequence[Point]) -> tuple[np.ndarray, list[slice], slice]:
    """Rows of every point's signal (in ``hyps`` order) then the backgrounds; their slices."""
    rows = np.concatenate([*(test.points[p] for p in hyps), test.background])
    slices, lo = [], 0
    for p in hyps:
        slices.append(slice(lo, lo + len(test.points[p])))
        lo += len(test.points[p])
    return rows, slices, slice(lo, len(rows))


def hypothesis_study(
    *,
    hyps: Sequence[Point],
    names: Sequence[str],
    test: Any,
    scorer: Any,
    parametric: Any,
    parametric_disc: np.ndarray,
    parametric_mean: np.ndarray,
    dedicated: Mapping[Point, Any],
    inclusive: tuple[Any, Point] | None,
    reference: Any,
    load: Callable[[Any], Any],
    distance: str | None = None,
    resonant: Sequence[str] = RESONANT_BACKGROUNDS,
    n_boot: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the study; see the module docstring.

    Args:
        hyps: signal points of the test sample, in the order of ``parametric_disc``'s columns.
        names: condition names.
        test: the test sample (``points``, ``background``, ``weight``, ``label``, ``store``).
        scorer: the evaluation's scorer (``probs``, ``disc``).
        parametric: the parametric model.
        parametric_disc: ``(rows, H)`` discriminant of :func:`signal_layout` rows at each hypothesis.
        parametric_mean: ``(H, H)`` mean parametric score of signal i at hypothesis j (the
            wrong-hypothesis matrix, already computed by the caller).
        dedicated: checkpoint path per point with a dedicated model.
        inclusive: ``(checkpoint path, the constant condition it was trained at)`` or None.
        reference: a reference scorer (:mod:`paratag.evaluate.reference`) or None.
        load: loads a checkpoint path into a model for ``scorer.probs``.
        distance: condition parameter of the pair distance (default: the reference's,
            else the last name).
        resonant: background dataset names forming the resonant group.
        n_boot: bootstrap replicas of each AUC.
        seed: bootstrap seed.
    """
    rows, slices, bkg = signal_layout(test, hyps)
    weight, label = test.weight[rows], test.label[rows]
    ds_names = test.store.dataset_names()
    process = np.asarray([ds_names[d] for d in test.store.table["dataset"][rows[bkg]]])
    groups = {"resonant": [r for r in resonant if r in set(process)]}
    groups = {k: v for k, v in groups.items() if v}
    distance = distance or (names[reference.column] if reference is not None else names[-1])

    discs = _discriminants(
        test, rows, label, hyps, scorer, parametric_disc, dedicated, inclusive, reference, load
    )
    per_point: dict[str, dict[str, Any]] = {}
    for h, (p, sl) in enumerate(zip(hyps, slices, strict=True)):
        entry = {}
        for name, d in discs.items():
            if np.isnan(d[sl, h]).all():
                continue
            res = process_aucs(
                d[sl, h], weight[sl], d[bkg, h], weight[bkg], process, groups, n_boot, seed
            )
            entry[name] = {k: {"auc": v[0], "sigma": v[1]} for k, v in res.items()}
        per_point[point_name(p, names)] = entry

    bins = (
        (reference.edges, reference.min_distances)
        if reference is not None
        else (DISTANCE_EDGES, MIN_DISTANCES)
    )
    awareness = _awareness(discs, hyps, names, slices, bkg, weight, parametric_mean, distance, bins)

    return {
        "distance": distance,
        "resonant": groups.get("resonant", []),
        "processes": sorted(set(process)),
        "per_point": per_point,
        "awareness": awareness,
        "sensitivity": _sensitivity(scorer, parametric, test, hyps, names),
    }


def _discriminants(
    test: Any,
    rows: np.ndarray,
    label: np.ndarray,
    hyps: Sequence[Point],
    scorer: Any,
    parametric_disc: np.ndarray,
    dedicated: Mapping[Point, Any],
    inclusive: tuple[Any, Point] | None,
    reference: Any,
    load: Callable[[Any], Any],
) -> dict[str, np.ndarray]:
    """Per scorer, ``(rows, H)``: the sample rows scored at hypothesis h (by the scorer for h)."""
    discs: dict[str, np.ndarray] = {"parametric": parametric_disc}
    if dedicated:
        d = np.full((len(rows), len(hyps)), np.nan)
        for h, p in enumerate(hyps):
            if p in dedicated:
                probs = scorer.probs(
                    load(dedicated[p]), test, rows, [np.asarray(p)], f"dedicated {p}"
                )
                d[:, h] = scorer.disc(probs[:, 0], label)
        discs["dedicated"] = d
    if inclusive is not None:
        path, cond = inclusive
        probs = scorer.probs(load(path), test, rows, [np.asarray(cond)], "inclusive")
        discs["inclusive"] = np.repeat(scorer.disc(probs[:, 0], label)[:, None], len(hyps), 1)
    if reference is not None:
        discs["reference"] = reference.score_rows(test.store, rows, np.asarray(hyps, np.float32))

    return discs


def _awareness(
    discs: Mapping[str, np.ndarray],
    hyps: Sequence[Point],
    names: Sequence[str],
    slices: Sequence[slice],
    bkg: slice,
    weight: np.ndarray,
    parametric_mean: np.ndarray,
    distance: str,
    bins: tuple[Sequence[float], Sequence[float]],
) -> dict[str, Any]:
    """The mass-awareness result of every scorer that reads the hypothesis.

    ``bins``: the pair-distance bin edges and the "at least this far apart" distances.
    """
    awareness = {}
    for name, d in discs.items():
        if name == "inclusive":
            continue  # ignores the hypothesis by construction: MA = 0 exactly
        have = [h for h in range(len(hyps)) if not np.isnan(d[slices[h], h]).all()]
        if len(have) < 2:
            continue
        scores = [[d[slices[j], h] for h in have] for j in have]  # [sample][hypothesis]
        mean = None
        if name == "parametric":
            mean = parametric_mean[np.ix_(have, have)]
        elif name == "reference":
            mean = np.array(
                [[weighted_mean(d[slices[j], h], weight[slices[j]]) for h in have] for j in have]
            )
        awareness[name] = mass_awareness(
            name,
            names,
            [hyps[h] for h in have],
            scores,
            [weight[slices[j]] for j in have],
            distance,
            mean_scores=mean,
            min_distances=bins[1],
            background=([d[bkg, h] for h in have], weight[bkg]),
            edges=bins[0],
        ).to_dict()

    return awareness


def weighted_mean(x: np.ndarray, w: np.ndarray) -> float:
    """Weighted mean of ``x`` (the plain mean when the weights sum to zero)."""
    return float(np.average(x, weights=w)) if w.sum() > 0 else float(np.mean(x))


def _sensitivity(
    scorer: Any,
    model: Any,
    test: Any,
    hyps: Sequence[Point],
    names: Sequence[str],
    step: float = 1.0,
) -> dict[str, float]:
    """Mean |Δscore| per GeV of each parameter, for signal at its own hypothesis."""
    rows = np.concatenate([test.points[p] for p in hyps])
    base = np.concatenate(
        [np.tile(np.asarray(p, np.float32), (len(test.points[p]), 1)) for p in hyps]
    )
    conds = [base]
    for k in range(len(names)):
        shifted = base.copy()
        shifted[:, k] += step
        conds.append(shifted)
    probs = scorer.probs(model, test, rows, conds, "sensitivity")
    label = test.label[rows]
    disc = [scorer.disc(probs[:, j], label) for j in range(len(conds))]
    values = sensitivity(disc[0], disc[1:], [step] * len(names))
    return {f"d score / d {n} [1/GeV]": v for n, v in zip(names, values, strict=True)}
