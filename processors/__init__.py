"""coffea processors: GraphBuilder (NanoAOD → point clouds) and Tagger (ONNX scores)."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["GraphBuilder", "Tagger"]

# coffea's NanoAODSchema warns once per missing cross-reference target (Tau, Photon, ...) of
# every file it opens -- in each worker process of a futures/Dask run, where the CLI's own
# filter does not reach. paratag never follows those references; the workers import this
# package when they unpickle a processor, so the filter is set there too.
warnings.filterwarnings(
    "ignore",
    message="Missing cross-reference index",
    category=RuntimeWarning,
    module="coffea.nanoevents.schemas.nanoaod",
)


def __getattr__(name: str) -> Any:
    # Lazy imports keep `import paratag.processors` cheap and free of onnxruntime.
    if name == "GraphBuilder":
        from paratag.processors.graph_builder import GraphBuilder

        return GraphBuilder
    if name == "Tagger":
        from paratag.processors.tagger import Tagger

        return Tagger
    raise AttributeError(f"module 'paratag.processors' has no attribute {name!r}")
