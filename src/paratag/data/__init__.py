"""Datasets for paratag models.

Graph shards (GraphBuilder output) are read by :mod:`paratag.data.dataset`
(lazy, LRU-cached :class:`ShardStore`, batch-keyed :class:`GraphDataset`) and
batched by :mod:`paratag.data.sampler`; :mod:`paratag.data.synthetic` writes
small synthetic-but-physical charged-Higgs shards. The image and tabular
baselines' data live in :mod:`paratag.baselines`. Names are imported lazily so
``import paratag.data`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ShardStore": "paratag.data.dataset",
    "GraphDataset": "paratag.data.dataset",
    "make_loader": "paratag.data.dataset",
    "EpochBatchSampler": "paratag.data.sampler",
    "make_synthetic_shards": "paratag.data.synthetic",
    "DataConfig": "paratag.data.selection",
    "SampleBuilder": "paratag.data.selection",
    "balance_weights": "paratag.data.selection",
}


def __getattr__(name: str) -> Any:
    """Import public names on first access."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'paratag.data' has no attribute {name!r}")
