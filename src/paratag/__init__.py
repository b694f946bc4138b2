"""paratag: parametric graph-network taggers for the columnar HEP stack.

The package turns NanoAOD/PFNano into padded point clouds
(:mod:`paratag.processors.GraphBuilder`), trains mass-conditioned networks
(:mod:`paratag.training`), exports them to ONNX for CMSSW
(:mod:`paratag.export`) and scores events inside coffea processors
(:mod:`paratag.processors.Tagger`).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
