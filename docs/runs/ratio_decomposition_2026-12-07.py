"""Decompose a hypothesis-ratio run's scores: stage 3 (base), ratio, and variants.

python docs/runs/ratio_decomposition_2026-12-07.py RUN_DIR TEST_SHARDS OUT.json [THREADS]
Scores every test signal point and the test backgrounds at every signal point's
hypothesis with one pass, returning the base logits at the hypothesis, the base
logits at the hypothesis with mHc set to the training mean (normalised 0), and
the ratio's raw log-odds. Variants: comb (delivered), base (stage 3 alone),
v4 (base at mean mHc x ratio at the hypothesis).
"""
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from paratag.evaluate.inference import Scorer
from paratag.evaluate.runs import EvalSample, load_run


class Parts(torch.nn.Module):
    def __init__(self, comb, i_vary):
        super().__init__()
        self.comb, self.i_vary = comb, i_vary

    def forward(self, points, features, mask, condition=None, **kw):
        c = self.comb
        b = c.base(points, features, mask, condition, **kw)
        cref = condition.clone()
        cref[:, self.i_vary] = 0.0
        bref = c.base(points, features, mask, cref, **kw)
        r = c.ratio(points, features, mask, condition, **kw)
        d = (r[:, 0] - r[:, 1])[:, None]
        return torch.cat([b, bref, d, torch.zeros_like(d)], 1)


DOC = Path(__file__).with_name("validate_higgs_10ratio_2026-12-07.md")


def _dedicated_cells():
    """(point name, process) -> the dedicated model's AUC in the documented run."""
    out = {}
    cols = None
    for line in Path(DOC).read_text().splitlines():
        if line.startswith("| point | scorer | all |"):
            cols = [c.strip() for c in line.strip("|").split("|")]
            continue
        if cols and line.startswith("| mHc") and "| dedicated |" in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            for c, v in zip(cols[2:], cells[2:]):
                out[(cells[0], c)] = float(v.split()[0])
    return out


def main():
    run_dir, shards, out = sys.argv[1:4]
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 2)
    dev = torch.device("cpu")
    run = load_run(run_dir, dev)
    comb = run.model.module
    names = list(run.model.space.names)
    nc = int(run.model.info["model_config"]["n_classes"])
    info = {**run.model.info, "model_config": {**run.model.info["model_config"], "n_classes": 2 * nc + 2}}
    lm = dataclasses.replace(run.model, module=Parts(comb, names.index("mHc")).eval(), info=info)
    test = EvalSample(Path(shards), run, "auto", None)
    scorer = Scorer(run.cfg.data.signal_label, None, 512, dev, False)
    hyps = sorted(test.points)
    sig = run.cfg.data.signal_label
    w, scale = comb.self_weight, comb.scale
    t0 = time.time()
    rows = np.concatenate([test.points[p] for p in hyps] + [test.background])
    conds = [np.asarray(h, np.float32) for h in hyps]
    z = scorer.probs(lm, test, rows, conds, "diag")  # softmax over 2nc+2
    logz = np.log(np.clip(z, 1e-30, None))
    base, bref = logz[..., :nc], logz[..., nc : 2 * nc]
    delta = logz[..., 2 * nc] - logz[..., 2 * nc + 1]
    if w > 0:
        f = -math.log(w) - np.logaddexp(0, math.log((1 - w) / w) - delta)
    else:
        f = delta
    def sp(logits, shift):
        l = logits.copy()
        l[..., sig] += scale * shift
        l -= l.max(-1, keepdims=True)
        e = np.exp(l)
        return e[..., sig] / e.sum(-1)
    scores = {"comb": sp(base, f), "base": sp(base, 0.0), "v4": sp(bref, f), "ratio_f": f}
    print(f"scored {len(rows)} rows x {len(hyps)} hyps in {time.time()-t0:.0f} s", flush=True)
    n_sig = sum(len(test.points[p]) for p in hyps)
    table = test.store.table
    proc_col = next(k for k in ("process", "dataset", "sample") if k in table)
    procs = np.asarray(table[proc_col])[test.background]
    ds_names = [d["name"] for d in test.store.manifest["datasets"]]
    if procs.dtype.kind in "iu":
        procs = np.asarray(ds_names)[procs]
    print("background processes", dict(zip(*np.unique(procs, return_counts=True))), flush=True)
    res = {"hyps": [list(h) for h in hyps], "names": names, "proc_col": proc_col}
    start = np.cumsum([0] + [len(test.points[p]) for p in hyps])
    for key in ("comb", "base", "v4"):
        s = scores[key]
        mean = np.array([[s[start[i]:start[i+1], j].mean() for j in range(len(hyps))] for i in range(len(hyps))])
        own = np.diag(mean)
        peaks = [int(np.argmax(mean[i]) == i) for i in range(len(hyps))]
        sb = s[n_sig:]
        cells = {}
        vs_sm = np.zeros((len(hyps), len(hyps)))
        for i, p in enumerate(hyps):
            ss = s[start[i]:start[i+1]]
            for j in range(len(hyps)):
                aucs = []
                for pr in np.unique(procs):
                    b = sb[procs == pr, j]
                    y = np.r_[np.ones(len(ss)), np.zeros(len(b))]
                    aucs.append(roc_auc_score(y, np.r_[ss[:, j], b]))
                vs_sm[i, j] = np.mean(aucs)
            for pr in np.unique(procs):
                b = sb[procs == pr, i]
                y = np.r_[np.ones(len(ss)), np.zeros(len(b))]
                cells[f"{p}|{pr}"] = roc_auc_score(y, np.r_[ss[:, i], b])
        peaks_sm = [int(np.argmax(vs_sm[i]) == i) for i in range(len(hyps))]
        res[key] = {"mean": mean.tolist(), "peaks": peaks, "peaks_sm": peaks_sm, "cells": cells}
        print(key, "peaks", sum(peaks), "/", len(hyps), "peaks vs SM", sum(peaks_sm), flush=True)
        for i, p in enumerate(hyps):
            if not peaks[i]:
                j = int(np.argmax(mean[i]))
                print(f"  {p} peaks at {hyps[j]} by {mean[i, j] - own[i]:.4f}")
    ded = _dedicated_cells()
    for key in ("comb", "base", "v4"):
        cells = res[key]["cells"]
        miss = {}
        for c, v in cells.items():
            pt, pr = c.split("|")
            name = "mHc%d_mA%d" % tuple(int(float(x)) for x in pt.strip("()").split(","))
            d = ded.get((name, pr))
            if d is not None and v < d - 0.005:
                miss[f"{name} {pr}"] = round(v - d, 4)
        res[key]["cells_below_dedicated"] = miss
        print(key, "cells < dedicated - 0.005:", len(miss), miss, flush=True)
    fr = scores["ratio_f"]
    res["ratio_f_mean"] = [[float(fr[start[i]:start[i+1], j].mean()) for j in range(len(hyps))] for i in range(len(hyps))]
    Path(out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
