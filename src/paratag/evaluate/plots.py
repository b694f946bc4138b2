"""Evaluation figures in CMS style (mplhep), each saved as PNG and PDF.

Every ``plot_*`` function takes result objects from :mod:`paratag.evaluate.metrics`,
:mod:`~paratag.evaluate.studies` or :mod:`~paratag.evaluate.curves` plus an output
directory, writes ``<name>.png`` and ``<name>.pdf`` there and returns the PNG path.
The CMS style is applied in a context, so global matplotlib settings are untouched;
the non-interactive Agg canvas is used, so no display is needed.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import hist
import matplotlib as mpl
import mplhep
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from paratag.evaluate.curves import TrainingCurves
from paratag.evaluate.decorrelation import SculptingResult
from paratag.evaluate.metrics import RocCurve
from paratag.evaluate.studies import (
    AucGrid,
    PileupRobustness,
    PointComparison,
    SeedStability,
    WrongHypothesis,
    point_label,
)

__all__ = [
    "LABEL",
    "plot_auc_grid",
    "plot_jsd_vs_rejection",
    "plot_parametric_vs_dedicated",
    "plot_pileup",
    "plot_roc",
    "plot_score_distributions",
    "plot_sculpting",
    "plot_seed_stability",
    "plot_training_curves",
    "plot_wrong_hypothesis",
    "save_figure",
]

LABEL = "Private work"
_SPLIT_MARKERS = {
    "train": ("o", "trained"),
    "interp": ("s", "interpolated"),
    "extrap": ("^", "extrapolated"),
}


def _figure(nrows: int = 1, ncols: int = 1, **kw) -> tuple[Figure, np.ndarray]:
    """An Agg figure and its axes (always a 1-D array); call inside the CMS style."""
    fig = Figure(figsize=kw.pop("figsize", (10, 8)))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw).ravel()


#: Right-hand label: the generator's centre-of-mass energy (no experiment label on
#: generated samples; pass your experiment's own label when plotting its data).
RLABEL = "generated, 13.6 TeV"


def _label(ax) -> None:
    """Generic ``paratag`` simulation label (not an experiment's)."""
    # data=False already writes "Simulation" after the experiment name
    mplhep.label.exp_label(exp="paratag", text=LABEL, data=False, rlabel=RLABEL, ax=ax, fontsize=16)


def save_figure(fig: Figure, out_dir: str | Path, name: str) -> Path:
    """Write ``name.png`` and ``name.pdf`` into ``out_dir``; return the PNG path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=80, bbox_inches="tight")
    fig.savefig(out / f"{name}.pdf", bbox_inches="tight")
    return out / f"{name}.png"


def _styled(fn):
    """Run a plotting body under the CMS rcParams (fonts, ticks) without leaking them."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(), mpl.style.context(mplhep.style.CMS):
            return fn(*args, **kwargs)

    return wrapper


def _thin(fpr: np.ndarray, tpr: np.ndarray, n: int = 1000) -> np.ndarray:
    """Indices of at most ~2n ROC points with εB > 0, even in εS and in log εB."""
    ok = np.flatnonzero(fpr > 0)
    if ok.size <= 2 * n:
        return ok
    f, s = fpr[ok], tpr[ok]
    by_tpr = np.searchsorted(s, np.linspace(s[0], s[-1], n))
    by_fpr = np.searchsorted(f, np.geomspace(f[0], f[-1], n))
    return ok[np.unique(np.clip(np.r_[0, by_tpr, by_fpr, ok.size - 1], 0, ok.size - 1))]


@_styled
def plot_roc(curves: Mapping[str, RocCurve], out_dir: str | Path, name: str = "roc") -> Path:
    """Background rejection 1/εB vs signal efficiency εS (log y) for each curve."""
    fig, (ax,) = _figure()
    for lbl, c in curves.items():
        idx = _thin(c.fpr, c.tpr)
        ax.plot(c.tpr[idx], 1.0 / c.fpr[idx], label=f"{lbl} (AUC = {c.auc:.4f})")
    xr = np.linspace(0.01, 1.0, 100)
    ax.plot(xr, 1.0 / xr, ls=":", color="grey", label="random")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel(r"Signal efficiency $\varepsilon_S$")
    ax.set_ylabel(r"Background rejection $1/\varepsilon_B$")
    ax.legend(fontsize=14)
    _label(ax)
    return save_figure(fig, out_dir, name)


def _hist(values: np.ndarray, weights: np.ndarray, bins: np.ndarray) -> hist.Hist:
    h = hist.Hist(hist.axis.Variable(bins, name="score", flow=False), storage=hist.storage.Weight())
    h.fill(score=np.clip(values, bins[0], bins[-1] - 1e-12), weight=weights)
    return h


@_styled
def plot_score_distributions(
    scores: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None,
    class_names: Sequence[str],
    out_dir: str | Path,
    name: str = "scores",
    train: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
    xlabel: str = "Discriminant",
    bins: int = 40,
) -> Path:
    """Weighted, unit-normalised score histogram per class; train overlay as markers."""
    s = np.asarray(scores, float).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    w = np.ones_like(s) if weights is None else np.asarray(weights, float)
    lo, hi = float(min(s.min(), 0.0)), float(max(s.max(), 1.0))
    edges = np.linspace(lo, hi, bins + 1)
    fig, (ax,) = _figure()
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, cname in enumerate(class_names):
        sel = y == c
        if not sel.any() or w[sel].sum() <= 0:
            continue
        col = colors[c % len(colors)]
        mplhep.histplot(
            _hist(s[sel], w[sel], edges),
            ax=ax,
            density=True,
            yerr=False,
            color=col,
            label=f"{cname} (test)",
        )
        if train is not None:
            ts, ty, tw = train
            ts, ty = np.asarray(ts).reshape(-1), np.asarray(ty).reshape(-1)
            tw = np.ones_like(ts, dtype=float) if tw is None else np.asarray(tw, float)
            tsel = ty == c
            if tsel.any() and tw[tsel].sum() > 0:
                mplhep.histplot(
                    _hist(ts[tsel], tw[tsel], edges),
                    ax=ax,
                    density=True,
                    yerr=False,
                    histtype="step",
                    ls="--",
                    color=col,
                    label=f"{cname} (train)",
                )
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Normalised entries")
    ax.legend(fontsize=13, ncols=2)
    _label(ax)
    return save_figure(fig, out_dir, name)


@_styled
def plot_parametric_vs_dedicated(
    comparison: PointComparison, out_dir: str | Path, name: str = "parametric_vs_dedicated"
) -> Path:
    """AUC bars (parametric vs dedicated) per point and the ratio with target lines."""
    fig, (ax, rax) = _figure(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}, figsize=(12, 9)
    )
    n = len(comparison.points)
    x = np.arange(n)
    ax.bar(x - 0.2, comparison.dedicated, width=0.4, label="dedicated")
    ax.bar(x + 0.2, comparison.parametric, width=0.4, label="parametric")
    lo = min(min(comparison.dedicated), min(comparison.parametric))
    ax.set_ylim(max(0.0, lo - 0.05), 1.0 + 0.15 * (1.0 - max(0.0, lo - 0.05)))
    ax.set_ylabel("AUC")
    ax.legend(fontsize=14, ncols=2)
    cols = {"train": "C0", "interp": "C1", "extrap": "C2"}
    ratio, split = np.asarray(comparison.ratio), np.asarray(comparison.split)
    for s, (marker, lbl) in _SPLIT_MARKERS.items():
        if (split == s).any():
            rax.scatter(
                x[split == s], ratio[split == s], c=cols[s], marker=marker, zorder=3, label=lbl
            )
    rax.legend(fontsize=10, ncols=3, loc="lower left")
    for key, ls in (("seed", ":"), ("train", "--"), ("interp", "-."), ("extrap", "-")):
        if key in comparison.thresholds and (key == "seed" or key in comparison.split):
            rax.axhline(comparison.thresholds[key], ls=ls, color="grey", lw=1)
    rax.set_ylabel("ratio")
    rax.set_xticks(x)
    rax.set_xticklabels(
        [point_label(p, comparison.condition_names).replace(",", "\n") for p in comparison.points],
        fontsize=10,
    )
    _label(ax)
    return save_figure(fig, out_dir, name)


@_styled
def plot_wrong_hypothesis(
    wh: WrongHypothesis, out_dir: str | Path, name: str = "wrong_hypothesis"
) -> Path:
    """Mean signal score matrix: true mass point (rows) vs evaluated hypothesis (columns)."""
    fig, (ax,) = _figure(figsize=(11, 9))
    im = ax.imshow(wh.matrix, origin="lower", cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, label="mean signal score")
    nt, nh = wh.matrix.shape
    if nt * nh <= 144:
        for i in range(nt):
            for j in range(nh):
                ax.text(
                    j, i, f"{wh.matrix[i, j]:.2f}", ha="center", va="center", fontsize=9, color="w"
                )
    for i, t in enumerate(wh.true_points):
        if t in wh.hypotheses:
            j = wh.hypotheses.index(t)
            ax.add_patch(mpl.patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="r", lw=2))
    names = wh.condition_names
    ax.set_xticks(range(nh))
    ax.set_xticklabels([point_label(h, names) for h in wh.hypotheses], rotation=90, fontsize=9)
    ax.set_yticks(range(nt))
    ax.set_yticklabels([point_label(t, names) for t in wh.true_points], fontsize=9)
    ax.set_xlabel("evaluated hypothesis")
    ax.set_ylabel("true mass point")
    _label(ax)
    return save_figure(fig, out_dir, name)


@_styled
def plot_auc_grid(grid: AucGrid, out_dir: str | Path, name: str = "auc_grid") -> Path:
    """AUC heatmap over the (mHc, mA) grid with trained/interpolated/extrapolated markers."""
    fig, (ax,) = _figure(figsize=(11, 9))
    z = np.ma.masked_invalid(grid.auc)
    im = ax.imshow(z, origin="lower", cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, label="AUC")
    for split, (marker, lbl) in _SPLIT_MARKERS.items():
        iy, ix = np.nonzero(np.asarray(grid.split) == split)
        if iy.size:
            ax.scatter(
                ix,
                iy,
                marker=marker,
                s=140,
                facecolors="none",
                edgecolors="w",
                linewidths=2,
                label=lbl,
            )
    if z.size <= 144:
        for i, j in zip(*np.nonzero(np.isfinite(grid.auc)), strict=True):
            ax.text(
                j, i - 0.3, f"{grid.auc[i, j]:.3f}", ha="center", va="center", fontsize=8, color="w"
            )
    ax.set_xticks(range(grid.x.size))
    ax.set_xticklabels([f"{v:g}" for v in grid.x], fontsize=11)
    ax.set_yticks(range(grid.y.size))
    ax.set_yticklabels([f"{v:g}" for v in grid.y], fontsize=11)
    ax.set_xlabel(grid.condition_names[0] + " [GeV]")
    ax.set_ylabel((grid.condition_names[1] + " [GeV]") if len(grid.condition_names) > 1 else "")
    ax.legend(fontsize=12, loc="upper left", framealpha=0.6, facecolor="grey")
    _label(ax)
    return save_figure(fig, out_dir, name)


@_styled
def plot_seed_stability(
    stab: SeedStability, out_dir: str | Path, name: str = "seed_stability"
) -> Path:
    """AUC per training seed with the mean and ±1 std band."""
    fig, (ax,) = _figure()
    x = np.arange(len(stab.seeds))
    ax.plot(x, stab.aucs, "o", label="AUC per seed")
    ax.axhline(stab.mean, color="k", label=f"mean {stab.mean:.4f} ± {stab.std:.4f}")
    ax.axhspan(stab.mean - stab.std, stab.mean + stab.std, color="grey", alpha=0.3)
    ax.set_xticks(x)
    ax.set_xticklabels([str(s) for s in stab.seeds])
    ax.set_xlabel("seed")
    ax.set_ylabel("AUC")
    ax.legend(fontsize=14)
    _label(ax)
    return save_figure(fig, out_dir, name)


@_styled
def plot_sculpting(
    result: SculptingResult,
    out_dir: str | Path,
    name: str = "sculpting",
    xlabel: str = "Mass [GeV]",
) -> Path:
    """Normalised background mass shape before and after cuts at several signal efficiencies."""
    fig, (ax,) = _figure()
    mplhep.histplot(
        result.before, result.bins, ax=ax, density=True, yerr=False, color="k", lw=2, label="no cut"
    )
    for e, h in result.after.items():
        if h.sum() > 0:
            lbl = rf"$\varepsilon_S$ = {e:.0%}, JSD = {result.jsd[e]:.3g}"
            mplhep.histplot(h, result.bins, ax=ax, density=True, yerr=False, label=lbl)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Normalised background")
    ax.legend(fontsize=13)
    _label(ax)
    return save_figure(fig, out_dir, name)


@_styled
def plot_jsd_vs_rejection(
    points: Mapping[str, Mapping[str, float]], out_dir: str | Path, name: str = "jsd_vs_rejection"
) -> Path:
    """1/JSD vs 1/εB at fixed signal efficiency per model (DisCo figure of merit)."""
    fig, (ax,) = _figure()
    drawn = 0
    for lbl, p in points.items():
        x, y = p["inv_bkg_eff"], p["inv_jsd"]
        if np.isfinite(x) and np.isfinite(y):
            ax.plot([x], [y], "o", ms=12, label=lbl)
            drawn += 1
    ax.set_xscale("log")
    ax.set_yscale("log")
    e = next(iter(points.values()))["sig_eff"] if points else 0.5
    ax.set_xlabel(rf"Background rejection $1/\varepsilon_B$ at $\varepsilon_S$ = {e:.0%}")
    ax.set_ylabel("1 / JSD")
    if drawn:
        ax.legend(fontsize=14)
    else:  # e.g. JSD = 0 (1/JSD infinite) on a tiny sample
        ax.text(0.5, 0.5, "no finite (1/εB, 1/JSD) point", transform=ax.transAxes, ha="center")
    _label(ax)
    return save_figure(fig, out_dir, name)


@_styled
def plot_pileup(
    pu: PileupRobustness, out_dir: str | Path, name: str = "pileup", rej_key: str = "rej@sig0.5"
) -> Path:
    """AUC and background rejection per pileup level (bootstrap errors when available)."""
    fig, (ax, rax) = _figure(2, 1, sharex=True, figsize=(10, 9))
    x = np.arange(len(pu.levels))
    eff = rej_key.split("@sig")[-1]
    for a, key, ylabel in (
        (ax, "auc", "AUC"),
        (rax, rej_key, rf"$1/\varepsilon_B$ at $\varepsilon_S$={eff}"),
    ):
        vals = np.array([m.values[key] for m in pu.metrics])
        err = np.array([np.nan if b is None else b.std[key] for b in pu.bootstrap])
        ok = np.isfinite(vals)
        a.errorbar(x[ok], vals[ok], yerr=np.nan_to_num(err[ok]), fmt="o-")
        a.set_ylabel(ylabel)
    rax.set_xticks(x)
    rax.set_xticklabels(pu.levels)
    rax.set_xlabel("pileup level")
    _label(ax)
    return save_figure(fig, out_dir, name)


@_styled
@_styled
def plot_saliency(
    images: Mapping[str, np.ndarray], half_width: float, out_dir: str | Path, name: str = "saliency"
) -> Path:
    """Mean saliency images of signal and background jets, side by side.

    Log colour scale over three decades below each image's maximum: the jet core
    dominates linearly and would hide the prongs.
    """
    from matplotlib.colors import LogNorm

    fig, axes = _figure(1, len(images), figsize=(7.5 * len(images), 6))
    fig.set_layout_engine("constrained")
    fig.suptitle("mean |gradient × input| per jet", fontsize="medium")
    for ax, (label, img) in zip(axes.ravel(), images.items(), strict=True):
        ext = (-half_width, half_width, -half_width, half_width)
        top = float(np.max(img)) if np.size(img) else 0.0
        norm = LogNorm(vmin=top * 1e-3, vmax=top) if top > 0 else None
        shown = np.ma.masked_less_equal(np.asarray(img).T, 0.0)
        im = ax.imshow(shown, origin="lower", extent=ext, cmap="viridis", norm=norm)
        ax.set_xlabel(r"$\Delta\eta$")
        ax.set_ylabel(r"$\Delta\phi$")
        ax.set_title(label)
        fig.colorbar(im, ax=ax)
    return save_figure(fig, out_dir, name)


def plot_training_curves(
    curves: TrainingCurves, out_dir: str | Path, name: str = "training_curves"
) -> Path:
    """Train/val loss and val AUC vs epoch; stages are concatenated left to right."""
    fig, (ax, rax) = _figure(2, 1, sharex=True, figsize=(11, 10))
    offset, seen = 0.0, {}
    for s in curves.stages():
        sel = curves.stage == s
        start = offset
        for stage, _point, idx in curves.groups():
            if stage != s:
                continue
            ep = curves.epoch[idx] + start
            lbl = f"stage {s}" if s not in seen else None
            seen[s] = True
            (line,) = ax.plot(
                ep, curves.train_loss[idx], "-", lw=1.5, label=f"{lbl} train" if lbl else None
            )
            ax.plot(
                ep,
                curves.val_loss[idx],
                "--",
                lw=1.5,
                color=line.get_color(),
                label=f"{lbl} val" if lbl else None,
            )
            if np.isfinite(curves.val_auc[idx]).any():
                rax.plot(ep, curves.val_auc[idx], "-", lw=1.5, color=line.get_color())
        offset = start + float(np.nanmax(curves.epoch[sel])) + 1.0
        ax.axvline(offset - 0.5, color="grey", ls=":", lw=1)
    ax.set_ylabel("loss")
    ax.legend(fontsize=11, ncols=2)
    rax.set_ylabel("val AUC")
    rax.set_xlabel("epoch (stages concatenated)")
    _label(ax)
    return save_figure(fig, out_dir, name)
