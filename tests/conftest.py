"""Shared fixtures: the real CMS fixtures and small files made from them."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
PFNANO = DATA / "pfnano.root"
NANO_DY = DATA / "nano_dy.root"

#: Options of a tiny ParametricParticleNet for export and Tagger tests.
TINY_PN = {
    "conv_params": [[4, [8, 8]], [4, [16, 16]]],
    "fc_params": [[16, 0.1]],
    "attention_heads": 2,
    "embed_dim": 8,
    "encoder_dims": [8],
}


@pytest.fixture(scope="session")
def pfnano_path() -> Path:
    """Real CMS PFNano file (10 events, 24 AK8 jets) from coffea's test samples."""
    return PFNANO


@pytest.fixture(scope="session")
def nano_dy_path() -> Path:
    """Real CMS NanoAOD Drell-Yan file (40 events, no PF candidates)."""
    return NANO_DY


@pytest.fixture()
def pfnano_copy(tmp_path: Path) -> Path:
    """A writable copy of the PFNano fixture."""
    dst = tmp_path / "pfnano.root"
    shutil.copy(PFNANO, dst)
    dst.chmod(0o644)
    return dst


@functools.lru_cache(maxsize=16)
def load_events(path: Path, schema: str = "nanoaod", entry_stop: int | None = None):
    """Eager NanoEvents of a file (cached), with the filename in the metadata like coffea's Runner."""
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory, PFNanoAODSchema

    schemaclass = {"nanoaod": NanoAODSchema, "pfnanoaod": PFNanoAODSchema}[schema]
    return NanoEventsFactory.from_root(
        {str(path): "Events"},
        schemaclass=schemaclass,
        mode="eager",
        entry_stop=entry_stop,
        metadata={"filename": str(path), "dataset": "test"},
    ).events()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny exported ParametricParticleNet for the jet preset: (folder, torch model)."""
    import torch

    from paratag.config import ModelConfig
    from paratag.export import export_model
    from paratag.models import build_model

    torch.manual_seed(1)
    cfg = ModelConfig(name="parametric_particlenet", condition_names=("mHc", "mA"), options=TINY_PN)
    model = build_model(cfg, point_dims=2, feature_dims=15).eval()
    # give the condition pathways non-zero weights so hypotheses give different scores
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in model.condition_parameter_names():
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("tagger_model")
    export_model(model, "jet", out, class_names=["signal", "background"])
    return out, model
