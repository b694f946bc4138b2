"""Stage-1 training on jet shards with and without ragged batches (``data.ragged``), side by side.

Usage: python examples/ragged_training.py SHARDS   (jet-preset shards with mX points,
e.g. ``paratag validate --only xbb --events 300`` writes them to OUT/xbb/shards)

Trains the X->bb Interaction Network (``train_validate_xbb.yaml``, 4 stage-1 epochs, one
thread) twice each way, alternating, and prints wall times and per-point validation AUCs.
"""

import dataclasses
import json
import sys
import time

from paratag.training.config import load_train_config
from paratag.training.run import train

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    shards = sys.argv[1]
    out: dict[str, dict] = {}
    for ragged in (False, True, False, True):
        run_dir = f"/tmp/bench_ragged_{ragged}_{len(out)}"
        cfg = load_train_config("validate_xbb", shards=shards, run_dir=run_dir, seed=0)
        cfg = dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, ragged=ragged),
            stage1=dataclasses.replace(cfg.stage1, epochs=4),
            loss=dataclasses.replace(cfg.loss, disco_lambda=0.0),
            progress=False,
            tensorboard=False,
            threads=1,
        )
        t0 = time.perf_counter()
        s = train(cfg, stages=[1])
        dt = time.perf_counter() - t0
        points = s["stage1"]["points"].items()
        aucs = {k: round(v.get("best_val_auc") or float("nan"), 4) for k, v in points}
        out[f"{'ragged' if ragged else 'padded'}_{len(out)}"] = {
            "time_s": round(dt, 1),
            "auc": aucs,
        }
        print(json.dumps(out), flush=True)
