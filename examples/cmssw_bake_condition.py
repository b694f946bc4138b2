"""Fix the mass hypothesis of a parametric paratag ONNX model, for CMSSW's ONNX jet-tag producers.

CMSSW's ``BoostedJetONNXJetTagsProducer`` fills every network input from the
features of a TagInfo; it has no way to feed a constant ``condition`` input.
This script writes one model per hypothesis whose ``condition`` input is
replaced by a constant (the normalised masses, expanded to the batch size), and
the matching CMSSW-flavour ``preprocess.json`` (``min_length``/``max_length``,
no ``condition`` block, no ``paratag`` block). See ``examples/cmssw_export.md``.

Example::

    python examples/cmssw_bake_condition.py --model export/model.onnx \
        --hypothesis mHc=130,mA=90 --out cmssw/mHc130_mA90
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from paratag.processors.tagger import parse_hypotheses

from paratag.preprocess import load_preprocess, write_preprocess


def normalised_condition(preprocess: str | Path, hypothesis: Mapping[str, float]) -> np.ndarray:
    """``(1, K)`` condition row ``(m - median) * norm_factor`` as the exported model expects."""
    pp = load_preprocess(preprocess)
    block = pp.inputs["condition"]
    if set(hypothesis) != set(block.var_names):
        raise SystemExit(f"hypothesis {dict(hypothesis)} must set exactly {list(block.var_names)}")
    row = [
        (float(hypothesis[n]) - block.var_infos[n]["median"]) * block.var_infos[n]["norm_factor"]
        for n in block.var_names
    ]
    return np.asarray([row], dtype=np.float32)


def bake_condition(model: str | Path, hypothesis: Mapping[str, float], out_dir: str | Path) -> Path:
    """Write ``out_dir/model.onnx`` without a ``condition`` input and its CMSSW preprocess.json."""
    model, out = Path(model), Path(out_dir)
    pp = load_preprocess(model.parent / "preprocess.json")
    if "condition" not in pp.input_names:
        raise SystemExit(f"{model} takes no condition input: use it in CMSSW as it is")
    value = normalised_condition(model.parent / "preprocess.json", hypothesis)
    k = value.shape[1]
    m = onnx.load(str(model))
    g = m.graph
    g.input.remove(next(i for i in g.input if i.name == "condition"))
    g.initializer.extend(
        [
            numpy_helper.from_array(value, "paratag_condition_value"),
            numpy_helper.from_array(np.asarray([k], np.int64), "paratag_condition_k"),
        ]
    )
    # condition = Expand(value (1, K), [N, K]) with N the batch size of the `mask` input.
    nodes = [
        helper.make_node("Shape", ["mask"], ["paratag_mask_shape"], start=0, end=1),
        helper.make_node(
            "Concat", ["paratag_mask_shape", "paratag_condition_k"], ["paratag_nk"], axis=0
        ),
        helper.make_node("Expand", ["paratag_condition_value", "paratag_nk"], ["condition"]),
    ]
    for node in reversed(nodes):
        g.node.insert(0, node)
    for prop in m.metadata_props:
        if prop.key == "paratag_condition_names":
            prop.value = ",".join(f"{n}={v:g}" for n, v in hypothesis.items())
    onnx.checker.check_model(m)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(out / "model.onnx"))
    names = tuple(n for n in pp.input_names if n != "condition")
    cmssw = dataclasses.replace(
        pp, input_names=names, inputs={n: pp.inputs[n] for n in names}, paratag={}
    )
    write_preprocess(cmssw, out / "preprocess.json", cmssw=True)
    return out / "model.onnx"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="exported parametric model.onnx")
    p.add_argument("--hypothesis", required=True, help="one hypothesis, e.g. mHc=130,mA=90")
    p.add_argument("--out", required=True, help="output folder (model.onnx + preprocess.json)")
    args = p.parse_args(argv)
    hyps = parse_hypotheses(args.hypothesis)
    if len(hyps) != 1:
        raise SystemExit("give exactly one hypothesis; run once per mass point")
    path = bake_condition(args.model, hyps[0], args.out)
    print(f"wrote {path} and {path.parent / 'preprocess.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
