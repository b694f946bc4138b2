"""Graph models behind one contract, and the registry that builds them from configs.

Every graph model is called as ``model(points, features, mask, condition=None)``
with ``points (N, Cp, P)``, ``features (N, Cf, P)``, ``mask (N, 1, P)`` float32
and ``condition (N, K)`` of *normalised* condition parameters (models that do
not use a condition accept and ignore it). The Interaction Network also takes
``sv_features``/``sv_mask`` keywords. Build models by name with
:func:`build_model`; model classes are imported lazily on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from paratag.errors import require

require("torch", "train")  # every model is a torch module: a clear hint on a scoring-only install

from paratag.models.registry import (  # noqa: E402
    GraphModel,
    available_models,
    build_model,
    example_inputs,
    get_model_class,
    input_names,
    positional,
    register,
)

__all__ = [
    "GraphModel",
    "InteractionNet",
    "ParametricParticleNet",
    "ParticleNet",
    "available_models",
    "build_model",
    "example_inputs",
    "get_model_class",
    "input_names",
    "positional",
    "register",
]

_LAZY = {
    "ParticleNet": "paratag.models.particlenet",
    "ParticleNetOptions": "paratag.models.particlenet",
    "ParametricParticleNet": "paratag.models.parametric",
    "ParametricOptions": "paratag.models.parametric",
    "InteractionNet": "paratag.models.interaction_net",
    "InteractionNetOptions": "paratag.models.interaction_net",
}


def __getattr__(name: str) -> Any:
    """Import model classes on first access (keeps ``import paratag.models`` light)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'paratag.models' has no attribute {name!r}")
