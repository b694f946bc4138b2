"""Building blocks shared by the graph models (the only module models share).

Everything here works on *channels-last* tensors ``(N, P, C)`` internally: a
``1x1`` convolution over particles is then a plain GEMM on ``(N*P, C)`` rows,
which is what makes EdgeConv cheap on CPU. Models transpose the contract's
``(N, C, P)`` inputs once at the start.

* :class:`ConditionedModel` (re-exported from :mod:`paratag.models.base`): base class
  holding the condition names and the normalisation buffers every model carries.
* :class:`EdgeConvBlock`: ParticleNet's EdgeConv with the first linear layer
  applied per point before the neighbour gather.
* :class:`MassAwareAttention`, :class:`FiLM`, :func:`mlp`: conditioning blocks.
* :func:`masked_mean`, :func:`masked_batch_norm_input`: masking helpers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paratag.errors import ConfigError, InvalidValueError
from paratag.graphs import knn
from paratag.models.base import ConditionedModel
from paratag.models.kinematics import PAIR_FEATURES, PairKinematics, pair_features

__all__ = [
    "PARTICLENET_BACKBONES",
    "ConditionedModel",
    "EdgeConvBlock",
    "FiLM",
    "PAIR_FEATURES",
    "PairKinematics",
    "TrunkOptions",
    "pair_features",
    "MassAwareAttention",
    "fc_head",
    "fusion_layer",
    "fusion_width",
    "masked_mean",
    "mlp",
]

#: The paper's ParticleNet backbones (arXiv:1902.08570): EdgeConv ``(k, widths)`` blocks and
#: the fully connected head; shared by every model built on a ParticleNet trunk.
PARTICLENET_BACKBONES: dict[str, dict[str, Any]] = {
    "particlenet": {
        "conv_params": [[16, [64, 64, 64]], [16, [128, 128, 128]], [16, [256, 256, 256]]],
        "fc_params": [[256, 0.1]],
        "use_fusion": False,
    },
    "particlenet_lite": {
        "conv_params": [[7, [32, 32, 32]], [7, [64, 64, 64]]],
        "fc_params": [[128, 0.1]],
        "use_fusion": False,
    },
}


@dataclasses.dataclass(frozen=True)
class TrunkOptions:
    """The ParticleNet trunk shared by every model built on it: EdgeConv blocks and head.

    Attributes:
        conv_params: one ``(k, widths)`` per EdgeConv block.
        fc_params: one ``(width, dropout)`` per hidden fully connected layer.
        use_fusion: add weaver's fusion layer (1x1 conv over all block outputs).
        use_fts_bn: batch-normalise the input features.
    """

    conv_params: tuple[tuple[int, tuple[int, ...]], ...] = ((7, (32, 32, 32)), (7, (64, 64, 64)))
    fc_params: tuple[tuple[int, float], ...] = ((128, 0.1),)
    use_fusion: bool = True
    use_fts_bn: bool = True

    def __post_init__(self) -> None:
        name = type(self).__name__
        if not self.conv_params:
            raise ConfigError(f"{name}.conv_params needs at least one EdgeConv block")
        for k, widths in self.conv_params:
            if k < 1 or not widths or min(widths) < 1:
                raise ConfigError(
                    f"{name}.conv_params: block ({k}, {list(widths)}) needs k >= 1 and "
                    "positive widths"
                )
        for width, drop in self.fc_params:
            if width < 1 or not 0.0 <= drop < 1.0:
                raise ConfigError(
                    f"{name}.fc_params: ({width}, {drop}) needs width >= 1 and 0 <= dropout < 1"
                )


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x (N, P, C)`` over real particles; ``mask (N, P, 1)``; empty graphs give 0."""
    counts = mask.sum(dim=1).clamp(min=1.0)
    return (x * mask).sum(dim=1) / counts


def batch_norm_last(bn: nn.Module, x: Tensor) -> Tensor:
    """Apply ``bn`` over the last axis of ``x`` (any leading shape)."""
    shape = x.shape
    return bn(x.reshape(-1, shape[-1])).reshape(shape)


def fusion_width(in_dim: int) -> int:
    """Width of weaver's fusion layer: ``in_dim`` rounded down to 128s, within [128, 1024]."""
    return int(min(max((in_dim // 128) * 128, 128), 1024))


def fusion_layer(
    conv_params: Sequence[tuple[int, Sequence[int]]], use_fusion: bool, in_dim: int
) -> tuple[nn.Module, int]:
    """Weaver's fusion layer over the concatenated block outputs (or Identity) and its width.

    ``in_dim`` is the width without fusion (the last block's).
    """
    if not use_fusion:
        return nn.Identity(), in_dim
    cat_dim = sum(w[-1] for _, w in conv_params)
    out = fusion_width(cat_dim)
    return nn.Sequential(nn.Linear(cat_dim, out, bias=False), nn.BatchNorm1d(out), nn.ReLU()), out


def mlp(dims: Sequence[int], *, final_activation: bool = False) -> nn.Sequential:
    """``Linear``/``ReLU`` stack through ``dims``, e.g. ``(2, 64, 64)``."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def fc_head(in_dim: int, fc_params: Sequence[tuple[int, float]], n_classes: int) -> nn.Sequential:
    """ParticleNet's classifier: ``(Linear, ReLU, Dropout)`` per ``(width, drop)``, then Linear."""
    layers: list[nn.Module] = []
    for width, drop in fc_params:
        layers.append(nn.Sequential(nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(drop)))
        in_dim = width
    layers.append(nn.Linear(in_dim, n_classes))
    return nn.Sequential(*layers)


def _folded(linear: nn.Linear, bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``bn(linear(x))`` in eval mode folded into one affine map."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    weight = linear.weight * scale[:, None]
    bias = bn.bias - bn.running_mean * scale
    if linear.bias is not None:
        bias = bias + linear.bias * scale
    return weight, bias


#: Pairwise features of Particle Transformer (arXiv:2202.03772), in this order.
class EdgeConvBlock(nn.Module):
    """EdgeConv block of ParticleNet (arXiv:1902.08570) over a dense kNN graph.

    Each point ``i`` builds edge features ``[x_i, x_j - x_i]`` for its ``k``
    nearest real neighbours ``j`` (:func:`paratag.graphs.knn` on ``coords``),
    applies ``len(out_dims)`` shared ``Linear(no bias)/BatchNorm/ReLU`` layers,
    averages over the neighbours and adds a (projected) shortcut. Parameters
    and function are those of weaver's ``EdgeConvBlock``; the first layer is
    evaluated as ``(W1 - W2) x_i + W2 x_j`` per point before the gather, so
    no ``(N, P, k, 2C)`` tensor is built. In eval mode the batch norms are
    folded into the linear layers.

    ``k`` is clamped to ``P - 1`` at call time so clouds with few slots work;
    an ONNX graph traced at ``P > k`` keeps the full ``k`` and needs ``P > k``.

    Optional extra inputs of the first edge layer (concatenated to
    ``[x_i, x_j - x_i]``, evaluated as separate linear terms): ``pair_dim``
    pairwise features ``u_ij`` (:func:`pair_features` of the objects'
    kinematics) and a ``condition_dim`` condition vector of the graph. With
    ``masked=True`` edges to padded neighbours are dropped from the mean (a
    graph with fewer than ``k + 1`` real points averages over the real ones);
    weaver's block averages over all ``k``.

    Shapes:
        coords: (N, P, D) channels-last coordinates used for the kNN
        x: (N, P, C_in) channels-last features (zero at padded slots)
        mask: (N, P, 1) float, 1 for real particles
        kinematics: (N, P, 3) ``(pT, η, φ)`` per point (``pair_dim > 0`` only)
        condition: (N, condition_dim) (``condition_dim > 0`` only)
        resonance: (N,) hypothesised pair mass in GeV (``resonance_widths`` only)
        output: (N, P, out_dims[-1]), zero at padded slots
    """

    def __init__(
        self,
        k: int,
        in_dim: int,
        out_dims: Sequence[int],
        *,
        pair_dim: int = 0,
        condition_dim: int = 0,
        masked: bool = False,
        generic_pairs: bool = True,
        resonance_widths: Sequence[float] = (),
    ) -> None:
        super().__init__()
        if k < 1 or not out_dims:
            raise ConfigError(f"EdgeConv needs k >= 1 and at least one layer, got {k}, {out_dims}")
        self.k = int(k)
        self.in_dim = int(in_dim)
        self.masked = bool(masked)
        self.generic_pairs = bool(generic_pairs)
        self.resonance_widths = tuple(float(w) for w in resonance_widths)
        # extra inputs of the first edge layer: pair features u_ij and the graph's condition c
        self.pair_proj = nn.Linear(pair_dim, out_dims[0], bias=False) if pair_dim else None
        self.condition_proj = (
            nn.Linear(condition_dim, out_dims[0], bias=False) if condition_dim else None
        )
        dims = [2 * in_dim, *out_dims]
        self.linears = nn.ModuleList(
            nn.Linear(d_in, d_out, bias=False)
            for d_in, d_out in zip(dims[:-1], dims[1:], strict=True)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(d) for d in out_dims)
        self.shortcut: nn.Module = nn.Identity()
        if in_dim != out_dims[-1]:
            self.shortcut = nn.Sequential(
                nn.Linear(in_dim, out_dims[-1], bias=False), nn.BatchNorm1d(out_dims[-1])
            )

    def _layer(self, i: int, h: Tensor) -> Tensor:
        """Linear + BatchNorm + ReLU of layer ``i > 0`` on ``(M, C)`` rows."""
        lin, bn = cast(nn.Linear, self.linears[i]), cast(nn.BatchNorm1d, self.norms[i])
        if self.training:
            return F.relu(bn(lin(h)), inplace=True)
        w, b = _folded(lin, bn)
        return F.relu(F.linear(h, w, b), inplace=True)

    @staticmethod
    def _gather(t: Tensor, flat: Tensor) -> Tensor:
        """Rows ``flat`` of ``t (M, C)``."""
        if t.requires_grad and not torch.jit.is_tracing():
            # gather's backward (scatter_add) is ~10x faster on CPU than index_select's
            # (index_add); index_select stays for inference and ONNX (a plain Gather).
            return torch.gather(t, 0, flat.view(-1, 1).expand(-1, t.shape[1]))
        return t.index_select(0, flat)

    def _extra_terms(
        self,
        kinematics: Tensor | None,
        condition: Tensor | None,
        resonance: Tensor | None,
        flat: Tensor,
        k: int,
    ) -> tuple[Tensor | None, Tensor | None]:
        """First-layer terms of the pair features ``(N, P, k, C1)`` and condition ``(N, 1, 1, C1)``."""
        pair = cond = None
        if self.pair_proj is not None:
            if kinematics is None:
                raise InvalidValueError("EdgeConvBlock with pair_dim > 0 needs kinematics")
            n, p, _ = kinematics.shape
            nbr_kin = kinematics.reshape(n * p, -1).index_select(0, flat).view(n, p, k, -1)
            feats = pair_features(
                kinematics.unsqueeze(2),
                nbr_kin,
                resonance,
                self.resonance_widths if resonance is not None else (),
                self.generic_pairs,
            )
            pair = self.pair_proj(feats)
        if self.condition_proj is not None:
            if condition is None:
                raise InvalidValueError("EdgeConvBlock with condition_dim > 0 needs a condition")
            cond = self.condition_proj(condition)[:, None, None, :]
        if not self.training and (pair is not None or cond is not None):
            bn0 = cast(nn.BatchNorm1d, self.norms[0])
            assert bn0.running_var is not None
            scale = bn0.weight * torch.rsqrt(bn0.running_var + bn0.eps)
            pair = None if pair is None else pair * scale
            cond = None if cond is None else cond * scale
        return pair, cond

    def forward(
        self,
        coords: Tensor,
        x: Tensor,
        mask: Tensor,
        kinematics: Tensor | None = None,
        condition: Tensor | None = None,
        resonance: Tensor | None = None,
    ) -> Tensor:
        """Apply the block; see the class docstring for shapes."""
        n, p, c = x.shape
        # Shape-dependent clamp in eager mode only: a traced graph keeps the full k.
        k = self.k if torch.jit.is_tracing() else min(self.k, p - 1)
        with torch.no_grad():
            idx = knn(coords.transpose(1, 2), mask.transpose(1, 2), k)  # (N, P, k)
            offset = torch.arange(n, device=x.device).view(-1, 1, 1) * p
            flat = (idx + offset).reshape(-1)  # (N*P*k,)
        lin0, bn0 = cast(nn.Linear, self.linears[0]), cast(nn.BatchNorm1d, self.norms[0])
        if self.training:
            w, bias = lin0.weight, None
        else:
            w, bias = _folded(lin0, bn0)
        w_self, w_nbr = w[:, :c], w[:, c:]
        centre = F.linear(x, w_self - w_nbr, bias)  # (N, P, C1)
        nbr = self._gather(F.linear(x, w_nbr).reshape(n * p, -1), flat)  # (N*P*k, C1)
        # in place on the fresh gather output: one (N*P*k, C1) allocation fewer
        h4 = nbr.view(n, p, k, -1).add_(centre.unsqueeze(2))
        pair, cond = self._extra_terms(kinematics, condition, resonance, flat, k)
        if pair is not None:
            h4 = h4 + pair
        if cond is not None:
            h4 = h4 + cond
        h = h4.reshape(n * p * k, -1)
        h = F.relu(bn0(h), inplace=True) if self.training else F.relu(h, inplace=True)
        for i in range(1, len(self.linears)):
            h = self._layer(i, h)
        if self.masked:
            nbr_mask = mask.reshape(n * p, 1).index_select(0, flat).view(n, p, k, 1)
            count = nbr_mask.sum(dim=2).clamp(min=1.0)
            h = (h.view(n, p, k, -1) * nbr_mask).sum(dim=2) / count
        else:
            # sum * (1/k) rather than mean: its backward is a free expand, not a (N, P, k, C) divide
            h = h.view(n, p, k, -1).sum(dim=2) * (1.0 / k)
        if isinstance(self.shortcut, nn.Sequential):
            proj, norm = self.shortcut
            sc = batch_norm_last(norm, proj(x))
        else:
            sc = x
        return F.relu(h + sc) * mask


class FiLM(nn.Module):
    """Feature-wise linear modulation ``x * (1 + gamma) + beta`` from an embedding.

    The generating layer is zero-initialised (and :meth:`reset_to_identity`
    zeroes it again), so the modulation starts as exactly the identity.

    Shapes:
        x: (N, ..., dim); embedding: (N, embed_dim); output: like x
    """

    def __init__(self, embed_dim: int, dim: int, n_targets: int = 1) -> None:
        super().__init__()
        self.dim = int(dim)
        self.n_targets = int(n_targets)
        self.generator = nn.Linear(embed_dim, 2 * dim * n_targets)
        self.reset_to_identity()

    def reset_to_identity(self) -> None:
        """Make the modulation exactly the identity (gamma = beta = 0)."""
        nn.init.zeros_(self.generator.weight)
        nn.init.zeros_(self.generator.bias)

    def parameters_for(self, embedding: Tensor) -> tuple[Tensor, Tensor]:
        """``(1 + gamma, beta)``, each ``(N, n_targets, dim)``."""
        g = self.generator(embedding).view(embedding.shape[0], self.n_targets, 2, self.dim)
        return 1.0 + g[:, :, 0], g[:, :, 1]

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        """Modulate ``x`` (single target) by the embedding."""
        scale, shift = self.parameters_for(embedding)
        extra = x.dim() - 2
        view = (x.shape[0],) + (1,) * extra + (self.dim,)
        return x * scale[:, 0].reshape(view) + shift[:, 0].reshape(view)


class MassAwareAttention(nn.Module):
    """Residual multi-head self-attention over particles modulated by a mass embedding.

    ``x + W_o attn(FiLM_q(q), FiLM_k(k), FiLM_v(v))`` with ``q, k, v`` from a
    layer-normalised ``x``. The FiLM scale and shift of the queries, keys and
    values come from the condition embedding; padded particles are masked out
    as keys (they receive no attention) and their outputs are zeroed. The
    output projection is zero-initialised, so a fresh block is the identity.

    Shapes:
        x: (N, P, dim); mask: (N, P, 1); embedding: (N, embed_dim); output: (N, P, dim)
    """

    def __init__(self, dim: int, embed_dim: int, n_heads: int = 4) -> None:
        super().__init__()
        if dim % n_heads:
            raise ConfigError(
                f"attention width {dim} is not divisible by attention_heads={n_heads}; "
                f"choose a head count that divides every EdgeConv output width"
            )
        self.dim, self.n_heads = int(dim), int(n_heads)
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.modulation = FiLM(embed_dim, dim, n_targets=3)
        self.out_proj = nn.Linear(dim, dim)
        self.reset_output_to_identity()

    def reset_output_to_identity(self) -> None:
        """Zero the output projection so the residual branch contributes nothing."""
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def project(self, x: Tensor) -> Tensor:
        """Condition-free queries, keys and values ``(N, P, 3, dim)`` of ``x (N, P, dim)``."""
        return self.qkv(self.norm(x)).view(x.shape[0], x.shape[1], 3, self.dim)  # type: ignore[no-any-return]

    def attend(self, qkv: Tensor, mask: Tensor, embedding: Tensor) -> Tensor:
        """Attention output ``(N, P, dim)`` (before ``out_proj``) of projected ``qkv``.

        The embedding's FiLM modulates the queries, keys and values; padded
        particles receive no attention. ``qkv`` may be shared by many hypotheses
        (one embedding row per row of ``qkv``).
        """
        n, p = qkv.shape[0], qkv.shape[1]
        d, h = self.dim, self.n_heads
        hd = d // h
        scale, shift = self.modulation.parameters_for(embedding)  # (N, 3, d) each
        qkv = qkv * scale.unsqueeze(1) + shift.unsqueeze(1)
        q, k, v = (qkv[:, :, i].reshape(n, p, h, hd).transpose(1, 2) for i in range(3))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))  # (N, H, P, P)
        key_bias = (mask.transpose(1, 2).unsqueeze(1) - 1.0) * 1e9  # (N, 1, 1, P)
        attn = torch.softmax(scores + key_bias, dim=-1)
        return torch.matmul(attn, v).transpose(1, 2).reshape(n, p, d)

    def forward(self, x: Tensor, mask: Tensor, embedding: Tensor) -> Tensor:
        """Apply the block; see the class docstring for shapes."""
        return (x + self.out_proj(self.attend(self.project(x), mask, embedding))) * mask
