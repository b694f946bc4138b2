"""weaver-core ParticleNet checkpoints as paratag models (``paratag import-weaver``).

A ``state_dict`` of ``weaver.nn.model.ParticleNet`` (or of a wrapper that holds it,
e.g. weaver's example networks' ``mod.`` prefix) maps one-to-one onto
:class:`~paratag.models.particlenet.ParticleNet`: weaver's 1×1 ``Conv2d``/``Conv1d``
layers become ``Linear`` layers, its batch norms keep their statistics. The
architecture is read from the tensor shapes (feature count, block widths, fully
connected widths, fusion layer, input batch norm, classes); only the neighbour
counts ``k`` are not stored in weights and come from the caller or from the
backbone with the same widths (:data:`~paratag.models.layers.PARTICLENET_BACKBONES`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from paratag.config import ModelConfig, to_dict
from paratag.errors import ConfigError, InputFileError
from paratag.models.layers import PARTICLENET_BACKBONES

__all__ = ["from_weaver", "import_weaver", "read_state_dict", "weaver_options", "weaver_to_paratag"]

_BLOCK = re.compile(r"^edge_convs\.(\d+)\.convs\.(\d+)\.weight$")
_FC = re.compile(r"^fc\.(\d+)\.0\.weight$")


def _strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ParticleNet's own keys (wrappers prefix them, e.g. ``mod.edge_convs...``)."""
    if any(k.startswith(("pf_conv.", "sv_conv.")) or ".pf_conv." in k for k in state):
        raise ConfigError(
            "this is a weaver ParticleNetTagger (per-cloud feature convolutions pf_conv/sv_conv "
            "before ParticleNet); only the plain weaver.nn.model.ParticleNet maps onto paratag's"
        )
    anchor = next((k for k in state if "edge_convs.0.convs.0.weight" in k), None)
    if anchor is None:
        raise ConfigError(
            "not a weaver ParticleNet state_dict: no edge_convs.0.convs.0.weight among its "
            f"{len(state)} tensors (first keys: {list(state)[:4]})"
        )
    prefix = anchor[: anchor.index("edge_convs.0.convs.0.weight")]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def weaver_to_paratag(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename weaver ParticleNet's state dict to paratag's (1×1 convolutions become Linear)."""
    out = {}
    for name, value in _strip_prefix(state).items():
        new = (
            name.replace(".convs.", ".linears.")
            .replace(".bns.", ".norms.")
            .replace(".sc_bn.", ".shortcut.1.")
            .replace(".sc.", ".shortcut.0.")
            .replace("fusion_block.0.", "fusion.0.")
            .replace("fusion_block.1.", "fusion.1.")
        )
        if new.startswith("fc."):
            new = "head." + new[3:]
        if value.dim() > 2 and "weight" in new:
            value = value.reshape(value.shape[0], value.shape[1])
        out[new] = value
    return out


def weaver_options(
    state: Mapping[str, torch.Tensor], k: Sequence[int] | int | None = None
) -> tuple[dict[str, Any], int, int]:
    """``(ParticleNet options, feature count, class count)`` read from a weaver state dict.

    ``k``: neighbours per EdgeConv block (one value for all, or one per block); None
    takes them from the paper backbone with the same block widths.
    """
    s = _strip_prefix(state)
    widths: dict[int, dict[int, int]] = {}
    for name, value in s.items():
        m = _BLOCK.match(name)
        if m:
            widths.setdefault(int(m[1]), {})[int(m[2])] = int(value.shape[0])
    blocks = [tuple(widths[b][j] for j in sorted(widths[b])) for b in sorted(widths)]
    n_features = int(s["edge_convs.0.convs.0.weight"].shape[1]) // 2
    hidden = sorted((int(m[1]), int(v.shape[0])) for n, v in s.items() if (m := _FC.match(n)))
    last = max(int(n.split(".")[1]) for n in s if n.startswith("fc.") and n.endswith(".weight"))
    n_classes = int(s[f"fc.{last}.weight"].shape[0])
    if k is None:
        match = [
            b
            for b in PARTICLENET_BACKBONES.values()
            if [tuple(w) for _, w in b["conv_params"]] == blocks
        ]
        if not match:
            raise ConfigError(
                f"weaver ParticleNet with EdgeConv widths {blocks}: no paper backbone has these "
                "widths, so the neighbour counts are unknown; give k (e.g. --k 16)"
            )
        ks = [int(kk) for kk, _ in match[0]["conv_params"]]
    else:
        ks = [int(k)] * len(blocks) if isinstance(k, int) else [int(x) for x in k]
        if len(ks) != len(blocks):
            raise ConfigError(f"k has {len(ks)} values for {len(blocks)} EdgeConv blocks")
    options = {
        "conv_params": [[kk, list(w)] for kk, w in zip(ks, blocks, strict=True)],
        "fc_params": [[w, 0.1] for _, w in hidden],  # dropout is not stored; unused in inference
        "use_fusion": "fusion_block.0.weight" in s,
        "use_fts_bn": "bn_fts.weight" in s,
    }
    return options, n_features, n_classes


def from_weaver(
    state: Mapping[str, torch.Tensor], k: Sequence[int] | int | None = None, point_dims: int = 2
) -> torch.nn.Module:
    """A paratag ParticleNet with a weaver ParticleNet's weights (eval mode)."""
    from paratag.models import build_model

    options, n_features, n_classes = weaver_options(state, k)
    model = build_model(
        ModelConfig(name="particlenet", n_classes=n_classes, options=options),
        point_dims=point_dims,
        feature_dims=n_features,
    )
    ours = model.state_dict()
    theirs = weaver_to_paratag(state)
    missing = sorted(set(ours) - set(theirs) - {"condition_mean", "condition_std"})
    extra = sorted(set(theirs) - set(ours))
    if missing or extra:
        raise ConfigError(
            f"weaver state_dict does not match the paratag ParticleNet {options}: missing "
            f"{missing[:5]}, unexpected {extra[:5]}"
        )
    try:
        model.load_state_dict({**ours, **theirs})
    except RuntimeError as exc:
        raise ConfigError(f"weaver state_dict does not fit the paratag ParticleNet: {exc}") from exc
    return model.eval()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weaver checkpoint: a plain ``state_dict`` or one under a common key."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(str(p), "no such checkpoint", "give the weaver .pt file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of torch.load have no common type
        raise InputFileError(
            str(p), f"not a torch checkpoint ({exc})", "give a .pt state_dict"
        ) from exc
    for key in ("state_dict", "model_state", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputFileError(str(p), "holds no state_dict of tensors", "save model.state_dict()")
    return dict(obj)


def import_weaver(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    preset: str = "jet",
    k: Sequence[int] | int | None = None,
    class_names: Sequence[str] | None = None,
    check_events: str | Path | None = None,
) -> Any:
    """Convert a weaver ParticleNet checkpoint into a paratag model in ``out_dir``.

    Writes ``model.pt`` (a paratag checkpoint), ``model.onnx`` and ``preprocess.json``
    for the Tagger, parity-checked (PyTorch vs onnxruntime). The preset must give the inputs in the order weaver was trained with; its
    feature count is checked against the checkpoint's. Returns the
    :class:`~paratag.export.ExportResult`.
    """
    from paratag.export import export_model
    from paratag.models.io import save_checkpoint
    from paratag.presets import load_preset

    state = read_state_dict(checkpoint)
    options, n_features, n_classes = weaver_options(state, k)
    model = from_weaver(state, k)
    p = load_preset(preset)
    first = p.clouds[0]
    if len(first.features) != n_features:
        raise ConfigError(
            f"{checkpoint}: the weaver model takes {n_features} features, preset "
            f"{p.name!r} gives {len(first.features)} ({[f.name for f in first.features]})"
        )
    names = list(class_names) if class_names else [f"class{i}" for i in range(n_classes)]
    if len(names) != n_classes:
        raise ConfigError(f"{len(names)} class names for a model with {n_classes} outputs")
    out = Path(out_dir)
    info = {
        "model_config": to_dict(
            ModelConfig(name="particlenet", n_classes=n_classes, options=options)
        ),
        "input_dims": {"point_dims": 2, "feature_dims": n_features},
        "preset": p.to_dict(),
        "condition_names": [],
        "condition_mean": [],
        "condition_std": [],
        "class_names": names,
        "stage": "imported",
        "source": {"weaver_checkpoint": str(checkpoint)},
    }
    save_checkpoint(out / "model.pt", model, info)
    return export_model(model, p, out, class_names=names, check=True, check_events=check_events)
