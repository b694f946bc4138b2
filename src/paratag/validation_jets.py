"""The X→bb̄ part of a ``paratag validate`` summary: the jet table and the DisCo curve.

:func:`summarize_jets` reads the ``xbb_evaluate`` and ``disco_evaluate`` markers and
their ``results.json``; :func:`jets_markdown` writes their sections of
``validation.md``; :func:`disco_verdict` checks the decorrelation target.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paratag.validation_targets import fmt, target_entry

__all__ = [
    "DISCO_TARGET",
    "JET_TARGETS",
    "disco_verdict",
    "jets_markdown",
    "jets_verdict",
    "read_json",
    "summarize_jets",
]

#: Issue 14: 1/JSD at εS = 50% reached at 1/εB >= 20 with >= 2,000 QCD jets passing the cut
DISCO_TARGET = {"inv_jsd": 10.0, "min_rejection": 20.0, "min_pass": 2000}

#: Issue 14's jet table (pooled AUCs): the best graph model >= 0.95; the IN within 0.01 of
#: ParticleNet; ResNet-15 >= 0.5 + 0.9 x (best graph AUC - 0.5); the conditioned IN peaks
#: at every point's own mass
JET_TARGETS = {"best_graph_auc": 0.95, "in_vs_particlenet": 0.01, "image_fraction": 0.9}

#: taggers of the jet table that read images, not graphs
IMAGE_TAGGERS = ("resnet15_image",)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``{}`` when the file does not exist (a step not run)."""
    return json.loads(path.read_text()) if path.is_file() else {}


def summarize_jets(out: Path, done: Mapping[str, Any]) -> dict[str, Any]:
    """``xbb_table``, ``xbb_importance``, ``xbb_train``, ``disco``, ``disco_train`` and the figure."""
    table = read_json(Path(done["xbb_evaluate"]["results"])) if "xbb_evaluate" in done else {}
    disco: dict[str, Any] = {}
    for k, path in done.get("disco_evaluate", {}).get("results", {}).items():
        r = read_json(Path(path))
        point = (r.get("decorrelation") or {}).get("model")
        auc = ((r.get("metrics") or {}).get("nominal") or {}).get("auc")
        disco[k] = None if point is None else {**point, "auc": auc, "results": path}
    aware = ((table.get("hypotheses") or {}).get("awareness")) or {}
    return {
        "xbb_table": table.get("model_comparison"),
        "xbb_awareness": {
            k: {"points": a["points"], "index": a["index"], "peak_fraction": a["peak_fraction"]}
            for k, a in aware.items()
        },
        "xbb_importance": _importance_summary(table.get("importance")),
        "xbb_train": done.get("xbb_train", {}),
        "disco": disco,
        "disco_train": done.get("disco_train", {}),
        "disco_figure": _disco_figure(out, disco),
    }


def disco_verdict(disco: Mapping[str, Any]) -> dict[str, Any]:
    """The best 1/JSD among the runs that pass :data:`DISCO_TARGET`'s rejection and count."""
    if not any(disco.values()):
        return {}
    t = DISCO_TARGET
    ok = [
        v["inv_jsd"]
        for v in disco.values()
        if v and v["inv_bkg_eff"] >= t["min_rejection"] and v["n_pass"] >= t["min_pass"]
    ]
    best = max(ok, default=None)
    required = (
        f"1/JSD ≥ {t['inv_jsd']:g} at 1/εB ≥ {t['min_rejection']:g}, "
        f"≥ {t['min_pass']} QCD jets passing"
    )
    margin = None if best is None else best - t["inv_jsd"]
    return {"disco": target_entry(best, t["inv_jsd"], required, margin)}


def jets_verdict(s: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`JET_TARGETS` on the pooled AUCs of the jet table and the conditioned IN's peaks."""
    t = s.get("xbb_table")
    if not t:
        return {}
    auc = {m: t["nominal"][m]["all"]["auc"] for m in t["models"]}
    graph = {m: v for m, v in auc.items() if m not in IMAGE_TAGGERS}
    best, floor = max(graph.values()), JET_TARGETS["best_graph_auc"]
    out = {"xbb_best_graph_auc": target_entry(best, floor, f"≥ {floor}", best - floor)}
    pn = next((m for m in ("particlenet", "particlenet_lite") if m in auc), None)
    if "interaction_net" in auc and pn is not None:
        d, tol = auc["interaction_net"] - auc[pn], JET_TARGETS["in_vs_particlenet"]
        out["xbb_in_vs_particlenet"] = target_entry(d, -tol, f"IN − {pn} ≥ −{tol}", d + tol)
    f = JET_TARGETS["image_fraction"]
    for m in IMAGE_TAGGERS:
        if m in auc:
            bar = 0.5 + f * (best - 0.5)
            out[f"xbb_{m}"] = target_entry(
                auc[m], bar, f"≥ 0.5 + {f} × (best graph − 0.5) = {bar:.4f}", auc[m] - bar
            )
    par = (s.get("xbb_awareness") or {}).get("parametric")
    if par:
        pf = par["peak_fraction"]
        out["xbb_peaks"] = target_entry(pf, 1.0, "= 1", pf - 1.0)
    return out


def _importance_summary(imp: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The clouds' and the five most important features' AUC drops (the images stay in the report)."""
    if not imp:
        return None
    top = dict(list(imp["features"].items())[:5])
    return {"baseline_auc": imp["baseline_auc"], "clouds": imp["clouds"], "top_features": top}


def _disco_figure(out: Path, points: Mapping[str, Any]) -> str | None:
    """1/JSD vs 1/εB of the DisCo runs as ``xbb/disco/disco_curve.png``."""
    drawn = {k.replace("_", " "): v for k, v in points.items() if v}
    if not drawn:
        return None
    from paratag.evaluate.plots import plot_jsd_vs_rejection

    png = plot_jsd_vs_rejection(drawn, out / "xbb" / "disco", "disco_curve")
    return str(png.relative_to(out))


def jets_markdown(s: Mapping[str, Any]) -> list[str]:
    """The jet-tagger table, the DisCo table and the importance line of ``validation.md``."""
    return [
        *_table_markdown(s),
        *_awareness_markdown(s),
        *_disco_markdown(s),
        *_importance_markdown(s),
    ]


def _awareness_markdown(s: Mapping[str, Any]) -> list[str]:
    """Mass-awareness index per pair of mX points: the conditioned IN and the m_SD window."""
    aw = s.get("xbb_awareness") or {}
    par, ref = aw.get("parametric"), aw.get("reference")
    if not par:
        return []
    name = [f"{p[0]:g}" for p in par["points"]]
    lines = [
        "",
        "## Mass awareness of the conditioned IN",
        "",
        f"Every point's mean score peaks at its own mX: {par['peak_fraction']:.0%} of points. "
        "MA(i, j) = AUC_i(signal i vs signal j) + AUC_j(j vs i) − 1, each scored at the first "
        "point's mass; the last column ranks by the soft-drop window −|m_SD − mX| instead.",
        "",
        "| pair of mX [GeV] | MA conditioned IN | MA m_SD window |",
        "|---|---|---|",
    ]
    for i in range(len(name)):
        for j in range(i + 1, len(name)):
            r = ref["index"][i][j] if ref else None
            lines.append(
                f"| {name[i]}, {name[j]} | {fmt(par['index'][i][j], '.3f')} | {fmt(r, '.3f')} |"
            )
    return lines


def _table_markdown(s: Mapping[str, Any]) -> list[str]:
    lines = ["", "## X→bb jet taggers (same test jets, truth-matched signal)", ""]
    t = s.get("xbb_table")
    if not t:
        return [*lines, "not run"]
    lines += [
        f"QCD test jets: {t['n_background']}; ± bootstrap σ ({t['n_boot']} replicas); "
        "`parametric` is the mX-conditioned IN scored at each point's mass, `all` pools "
        "the training points.",
        "",
        "| model | point | signal jets | AUC | 1/εB at εS = 30% | 1/εB at εS = 50% |",
        "|---|---|---|---|---|---|",
    ]
    for m in t["models"]:
        for r in t["rows"]:
            cells = [
                f"{fmt(t['nominal'][m][r][k], f)} ± {fmt(t['std'][m][r][k], f)}"
                for k, f in (("auc", ".4f"), ("rej@sig0.3", ".1f"), ("rej@sig0.5", ".1f"))
            ]
            lines.append(f"| {m} | {r} | {t['n_signal'][r]} | " + " | ".join(cells) + " |")
    train = s.get("xbb_train") or {}
    times = {
        "conditioned IN": (train.get("conditioned") or {}).get("time_s"),
        **{k: v.get("time_s") for k, v in train.get("taggers", {}).items()},
    }
    return [
        *lines,
        "",
        "Training wall time (one process, one thread each): "
        + ", ".join(f"{k} {fmt(v, '.0f')} s" for k, v in times.items())
        + ".",
    ]


def _disco_markdown(s: Mapping[str, Any]) -> list[str]:
    lines = ["", "## Mass decorrelation (conditioned IN, DisCo on the QCD soft-drop mass)", ""]
    disco = {k: v for k, v in (s.get("disco") or {}).items() if v}
    if not disco:
        return [*lines, "not run"]
    n_bkg = next(iter(disco.values()))["n_background"]
    lines += [
        f"AUC on the X→bb test jets; the cut keeps 50% of them; εB, the JSD of the QCD m_SD "
        f"shape after vs before the cut, and the jets passing are taken on a separate "
        f"QCD-only sample of {n_bkg} jets (never trained on).",
        "",
        "| run | AUC | 1/εB at εS = 50% | QCD jets passing | JSD | 1/JSD |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in disco.items():
        lines.append(
            f"| {k.replace('_', ' ')} | {fmt(v['auc'])} | {fmt(v['inv_bkg_eff'], '.1f')} | "
            f"{v['n_pass']} | {fmt(v['jsd'])} | {fmt(v['inv_jsd'], '.1f')} |"
        )
    train = s.get("disco_train") or {}
    times = {k: v.get("time_s") for k, v in train.get("runs", {}).items()}
    epochs = f" ({train['epochs']} epochs each)" if train.get("epochs") else ""
    lines += [
        "",
        f"Training wall time{epochs}: "
        + ", ".join(f"{k} {fmt(v, '.0f')} s" for k, v in times.items()),
    ]
    if s.get("disco_figure"):
        lines += ["", f"![1/JSD vs 1/εB at εS = 50%]({s['disco_figure']})"]
    return lines


def _importance_markdown(s: Mapping[str, Any]) -> list[str]:
    imp = s.get("xbb_importance")
    if not imp:
        return []
    return [
        "",
        "## What the conditioned X→bb IN looks at (AUC lost when an input is scrambled)",
        "",
        f"Baseline AUC {fmt(imp['baseline_auc'])}. Clouds: "
        + ", ".join(f"{k} {fmt(v, '+.4f')}" for k, v in imp["clouds"].items())
        + ". Top features: "
        + ", ".join(f"{k} {fmt(v, '+.4f')}" for k, v in imp["top_features"].items())
        + ".",
    ]
