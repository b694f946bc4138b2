"""Write the evaluation report: figures, ``results.json``, ``report.md`` and ``report.html``.

The report is built once as a list of blocks (headings, paragraphs, tables,
figures) and rendered twice: Markdown with relative figure links, and a
self-contained HTML page with the PNGs embedded as base64. Every section of
:data:`~paratag.evaluate.results.SECTIONS` is always present; a section whose
inputs were not given says ``not run: <why>``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from paratag.evaluate import plots
from paratag.evaluate.decorrelation import decorrelation_points
from paratag.evaluate.render import Block, to_html, to_markdown
from paratag.evaluate.results import EvaluationResults, compute_results
from paratag.evaluate.studies import point_label

__all__ = ["build_report", "write_report"]

_TITLES = {
    "metrics": "Metrics",
    "parametric_vs_dedicated": "Parametric vs dedicated",
    "interp_extrap": "Interpolation/extrapolation",
    "wrong_hypothesis": "Wrong hypothesis",
    "mass_awareness": "Mass awareness (hypothesis discrimination)",
    "background_aucs": "AUC per background process",
    "auc_grid": "AUC heatmap",
    "seed_stability": "Seed stability",
    "decorrelation": "Decorrelation (sculpting/JSD)",
    "pileup": "Pileup robustness",
    "model_comparison": "Model comparison (same test events)",
    "interpretability": "Interpretability (permutation importance, saliency)",
    "training_curves": "Training curves",
}


def _fmt(v: Any, digits: int = 4) -> str:
    """Compact number formatting (inf, nan and None spelled out)."""
    if v is None:
        return "n/a"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf"
        return f"{v:.0f}" if abs(v) >= 10**digits else f"{v:.{digits}g}"
    return str(v)


def _not_run(why: str) -> Block:
    return ("p", f"**not run:** {why}")


def _optional(r: EvaluationResults, key: str, study: Any, why: str, *args: Any) -> list[Block]:
    """A study that renders its own blocks (``report_blocks``), or why it did not run."""
    return study.report_blocks(*args) if study is not None else [_not_run(r.skipped.get(key, why))]


def _metrics(r: EvaluationResults, fig: Path) -> list[Block]:
    if r.metrics is None or r.test is None or r.roc is None:
        return [_not_run(r.skipped.get("metrics", "no test scores"))]
    m = r.metrics
    rows = [
        [k, _fmt(m.nominal[k]), _fmt(m.std[k], 2), f"[{_fmt(m.low[k])}, {_fmt(m.high[k])}]"]
        for k in m.nominal
    ]
    out: list[Block] = [
        (
            "p",
            f"Signal class `{r.class_names[r.signal_index]}` vs all backgrounds on the "
            f"final discriminant; weighted; bootstrap (events resampled) with {m.n_boot} replicas "
            f"(seed {m.seed}; 0 = no bootstrap). `rej@sigX` = 1/εB at εS = X, `sig@bkgX` = εS at εB = X.",
        ),
        ("table", ["metric", "value", "bootstrap std", "68% interval"], rows),
        (
            "fig",
            plots.plot_roc(r.roc, fig),
            "ROC curves (background rejection vs signal efficiency)",
        ),
    ]
    t = r.train
    train = (
        None
        if t is None
        else (t.discriminant(r.signal_index, r.background_weights), t.labels, t.w())
    )
    png = plots.plot_score_distributions(
        r.test.discriminant(r.signal_index, r.background_weights),
        r.test.labels,
        r.test.w(),
        r.class_names,
        fig,
        train=train,
    )
    out.append(("fig", png, "Weighted, normalised discriminant per class (dashed: train)"))
    if r.ks:
        out.append(
            (
                "p",
                "Kolmogorov–Smirnov test, train vs test discriminant per class "
                "(overfitting check; p-value from effective sample sizes):",
            )
        )
        out.append(
            (
                "table",
                ["class", "KS D", "p-value", "n_eff train", "n_eff test"],
                [
                    [k, _fmt(v.statistic), _fmt(v.pvalue), _fmt(v.n_eff_a, 6), _fmt(v.n_eff_b, 6)]
                    for k, v in r.ks.items()
                ],
            )
        )
    else:
        out.append(_not_run("KS train vs test: no scored training sample was given"))
    return out


def _comparison(r: EvaluationResults, fig: Path, splits: tuple[str, ...]) -> list[Block]:
    key = "parametric_vs_dedicated" if splits == ("train",) else "interp_extrap"
    c = r.comparison
    if c is None or not set(splits) & set(c.split):
        return [_not_run(r.skipped.get(key, "no inputs"))]
    d = c.to_dict()
    rows = [
        [
            x["label"],
            x["split"],
            _fmt(x["auc_parametric"]),
            _fmt(x["auc_dedicated"]),
            _fmt(x["ratio"]),
            _fmt(x["passes"]),
        ]
        for x in d["rows"]
        if x["split"] in splits
    ]
    summ = [
        [
            s,
            _fmt(v["n"]),
            _fmt(v["mean_ratio"]),
            _fmt(v["min_ratio"]),
            _fmt(v["threshold"]),
            _fmt(v["fraction_passing"]),
        ]
        for s, v in d["summary"].items()
        if s in splits
    ]
    out: list[Block] = [
        ("table", ["point", "split", "AUC param.", "AUC dedicated", "ratio", "passes"], rows),
        (
            "table",
            ["split", "points", "mean ratio", "min ratio", "target", "fraction passing"],
            summ,
        ),
    ]
    if splits == ("train",):
        seed_thr = c.thresholds.get("seed", 0.95)
        ok = np.asarray(c.passes("seed"))[np.asarray(c.split) == "train"]
        out.insert(
            0,
            (
                "p",
                f"Seed success criterion ratio ≥ {seed_thr:g}: {int(ok.sum())}/{ok.size} "
                f"training points pass; target ≥ {c.thresholds['train']:g}.",
            ),
        )
        out.append(("fig", fig / "parametric_vs_dedicated.png", "Parametric vs dedicated AUC"))
    else:
        out.insert(
            0,
            (
                "p",
                "AUC of the parametric model at unseen mass points vs a dedicated "
                "model trained there (targets: interp ≥ "
                f"{c.thresholds['interp']:g}, extrap ≥ {c.thresholds['extrap']:g}).",
            ),
        )
        out.append(
            ("fig", fig / "parametric_vs_dedicated.png", "Parametric vs dedicated AUC (all points)")
        )
    return out


def _wrong(r: EvaluationResults, fig: Path) -> list[Block]:
    wh = r.wrong_hypothesis
    if wh is None:
        return [_not_run(r.skipped.get("wrong_hypothesis", "no inputs"))]
    names = wh.condition_names
    rows = []
    for i, t in enumerate(wh.true_points):
        row = wh.matrix[i]
        at_true = row[wh.hypotheses.index(t)] if t in wh.hypotheses else float("nan")
        rows.append(
            [
                point_label(t, names),
                point_label(wh.peak[i], names),
                _fmt(float(row.max())),
                _fmt(float(at_true)),
                _fmt(wh.peaks_at_true[i]),
            ]
        )
    frac = float(np.mean(wh.peaks_at_true))
    return [
        (
            "p",
            f"Signal samples scored at every hypothesis; {frac:.0%} of them peak at their true mass.",
        ),
        (
            "table",
            ["true point", "peak hypothesis", "peak score", "score at true", "peaks at true"],
            rows,
        ),
        (
            "fig",
            plots.plot_wrong_hypothesis(wh, fig),
            "Mean signal score: true point vs hypothesis",
        ),
    ]


def _awareness(r: EvaluationResults) -> list[Block]:
    hy = r.hypotheses
    if not hy or not hy.get("awareness"):
        return [_not_run(r.skipped.get("mass_awareness", "fewer than two signal points"))]
    dist = hy["distance"]
    first = next(iter(hy["awareness"].values()))
    labels = [f"Δ{dist} ∈ [{float(b['lo']):g}, {float(b['hi']):g})" for b in first["bins"]]
    at = list(first["mean_at"])  # the preset's "at least this far apart" distances
    rows = []
    for name, a in hy["awareness"].items():
        rows.append(
            [
                name,
                *[f"{_fmt(b['mean'], 3)} ({b['pairs']})" for b in a["bins"]],
                *[_fmt(a["mean_at"].get(k), 3) for k in at],
                _fmt(a["peak_fraction"], 3),
                _fmt(a.get("background_peak_fraction"), 3),
            ]
        )
    sens = ", ".join(f"{k} = {_fmt(v, 3)}" for k, v in hy.get("sensitivity", {}).items())
    return [
        (
            "p",
            "MA(i, j) = AUC_i(signal i vs signal j) + AUC_j(signal j vs signal i) − 1, each "
            "scored at the first point's hypothesis (by its dedicated model for `dedicated`): "
            "0 for a scorer that ignores the hypothesis, 1 for perfect separation. Mean over "
            f"pairs (number of pairs) per bin of Δ{dist}; `peaks` is the fraction of points "
            "whose mean score is largest at their own hypothesis, `peaks vs SM` the fraction "
            "whose AUC against the backgrounds (both scored at each hypothesis) is largest "
            "there — a measure that a hypothesis-dependent offset of the score cannot move. "
            "The inclusive model has MA = 0 by construction.",
        ),
        (
            "table",
            ["scorer", *labels, *[f"Δ{dist} ≥ {k}" for k in at], "peaks", "peaks vs SM"],
            rows,
        ),
        ("p", f"Sensitivity of the parametric score (signal at its own hypothesis): {sens}."),
    ]


def _background_aucs(r: EvaluationResults) -> list[Block]:
    hy = r.hypotheses
    if not hy or not hy.get("per_point"):
        return [_not_run(r.skipped.get("background_aucs", "no signal points"))]
    cols = ["all", "all (equal weight)", *(["resonant"] if hy.get("resonant") else [])]
    cols += list(hy.get("processes", []))
    rows = []
    for point, entry in hy["per_point"].items():
        for scorer, aucs in entry.items():
            rows.append(
                [
                    point,
                    scorer,
                    *[
                        f"{_fmt(aucs[c]['auc'], 4)} ± {_fmt(aucs[c]['sigma'], 1)}"
                        if c in aucs
                        else "n/a"
                        for c in cols
                    ],
                ]
            )
    return [
        (
            "p",
            "Signal of each point vs each background process at that hypothesis (AUC ± "
            "bootstrap σ). `all` is cross-section weighted, `all (equal weight)` gives every "
            f"process the same weight; `resonant` = {', '.join(hy.get('resonant', [])) or 'none'}.",
        ),
        ("table", ["point", "scorer", *cols], rows),
    ]


def _grid(r: EvaluationResults, fig: Path) -> list[Block]:
    g = r.auc_grid
    if g is None:
        return [_not_run(r.skipped.get("auc_grid", "no inputs"))]
    rows = []
    for i, yv in enumerate(g.y):
        for j, xv in enumerate(g.x):
            if np.isfinite(g.auc[i, j]):
                p = (xv, yv) if len(g.condition_names) > 1 else (xv,)
                rows.append([point_label(p, g.condition_names), g.split[i][j], _fmt(g.auc[i, j])])
    return [
        ("table", ["point", "split", "AUC"], rows),
        (
            "fig",
            plots.plot_auc_grid(g, fig),
            "Parametric AUC over the mass grid (o trained, □ interp, △ extrap)",
        ),
    ]


def _seeds(r: EvaluationResults, fig: Path) -> list[Block]:
    s = r.seeds
    if s is None:
        return [_not_run(r.skipped.get("seed_stability", "no inputs"))]
    out: list[Block] = [
        ("p", f"AUC over {len(s.seeds)} seeds: mean {_fmt(s.mean)} ± {_fmt(s.std, 2)} (std)."),
        (
            "table",
            ["seed", "AUC"],
            [[str(k), _fmt(v)] for k, v in zip(s.seeds, s.aucs, strict=True)],
        ),
    ]
    if s.per_point:
        out.append(
            (
                "table",
                ["point", "mean AUC", "std", "seeds"],
                [
                    [k, _fmt(v["mean"]), _fmt(v["std"], 2), _fmt(v["n"])]
                    for k, v in s.per_point.items()
                ],
            )
        )
    out.append(("fig", plots.plot_seed_stability(s, fig), "AUC per training seed"))
    return out


def _decorrelation(r: EvaluationResults, fig: Path) -> list[Block]:
    if not r.sculpting:
        return [_not_run(r.skipped.get("decorrelation", "no inputs"))]
    out: list[Block] = []
    for name, sr in r.sculpting.items():
        rows = [
            [
                f"{e:.0%}",
                _fmt(sr.thresholds[e]),
                _fmt(sr.bkg_eff[e]),
                _fmt(sr.inv_bkg_eff(e)),
                str(sr.n_pass[e]),
                _fmt(sr.jsd[e]),
                _fmt(sr.inv_jsd(e)),
            ]
            for e in sr.after
        ]
        note = f"Model `{name}`: background mass shape before/after cuts ({sr.n_background} jets)."
        out.append(("p", note))
        out.append(("table", ["εS", "cut", "εB", "1/εB", "jets passing", "JSD", "1/JSD"], rows))
        safe = "".join(ch if ch.isalnum() else "_" for ch in name)
        png = plots.plot_sculpting(sr, fig, name=f"sculpting_{safe}")
        out.append(("fig", png, f"Mass sculpting, {name}"))
    pts = decorrelation_points(r.sculpting, r.decorrelation_sig_eff)
    out.append(("p", f"DisCo figure of merit at εS = {r.decorrelation_sig_eff:.0%}:"))
    out.append(
        (
            "table",
            ["model", "1/εB", "jets passing", "JSD", "1/JSD"],
            [
                [k, _fmt(v["inv_bkg_eff"]), str(v["n_pass"]), _fmt(v["jsd"]), _fmt(v["inv_jsd"])]
                for k, v in pts.items()
            ],
        )
    )
    out.append(("fig", plots.plot_jsd_vs_rejection(pts, fig), "1/JSD vs background rejection"))
    return out


def _pileup(r: EvaluationResults, fig: Path) -> list[Block]:
    pu = r.pileup
    if pu is None:
        return [_not_run(r.skipped.get("pileup", "no inputs"))]
    keys = list(pu.metrics[0].values)
    rows = []
    for lvl, m, b in zip(pu.levels, pu.metrics, pu.bootstrap, strict=True):
        rows.append(
            [lvl]
            + [_fmt(m.values[k]) + ("" if b is None else f" ± {_fmt(b.std[k], 2)}") for k in keys]
        )
    return [
        ("table", ["pileup"] + keys, rows),
        ("fig", plots.plot_pileup(pu, fig), "AUC and rejection per pileup level"),
    ]


def _training(r: EvaluationResults, fig: Path) -> list[Block]:
    tc = r.training
    if tc is None:
        return [_not_run(r.skipped.get("training_curves", "no inputs"))]
    rows = [
        [
            s,
            _fmt(v["n_curves"]),
            _fmt(v["n_rows"]),
            _fmt(v["final_train_loss"]),
            _fmt(v["final_val_loss"]),
            _fmt(v["best_val_auc"]),
            _fmt(v["time_s"], 3),
        ]
        for s, v in tc.summary().items()
    ]
    return [
        ("p", f"From `{tc.source}`."),
        (
            "table",
            [
                "stage",
                "curves",
                "rows",
                "final train loss",
                "final val loss",
                "best val AUC",
                "time [s]",
            ],
            rows,
        ),
        ("fig", plots.plot_training_curves(tc, fig), "Loss and validation AUC per stage"),
    ]


def _blocks(r: EvaluationResults, fig: Path) -> list[Block]:
    builders = {
        "metrics": lambda: _metrics(r, fig),
        "parametric_vs_dedicated": lambda: _comparison(r, fig, ("train",)),
        "interp_extrap": lambda: _comparison(r, fig, ("interp", "extrap")),
        "wrong_hypothesis": lambda: _wrong(r, fig),
        "mass_awareness": lambda: _awareness(r),
        "background_aucs": lambda: _background_aucs(r),
        "auc_grid": lambda: _grid(r, fig),
        "seed_stability": lambda: _seeds(r, fig),
        "decorrelation": lambda: _decorrelation(r, fig),
        "pileup": lambda: _pileup(r, fig),
        "model_comparison": lambda: _optional(r, "model_comparison", r.models, "no models given"),
        "interpretability": lambda: _optional(
            r, "interpretability", r.importance, "not asked", fig
        ),
        "training_curves": lambda: _training(r, fig),
    }
    if r.comparison is not None:  # one bar plot shared by the two comparison sections
        plots.plot_parametric_vs_dedicated(r.comparison, fig)
    blocks: list[Block] = [("h1", "paratag evaluation report")]
    for key, build in builders.items():
        blocks.append(("h2", _TITLES[key]))
        blocks.extend(build())
    return blocks


def write_report(results: EvaluationResults | Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write figures, ``results.json``, ``report.md`` and ``report.html``; return report.md.

    ``results`` is an :class:`EvaluationResults` or the keyword arguments of
    :func:`~paratag.evaluate.results.compute_results`.
    """
    r = results if isinstance(results, EvaluationResults) else compute_results(**dict(results))
    out = Path(out_dir)
    fig = out / "figures"
    fig.mkdir(parents=True, exist_ok=True)
    blocks = _blocks(r, fig)
    (out / "results.json").write_text(json.dumps(r.to_dict(), indent=1, allow_nan=False))
    md = out / "report.md"
    md.write_text(to_markdown(blocks, out))
    (out / "report.html").write_text(to_html(blocks))
    return md


def build_report(out_dir: str | Path, **inputs: Any) -> Path:
    """Compute every study from arrays/dicts and write the report; return report.md.

    ``inputs`` are the keyword arguments of :func:`~paratag.evaluate.results.compute_results`
    (``test``, ``train``, ``parametric_aucs``, ``dedicated_aucs``, ``splits``,
    ``wrong_hypothesis``, ``seed_aucs``, ``sculpting_samples``, ``pileup``,
    ``metrics_csv``, ...).
    """
    return write_report(compute_results(**inputs), out_dir)
