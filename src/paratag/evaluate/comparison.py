"""Several taggers on the same test events: AUC and background rejection side by side.

:func:`compare_models` scores every model on one :class:`~paratag.evaluate.runs.EvalSample`
(the same signal and background rows for all) and reports, per mass point and for
the training points together, the AUC and 1/εB at εS = 30% and 50% with
bootstrap σ. A parametric model scores each point's signal and the backgrounds
at that point's hypothesis; an unconditioned model scores every event once. The
pooled row ("all") takes each training point's signal at its own hypothesis and
the backgrounds at each of those hypotheses with weight 1/(number of points), so
it is the same number for a model that ignores the hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from paratag.evaluate.metrics import bootstrap_metrics

__all__ = ["COMPARISON_METRICS", "ModelComparison", "compare_models"]

Point = tuple[float, ...]
#: The metrics of the table (names of :func:`~paratag.evaluate.metrics.binary_metrics`).
COMPARISON_METRICS = ("auc", "rej@sig0.3", "rej@sig0.5")
#: Row name of the training points pooled.
ALL = "all"


@dataclass(frozen=True)
class ModelComparison:
    """Per model and row (mass point or ``all``): nominal metrics and bootstrap σ.

    Attributes:
        models: model names in table order.
        rows: row names (point names, then ``all``).
        nominal: ``{model: {row: {metric: value}}}``.
        std: bootstrap σ, same layout (NaN when ``n_boot == 0``).
        n_signal: signal events per row; n_background: background events.
        conditioned: whether each model reads the hypothesis.
        n_boot: bootstrap replicas.
    """

    models: tuple[str, ...]
    rows: tuple[str, ...]
    nominal: dict[str, dict[str, dict[str, float]]]
    std: dict[str, dict[str, dict[str, float]]]
    n_signal: dict[str, int]
    n_background: int
    conditioned: dict[str, bool]
    n_boot: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "models": list(self.models),
            "rows": list(self.rows),
            "metrics": list(COMPARISON_METRICS),
            "nominal": self.nominal,
            "std": self.std,
            "n_signal": dict(self.n_signal),
            "n_background": self.n_background,
            "conditioned": dict(self.conditioned),
            "n_boot": self.n_boot,
        }

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows (one per model and point) with ``value ± σ`` cells."""
        head = ["model", "point", "signal", *COMPARISON_METRICS]
        body = []
        for m in self.models:
            for r in self.rows:
                cells = [
                    _cell(self.nominal[m][r][k], self.std[m][r][k], 4 if k == "auc" else 1)
                    for k in COMPARISON_METRICS
                ]
                body.append([m, r, str(self.n_signal[r]), *cells])
        return head, body

    def report_blocks(self) -> list[tuple[Any, ...]]:
        """The report section: what is compared, then :meth:`table`."""
        text = (
            f"Every model on the same {self.n_background} background and per-point signal "
            "events; rejection is 1/εB at the signal efficiency shown (inf: no background "
            f"event passes); ± is the bootstrap σ ({self.n_boot} replicas). `all`: the "
            "training points pooled."
        )
        return [("p", text), ("table", *self.table())]

    def best(self, row: str = ALL, metric: str = "auc") -> str:
        """Name of the model with the largest ``metric`` in ``row``."""
        return max(self.models, key=lambda m: self.nominal[m][row][metric])


def _cell(value: float, sigma: float, decimals: int) -> str:
    """``value ± σ`` with ``decimals`` decimals (σ omitted when not bootstrapped)."""
    if not np.isfinite(value):
        return "inf" if value > 0 else "n/a"
    if not np.isfinite(sigma):
        return f"{value:.{decimals}f}"
    return f"{value:.{decimals}f} ± {sigma:.{decimals}f}"


#: ``score(model, rows, hypotheses) -> (len(rows), len(hypotheses))`` signal discriminant.
ScoreRows = Callable[[Any, np.ndarray, Sequence[Point]], np.ndarray]


def compare_models(
    models: Mapping[str, Any],
    *,
    signal: Mapping[Point, np.ndarray],
    background: np.ndarray,
    weight: np.ndarray,
    train_points: Sequence[Point],
    point_name: Callable[[Point], str],
    score: ScoreRows,
    conditioned: Callable[[Any], bool],
    n_boot: int = 100,
    seed: int = 0,
) -> ModelComparison:
    """Score every model on the same rows and tabulate :data:`COMPARISON_METRICS`.

    Args:
        models: ``{name: model}`` in table order (anything ``score`` accepts).
        signal: signal rows per mass point.
        background: background rows.
        weight: per-row event weights (indexed by row).
        train_points: points pooled into the ``all`` row.
        point_name: row name of a point.
        score: scores rows at hypotheses (see :data:`ScoreRows`).
        conditioned: whether a model reads the hypothesis.
        n_boot: bootstrap replicas (0: no σ).
        seed: bootstrap seed.
    """
    points = list(signal)
    pooled = [p for p in train_points if p in signal]
    rows = [point_name(p) for p in points] + ([ALL] if pooled else [])
    nominal: dict[str, dict[str, dict[str, float]]] = {}
    std: dict[str, dict[str, dict[str, float]]] = {}
    flags: dict[str, bool] = {}
    wb = weight[background]
    for name, model in models.items():
        flags[name] = bool(conditioned(model))
        hyps = points if flags[name] else points[:1]
        sig = {p: score(model, signal[p], [p if flags[name] else points[0]])[:, 0] for p in points}
        bkg = score(model, background, hyps)  # (B, len(hyps))
        col = {p: bkg[:, points.index(p) if flags[name] else 0] for p in points}
        parts = {point_name(p): ([sig[p]], [weight[signal[p]]], [col[p]], [wb]) for p in points}
        if pooled:
            share = 1.0 / len(pooled)
            parts[ALL] = (
                [sig[p] for p in pooled],
                [weight[signal[p]] for p in pooled],
                [col[p] for p in pooled],
                [wb * share for _ in pooled],
            )
        nominal[name], std[name] = {}, {}
        for r, (ss, ws, sb, wbs) in parts.items():
            s_sig, s_bkg = np.concatenate(ss), np.concatenate(sb)
            y = np.r_[np.ones(s_sig.size), np.zeros(s_bkg.size)]
            m = bootstrap_metrics(
                y,
                np.r_[s_sig, s_bkg],
                np.concatenate([*ws, *wbs]),
                n_boot=n_boot,
                seed=seed,
            )
            nominal[name][r] = {k: float(m.nominal[k]) for k in COMPARISON_METRICS}
            std[name][r] = {k: float(m.std[k]) for k in COMPARISON_METRICS}
    n_signal = {point_name(p): int(len(signal[p])) for p in points}
    if pooled:
        n_signal[ALL] = int(sum(len(signal[p]) for p in pooled))
    return ModelComparison(
        models=tuple(models),
        rows=tuple(rows),
        nominal=nominal,
        std=std,
        n_signal=n_signal,
        n_background=int(len(background)),
        conditioned=flags,
        n_boot=n_boot,
    )
