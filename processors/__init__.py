"""coffea processors: GraphBuilder (NanoAOD → point clouds) and Tagger (ONNX scores)."""

from __future__ import annotations

from typing import Any

__all__ = ["GraphBuilder", "Tagger"]


def __getattr__(name: str) -> Any:
    # Lazy imports keep `import paratag.processors` cheap and free of onnxruntime.
    if name == "GraphBuilder":
        from paratag.processors.graph_builder import GraphBuilder

        return GraphBuilder
    if name == "Tagger":
        from paratag.processors.tagger import Tagger

        return Tagger
    raise AttributeError(f"module 'paratag.processors' has no attribute {name!r}")
