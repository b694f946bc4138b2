"""The numbers of a ``paratag validate`` directory: one summary dict and its markdown tables.

:func:`summarize` reads the step markers and the evaluation's ``results.json``;
:func:`render_markdown` writes the tables of ``validation.md`` (ratios against the
:data:`TARGETS`, mass awareness, seed spread, pileup, sculpting, wall times).
"""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from paratag.validate_pileup import pileup_markdown, pileup_verdict, summarize_pileup
from paratag.validation_jets import (
    disco_verdict,
    jets_markdown,
    jets_verdict,
    read_json,
    summarize_jets,
)
from paratag.validation_targets import fmt as _f
from paratag.validation_targets import target_entry

__all__ = ["CHAINS", "TARGETS", "read_json", "render_markdown", "summarize"]

#: the chains of ``paratag validate`` (``--only``)
CHAINS = ("higgs", "pileup", "xbb", "disco")

#: Issue-9 targets: parametric/dedicated AUC ratio per split and the seed spread of the AUC.
TARGETS = {
    "train": 0.99,
    "interp": 0.98,
    "extrap": 0.95,
    "seed_std": 0.003,
    # issue 13: mass-awareness index (pairs with ΔmA >= 5 GeV) / the m(μμ) reference's
    "ma_vs_reference": 0.9,
}


def summarize(
    out: str | Path, cfg: Any, *, command: str = "", steps: Sequence[str] | None = None
) -> dict[str, Any]:
    """Collect the numbers of a (partly) finished validation directory into one dict.

    ``cfg`` is the run's :class:`paratag.validate.ValidateConfig` (recorded as a dict).

    ``steps`` names the step markers to report, in order (default: every marker).
    """
    out = Path(out)
    names = steps if steps is not None else sorted(p.stem for p in (out / "steps").glob("*.json"))
    found = {n: read_json(out / "steps" / f"{n}.json") for n in names}
    done = {k: v for k, v in found.items() if v}
    res = read_json(out / "evaluation" / "results.json")
    ev = read_json(out / "evaluation" / "evaluation.json")
    s: dict[str, Any] = {
        "command": command,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} "
        f"{platform.release()}, load average at the end {os.getloadavg()[0]:.1f}",
        "config": dataclasses.asdict(cfg),
        "targets": TARGETS,
        "events_after_selection": ev.get("events"),
        "selection": ev.get("selection"),
        "wall_time_s": {k: v.get("time_s") for k, v in done.items()},
        "train": done.get("train", {}),
    }
    cmp = res.get("comparison") or {}
    s["points"] = cmp.get("rows", [])
    s["splits"] = cmp.get("summary", {})
    seeds = res.get("seeds") or {}
    per_point = seeds.get("per_point", {})
    s["seeds"] = {
        "seeds": seeds.get("seeds"),
        "mean_auc_per_seed": seeds.get("aucs"),
        "std_of_mean_auc": seeds.get("std"),
        "per_point": per_point,
        "max_point_std": max((v["std"] for v in per_point.values()), default=None),
    }
    s["pileup"] = {
        lvl: v["metrics"]["values"].get("auc") for lvl, v in (res.get("pileup") or {}).items()
    }
    s.update(summarize_jets(out, done))
    s["pileup_study"] = summarize_pileup(out, done)
    s["skipped"] = {  # sculpting is measured on X->bb jets, not on the charged-Higgs events
        k: v
        for k, v in res.get("skipped", {}).items()
        if not (k == "decorrelation" and any(s["disco"].values()))
    }
    s["mass_awareness"] = _awareness_summary(res.get("hypotheses") or {})
    s["verdict"] = _verdict(s)
    return s


def _auc_columns(study: Mapping[str, Any]) -> list[str]:
    """The AUC columns of the hypothesis study: the background combinations, then each process."""
    return ["all", "all (equal weight)", "resonant", *study.get("processes", [])]


def _awareness_summary(hy: Mapping[str, Any]) -> dict[str, Any]:
    """Mass-awareness index, peak fraction and per-background AUCs of the evaluation's study."""
    aware = {
        k: {
            "mean_at": a["mean_at"],
            "bins": a["bins"],
            "peak_fraction": a["peak_fraction"],
            "background_peak_fraction": a.get("background_peak_fraction"),
        }
        for k, a in (hy.get("awareness") or {}).items()
    }
    keys = _auc_columns(hy)
    per_point = {
        point: {
            scorer: {k: aucs[k]["auc"] for k in keys if k in aucs}
            | {f"σ {k}": aucs[k]["sigma"] for k in keys if k in aucs}
            for scorer, aucs in entry.items()
        }
        for point, entry in (hy.get("per_point") or {}).items()
    }
    return {
        "distance": hy.get("distance"),
        "processes": hy.get("processes", []),
        "awareness": aware,
        "per_point": per_point,
        "sensitivity": hy.get("sensitivity", {}),
    }


def _awareness_verdict(ma: Mapping[str, Any]) -> dict[str, Any]:
    """Issue-13 targets: MA vs the reference, peaks, per-background AUC vs reference/dedicated."""
    out: dict[str, Any] = {}
    aw = ma.get("awareness") or {}
    par, ref = aw.get("parametric"), aw.get("reference")
    if par and ref:
        at = next(iter(par["mean_at"]), None)  # the preset's first "at least" distance
        p5, r5 = par["mean_at"].get(at), ref["mean_at"].get(at)
        if p5 is not None and r5:
            t = TARGETS["ma_vs_reference"]
            out["ma_vs_reference"] = target_entry(
                p5 / r5, t, f"≥ {t}", p5 / r5 - t, parametric=p5, reference=r5
            )
    if par:
        f = par["peak_fraction"]
        out["peaks"] = target_entry(f, 1.0, "= 1", f - 1.0)
    misses = []
    for point, entry in (ma.get("per_point") or {}).items():
        p = entry.get("parametric", {})
        for proc in ma.get("processes", []):
            if proc not in p:
                continue
            for other, slack in (("reference", 0.0), ("dedicated", 0.005)):
                o = entry.get(other, {}).get(proc)
                if o is not None and p[proc] < o - slack:
                    misses.append(f"{point} vs {proc}: {p[proc]:.4f} < {other} {o:.4f}")
    if ma.get("per_point"):
        required = "0 misses (≥ reference, ≥ dedicated − 0.005)"
        n = float(len(misses))
        out["per_background"] = target_entry(n, 0.0, required, -n, misses=misses)
    out.update(_inclusive_verdict(ma))
    return out


def _inclusive_verdict(ma: Mapping[str, Any]) -> dict[str, Any]:
    """Issue-13 target: the parametric model against the inclusive one, per point and column.

    A miss is a column (background combination or process) where parametric < inclusive,
    or where dedicated − inclusive exceeds 3σ and parametric closes < 90% of that gap.
    """
    per_point = ma.get("per_point") or {}
    if not any("inclusive" in e for e in per_point.values()):
        return {}
    misses = []
    keys = _auc_columns(ma)
    for point, entry in per_point.items():
        par, ded, inc = (entry.get(k) or {} for k in ("parametric", "dedicated", "inclusive"))
        for k in (k for k in keys if k in par and k in inc):
            p, i = par[k], inc[k]
            if p < i:
                misses.append(f"{point} {k}: {p:.4f} < inclusive {i:.4f}")
            sd, si = ded.get(f"σ {k}"), inc.get(f"σ {k}")
            if k not in ded or sd is None or si is None:  # no bootstrap: no 3σ to test
                continue
            gap = ded[k] - i
            if gap > 3 * (sd**2 + si**2) ** 0.5 and p - i < 0.9 * gap:
                misses.append(f"{point} {k}: closes {(p - i) / gap:.0%} of dedicated − inclusive")
    n = float(len(misses))
    required = "0 misses (≥ inclusive; ≥ 90% of a > 3σ dedicated − inclusive gap)"
    return {"vs_inclusive": target_entry(n, 0.0, required, -n, misses=misses)}


def _verdict(s: Mapping[str, Any]) -> dict[str, Any]:
    """Met/missed per target with the margin (value - target; negative is a miss)."""
    out: dict[str, Any] = {}
    for split in ("train", "interp", "extrap"):
        info = s["splits"].get(split)
        if info:
            v, t = info["min_ratio"], TARGETS[split]
            out[f"ratio_{split}"] = target_entry(v, t, f"≥ {t}", v - t, min_ratio=v)
    out.update(_awareness_verdict(s.get("mass_awareness") or {}))
    out.update(jets_verdict(s))
    out.update(disco_verdict(s.get("disco") or {}))
    out.update(pileup_verdict(s.get("pileup_study") or {}))
    sd, t = s["seeds"].get("max_point_std"), TARGETS["seed_std"]
    if sd is not None:
        out["seed_std"] = target_entry(sd, t, f"< {t}", t - sd, strict=True, max_point_std=sd)
    return out


def _awareness_markdown(ma: Mapping[str, Any]) -> list[str]:
    aw = ma.get("awareness") or {}
    if not aw:
        return ["", "## Mass awareness", "", "not run"]
    d = ma.get("distance") or "mA"
    first = next(iter(aw.values()))
    heads = [f"Δ{d} ∈ [{float(b['lo']):g}, {float(b['hi']):g})" for b in first["bins"]]
    at = next(iter(first["mean_at"]), "5")
    lines = [
        "",
        "## Mass awareness (hypothesis discrimination)",
        "",
        "MA(i, j) = AUC_i(sig i vs sig j) + AUC_j(sig j vs sig i) − 1 at the first point's "
        "hypothesis; 0 for a scorer that ignores it. Mean over pairs (pairs) per bin; "
        "`peaks`: fraction of points whose mean score peaks at their own hypothesis; "
        "`peaks vs SM`: whose AUC against the backgrounds peaks there. "
        "The inclusive model has MA = 0 by construction.",
        "",
        "| scorer | " + " | ".join(heads) + f" | Δ{d} ≥ {at} | peaks | peaks vs SM |",
        "|---|" + "---|" * (len(heads) + 3),
    ]
    for name, a in aw.items():
        cells = [f"{_f(b['mean'], '.3f')} ({b['pairs']})" for b in a["bins"]]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {_f(a['mean_at'].get(at), '.3f')} | "
            f"{_f(a['peak_fraction'], '.2f')} | {_f(a.get('background_peak_fraction'), '.2f')} |"
        )
    procs = _auc_columns(ma)
    lines += [
        "",
        "### AUC per background process (equal-weight and cross-section-weighted combinations)",
        "",
        "| point | scorer | " + " | ".join(procs) + " |",
        "|---|---|" + "---|" * len(procs),
    ]
    for point, entry in ma.get("per_point", {}).items():
        for scorer, aucs in entry.items():
            cells = [f"{_f(aucs.get(k), '.4f')} ± {_f(aucs.get(f'σ {k}'), '.4f')}" for k in procs]
            lines.append(f"| {point} | {scorer} | " + " | ".join(cells) + " |")
    sens = ", ".join(f"{k} = {_f(v, '.4f')}" for k, v in ma.get("sensitivity", {}).items())
    lines += ["", f"Sensitivity of the parametric score: {sens}."]
    return lines


def _sizes(c: Mapping[str, Any]) -> list[str]:
    """The sample sizes of the chains that ran (all of them when ``only`` is empty)."""
    chains = set(c.get("only") or CHAINS)
    out = []
    if "higgs" in chains:
        out.append(f"events per signal point / background process: {c['events']}")
    if chains & {"xbb", "disco"}:
        sculpt = f" (QCD sculpting sample: {c.get('disco_qcd_events', 'n/a')})"
        out.append(
            f"X→bb: {c['xbb_events'] or c['events']} events (times each process's "
            "events_scale in the generate config)" + (sculpt if "disco" in chains else "")
        )
    if "pileup" in chains:
        out.append(
            f"pileup test samples: {c['pileup_events'] or c['events'] // 10} per process at "
            "μ = 0, " + ", ".join(f"{m:g}" for m in c["pileup_mu"]) + "; pileup training "
            f"samples: {c.get('pileup_train_events') or c['events'] // 4}"
        )
    return out


def render_markdown(s: Mapping[str, Any]) -> str:
    """The validation tables (markdown) of a :func:`summarize` dict.

    The charged-Higgs and pileup sections appear only when their chain ran.
    """
    c = s["config"]
    higgs = bool(s["points"])
    lines = [
        f"Command: `{s.get('command') or 'paratag validate'}`  ",
        f"Date: {s['date']}  ",
        f"Machine: {s['machine']}",
        "",
        "## Sizes",
        "",
        "- " + "; ".join(_sizes(c)),
    ]
    if higgs:
        lines += [
            f"- seeds: {list(c['seeds'])}; epochs stage 1 / stage 3: "
            f"{s['train'].get('stage1_epochs', 'n/a')} / "
            f"{s['train'].get('stage3_epochs', 'n/a')}",
            f"- evaluated on: {s.get('selection')}; "
            f"events there: {s.get('events_after_selection')}",
        ]
        lines += _ratios_markdown(s)
        lines += _awareness_markdown(s.get("mass_awareness") or {})
        lines += _seeds_markdown(s["seeds"])
    if s["pileup"]:
        lines += ["", "## Pileup robustness", "", "| pileup | AUC |", "|---|---|"]
        lines += [f"| {k} | {_f(v)} |" for k, v in s["pileup"].items()]
    lines += pileup_markdown(s.get("pileup_study") or {})
    lines += jets_markdown(s)
    lines += ["", "## Wall time per step", "", "| step | time [s] |", "|---|---|"]
    lines += [f"| {k} | {_f(v, '.0f')} |" for k, v in s["wall_time_s"].items()]
    for run in s["train"].get("runs", []):
        st = ", ".join(f"{k} {_f(v, '.0f')} s" for k, v in run["stage_times_s"].items())
        lines.append(f"| train seed {run['seed']}: {st} | {_f(run['time_s'], '.0f')} |")
    lines += _targets_markdown(s)
    if s.get("skipped"):
        lines += ["", "Not run: " + "; ".join(f"{k}: {v}" for k, v in s["skipped"].items())]
    return "\n".join(lines) + "\n"


def _ratios_markdown(s: Mapping[str, Any]) -> list[str]:
    """Parametric vs dedicated AUC per point and per split (the charged-Higgs run)."""
    lines = [
        "",
        "## Parametric vs dedicated AUC",
        "",
        "| point | split | AUC parametric | AUC dedicated | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in s["points"]:
        t = TARGETS.get(r["split"])
        lines.append(
            f"| {r['label']} | {r['split']} | {_f(r['auc_parametric'])} | "
            f"{_f(r['auc_dedicated'])} | {_f(r['ratio'])} | {_f(t, '.2f')} | "
            f"{'yes' if r['passes'] else 'NO'} |"
        )
    lines += [
        "",
        "| split | points | mean ratio | min ratio | target | margin (min − target) |",
        "|---|---|---|---|---|---|",
    ]
    for split, v in s["splits"].items():
        t = TARGETS.get(split)
        margin = None if t is None else v["min_ratio"] - t
        lines.append(
            f"| {split} | {v['n']} | {_f(v['mean_ratio'])} | {_f(v['min_ratio'])} | "
            f"{_f(t, '.2f')} | {_f(margin, '+.4f')} |"
        )
    return lines


def _targets_markdown(s: Mapping[str, Any]) -> list[str]:
    """The targets table: value, requirement, met, margin."""
    lines = [
        "",
        "## Targets",
        "",
        "| target | value | required | met | margin |",
        "|---|---|---|---|---|",
    ]
    for k, v in s["verdict"].items():
        lines.append(
            f"| {k} | {_f(v['value'])} | {v['required']} | {'yes' if v['met'] else 'NO'} | "
            f"{_f(v['margin'], '+.4f')} |"
        )
    return lines


def _seeds_markdown(sd: Mapping[str, Any]) -> list[str]:
    """The seed-spread table of the charged-Higgs run."""
    lines = [
        "",
        "## Seed spread (parametric AUC, test fold)",
        "",
        "| point | mean AUC | σ(AUC) | seeds |",
        "|---|---|---|---|",
    ]
    for k, v in sd["per_point"].items():
        lines.append(f"| {k} | {_f(v['mean'])} | {_f(v['std'])} | {v['n']} |")
    lines.append(
        f"| mean over points | {_f(_mean(sd['mean_auc_per_seed']))} | "
        f"{_f(sd['std_of_mean_auc'])} | {len(sd['mean_auc_per_seed'] or [])} |"
    )
    return lines + [
        "",
        f"Target σ(AUC) < {TARGETS['seed_std']}: largest per-point σ = {_f(sd['max_point_std'])}.",
    ]


def _mean(v: Sequence[float] | None) -> float | None:
    return None if not v else sum(v) / len(v)
