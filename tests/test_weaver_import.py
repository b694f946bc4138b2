"""``paratag import-weaver``: a weaver-core ParticleNet checkpoint becomes a paratag model.

weaver-core is the peer itself (``make install`` adds it without its dependencies).
"""

from __future__ import annotations

import warnings

import awkward as ak
import numpy as np
import pytest
import torch
from paratag.processors import Tagger
from typer.testing import CliRunner

from conftest import load_events
from paratag.cli import app
from paratag.errors import ConfigError
from paratag.inputs import build_inputs
from paratag.models.io import load_model
from paratag.weaver import from_weaver, weaver_options

weaver_pn = pytest.importorskip("weaver.nn.model.ParticleNet", reason="weaver-core not installed")

LITE = [(7, (32, 32, 32)), (7, (64, 64, 64))]


def _weaver(conv_params=LITE, seed: int = 0) -> torch.nn.Module:
    """weaver's ParticleNet (15 jet-preset features) with trained-looking batch-norm statistics."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = weaver_pn.ParticleNet(15, 2, conv_params=conv_params, fc_params=[(128, 0.1)])
    net.train()
    with torch.no_grad():
        for _ in range(3):  # move the running statistics away from their defaults
            n, p = 16, 40
            net(torch.randn(n, 2, p), torch.randn(n, 15, p) * 2 + 1, torch.ones(n, 1, p).bool())
    return net.eval()


def _inputs(n: int = 8, p: int = 30, seed: int = 1) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(8, p + 1, (n,), generator=gen)
    mask = (torch.arange(p).view(1, 1, -1) < counts.view(-1, 1, 1)).float()
    return (
        torch.randn(n, 2, p, generator=gen) * mask,
        torch.randn(n, 15, p, generator=gen) * mask,
        mask,
    )


def test_weaver_options_are_read_from_the_tensor_shapes() -> None:
    state = {f"mod.{k}": v for k, v in _weaver().state_dict().items()}  # a wrapper's prefix
    options, n_features, n_classes = weaver_options(state)
    assert (n_features, n_classes) == (15, 2)
    assert options["conv_params"] == [[7, [32, 32, 32]], [7, [64, 64, 64]]]  # k from the backbone
    assert options["fc_params"] == [[128, 0.1]] and options["use_fusion"] and options["use_fts_bn"]
    with pytest.raises(ConfigError, match="give k"):
        weaver_options(_weaver([(5, (16, 24))]).state_dict())
    assert weaver_options(_weaver([(5, (16, 24))]).state_dict(), k=5)[0]["conv_params"] == [
        [5, [16, 24]]
    ]
    tagger = weaver_pn.ParticleNetTagger(15, 10, 2, conv_params=LITE, fc_params=[(128, 0.1)])
    with pytest.raises(ConfigError, match="ParticleNetTagger"):
        weaver_options(tagger.state_dict())


def test_converted_model_gives_weavers_outputs() -> None:
    net = _weaver()
    ours = from_weaver(net.state_dict())
    points, features, mask = _inputs()
    with torch.no_grad():
        want = net(points, features, mask.bool())
        got = ours(points, features, mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_cli_import_weaver_feeds_the_tagger(tmp_path, pfnano_path) -> None:
    net = _weaver(seed=3)
    ckpt = tmp_path / "net_best_epoch_state.pt"
    torch.save(net.state_dict(), ckpt)
    out = tmp_path / "imported"
    result = CliRunner().invoke(
        app, ["import-weaver", str(ckpt), "--out", str(out), "--class-names", "Xbb,QCD"]
    )
    assert result.exit_code == 0, result.output
    assert "parity:" in result.output and (out / "model.onnx").is_file()
    model, info = load_model(out / "model.pt")
    assert info["class_names"] == ["Xbb", "QCD"] and info["source"]["weaver_checkpoint"] == str(
        ckpt
    )
    # the Tagger on real PFNano jets gives weaver's softmax for the same inputs
    events = load_events(pfnano_path)
    scored = Tagger(out / "model.onnx")(events)
    pf = build_inputs(events, "jet").clouds["pf"]
    with torch.no_grad():
        logits = net(
            *(torch.from_numpy(a) for a in (pf.points, pf.features)),
            torch.from_numpy(pf.mask).bool(),
        )
    want = torch.softmax(logits, dim=1)[:, 0].numpy()
    got = ak.to_numpy(ak.flatten(scored.FatJet.score))  # all 24 fixture jets pass the preset
    assert got.shape == want.shape == (24,)
    np.testing.assert_allclose(got, want, atol=1e-5)
