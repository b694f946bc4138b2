"""Embedded physics samples: Pythia8 + FastJet events written in the PFNano layout.

``generate(config, out_dir, n_events)`` writes one ROOT file per process and
mass point plus a coffea-style ``fileset.json``; see ``docs/generate.md``.
Pythia8 (``pythia8mc``) and FastJet are needed only when generating
(``pip install 'paratag[gen]'``).
"""

from paratag.generate.config import (
    DetectorConfig,
    GenerateConfig,
    Job,
    PileupConfig,
    ProcessConfig,
    available_presets,
)
from paratag.generate.nanoaod import EVENT_BRANCHES, SCHEMA
from paratag.generate.runner import generate, run_job

__all__ = [
    "EVENT_BRANCHES",
    "SCHEMA",
    "DetectorConfig",
    "GenerateConfig",
    "Job",
    "PileupConfig",
    "ProcessConfig",
    "available_presets",
    "generate",
    "run_job",
]
