"""Masked Transformer autoencoder for tabular event features (HIGGS-style baseline).

Each feature of an event is one token: its standardised value times a learned per-feature
weight plus a learned feature embedding. A random fraction of the tokens is replaced by a
mask token, a Transformer encoder reads all tokens, and a per-feature decoder reconstructs
the masked values. Physics penalties act on the completed event (observed values where
visible, reconstructions where masked), in physical units via the stored standardisation:

- ``positive``: pT and masses are non-negative;
- ``angle``: cos^2 + sin^2 = 1 for every (``<obj>_cosphi``, ``<obj>_sinphi``) pair;
- ``balance``: the transverse-momentum balance of the visible objects with the missing
  energy, sum(pT_vec) + MET_vec, is the same as in the input event (relative to its HT);
- ``mass``: ``m_bb`` and ``m_jj`` equal the invariant masses of the (massless) jet pairs
  they are defined on (the two highest-b-tag jets and the other two), where present.

After pre-training, :meth:`MaskedTransformerAE.forward` classifies from the tokens, mean-pooled
or concatenated, with a linear probe or a small MLP; the encoder can stay frozen or be
fine-tuned.
Feature names follow ``paratag.baselines.tabular``: ``<obj>_pt|eta|cosphi|sinphi|btag``, ``m_*``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from paratag.config import ModelConfig, from_dict
from paratag.errors import ConfigError, InvalidValueError
from paratag.models.registry import register

__all__ = [
    "FeatureLayout",
    "MaskedAEOptions",
    "MaskedTransformerAE",
    "export_onnx",
    "log_positive",
    "mlp_head",
    "reconstruction_metrics",
]


@dataclasses.dataclass(frozen=True)
class MaskedAEOptions:
    """Hyperparameters of :class:`MaskedTransformerAE` (``ModelConfig.options``).

    Attributes:
        feature_names: encoded feature names (one token each), e.g. ``encode_phi`` output.
        feature_mean: per-feature mean used to standardise inputs (physical units).
        feature_std: per-feature standard deviation used to standardise inputs.
        d_model: token width.
        n_heads: attention heads.
        n_layers: Transformer blocks.
        ff_dim: hidden width of the feed-forward sublayers.
        dropout: dropout in the encoder and head.
        mask_fraction: fraction of tokens masked per event during pre-training.
        head: classifier on the pooled tokens, ``"linear"`` (probe) or ``"mlp"``.
        pooling: what the head reads: ``"mean"`` of the tokens (d_model values) or
            ``"concat"``, every token side by side (F x d_model values, one slot per feature).
        head_hidden: hidden width of the MLP head.
        head_layers: hidden layers of the MLP head.
        log_positive: the pT and mass features enter as ``log(1 + x)`` (x in GeV; see
            :func:`log_positive`), and ``feature_mean``/``feature_std`` are those of the
            logarithms; the penalties act on momenta in GeV and compare masses in the
            logarithm. Heavy-tailed inputs otherwise leave most events in a narrow band of
            the standardised range.
        w_positive: weight of the non-negativity penalty.
        w_angle: weight of the cos^2 + sin^2 = 1 penalty.
        w_balance: weight of the transverse-momentum balance penalty.
        w_mass: weight of the invariant-mass consistency penalty.
    """

    feature_names: tuple[str, ...] = ()
    feature_mean: tuple[float, ...] = ()
    feature_std: tuple[float, ...] = ()
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    ff_dim: int = 64
    dropout: float = 0.0
    mask_fraction: float = 0.3
    head: Literal["linear", "mlp"] = "mlp"
    pooling: Literal["mean", "concat"] = "mean"
    head_hidden: int = 64
    head_layers: int = 1
    log_positive: bool = False
    w_positive: float = 1.0
    w_angle: float = 1.0
    w_balance: float = 0.1
    w_mass: float = 0.1

    def __post_init__(self) -> None:
        n = len(self.feature_names)
        if n == 0:
            raise ConfigError(
                "MaskedAEOptions.feature_names is empty; pass the encoded feature names"
            )
        if len(self.feature_mean) not in (0, n) or len(self.feature_std) not in (0, n):
            raise ConfigError(
                f"MaskedAEOptions: feature_mean/std need {n} values (one per feature)"
            )
        if any(s <= 0 for s in self.feature_std):
            raise ConfigError("MaskedAEOptions.feature_std must be positive")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"MaskedAEOptions: d_model {self.d_model} not divisible by n_heads {self.n_heads}"
            )
        if self.head not in ("linear", "mlp") or self.pooling not in ("mean", "concat"):
            raise ConfigError(
                f"MaskedAEOptions: head must be 'linear' or 'mlp' (got {self.head!r}) and "
                f"pooling 'mean' or 'concat' (got {self.pooling!r})"
            )
        if self.head_layers < 1 or self.head_hidden < 1:
            raise ConfigError(
                f"MaskedAEOptions: head_layers ({self.head_layers}) and head_hidden "
                f"({self.head_hidden}) must be at least 1"
            )
        if not 0.0 < self.mask_fraction < 1.0:
            raise ConfigError(
                f"MaskedAEOptions.mask_fraction must be in (0, 1), got {self.mask_fraction}"
            )


#: log(1 + x) cap when ``log_positive`` values are turned back into GeV (e^12 ~ 160 TeV).
_MAX_LOG = 12.0


def mlp_head(n_in: int, n_out: int, hidden: int, layers: int, dropout: float) -> nn.Sequential:
    """``layers`` x (Linear, ReLU, Dropout) of width ``hidden``, then a Linear to ``n_out``."""
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*blocks, nn.Linear(hidden, n_out))


def log_positive(x: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """``x`` with its pT and mass columns replaced by ``log(1 + x)`` (a copy).

    The input side of ``MaskedAEOptions.log_positive``: apply it before standardising.
    Raises :class:`~paratag.errors.InvalidValueError` on a negative or non-finite pT or
    mass, naming the column.
    """
    out = np.array(x, dtype=np.float32, copy=True)
    if len(names) != out.shape[1]:
        raise ConfigError(f"log_positive: {out.shape[1]} columns but {len(names)} feature names")
    i = list(FeatureLayout.from_names(tuple(names)).positive)
    bad = ~(out[:, i] >= 0) | ~np.isfinite(out[:, i])  # NaN fails ">= 0"
    if bad.any():
        per_col = bad.sum(axis=0)
        col = names[i[int(np.argmax(per_col))]]
        raise InvalidValueError(
            f"log_positive: {int(per_col.sum())} negative or non-finite pT/mass values (e.g. "
            f"{int(per_col.max())} in {col!r}); pT and masses must be finite and >= 0 "
            "(zero-fill missing objects)"
        )
    out[:, i] = np.log1p(out[:, i])
    return out


@dataclasses.dataclass(frozen=True)
class FeatureLayout:
    """Which token is what, parsed from the feature names.

    Attributes:
        positive: indices of pT and mass features.
        angle_pairs: (cos, sin) index pairs.
        vectors: per object with pT and phi, its (pt, cos, sin) indices; MET excluded.
        met: (pt, cos, sin) indices of the missing energy, or None.
        jets: per jet1..jet4 its (pt, eta, cos, sin, btag) indices, when all four are complete.
        masses: name -> index for ``m_bb`` and ``m_jj`` when present.
    """

    positive: tuple[int, ...]
    angle_pairs: tuple[tuple[int, int], ...]
    vectors: tuple[tuple[int, int, int], ...]
    met: tuple[int, int, int] | None
    jets: tuple[tuple[int, int, int, int, int], ...]
    masses: dict[str, int]

    @classmethod
    def from_names(cls, names: tuple[str, ...]) -> FeatureLayout:
        """Parse ``<obj>_pt|eta|cosphi|sinphi|btag`` and ``m_*`` names."""
        idx = {n: i for i, n in enumerate(names)}
        positive = tuple(i for i, n in enumerate(names) if n.endswith("_pt") or n.startswith("m_"))
        objects = [n[: -len("_cosphi")] for n in names if n.endswith("_cosphi")]
        pairs = tuple(
            (idx[f"{o}_cosphi"], idx[f"{o}_sinphi"]) for o in objects if f"{o}_sinphi" in idx
        )
        vec = {
            o: (idx[f"{o}_pt"], idx[f"{o}_cosphi"], idx[f"{o}_sinphi"])
            for o in objects
            if f"{o}_pt" in idx and f"{o}_sinphi" in idx
        }
        met = vec.pop("met", None)
        keys = ("pt", "eta", "cosphi", "sinphi", "btag")
        jets = tuple(
            tuple(idx[f"jet{j}_{k}"] for k in keys)
            for j in range(1, 5)
            if all(f"jet{j}_{k}" in idx for k in keys)
        )
        jets = jets if len(jets) == 4 else ()
        masses = {m: idx[m] for m in ("m_bb", "m_jj") if m in idx and jets}
        return cls(positive, pairs, tuple(vec.values()), met, jets, masses)  # type: ignore[arg-type]


class _Block(nn.Module):
    """Pre-norm Transformer block (plain ops, so the ONNX export has no fused kernels)."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.d_head = d // heads
        self.scale = 1.0 / math.sqrt(self.d_head)
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[0], x.shape[1]
        qkv = self.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, self.d_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        att = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(n, t, self.heads * self.d_head)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.ff(self.norm2(x)))


@register("masked_autoencoder")
class MaskedTransformerAE(nn.Module):
    """Transformer autoencoder over feature tokens with a classification head.

    Shapes:
        features: (N, F) float32, standardised with ``feature_mean``/``feature_std``
            (F = ``len(feature_names)``).
        mask: (N, F) bool, True where a feature is hidden from the encoder.
        returns: ``forward`` -> logits (N, n_classes); ``reconstruct`` -> (N, F) standardised.
    """

    input_names: tuple[str, ...] = ("features",)
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, options: MaskedAEOptions, n_classes: int = 2) -> None:
        super().__init__()
        o = self.options = options
        self.n_classes = n_classes
        f, d = len(o.feature_names), o.d_model
        self.layout = FeatureLayout.from_names(o.feature_names)
        mean = torch.tensor(o.feature_mean or [0.0] * f, dtype=torch.float32)
        std = torch.tensor(o.feature_std or [1.0] * f, dtype=torch.float32)
        self.register_buffer("feature_mean", mean)
        self.register_buffer("feature_std", std)
        self.value_weight = nn.Parameter(torch.randn(f, d) * 0.5)
        self.feature_embedding = nn.Parameter(torch.randn(f, d) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(d))
        self.encoder = nn.ModuleList(
            _Block(d, o.n_heads, o.ff_dim, o.dropout) for _ in range(o.n_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.decoder_weight = nn.Parameter(torch.randn(f, d) / math.sqrt(d))
        self.decoder_bias = nn.Parameter(torch.zeros(f))
        self.head: nn.Module
        width = d * (f if o.pooling == "concat" else 1)
        if o.head == "linear":
            self.head = nn.Linear(width, n_classes)
        else:
            self.head = mlp_head(width, n_classes, o.head_hidden, o.head_layers, o.dropout)

    @classmethod
    def from_config(cls, cfg: ModelConfig, *, n_features: int | None = None) -> MaskedTransformerAE:
        """Build from a :class:`~paratag.config.ModelConfig` (options -> :class:`MaskedAEOptions`).

        ``n_features`` (an input dim from :func:`paratag.models.build_model`) is checked
        against ``feature_names`` when given.
        """
        if cfg.condition_names:
            raise ConfigError(
                "MaskedTransformerAE is not parametric: ModelConfig.condition_names must be empty"
            )
        options = from_dict(MaskedAEOptions, cfg.options, where="ModelConfig.options")
        if n_features is not None and n_features != len(options.feature_names):
            raise ConfigError(
                f"MaskedTransformerAE: the data has {n_features} features but "
                f"options.feature_names lists {len(options.feature_names)}"
            )
        return cls(options, cfg.n_classes)

    def example_inputs(self, n: int = 4, p: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
        """Random standardised features ``{"features": (n, F)}`` for export and tests."""
        gen = torch.Generator().manual_seed(seed)
        return {"features": torch.randn(n, len(self.options.feature_names), generator=gen)}

    # -- encoder / decoder --------------------------------------------------------------------

    def encode(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return token representations (N, F, d_model); masked tokens see only their position."""
        values = features.unsqueeze(-1) * self.value_weight
        if mask is not None:
            values = torch.where(mask.unsqueeze(-1), self.mask_token.expand_as(values), values)
        x = values + self.feature_embedding
        for block in self.encoder:
            x = block(x)
        return self.norm(x)

    def reconstruct(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruct every feature (standardised units) from the unmasked ones."""
        h = self.encode(features, mask)
        return (h * self.decoder_weight).sum(-1) + self.decoder_bias

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Classify events from the unmasked tokens, pooled by ``options.pooling``."""
        tokens = self.encode(features)
        pooled = tokens.flatten(1) if self.options.pooling == "concat" else tokens.mean(dim=1)
        return self.head(pooled)

    def random_mask(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mask exactly ``round(mask_fraction * F)`` (at least one) random features per event."""
        f = len(self.options.feature_names)
        k = max(1, round(self.options.mask_fraction * f))
        order = torch.rand(n, f, generator=generator).argsort(dim=1)
        return order < k

    def set_encoder_trainable(self, trainable: bool) -> None:
        """Freeze (linear/MLP probe) or unfreeze (full fine-tuning) everything but the head."""
        for name, p in self.named_parameters():
            if not name.startswith("head."):
                p.requires_grad_(trainable)

    # -- losses -------------------------------------------------------------------------------

    def physical(self, standardised: torch.Tensor) -> torch.Tensor:
        """Undo the standardisation (and ``log_positive``): (N, F) physical units."""
        x = standardised * self.feature_std + self.feature_mean
        if self.options.log_positive and self.layout.positive:
            i = list(self.layout.positive)  # x is a new tensor: fill it in place
            x[:, i] = torch.expm1(x[:, i].clamp(max=_MAX_LOG))
        return x

    def physics_penalties(
        self, completed: torch.Tensor, features: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Penalties on a completed event (standardised), relative to the input ``features``."""
        lay, zero = self.layout, completed.new_zeros(())
        out = {"positive": zero, "angle": zero, "balance": zero, "mass": zero}
        x, x0 = self.physical(completed), self.physical(features)
        std = self.feature_std
        if lay.positive:
            i = list(lay.positive)
            out["positive"] = (torch.relu(-x[:, i]) / std[i]).pow(2).mean()
        if lay.angle_pairs:
            c, s = zip(*lay.angle_pairs, strict=True)
            out["angle"] = (x[:, list(c)] ** 2 + x[:, list(s)] ** 2 - 1.0).pow(2).mean()
        if lay.met is not None and lay.vectors:
            objs = [*lay.vectors, lay.met]

            def balance(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                bx = sum(v[:, p] * v[:, c] for p, c, _ in objs)
                by = sum(v[:, p] * v[:, s] for p, _, s in objs)
                return bx, by  # type: ignore[return-value]

            bx, by = balance(x)
            bx0, by0 = balance(x0)
            ht = sum(x0[:, p].abs() for p, _, _ in objs) + 1e-3
            out["balance"] = (((bx - bx0) ** 2 + (by - by0) ** 2) / ht**2).mean()
        if lay.masses:
            out["mass"] = self._mass_penalty(x, x0)
        return out

    def _mass_penalty(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        jets = torch.tensor(self.layout.jets, device=x.device)  # (4, 5)
        pt, eta, c, s = (x[:, jets[:, k]] for k in range(4))
        order = torch.sort(-x0[:, jets[:, 4]], dim=1, stable=True).indices  # b-tag from the input
        b_idx, _ = order[:, :2].sort(dim=1)
        w_idx, _ = order[:, 2:].sort(dim=1)

        def pair_mass(ij: torch.Tensor) -> torch.Tensor:
            g = [t.gather(1, ij) for t in (pt, eta, c, s)]
            cos_dphi = g[2][:, 0] * g[2][:, 1] + g[3][:, 0] * g[3][:, 1]
            m2 = 2 * g[0][:, 0] * g[0][:, 1] * (torch.cosh(g[1][:, 0] - g[1][:, 1]) - cos_dphi)
            return torch.sqrt(m2.clamp_min(1e-6))

        total = x.new_zeros(())
        for name, ij in (("m_bb", b_idx), ("m_jj", w_idx)):
            if name in self.layout.masses:
                i = self.layout.masses[name]
                m, ref = x[:, i], pair_mass(ij)
                if self.options.log_positive:  # compare in the units the mass was standardised in
                    m, ref = torch.log1p(m.clamp_min(0.0)), torch.log1p(ref)
                total = total + ((m - ref) / self.feature_std[i]).pow(2).mean()
        return total

    def pretrain_loss(
        self, features: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Masked-reconstruction MSE plus weighted physics penalties.

        Returns:
            ``(loss, parts)`` with the scalar loss and a float per term for monitoring.
        """
        if mask is None:
            mask = self.random_mask(features.shape[0]).to(features.device)
        recon = self.reconstruct(features, mask)
        m = mask.float()
        mse = ((recon - features) ** 2 * m).sum() / m.sum().clamp_min(1.0)
        completed = torch.where(mask, recon, features)
        pen = self.physics_penalties(completed, features)
        o = self.options
        weights = {
            "positive": o.w_positive,
            "angle": o.w_angle,
            "balance": o.w_balance,
            "mass": o.w_mass,
        }
        loss = mse + sum(weights[k] * pen[k] for k in pen)
        parts = {"mse": float(mse.detach())} | {k: float(v.detach()) for k, v in pen.items()}
        return loss, parts  # type: ignore[return-value]


def reconstruction_metrics(
    true: torch.Tensor, recon: torch.Tensor, mask: torch.Tensor, names: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Feature-wise MSE, MAE and Pearson correlation over the masked entries.

    Args:
        true: (N, F) input features.
        recon: (N, F) reconstructions, same units.
        mask: (N, F) bool, the entries that were hidden.
        names: the F feature names.

    Returns:
        ``{name: {"mse", "mae", "pearson", "n"}}``; Pearson is NaN with fewer than two entries.
    """
    out = {}
    for j, name in enumerate(names):
        sel = mask[:, j]
        t, r = true[sel, j].double(), recon[sel, j].double()
        n = int(sel.sum())
        pearson = float("nan")
        if n > 1 and t.std() > 0 and r.std() > 0:
            pearson = float(torch.corrcoef(torch.stack([t, r]))[0, 1])
        out[name] = {
            "mse": float(((t - r) ** 2).mean()) if n else float("nan"),
            "mae": float((t - r).abs().mean()) if n else float("nan"),
            "pearson": pearson,
            "n": float(n),
        }
    return out


class _Reconstructor(nn.Module):
    def __init__(self, model: MaskedTransformerAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model.reconstruct(features, mask > 0.5)


def export_onnx(
    model: MaskedTransformerAE,
    path: str | Path,
    example: torch.Tensor,
    what: Literal["classifier", "autoencoder"] = "classifier",
    opset: int = 17,
) -> Path:
    """Export the classifier (``features`` -> ``logits``) or the autoencoder to ONNX.

    The autoencoder graph takes ``features`` and a float ``mask`` (1 = hidden) and returns
    ``reconstruction``. The batch axis is dynamic in both.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    if what == "classifier":
        module: nn.Module = model
        args: tuple[torch.Tensor, ...] = (example,)
        inputs, outputs = ["features"], ["logits"]
    else:
        module = _Reconstructor(model)
        args = (example, model.random_mask(example.shape[0]).float())
        inputs, outputs = ["features", "mask"], ["reconstruction"]
    torch.onnx.export(
        module,
        args,
        str(p),
        input_names=inputs,
        output_names=outputs,
        dynamic_axes={n: {0: "batch"} for n in inputs + outputs},
        opset_version=opset,
        dynamo=False,
    )
    return p
