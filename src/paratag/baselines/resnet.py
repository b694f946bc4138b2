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
from paratag.models.registry import register

__all__ = ["ResNet15", "ResNetOptions", "count_weighted_layers", "export_onnx"]


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
