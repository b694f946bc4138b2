"""Ragged training: length-bucketed batches cut to their own longest graph, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY_PN
from paratag.build import BuildConfig, build_shards
from paratag.config import ModelConfig
from paratag.data.dataset import GraphDataset, ShardStore, trim_padding
from paratag.data.sampler import EpochBatchSampler
from paratag.data.selection import DataConfig
from paratag.graphs import graph_lengths
from paratag.models import build_model
from paratag.parity import min_particles


def _batches(sampler: EpochBatchSampler, epoch: int) -> list[np.ndarray]:
    sampler.set_epoch(epoch)
    return [b for _, b in sampler]


def test_length_buckets_use_every_row_once_deterministically_and_group_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 101, 1000)
    plain = EpochBatchSampler(1000, 32, seed=3)
    bucketed = EpochBatchSampler(1000, 32, seed=3, lengths=lengths, bucket=4)
    b0 = _batches(bucketed, 0)
    assert sorted(np.concatenate(b0).tolist()) == list(range(1000))  # every row once
    assert [b.tolist() for b in b0] == [b.tolist() for b in _batches(bucketed, 0)]
    assert [b.tolist() for b in b0] != [b.tolist() for b in _batches(bucketed, 1)]

    def mean_max(batches: list[np.ndarray]) -> float:  # the padded length a batch pays for
        return float(np.mean([lengths[b].max() for b in batches]))

    assert mean_max(b0) < 0.75 * mean_max(_batches(plain, 0))
    # DDP: the ranks' slices of a step are the single-process batch
    ranks = [
        _batches(
            EpochBatchSampler(1000, 32, seed=3, lengths=lengths, bucket=4, rank=r, world_size=2), 0
        )
        for r in (0, 1)
    ]
    joined = [np.concatenate(pair) for pair in zip(*ranks, strict=True)]
    assert [b.tolist() for b in joined] == [b.tolist() for b in b0]


def test_trim_keeps_every_constituent_and_the_model_output(pfnano_path) -> None:
    from conftest import load_events
    from paratag.inputs import build_inputs

    pf = build_inputs(load_events(pfnano_path), "jet").clouds["pf"]
    arrays = {"points": pf.points, "features": pf.features, "mask": pf.mask}
    order = np.argsort(graph_lengths(pf.mask))[:8]  # the eight shortest jets
    batch = {k: v[order] for k, v in arrays.items()}
    torch.manual_seed(0)
    trunk = {k: TINY_PN[k] for k in ("conv_params", "fc_params")}
    cfg = ModelConfig(name="particlenet", options=trunk)
    model = build_model(cfg, point_dims=2, feature_dims=15).eval()
    trimmed = trim_padding(batch, min_particles(model))
    p = trimmed["mask"].shape[-1]
    assert p < 100 and (p % 8 == 0 or p == min_particles(model))
    assert graph_lengths(trimmed["mask"]).tolist() == graph_lengths(batch["mask"]).tolist()
    with torch.no_grad():
        full = model(*(torch.from_numpy(batch[k]) for k in ("points", "features", "mask")))
        cut = model(*(torch.from_numpy(trimmed[k]) for k in ("points", "features", "mask")))
    np.testing.assert_allclose(cut.numpy(), full.numpy(), atol=1e-5)


def test_store_lengths_and_trimmed_dataset_batches(pfnano_path, tmp_path) -> None:
    meta = {"label": 1, "mX": 125.0}
    fileset = {"QCD": {"files": {str(pfnano_path): "Events"}, "metadata": meta}}
    build_shards(fileset, tmp_path / "shards", BuildConfig(preset="jet", condition=("mX",)))
    store = ShardStore(tmp_path / "shards")
    masks = store.gather(np.arange(len(store)), ["mask"])["mask"]
    np.testing.assert_array_equal(store.lengths(), graph_lengths(masks))
    n = len(store)
    ds = GraphDataset(store, np.arange(n), np.full((n, 1), 125.0), np.ones(n), trim=8)
    short = np.argsort(store.lengths())[:4]
    batch = ds[(0, short)]
    assert batch["mask"].shape[-1] < masks.shape[-1]
    assert (batch["mask"].sum(dim=(1, 2)).numpy() == store.lengths()[short]).all()
    with pytest.raises(Exception, match="ragged_bucket"):
        DataConfig(ragged=True, ragged_bucket=0)


def test_a_ragged_run_trains_every_stage(tmp_path) -> None:
    import dataclasses
    import json

    from paratag.training.run import load_train_config, train

    from paratag.data.synthetic import make_synthetic_shards

    shards = tmp_path / "shards"
    make_synthetic_shards(
        shards, [(100, 85), (130, 90), (160, 95)], n_signal=200, n_background=300, seed=5
    )
    cfg = load_train_config("tiny", shards=shards, run_dir=tmp_path / "run")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, ragged=True, ragged_bucket=2))
    train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (tmp_path / "run" / "stage3" / "model.pt").is_file()
    assert 0.5 < summary["stage3"]["best_val_auc"] <= 1.0  # it learned something
    assert len(summary["stage3"]["val_auc_per_point"]) >= 3


def test_the_stage1_fingerprint_ignores_new_data_settings_at_their_defaults() -> None:
    import dataclasses

    from paratag.training.config import load_train_config, stage1_fingerprint

    cfg = load_train_config("tiny")
    base = stage1_fingerprint(cfg)
    off = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, ragged=False))
    on = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, ragged=True))
    assert stage1_fingerprint(off) == base
    assert stage1_fingerprint(on) != base  # ragged batches train a different model
    # at their defaults the new keys are not hashed: fingerprints recorded before they existed
    # still match (hashing them would change every fingerprint)
    import paratag.training.config as tc

    saved = dict(tc.FINGERPRINT_DEFAULTS)
    try:
        tc.FINGERPRINT_DEFAULTS.clear()
        assert stage1_fingerprint(cfg) != base
    finally:
        tc.FINGERPRINT_DEFAULTS.update(saved)
