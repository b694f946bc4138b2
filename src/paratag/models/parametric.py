"""ParametricParticleNet: a ParticleNet whose computation depends on the mass hypothesis.

The condition vector (normalised masses, e.g. ``(mHc, mA)``) enters four times:

1. a mass encoder MLP embeds it;
2. after every EdgeConv block a :class:`~paratag.models.layers.MassAwareAttention`
   (multi-head attention over real particles) whose queries, keys and values
   are FiLM-modulated by the embedding;
3. the pooled jet representation is FiLM-modulated before the head;
4. the condition itself is added to the first head layer (a separate
   ``Linear(K, width)``, equivalent to concatenating it to the head input as
   in the classic parametric network of Baldi et al., arXiv:1601.07913).

With ``shared_trunk=True`` the EdgeConv blocks (and the fusion layer) do not
see the condition: a single mass-aware attention block acts on the trunk's
output, followed by the pooled FiLM and the head's condition input. The trunk
is then computed once for any number of hypotheses
(:meth:`ParametricParticleNet.forward_hypotheses`), which makes scoring many
mass hypotheses nearly as cheap as scoring one.

Stage-1 per-mass models and the stage-3 joint model are the same class, so
their state dicts align. :meth:`ParametricParticleNet.reset_condition_modules_to_identity`
makes every condition pathway exactly inert (the stage-2 initialisation), and
:meth:`ParametricParticleNet.condition_parameter_names` lists the parameters
that belong to those pathways.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import torch
from torch import Tensor, nn

from paratag.config import ModelConfig
from paratag.errors import ConfigError, InvalidValueError
from paratag.models.kinematics import CASCADE_FEATURES, cascade_features
from paratag.models.layers import (
    PAIR_FEATURES,
    PARTICLENET_BACKBONES,
    ConditionedModel,
    EdgeConvBlock,
    FiLM,
    MassAwareAttention,
    PairKinematics,
    TrunkOptions,
    batch_norm_last,
    fusion_layer,
    fusion_width,
    masked_mean,
    mlp,
)
from paratag.models.registry import register, resolve_options

__all__ = ["PARAMETRIC_PRESETS", "ParametricOptions", "ParametricParticleNet"]

#: Presets: the paper's ParticleNet backbones with the default conditioning blocks.
PARAMETRIC_PRESETS: dict[str, dict[str, Any]] = PARTICLENET_BACKBONES

#: Name prefixes of the condition-specific submodules.
CONDITION_MODULE_PREFIXES: tuple[str, ...] = (
    "mass_encoder.",
    "attention.",
    "pooled_film.",
    "head_condition.",
    "input_condition.",
)


@dataclasses.dataclass(frozen=True)
class ParametricOptions(TrunkOptions):
    """Hyperparameters of :class:`ParametricParticleNet` (``ModelConfig.options``).

    The trunk's (:class:`~paratag.models.layers.TrunkOptions`; here ``fc_params`` needs at
    least one layer), and:

    Attributes:
        encoder_dims: hidden widths of the mass encoder MLP.
        embed_dim: width of the mass embedding.
        attention_heads: heads of every mass-aware attention block (must divide its width).
        shared_trunk: keep the EdgeConv blocks (and fusion) condition-independent and
            apply one mass-aware attention block to the trunk's output only; the trunk
            is then shared by all hypotheses in :meth:`ParametricParticleNet.forward_hypotheses`.
        condition_input: add the condition to every object's input features (a linear
            term, as concatenating it in the parametrised network of Baldi et al.).
        condition_edges: add the condition to the first edge layer of every EdgeConv
            block, so each edge ``(i, j)`` is judged against the hypothesis.
        pair_features: feed ParT's pairwise features (``ln ΔR, ln kT, ln z, ln m²``) of
            every edge into its EdgeConv edge layer, so pair masses are seen directly.
        pair_kinematics: where the objects' (pT, η, φ) are (needed by ``pair_features``;
            ``paratag train`` resolves ``pair_kinematics: auto`` from the preset).
        masked_edges: average edges over real neighbours only (for small clouds whose
            graphs have fewer than ``k + 1`` objects, e.g. fully connected event graphs).
        resonance: condition parameter that is the mass of a pair of objects (e.g. ``mA``
            for A → μμ): every edge gets Gaussian windows of ``m_ij - m_res`` (needs
            ``pair_kinematics``; ``pair_features`` adds the generic ParT features beside).
        resonance_widths: widths of those windows in GeV (about the pair-mass resolution
            and a few times it).
        cascade: condition parameter that is the mass of a particle decaying to the
            ``resonance`` plus other objects (e.g. ``mHc`` for H+ -> W* A): every object
            gets its three-body mass with the A candidate relative to the hypothesis
            (:func:`~paratag.models.kinematics.cascade_features`) as extra input channels.
        cascade_width: window (GeV) on ``m_ij - m_A`` that picks the A candidate.
    """

    encoder_dims: tuple[int, ...] = (64,)
    embed_dim: int = 64
    attention_heads: int = 4
    shared_trunk: bool = False
    condition_input: bool = False
    condition_edges: bool = False
    pair_features: bool = False
    pair_kinematics: PairKinematics | None = None
    masked_edges: bool = False
    resonance: str | None = None
    resonance_widths: tuple[float, ...] = (1.0, 3.0, 10.0)
    cascade: str | None = None
    cascade_width: float = 3.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cascade is not None and (self.resonance is None or self.cascade_width <= 0):
            raise ConfigError(
                f"ParametricOptions: cascade {self.cascade!r} needs a resonance (the pair it "
                f"decays to) and cascade_width > 0, got resonance={self.resonance!r}, "
                f"cascade_width={self.cascade_width}"
            )
        if self.resonance is not None and (
            not self.resonance_widths or min(self.resonance_widths) <= 0
        ):
            raise ConfigError(
                f"ParametricOptions: resonance_widths must be positive GeV values, got "
                f"{list(self.resonance_widths)}"
            )
        if (self.pair_features or self.resonance) and self.pair_kinematics is None:
            raise ConfigError(
                "ParametricOptions: pair_features/resonance need pair_kinematics (the log(pt) feature "
                "and the eta/phi point channels); write `pair_kinematics: auto` in the train "
                "config to take them from the preset"
            )
        if self.shared_trunk and (self.condition_input or self.condition_edges or self.resonance):
            raise ConfigError(
                "ParametricOptions: shared_trunk keeps the EdgeConv trunk condition-free; "
                "it cannot be combined with condition_input, condition_edges or resonance"
            )
        if not self.fc_params:
            raise ConfigError("ParametricOptions needs at least one hidden head layer (fc_params)")
        if self.embed_dim < 1 or self.attention_heads < 1 or min(self.encoder_dims, default=1) < 1:
            raise ConfigError(
                f"ParametricOptions: embed_dim={self.embed_dim}, attention_heads="
                f"{self.attention_heads} and encoder_dims={list(self.encoder_dims)} must be positive"
            )
        attended = self.conv_params if not self.shared_trunk else self.conv_params[-1:]
        if self.shared_trunk and self.use_fusion:
            cat_dim = sum(w[-1] for _, w in self.conv_params)
            attended = ((0, (fusion_width(cat_dim),)),)
        for _, widths in attended:
            if widths[-1] % self.attention_heads:
                raise ConfigError(
                    f"ParametricOptions: EdgeConv width {widths[-1]} is not divisible by "
                    f"attention_heads={self.attention_heads}"
                )

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ParametricOptions:
        """Build from ``ModelConfig.options``, expanding ``preset``."""
        return resolve_options(cls, options, PARAMETRIC_PRESETS)


@register("parametric_particlenet")
class ParametricParticleNet(ConditionedModel):
    """Mass-conditioned ParticleNet with mass-aware attention and FiLM.

    ``forward`` takes the *normalised* condition; use
    :meth:`normalise_condition` on physical masses (GeV) first. With
    ``options.shared_trunk`` the condition enters only after the EdgeConv
    trunk (one attention block on the trunk output, pooled FiLM, head input),
    and :meth:`forward_hypotheses` scores H hypotheses for the price of one
    trunk.

    Shapes:
        points: (N, point_dims, P)
        features: (N, feature_dims, P)
        mask: (N, 1, P) float32, 1 for real particles
        condition: (N, K) normalised condition parameters (required)
        output: (N, n_classes) logits
    """

    def __init__(
        self,
        point_dims: int,
        feature_dims: int,
        n_classes: int = 2,
        options: ParametricOptions | None = None,
        condition_names: tuple[str, ...] = ("mHc", "mA"),
        condition_mean: tuple[float, ...] = (),
        condition_std: tuple[float, ...] = (),
    ) -> None:
        super().__init__(n_classes, condition_names, condition_mean, condition_std)
        if not self.condition_names:
            raise ConfigError(
                "parametric_particlenet needs condition parameters: set model.condition_names, "
                "e.g. [mHc, mA]"
            )
        opts = options or ParametricOptions()
        self.options = opts
        self.point_dims, self.feature_dims, self.sv_dims = int(point_dims), int(feature_dims), 0
        k_dim = self.n_conditions
        for key in ("resonance", "cascade"):
            name = getattr(opts, key)
            if name is not None and name not in self.condition_names:
                raise ConfigError(
                    f"model.options.{key} {name!r} is not a condition parameter "
                    f"{list(self.condition_names)}"
                )
        self.resonance_index = (
            self.condition_names.index(opts.resonance) if opts.resonance is not None else -1
        )
        self.cascade_index = (
            self.condition_names.index(opts.cascade) if opts.cascade is not None else -1
        )
        pair_dim = len(PAIR_FEATURES) * opts.pair_features
        pair_dim += len(opts.resonance_widths) if opts.resonance is not None else 0
        self.mass_encoder = mlp((k_dim, *opts.encoder_dims, opts.embed_dim), final_activation=True)
        self.bn_fts: nn.Module = nn.BatchNorm1d(feature_dims) if opts.use_fts_bn else nn.Identity()
        self.input_condition = (
            nn.Linear(k_dim, feature_dims, bias=False) if opts.condition_input else None
        )
        if self.input_condition is not None:
            nn.init.zeros_(self.input_condition.weight)
        blocks, attention = [], []
        in_dim = feature_dims + (len(CASCADE_FEATURES) if opts.cascade is not None else 0)
        for k, widths in opts.conv_params:
            blocks.append(
                EdgeConvBlock(
                    k,
                    in_dim,
                    widths,
                    pair_dim=pair_dim,
                    condition_dim=k_dim if opts.condition_edges else 0,
                    masked=opts.masked_edges,
                    generic_pairs=opts.pair_features,
                    resonance_widths=opts.resonance_widths if opts.resonance else (),
                )
            )
            if not opts.shared_trunk:
                attention.append(
                    MassAwareAttention(widths[-1], opts.embed_dim, opts.attention_heads)
                )
            in_dim = widths[-1]
        self.edge_convs = nn.ModuleList(blocks)
        self.fusion, in_dim = fusion_layer(opts.conv_params, opts.use_fusion, in_dim)
        if opts.shared_trunk:  # one attention block on the trunk output
            attention.append(MassAwareAttention(in_dim, opts.embed_dim, opts.attention_heads))
        self.attention = nn.ModuleList(attention)
        self.pooled_film = FiLM(opts.embed_dim, in_dim)
        width0, drop0 = opts.fc_params[0]
        self.head_input = nn.Linear(in_dim, width0)
        self.head_condition = nn.Linear(k_dim, width0, bias=False)
        layers: list[nn.Module] = [nn.ReLU(), nn.Dropout(drop0)]
        for width, drop in opts.fc_params[1:]:
            layers.append(nn.Sequential(nn.Linear(width0, width), nn.ReLU(), nn.Dropout(drop)))
            width0 = width
        layers.append(nn.Linear(width0, n_classes))
        self.head = nn.Sequential(*layers)

    @property
    def uses_condition(self) -> bool:
        """The condition is a required input."""
        return True

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, *, point_dims: int, feature_dims: int, sv_dims: int = 0
    ) -> ParametricParticleNet:
        """Build from a :class:`ModelConfig` (``sv_dims`` must be 0: no SV input)."""
        cls.no_secondary(cfg, sv_dims)
        return cls(
            point_dims,
            feature_dims,
            options=ParametricOptions.from_options(cfg.options),
            **ConditionedModel.condition_kwargs(cfg),  # type: ignore[arg-type]
        )

    def condition_parameter_names(self) -> list[str]:
        """Names (as in ``named_parameters``) of the condition-specific parameters.

        These are the mass encoder, the attention FiLM generators, the pooled
        FiLM generator and the head's condition input.
        """
        return [
            name
            for name, _ in self.named_parameters()
            if name.startswith(CONDITION_MODULE_PREFIXES[0])
            or (name.startswith(CONDITION_MODULE_PREFIXES[1]) and ".modulation." in name)
            or name.startswith(CONDITION_MODULE_PREFIXES[2:])
            or ".condition_proj." in name
        ]

    @torch.no_grad()
    def reset_condition_modules_to_identity(self, *, attention_output: bool = False) -> None:
        """Make every condition pathway exactly inert (stage-2 initialisation).

        Zeroes the FiLM generators (``gamma = beta = 0``: identity modulation of
        the attention's Q/K/V and of the pooled representation), the head's,
        the inputs' and the edges' condition terms; afterwards the output does not
        depend on the condition, except through the ``resonance`` windows: those
        measure each pair against the hypothesis, so every stage-1 model learned
        the same meaning for them and their averaged weights are kept.
        The mass encoder keeps its weights (its output then feeds only zeros).
        With ``attention_output=True`` the attention output projections are
        zeroed too, so every attention block is the identity.
        """
        for module in self.attention:
            block = cast(MassAwareAttention, module)
            block.modulation.reset_to_identity()
            if attention_output:
                block.reset_output_to_identity()
        self.pooled_film.reset_to_identity()
        nn.init.zeros_(self.head_condition.weight)
        if self.input_condition is not None:
            nn.init.zeros_(self.input_condition.weight)
        for conv in self.edge_convs:
            proj = cast(EdgeConvBlock, conv).condition_proj
            if proj is not None:
                nn.init.zeros_(proj.weight)

    def _inputs(
        self, points: Tensor, features: Tensor, mask: Tensor, condition: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Particles-last ``(pts, x, m, kinematics)``, masked, normalised, condition added."""
        m = mask.transpose(1, 2)  # (N, P, 1)
        pts = points.transpose(1, 2) * m
        raw = features.transpose(1, 2) * m
        x = raw
        if isinstance(self.bn_fts, nn.BatchNorm1d):
            x = batch_norm_last(self.bn_fts, x) * m
        if self.input_condition is not None and condition is not None:
            x = (x + self.input_condition(condition).unsqueeze(1)) * m
        kin = self.options.pair_kinematics
        use = self.options.pair_features or self.options.resonance is not None
        kinematics = kin.kinematics(pts, raw) * m if use and kin is not None else None
        if self.cascade_index >= 0 and condition is not None and kinematics is not None:
            resonance, cascade = (
                self._mass(condition, self.resonance_index),
                self._mass(condition, self.cascade_index),
            )
            extra = cascade_features(kinematics, m, resonance, cascade, self.options.cascade_width)
            x = torch.cat([x, extra], dim=-1)
        return pts, x, m, kinematics

    def _mass(self, condition: Tensor, i: int) -> Tensor:
        """Condition parameter ``i`` in physical units (GeV), ``(N,)``."""
        return condition[:, i] * self.condition_std[i] + self.condition_mean[i]

    def _resonance(self, condition: Tensor) -> Tensor | None:
        """Hypothesised pair mass ``(N,)`` in GeV, or None without ``options.resonance``."""
        if self.resonance_index < 0:
            return None
        return self._mass(condition, self.resonance_index)

    def _fuse(self, outputs: list[Tensor], x: Tensor, m: Tensor) -> Tensor:
        if isinstance(self.fusion, nn.Sequential):
            lin, bn, act = self.fusion
            return act(batch_norm_last(bn, lin(torch.cat(outputs, dim=-1)))) * m  # type: ignore[no-any-return]
        return x

    def trunk(self, points: Tensor, features: Tensor, mask: Tensor) -> Tensor:
        """Condition-independent per-particle features ``(N, P, C)`` (``shared_trunk`` only)."""
        if not self.options.shared_trunk:
            raise ConfigError(
                "ParametricParticleNet.trunk needs options.shared_trunk=True: without it every "
                "EdgeConv block depends on the condition"
            )
        pts, x, m, kin = self._inputs(points, features, mask)
        outputs = []
        for i, conv in enumerate(self.edge_convs):
            x = conv(pts if i == 0 else x, x, m, kin)
            outputs.append(x)
        return self._fuse(outputs, x, m)

    def _shared(self, points: Tensor, features: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        """Condition-independent part: pooled trunk ``(N, C)``, attention ``qkv (N, P, 3, C)``, mask.

        The attention's output projection is linear and the pooling a masked
        mean, so ``pool((x + W_o a) * m) = pool(x) + W_o pool(a) + b_o * any(m)``:
        only the attention itself (``a``) depends on the condition.
        """
        x = self.trunk(points, features, mask)
        m = mask.transpose(1, 2)
        block = cast(MassAwareAttention, self.attention[0])
        qkv = block.project(x)
        return masked_mean(x, m), qkv, m

    def _conditioned(
        self, pooled: Tensor, qkv: Tensor, m: Tensor, condition: Tensor, emb: Tensor
    ) -> Tensor:
        """Pooled representation ``(B, C)`` from the shared parts and per-row condition/embedding."""
        block = cast(MassAwareAttention, self.attention[0])
        out = block.attend(qkv, m, emb)
        count = m.sum(dim=1)
        frac = count / count.clamp(min=1.0)  # 1 for graphs with particles, 0 for empty ones
        w, bias = block.out_proj.weight, block.out_proj.bias
        pooled = pooled + masked_mean(out, m) @ w.t() + frac * bias
        return self.pooled_film(pooled, emb)  # type: ignore[no-any-return]

    def embed(self, points: Tensor, features: Tensor, mask: Tensor, condition: Tensor) -> Tensor:
        """Pooled, condition-modulated jet representation ``(N, C)`` before the head."""
        emb = self.mass_encoder(condition)
        if self.options.shared_trunk:
            pooled, qkv, m = self._shared(points, features, mask)
            return self._conditioned(pooled, qkv, m, condition, emb)
        pts, x, m, kin = self._inputs(points, features, mask, condition)
        edge_condition = condition if self.options.condition_edges else None
        resonance = self._resonance(condition)
        outputs = []
        for i, (conv, attn) in enumerate(zip(self.edge_convs, self.attention, strict=True)):
            x = conv(pts if i == 0 else x, x, m, kin, edge_condition, resonance)
            x = attn(x, m, emb)
            outputs.append(x)
        x = self._fuse(outputs, x, m)
        return self.pooled_film(masked_mean(x, m), emb)  # type: ignore[no-any-return]

    def forward(
        self, points: Tensor, features: Tensor, mask: Tensor, condition: Tensor | None = None
    ) -> Tensor:
        """Logits ``(N, n_classes)`` for the normalised ``condition`` ``(N, K)``."""
        if condition is None:
            raise InvalidValueError(
                f"ParametricParticleNet needs a condition {list(self.condition_names)}: pass "
                f"model.normalise_condition(masses) as the 4th argument"
            )
        pooled = self.embed(points, features, mask, condition)
        h = self.head_input(pooled) + self.head_condition(condition)
        return self.head(h)  # type: ignore[no-any-return]

    def forward_hypotheses(
        self, points: Tensor, features: Tensor, mask: Tensor, conditions: Tensor
    ) -> Tensor:
        """Logits ``(N, H, n_classes)`` of every graph for each of H normalised conditions.

        Equals calling :meth:`forward` once per row of ``conditions``. With
        ``options.shared_trunk`` the EdgeConv trunk runs once and only the
        attention, pooling and head run N·H times; otherwise the inputs are
        repeated H times.

        Shapes:
            points, features, mask: as in :meth:`forward`
            conditions: (H, K) normalised condition parameters
            output: (N, H, n_classes) logits
        """
        n, h = points.shape[0], conditions.shape[0]
        cond = conditions.unsqueeze(0).expand(n, h, conditions.shape[1]).reshape(n * h, -1)
        if not self.options.shared_trunk:

            def rep(t: Tensor) -> Tensor:
                return t.unsqueeze(1).expand(n, h, *t.shape[1:]).reshape(n * h, *t.shape[1:])

            return self.forward(rep(points), rep(features), rep(mask), cond).view(
                n, h, self.n_classes
            )
        pooled, qkv, m = self._shared(points, features, mask)

        def rep_rows(t: Tensor) -> Tensor:
            return t.unsqueeze(1).expand(n, h, *t.shape[1:]).reshape(n * h, *t.shape[1:])

        emb = self.mass_encoder(conditions)  # (H, E): once per hypothesis
        emb = emb.unsqueeze(0).expand(n, h, emb.shape[1]).reshape(n * h, -1)
        rep_pooled = self._conditioned(rep_rows(pooled), rep_rows(qkv), rep_rows(m), cond, emb)
        logits = self.head(self.head_input(rep_pooled) + self.head_condition(cond))
        return logits.view(n, h, self.n_classes)  # type: ignore[no-any-return]
