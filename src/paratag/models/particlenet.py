"""ParticleNet (arXiv:1902.08570): dynamic-graph EdgeConv network on particle clouds.

Architecture (same parameters and function as weaver-core's ``ParticleNet``):
input batch norm of the features; EdgeConv blocks, the first on ``points``
and the later ones on the previous block's output (dynamic graph), each with
a shortcut; an optional fusion layer over the concatenated block outputs;
masked global average pooling; a fully connected head.

Presets (``options: {preset: ...}`` in YAML, other keys override):

* ``particlenet``: the paper's full model, k=16, EdgeConv widths
  (64,64,64), (128,128,128), (256,256,256), FC 256 with dropout 0.1, no
  fusion layer: 366,160 parameters for 7 features and 2 classes.
* ``particlenet_lite``: k=7, (32,32,32), (64,64,64), FC 128: 26,416 parameters.

The dataclass defaults are weaver's: the Lite blocks plus the fusion layer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from paratag.config import ModelConfig
from paratag.models.layers import (
    PARTICLENET_BACKBONES,
    ConditionedModel,
    EdgeConvBlock,
    TrunkOptions,
    batch_norm_last,
    fc_head,
    fusion_layer,
    masked_mean,
)
from paratag.models.registry import register, resolve_options

__all__ = ["PARTICLENET_PRESETS", "ParticleNet", "ParticleNetOptions"]

#: Named option presets with the paper's hyperparameters.
PARTICLENET_PRESETS: dict[str, dict[str, Any]] = {
    name: {**backbone, "use_fts_bn": True} for name, backbone in PARTICLENET_BACKBONES.items()
}


@dataclasses.dataclass(frozen=True)
class ParticleNetOptions(TrunkOptions):
    """Hyperparameters of ParticleNet (``ModelConfig.options``).

    Exactly the trunk's (:class:`~paratag.models.layers.TrunkOptions`: ``conv_params``,
    ``fc_params``, ``use_fusion``, ``use_fts_bn``).
    """

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ParticleNetOptions:
        """Build from ``ModelConfig.options``, expanding ``preset``."""
        return resolve_options(cls, options, PARTICLENET_PRESETS)


@register("particlenet")
class ParticleNet(ConditionedModel):
    """ParticleNet classifier on a padded particle cloud.

    The model is not parametric: ``condition`` is accepted and ignored (its
    names and normalisation are still stored when the config gives them).

    Shapes:
        points: (N, point_dims, P) coordinates for the first kNN (e.g. deta, dphi)
        features: (N, feature_dims, P)
        mask: (N, 1, P) float32, 1 for real particles; padded inputs are ignored
        condition: (N, K) or None, ignored
        output: (N, n_classes) logits
    """

    def __init__(
        self,
        point_dims: int,
        feature_dims: int,
        n_classes: int = 2,
        options: ParticleNetOptions | None = None,
        condition_names: tuple[str, ...] = (),
        condition_mean: tuple[float, ...] = (),
        condition_std: tuple[float, ...] = (),
    ) -> None:
        super().__init__(n_classes, condition_names, condition_mean, condition_std)
        opts = options or ParticleNetOptions()
        self.options = opts
        self.point_dims, self.feature_dims, self.sv_dims = int(point_dims), int(feature_dims), 0
        self.bn_fts: nn.Module = nn.BatchNorm1d(feature_dims) if opts.use_fts_bn else nn.Identity()
        blocks, in_dim = [], feature_dims
        for k, widths in opts.conv_params:
            blocks.append(EdgeConvBlock(k, in_dim, widths))
            in_dim = widths[-1]
        self.edge_convs = nn.ModuleList(blocks)
        self.fusion, in_dim = fusion_layer(opts.conv_params, opts.use_fusion, in_dim)
        self.head = fc_head(in_dim, opts.fc_params, n_classes)

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, *, point_dims: int, feature_dims: int, sv_dims: int = 0
    ) -> ParticleNet:
        """Build from a :class:`ModelConfig` (``sv_dims`` must be 0: no SV input)."""
        cls.no_secondary(cfg, sv_dims)
        return cls(
            point_dims,
            feature_dims,
            options=ParticleNetOptions.from_options(cfg.options),
            **ConditionedModel.condition_kwargs(cfg),  # type: ignore[arg-type]
        )

    def embed(self, points: Tensor, features: Tensor, mask: Tensor) -> Tensor:
        """Pooled jet representation ``(N, C)`` before the head."""
        m = mask.transpose(1, 2)  # (N, P, 1)
        pts = points.transpose(1, 2) * m
        x = features.transpose(1, 2) * m
        if isinstance(self.bn_fts, nn.BatchNorm1d):
            x = batch_norm_last(self.bn_fts, x) * m
        outputs = []
        for i, conv in enumerate(self.edge_convs):
            x = conv(pts if i == 0 else x, x, m)
            outputs.append(x)
        if isinstance(self.fusion, nn.Sequential):
            cat = torch.cat(outputs, dim=-1)
            lin, bn, act = self.fusion
            x = act(batch_norm_last(bn, lin(cat))) * m
        return masked_mean(x, m)

    def forward(
        self, points: Tensor, features: Tensor, mask: Tensor, condition: Tensor | None = None
    ) -> Tensor:
        """Logits ``(N, n_classes)``; ``condition`` is ignored."""
        return self.head(self.embed(points, features, mask))  # type: ignore[no-any-return]
