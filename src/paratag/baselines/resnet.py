"""ResNet-15: a 15-layer residual CNN for small calorimeter and jet images.

The baseline image classifier of the project (electron/photon showers, X->bb
jet images). Its contract differs from the graph models: it takes a dense image
batch, not a point cloud.

Layer count: one stem convolution, three residual stages of two basic blocks
(two 3x3 convolutions each, 12 convolutions), and a two-layer fully connected
head: 1 + 12 + 2 = 15 weighted layers on the main path. The 1x1 projection
shortcuts at the stage transitions are not counted, as in the ResNet papers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paratag.config import ModelConfig, from_dict
from paratag.errors import ConfigError
from paratag.models.layers import ConditionedModel
from paratag.models.registry import register

__all__ = [
    "ABSOLUTE_PT",
    "JetImageOptions",
    "JetImageResNet",
    "ResNet15",
    "ResNetOptions",
    "count_weighted_layers",
    "export_onnx",
    "rasterise",
]


@dataclasses.dataclass(frozen=True)
class ResNetOptions:
    """Hyperparameters of :class:`ResNet15` (``ModelConfig.options``).

    Attributes:
        in_channels: image channels (2 for energy and time, or pT and charged pT for jets).
        image_size: height and width of the square input image.
        widths: channels of the three residual stages; stages 2 and 3 halve the resolution.
        blocks_per_stage: basic blocks per stage; (2, 2, 2) gives the 15-layer network.
        hidden: width of the hidden fully connected layer of the head.
        dropout: dropout probability before the last layer.
    """

    in_channels: int = 2
    image_size: int = 32
    widths: tuple[int, int, int] = (16, 32, 64)
    blocks_per_stage: tuple[int, int, int] = (2, 2, 2)
    hidden: int = 64
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.in_channels <= 0 or self.image_size < 4:
            raise ConfigError(
                f"ResNetOptions: in_channels must be > 0 and image_size >= 4, got "
                f"{self.in_channels} and {self.image_size}"
            )
        if any(w <= 0 for w in self.widths) or any(b <= 0 for b in self.blocks_per_stage):
            raise ConfigError(
                f"ResNetOptions: widths {self.widths} and blocks_per_stage "
                f"{self.blocks_per_stage} must be positive"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"ResNetOptions.dropout must be in [0, 1), got {self.dropout}")


class _BasicBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            proj = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            proj.is_shortcut = True  # type: ignore[assignment]
            self.shortcut = nn.Sequential(proj, nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


@register("resnet15")
class ResNet15(nn.Module):
    """Residual CNN classifier for (channels, H, W) images.

    Shapes:
        images: (N, C, H, W) float32, channels first (``C = in_channels``,
            ``H = W = image_size``). ML4SCI files store (N, H, W, C); use
            :func:`paratag.baselines.images.to_channels_first`.
        returns: logits (N, n_classes), signal class first by project convention.
    """

    input_names: tuple[str, ...] = ("images",)

    def __init__(self, options: ResNetOptions | None = None, n_classes: int = 2) -> None:
        super().__init__()
        self.options = options or ResNetOptions()
        self.n_classes = n_classes
        o = self.options
        self.stem = nn.Sequential(
            nn.Conv2d(o.in_channels, o.widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(o.widths[0]),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        c_in = o.widths[0]
        for stage, (width, n_blocks) in enumerate(zip(o.widths, o.blocks_per_stage, strict=True)):
            for b in range(n_blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(_BasicBlock(c_in, width, stride))
                c_in = width
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in, o.hidden),
            nn.ReLU(),
            nn.Dropout(o.dropout),
            nn.Linear(o.hidden, n_classes),
        )

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, *, in_channels: int | None = None, image_size: int | None = None
    ) -> ResNet15:
        """Build from a :class:`~paratag.config.ModelConfig` (options -> :class:`ResNetOptions`).

        ``in_channels`` and ``image_size`` (the input dims :func:`paratag.models.build_model`
        passes on) override the options when given.
        """
        if cfg.condition_names:
            raise ConfigError(
                "ResNet15 is not parametric: ModelConfig.condition_names must be empty, got "
                f"{list(cfg.condition_names)}"
            )
        options = from_dict(ResNetOptions, cfg.options, where="ModelConfig.options")
        dims: dict[str, Any] = {"in_channels": in_channels, "image_size": image_size}
        options = dataclasses.replace(options, **{k: v for k, v in dims.items() if v is not None})
        return cls(options, n_classes=cfg.n_classes)

    def example_inputs(self, n: int = 4, p: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
        """Random non-negative images ``{"images": (n, C, H, W)}`` for export and tests."""
        gen = torch.Generator().manual_seed(seed)
        size = self.options.image_size
        return {"images": torch.rand(n, self.options.in_channels, size, size, generator=gen)}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return class logits for a batch of images (see ``Shapes:``)."""
        return self.head(self.pool(self.stages(self.stem(images))))


@dataclasses.dataclass(frozen=True)
class JetImageOptions:
    """How :class:`JetImageResNet` draws a jet image from its particle cloud.

    Defaults follow the ``jet`` preset: points are ``(Δη, Δφ)`` to the jet axis,
    feature 2 is ``pfcand_logptrel`` normalised as ``(log(pT/pT_jet) + 4.7) * 0.7``,
    feature 4 is the charge. Pixel intensities are pT fractions.

    Fractions drop the jet's pT, so over a wide pT range the image alone cannot tell
    a light, collimated jet from a heavy, boosted one (the prong separation is
    ≈ 2m/pT). :data:`ABSOLUTE_PT` draws pT in GeV from ``pfcand_pt_log`` instead,
    and adds a third channel, the pT of displaced tracks (``|d0/σ| > 3``), which
    carries the b hadrons' decays.

    Attributes:
        n_pixels: pixels per side.
        half_width: half-width of the image in η and φ (0.8 for AK8 jets).
        pt_feature: index of the normalised log pT (or log pT fraction) feature.
        pt_median, pt_norm_factor: that feature's preprocessing (inverted in the model).
        charge_feature: index of the charge feature (second channel: charged pT), or -1
            for a single total-pT channel.
        displaced_feature: index of the normalised d0 significance (a further channel:
            pT of tracks with ``|d0/σ| > displaced_sigma``), or -1 for none.
        displaced_norm_factor: that feature's ``norm_factor`` (its median is 0).
        displaced_sigma: the significance above which a track counts as displaced.
        normalise: divide each image by its summed intensity (the image's pT sum).
        resnet: the ResNet-15 options (``in_channels`` and ``image_size`` are set here).
    """

    n_pixels: int = 32
    half_width: float = 0.8
    pt_feature: int = 2
    pt_median: float = -4.7
    pt_norm_factor: float = 0.7
    charge_feature: int = 4
    displaced_feature: int = -1
    displaced_norm_factor: float = 0.1
    displaced_sigma: float = 3.0
    normalise: bool = True
    resnet: ResNetOptions = dataclasses.field(default_factory=ResNetOptions)

    def __post_init__(self) -> None:
        if (
            self.n_pixels < 4
            or self.half_width <= 0
            or self.pt_norm_factor == 0
            or self.displaced_norm_factor <= 0
        ):
            raise ConfigError(
                f"JetImageOptions: need n_pixels >= 4, half_width > 0, pt_norm_factor != 0, "
                f"displaced_norm_factor > 0, got {self.n_pixels}, {self.half_width}, "
                f"{self.pt_norm_factor}, {self.displaced_norm_factor}"
            )
        if self.pt_feature < 0:
            raise ConfigError(f"JetImageOptions.pt_feature must be >= 0, got {self.pt_feature}")

    @property
    def channels(self) -> int:
        """Image channels: total pT, then charged pT and displaced-track pT when enabled."""
        return 1 + (self.charge_feature >= 0) + (self.displaced_feature >= 0)


#: jet-preset options for images of pT in GeV (from ``pfcand_pt_log``), charged pT and
#: displaced-track pT (``pfcand_d0sig``): the X->bb jet table's ResNet-15
ABSOLUTE_PT: dict[str, Any] = {
    "pt_feature": 0,
    "pt_median": 1.0,
    "pt_norm_factor": 0.5,
    "normalise": False,
    "displaced_feature": 12,
    "displaced_norm_factor": 0.1,
}


def rasterise(
    points: torch.Tensor, features: torch.Tensor, mask: torch.Tensor, options: JetImageOptions
) -> torch.Tensor:
    """Jet images ``(N, C, n, n)`` (rows: Δη, columns: Δφ) from a padded particle cloud.

    Particles outside the image and padded slots contribute nothing.

    Shapes:
        points: (N, >=2, P), features: (N, F, P), mask: (N, 1, P)
        output: (N, options.channels, n_pixels, n_pixels)
    """
    o, n = options, options.n_pixels
    ie = torch.floor((points[:, 0] + o.half_width) / (2 * o.half_width) * n)
    ip = torch.floor((points[:, 1] + o.half_width) / (2 * o.half_width) * n)
    inside = (ie >= 0) & (ie < n) & (ip >= 0) & (ip < n) & (mask[:, 0] > 0)
    raw = features[:, o.pt_feature] / o.pt_norm_factor + o.pt_median
    weight = torch.exp(raw) * inside.to(raw.dtype)  # pT fraction of each particle, (N, P)
    cell = (ie.clamp(0, n - 1) * n + ip.clamp(0, n - 1)).long()
    channels = [weight]
    if o.charge_feature >= 0:
        channels.append(weight * (features[:, o.charge_feature] != 0).to(raw.dtype))
    if o.displaced_feature >= 0:
        significance = features[:, o.displaced_feature].abs() / o.displaced_norm_factor
        channels.append(weight * (significance > o.displaced_sigma).to(raw.dtype))
    values = torch.stack(channels, dim=1)  # (N, C, P)
    index = cell.unsqueeze(1).expand_as(values)
    image = values.new_zeros(values.shape[0], values.shape[1], n * n).scatter_add(2, index, values)
    if o.normalise:
        total = image[:, :1].sum(dim=2, keepdim=True)
        image = image / torch.where(total > 0, total, torch.ones_like(total))
    return image.view(values.shape[0], values.shape[1], n, n)


@register("resnet15_image")
class JetImageResNet(ConditionedModel):
    """ResNet-15 on jet images drawn from the particle cloud: a graph-contract image baseline.

    Takes the same inputs as the graph models, so it trains, evaluates and scores
    on the same shards and jets; the image is drawn inside the network
    (:func:`rasterise`). Not parametric: condition names are recorded (as for any
    inclusive model) and the condition is accepted and ignored.

    Shapes:
        points: (N, point_dims, P), Δη and Δφ first
        features: (N, feature_dims, P) normalised as in the preset
        mask: (N, 1, P) float32
        condition: ignored
        output: (N, n_classes) logits
    """

    def __init__(
        self,
        point_dims: int,
        feature_dims: int,
        n_classes: int = 2,
        options: JetImageOptions | None = None,
        condition_names: tuple[str, ...] = (),
        condition_mean: tuple[float, ...] = (),
        condition_std: tuple[float, ...] = (),
    ) -> None:
        super().__init__(n_classes, condition_names, condition_mean, condition_std)
        o = options or JetImageOptions()
        if point_dims < 2 or max(o.pt_feature, o.charge_feature, o.displaced_feature) >= (
            feature_dims
        ):
            raise ConfigError(
                f"resnet15_image needs (Δη, Δφ) points and features {o.pt_feature} (log pT "
                f"or log pT fraction), {o.charge_feature} (charge) and {o.displaced_feature} "
                f"(d0 significance; -1: none); the inputs have {point_dims} point and "
                f"{feature_dims} feature channels"
            )
        resnet = dataclasses.replace(o.resnet, in_channels=o.channels, image_size=o.n_pixels)
        self.options = dataclasses.replace(o, resnet=resnet)
        self.point_dims, self.feature_dims, self.sv_dims = int(point_dims), int(feature_dims), 0
        self.cnn = ResNet15(resnet, n_classes=n_classes)

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, *, point_dims: int, feature_dims: int, sv_dims: int = 0
    ) -> JetImageResNet:
        """Build from a :class:`ModelConfig` (options -> :class:`JetImageOptions`)."""
        cls.no_secondary(cfg, sv_dims)
        options = from_dict(JetImageOptions, cfg.options, where="model.options (resnet15_image)")
        return cls(
            point_dims,
            feature_dims,
            options=options,
            **ConditionedModel.condition_kwargs(cfg),  # type: ignore[arg-type]
        )

    def forward(
        self,
        points: torch.Tensor,
        features: torch.Tensor,
        mask: torch.Tensor,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(N, n_classes)`` (see ``Shapes:``)."""
        return self.cnn(rasterise(points, features, mask, self.options))


def count_weighted_layers(model: nn.Module) -> int:
    """Count conv and linear layers on the main path (projection shortcuts excluded)."""
    return sum(
        1
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear) and not getattr(m, "is_shortcut", False)
    )


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example: torch.Tensor,
    input_name: str = "images",
    opset: int = 17,
) -> Path:
    """Export a ResNet-15 to ONNX with a dynamic batch axis.

    Args:
        model: a :class:`ResNet15`; it is put in eval mode.
        path: output ``.onnx`` file.
        example: one example input batch (any batch size).
        input_name: name of the ONNX input.
        opset: ONNX opset version.

    Returns:
        The path written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    torch.onnx.export(
        model,
        (example,),
        str(p),
        input_names=[input_name],
        output_names=["logits"],
        dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}},
        opset_version=opset,
        dynamo=False,
    )
    return p
