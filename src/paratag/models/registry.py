"""Model registry: configs name models by string, plus the uniform-call helpers.

A model class registers itself with ``@register("name")`` and provides a
``from_config(cfg, **input_dims)`` class method. :func:`build_model` imports
the built-in model modules on first use (modules that do not exist yet are
skipped), so importing :mod:`paratag.models` stays cheap and a model module
never has to import another one.

:func:`input_names` and :func:`example_inputs` describe the inputs of any
registered graph model in ONNX order
(``points, features, mask[, condition][, <cloud>_features, <cloud>_mask]``, where
``<cloud>`` is the preset's second cloud, ``sv`` by default: the model's own keyword
names); :func:`positional` wraps a model so it can be called (and exported) with
exactly those inputs as positional arguments.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

import torch
from torch import Tensor, nn

from paratag.config import ModelConfig
from paratag.errors import ConfigError
from paratag.presets import DEFAULT_SECONDARY, cloud_keys

__all__ = [
    "GraphModel",
    "available_models",
    "build_model",
    "example_inputs",
    "get_model_class",
    "input_names",
    "positional",
    "register",
    "resolve_options",
]

T = TypeVar("T", bound=type)
D = TypeVar("D")

#: Modules that hold the built-in models; imported lazily, missing ones are skipped.
BUILTIN_MODULES: tuple[str, ...] = (
    "paratag.models.particlenet",
    "paratag.models.parametric",
    "paratag.models.interaction_net",
    "paratag.models.ratio",
    "paratag.baselines.resnet",
    "paratag.baselines.masked_autoencoder",
)

_REGISTRY: dict[str, type] = {}
_loaded = False


def register(name: str) -> Callable[[T], T]:
    """Class decorator registering a model under ``name`` (must define ``from_config``)."""

    def decorator(cls: T) -> T:
        if not callable(getattr(cls, "from_config", None)):
            raise TypeError(f"{cls.__name__} must define a from_config classmethod to register")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"model name {name!r} is already registered by {existing!r}")
        _REGISTRY[name] = cls
        return cls

    return decorator


def _load_builtins() -> None:
    """Import the built-in model modules once (each registers its models)."""
    global _loaded
    if _loaded:
        return
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    _loaded = True


def available_models() -> list[str]:
    """Sorted names of every registered model."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type:
    """The class registered as ``name``; :class:`ConfigError` listing the known names."""
    if name not in _REGISTRY:
        _load_builtins()
    if name not in _REGISTRY:
        raise ConfigError(
            f"model.name {name!r} is not a registered model; choose one of {available_models()}"
        )
    return _REGISTRY[name]


def build_model(cfg: ModelConfig, **input_dims: int) -> nn.Module:
    """Build the model ``cfg.name`` from its config and input sizes.

    Args:
        cfg: the model config; ``cfg.options`` is validated by the model's options class.
        **input_dims: the model's input sizes, e.g. ``point_dims=2, feature_dims=7``
            (graph models) plus ``sv_dims`` for the Interaction Network.
    """
    cls = get_model_class(cfg.name)
    return cls.from_config(cfg, **input_dims)  # type: ignore[attr-defined, no-any-return]


def resolve_options(
    cls: type[D], options: Mapping[str, Any], presets: Mapping[str, Mapping[str, Any]]
) -> D:
    """Build the options dataclass ``cls`` from ``options``, expanding ``preset: <name>``.

    Keys given next to ``preset`` override the preset's values; unknown keys
    raise :class:`ConfigError` (via :func:`paratag.config.from_dict`).
    """
    from paratag.config import from_dict

    data = dict(options)
    preset = data.pop("preset", None)
    if preset is not None:
        if preset not in presets:
            raise ConfigError(
                f"model.options.preset {preset!r} is unknown for {cls.__name__}; "
                f"choose one of {sorted(presets)}"
            )
        data = {**presets[preset], **data}
    return from_dict(cls, data, where=f"model.options ({cls.__name__})")


@runtime_checkable
class GraphModel(Protocol):
    """The contract every graph model keeps (``forward(points, features, mask, condition=None)``).

    The attributes always exist: input sizes (``sv_dims`` is 0 without a secondary
    cloud), the class count, the condition names (empty when unconditioned) and
    whether ``forward`` reads the condition.
    """

    n_classes: int
    condition_names: tuple[str, ...]
    point_dims: int
    feature_dims: int
    sv_dims: int

    @property
    def uses_condition(self) -> bool:
        """Whether ``forward`` reads ``condition``."""

    @property
    def n_conditions(self) -> int:
        """Number of condition parameters."""

    def forward(
        self, points: Tensor, features: Tensor, mask: Tensor, condition: Tensor | None = None
    ) -> Tensor:
        """Logits ``(N, n_classes)``."""


def input_names(model: nn.Module, secondary: str = DEFAULT_SECONDARY) -> list[str]:
    """ONNX input names of ``model`` in call order.

    ``points, features, mask``, then ``condition`` if the model reads it, then
    ``<secondary>_features, <secondary>_mask`` if it has a secondary input
    (``secondary``: the preset's second cloud; the default ``sv`` gives the model's
    ``sv_features``/``sv_mask`` keywords). A model may override this with an
    ``input_names`` attribute or method.
    """
    custom = getattr(model, "input_names", None)  # baselines (images, tabular) name their own
    if custom is not None:
        return list(custom() if callable(custom) else custom)
    if not isinstance(model, GraphModel):
        raise ConfigError(
            f"{type(model).__name__} is not a paratag graph model (GraphModel: n_classes, "
            "condition_names, point_dims, feature_dims, sv_dims, uses_condition) and names no "
            "input_names"
        )
    names = ["points", "features", "mask"]
    if model.uses_condition:
        names.append("condition")
    if model.sv_dims > 0:
        names += list(cloud_keys(secondary, 1)[1:])
    return names


def _dim(model: nn.Module, name: str) -> int:
    """Integer attribute ``name`` of ``model`` (an input size)."""
    return int(cast(int, getattr(model, name)))


def example_inputs(
    model: nn.Module,
    n: int = 4,
    p: int = 32,
    seed: int = 0,
    n_sv: int = 5,
    secondary: str = DEFAULT_SECONDARY,
) -> dict[str, Tensor]:
    """Valid random inputs for ``model``, keyed and ordered like :func:`input_names`.

    Graphs get between 1 and ``p`` real particles (the first graph is full, the
    last has 1 when ``n > 1``); padded slots are exactly zero as the contract
    requires. The condition is standard normal (already normalised). ``secondary``
    names the second cloud's keys as in :func:`input_names`.
    """
    custom = getattr(model, "example_inputs", None)
    if callable(custom):
        return dict(custom(n=n, p=p, seed=seed))
    gen = torch.Generator().manual_seed(seed)

    def cloud(channels: int, slots: int) -> tuple[Tensor, Tensor]:
        counts = torch.randint(1, slots + 1, (n,), generator=gen)
        counts[0] = slots
        if n > 1:
            counts[-1] = 1
        mask = (torch.arange(slots).view(1, 1, -1) < counts.view(-1, 1, 1)).float()
        values = torch.randn(n, channels, slots, generator=gen) * mask
        return values, mask

    points, mask = cloud(_dim(model, "point_dims"), p)
    features = torch.randn(n, _dim(model, "feature_dims"), p, generator=gen) * mask
    out = {"points": points, "features": features, "mask": mask}
    names = input_names(model, secondary)
    if "condition" in names:
        out["condition"] = torch.randn(n, _dim(model, "n_conditions"), generator=gen)
    _, sv_features, sv_mask = cloud_keys(secondary, 1)
    if sv_features in names:
        out[sv_features], out[sv_mask] = cloud(_dim(model, "sv_dims"), n_sv)
    return {name: out[name] for name in names}


class _Positional(nn.Module):
    """Calls the wrapped model with positional inputs in :func:`input_names` order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.names = input_names(model)  # the default secondary names are the model's keywords

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True)))  # type: ignore[no-any-return]


def positional(model: nn.Module) -> nn.Module:
    """Wrap ``model`` so ``wrapper(*inputs)`` takes the :func:`input_names` inputs in order.

    This is the module to hand to ``torch.onnx.export`` together with
    ``input_names=input_names(model)`` and ``tuple(example_inputs(model).values())``.
    """
    wrapper = _Positional(model)
    wrapper.train(model.training)  # exporters restore the wrapper's mode onto the model
    return wrapper
