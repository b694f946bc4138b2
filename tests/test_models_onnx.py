"""Every graph model exports to ONNX (dynamic N, P, S) and matches PyTorch in onnxruntime."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import pytest
import torch

from paratag.config import ModelConfig
from paratag.models import build_model, example_inputs, input_names, positional

torch.set_num_threads(2)

TINY_PN = {"conv_params": [[4, [8, 8]], [4, [12]]], "fc_params": [[16, 0.1]], "use_fusion": True}
TINY_IN = {"relational_hidden": [8, 6], "edge_dim": 5, "object_hidden": [8], "object_dim": 6}

CASES = {
    "particlenet": (ModelConfig("particlenet", options=TINY_PN), {}),
    "parametric": (
        ModelConfig(
            "parametric_particlenet",
            n_classes=4,
            condition_names=("mHc", "mA"),
            options={**TINY_PN, "embed_dim": 8, "encoder_dims": [8]},
        ),
        {},
    ),
    "interaction_net_cond": (
        ModelConfig("interaction_net", condition_names=("mHc", "mA"), options=TINY_IN),
        {"sv_dims": 3},
    ),
    "interaction_net_no_sv": (ModelConfig("interaction_net", options=TINY_IN), {}),
}

# (N, P[, S]) shapes checked against PyTorch; P > k (= 4) as the traced graph keeps k fixed.
SHAPES = [(1, 8, 2), (5, 33, 4), (16, 70, 7)]


def export(model: torch.nn.Module) -> bytes:
    names = input_names(model)
    axes = {name: {0: "N", 2: "P"} for name in ("points", "features", "mask")}
    if "condition" in names:
        axes["condition"] = {0: "N"}
    if "sv_features" in names:
        axes["sv_features"] = axes["sv_mask"] = {0: "N", 2: "S"}
    axes["logits"] = {0: "N"}
    buffer = io.BytesIO()
    torch.onnx.export(
        positional(model),
        tuple(example_inputs(model, n=3, p=12).values()),
        buffer,
        dynamo=False,
        opset_version=17,
        input_names=names,
        output_names=["logits"],
        dynamic_axes=axes,
    )
    return buffer.getvalue()


# torch's legacy exporter calls its own deprecated logging helper (torch 2.13); nothing to fix here.
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
@pytest.mark.parametrize("case", list(CASES))
def test_onnx_export_matches_pytorch_on_several_shapes(case: str) -> None:
    torch.manual_seed(0)
    cfg, extra = CASES[case]
    model = build_model(cfg, point_dims=2, feature_dims=5, **extra).eval()
    for mod in model.modules():  # non-trivial batch-norm statistics
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 1.5)
    session = ort.InferenceSession(export(model), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == input_names(model)
    for n, p, s in SHAPES:
        inputs = example_inputs(model, n=n, p=p, seed=n, n_sv=s)
        with torch.no_grad():
            expected = model(**inputs).numpy()
        (got,) = session.run(None, {k: v.numpy() for k, v in inputs.items()})
        assert got.shape == (n, model.n_classes)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
