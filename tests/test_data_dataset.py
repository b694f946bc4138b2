from __future__ import annotations

import numpy as np
import pytest
import torch

from paratag.conditions import GridConfig, MassGrid, match_points
from paratag.data.dataset import GraphDataset, ShardStore, make_loader
from paratag.data.sampler import EpochBatchSampler
from paratag.data.selection import DataConfig, SampleBuilder, balance_weights
from paratag.data.synthetic import make_synthetic_shards
from paratag.errors import ConfigError, InputFileError, InvalidValueError, UnknownMassPointError
from paratag.shards import read_manifest, read_shard

POINTS = [(100, 85), (130, 90), (160, 95), (145, 90)]
GRID = MassGrid.from_config(
    GridConfig(
        preset=None,
        names=("mHc", "mA"),
        train=((100, 85), (130, 90), (160, 95)),
        validation=((145, 90),),
    )
)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    make_synthetic_shards(out, POINTS, n_signal=200, n_background=300, seed=3, max_rows=120)
    return out


def builder(shards, **kw) -> SampleBuilder:
    store = ShardStore(shards, cache_size=2, spectators=["mll"])
    return SampleBuilder(
        store, GRID, DataConfig(shards=str(shards), **kw), mean=(130, 90), std=(20, 10), seed=0
    )


def test_synthetic_shards_are_physical(shards):
    man = read_manifest(shards)
    assert man["condition_names"] == ["mHc", "mA"] and man["shapes"]["features"] == [11, 16]
    arrays = {
        d["name"]: read_shard(shards / d["files"][0]["path"], man["shapes"])
        for d in man["datasets"]
    }
    sig, wz = arrays["HplusToWA_mHc130_mA90"], arrays["WZ"]
    # the dimuon mass peaks at mA for the signal and at mZ for WZ
    assert np.median(sig["spec_mll"][sig["spec_mll"] > 0]) == pytest.approx(90, abs=3)
    assert np.median(wz["spec_mll"][wz["spec_mll"] > 0]) == pytest.approx(91.2, abs=3)
    # padded slots are exactly zero in every input
    pad = sig["mask"] == 0
    assert np.all(np.broadcast_to(pad, sig["features"].shape) <= (sig["features"] == 0))
    assert sig["label"][0] == 0 and wz["label"][0] == 1 and np.isnan(wz["condition"]).all()


def test_store_reads_lazily_with_a_bounded_lru_cache(shards):
    store = ShardStore(shards, cache_size=2)
    assert len(store.files) > 6 and len(store) == 4 * 200 + 2 * 300
    rows = np.array([5, len(store) - 1, 250, 3, 700])
    got = store.gather(rows, ["features", "mask"])
    assert len(store._cache) <= 2
    man = read_manifest(shards)
    for i, r in enumerate(rows):
        path, _ = store.files[store.table["file"][r]]
        ref = read_shard(path, man["shapes"], columns=["features"])["features"][
            store.table["row"][r]
        ]
        assert np.array_equal(got["features"][i], ref)
    with pytest.raises(InputFileError, match="spec_nope"):
        ShardStore(shards, spectators=["nope"])


def test_missing_second_cloud_and_arrays_are_named(shards):
    """One-cloud shards: asking for a second cloud or unknown arrays names what is there."""
    store = ShardStore(shards, cache_size=2)
    assert not store.has_sv
    with pytest.raises(InputFileError, match="no second cloud .*use_sv: false"):
        store.require_secondary()
    with pytest.raises(InputFileError, match=r"no arrays \['vtx_features'\]"):
        store.gather(np.arange(3), ["points", "vtx_features"])


def test_graph_forward_refuses_two_secondary_clouds():
    from paratag.models.io import graph_forward

    batch = {k: torch.zeros(1, 1, 2) for k in ("points", "features", "mask")}
    batch.update(
        {f"{c}_{k}": torch.zeros(1, 1, 2) for c in ("sv", "vtx") for k in ("features", "mask")}
    )
    with pytest.raises(InvalidValueError, match=r"several secondary clouds \['sv', 'vtx'\]"):
        graph_forward(torch.nn.Identity(), batch)


def test_dataset_batches_have_the_contract_keys(shards):
    b = builder(shards, max_events=None)
    ds = b.joint(GRID.train, "train")
    batch = ds[(0, np.arange(0, len(ds), 7))]
    n = len(range(0, len(ds), 7))
    assert batch["points"].shape == (n, 2, 16) and batch["features"].shape == (n, 11, 16)
    assert batch["mask"].shape == (n, 1, 16) and batch["condition"].shape == (n, 2)
    assert batch["label"].dtype == torch.int64 and batch["weight"].dtype == torch.float32
    mass = batch["mass"].numpy()
    assert np.all(match_points(mass, GRID.train) >= 0)  # backgrounds got grid conditions
    assert np.allclose(batch["condition"].numpy(), (mass - [130, 90]) / [20, 10], atol=1e-6)


def test_balancing_equalises_classes_and_points(shards):
    w = balance_weights(
        np.array([1, 1, 1, 2, 2.0]), np.array([0, 0, 0, 1, 1]), np.array([0, 0, 1, -1, -1])
    )
    assert w.mean() == pytest.approx(1)
    assert w[:3].sum() == pytest.approx(w[3:].sum())
    assert w[:2].sum() == pytest.approx(w[2])
    ds = builder(shards).joint(GRID.train, "train")
    lab, grp = ds.labels, ds.point_group
    assert ds.weight[lab == 0].sum() == pytest.approx(ds.weight[lab == 1].sum(), rel=1e-5)
    sums = [ds.weight[grp == g].sum() for g in range(3)]
    assert sums == pytest.approx([sums[0]] * 3, rel=1e-5)
    with pytest.raises(InvalidValueError, match="summed weight"):
        balance_weights(np.array([1.0, -1.0, 1.0]), np.array([0, 0, 1]))


def test_fit_fraction_keeps_a_fixed_share_of_the_fitting_folds_and_the_whole_test_fold(shards):
    """``fit_fraction`` subsamples training and validation by event number; test is whole."""
    full, half = builder(shards), builder(shards, fit_fraction=0.5)
    for fold in ("train", "validation", "test"):
        a = np.concatenate([full.point_rows(p, fold) for p in GRID.train])
        b = np.concatenate([half.point_rows(p, fold) for p in GRID.train])
        assert set(b) <= set(a)
        if fold == "test":
            assert np.array_equal(a, b)
        else:
            assert 0.3 < len(b) / len(a) < 0.7, fold
    kept = half.point_rows(GRID.train[0], "train")  # the same events in every run
    assert np.array_equal(
        kept, builder(shards, fit_fraction=0.5).point_rows(GRID.train[0], "train")
    )
    with pytest.raises(ConfigError, match="fit_fraction"):
        DataConfig(fit_fraction=0.0)


def test_wrong_mass_copies_are_background_at_another_hypothesis(shards):
    plain = builder(shards).joint(GRID.train, "train")
    ds = builder(shards, wrong_mass_weight=0.25).joint(GRID.train, "train")
    n_sig = int((plain.labels == 0).sum())
    assert len(ds) == len(plain) + n_sig
    copies = np.arange(len(plain), len(ds))
    # the same signal events, labelled as the first background class ...
    assert np.array_equal(ds.rows[copies], plain.rows[:n_sig])
    assert np.all(ds.labels[copies] == 1) and np.all(ds.store.table["label"][ds.rows[copies]] == 0)
    # ... each at a training point that is not its own, fixed (never drawn)
    own = ds.condition[:n_sig]
    assert np.all(np.isfinite(ds.condition[copies]))
    assert not np.any(np.all(ds.condition[copies] == own, axis=1))
    assert {tuple(c) for c in ds.condition[copies]} <= {tuple(map(float, p)) for p in GRID.train}
    # weight: the chosen fraction of the signal class; the SM classes keep their balance
    w_sig, w_copy = ds.weight[:n_sig].sum(), ds.weight[copies].sum()
    assert w_copy == pytest.approx(0.25 * w_sig, rel=1e-5)
    # ... at every hypothesis, so no hypothesis gets more negatives than another
    for p in GRID.train:
        at = np.all(ds.condition[copies] == np.asarray(p, np.float32), axis=1)
        own = np.all(ds.condition[:n_sig] == np.asarray(p, np.float32), axis=1)
        assert ds.weight[copies][at].sum() == pytest.approx(
            0.25 * ds.weight[:n_sig][own].sum(), rel=1e-4
        )
    bkg = np.arange(n_sig, len(plain))
    assert ds.weight[bkg].sum() == pytest.approx(w_sig, rel=1e-5)
    assert ds.weight.mean() == pytest.approx(1, rel=1e-5)
    # a curriculum phase keeps only copies whose event and hypothesis are both active
    phases = [(0, GRID.train[:2]), (3, GRID.train)]
    ds = builder(shards, wrong_mass_weight=0.25).joint(GRID.train, "train", phases=phases)
    first = SampleBuilder.phase_positions(ds, GRID.train, phases)[0][1]
    active = {tuple(map(float, p)) for p in GRID.train[:2]}
    for i in first[first >= len(plain)]:
        assert tuple(ds.condition[i]) in active
    w_first = ds.phase(0)[0]
    assert np.all(w_first[np.setdiff1d(np.arange(len(ds)), first)] == 0)
    with pytest.raises(ConfigError, match="signal label"):
        DataConfig(wrong_mass_label=0)
    with pytest.raises(ConfigError, match="wrong_mass_weight"):
        DataConfig(wrong_mass_weight=-1)


def test_xsec_weights_mix_backgrounds_by_cross_section(shards):
    b = builder(shards, xsec={"WZ": 3.0, "TT*": 1.0})
    ds = b.single_point((130, 90), "train")
    names = np.array(b.store.dataset_names())[b.store.table["dataset"][ds.rows]]
    assert ds.weight[names == "WZ"].sum() / ds.weight[names == "TTbar"].sum() == pytest.approx(
        3.0, rel=1e-4
    )
    with pytest.raises(ConfigError, match="TTbar"):
        builder(shards, xsec={"WZ": 3.0})
    b = builder(shards, xsec_key="xsec_pb", xsec={"TTbar": 44.0})  # explicit entries win
    ds = b.single_point((130, 90), "train")
    assert ds.weight[names == "WZ"].sum() / ds.weight[names == "TTbar"].sum() == pytest.approx(
        4.4 / 44, rel=1e-4
    )
    assert ds.weight[ds.labels == 0].sum() == pytest.approx(
        ds.weight[ds.labels == 1].sum(), rel=1e-5
    )


def test_folds_are_disjoint_and_points_are_checked(shards):
    b = builder(shards)
    tr, va = b.single_point((100, 85), "train"), b.single_point((100, 85), "validation")
    assert not set(tr.rows) & set(va.rows)
    ev = b.store.table["spec_event"]
    assert np.all(ev[va.rows] % 5 == 1) and np.all(ev[tr.rows] % 5 >= 2)
    with pytest.raises(UnknownMassPointError, match="mHc115_mA90"):
        SampleBuilder(
            b.store, MassGrid(("mHc", "mA"), ((115.0, 90.0),)), b.config, mean=(0, 0), std=(1, 1)
        ).require([(115.0, 90.0)])
    val = b.grouped([(100, 85), (145, 90)], "validation")
    assert set(np.unique(val.group)) == {0, 1}
    assert val.weight[val.group == 0].sum() == pytest.approx(
        val.weight[val.group == 1].sum(), rel=1e-5
    )


def test_sampler_is_deterministic_shard_aware_and_splits_for_ddp():
    files = np.repeat(np.arange(10), 50)
    s = EpochBatchSampler(500, 64, seed=1, files=files, window=2)
    s.set_epoch(3)
    a = [p for _, p in s]
    s.set_epoch(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, [p for _, p in s], strict=True))
    order = np.concatenate(a)
    assert sorted(order.tolist()) == list(range(500))
    # shard-aware: every window of 100 rows touches at most 2 files
    assert all(len(np.unique(files[order[i : i + 100]])) <= 2 for i in range(0, 500, 100))
    s.set_epoch(4)
    assert not np.array_equal(order, np.concatenate([p for _, p in s]))
    ranks = [
        EpochBatchSampler(500, 64, seed=1, files=files, window=2, rank=r, world_size=2)
        for r in (0, 1)
    ]
    for r in ranks:
        r.set_epoch(3)
    for full, p0, p1 in zip(a, *[list(r) for r in ranks], strict=True):
        assert np.array_equal(np.concatenate([p0[1], p1[1]]), full) and p0[0] == 3
    cur = EpochBatchSampler(500, 64, phases=[(0, np.arange(100)), (2, np.arange(500))])
    assert len(np.concatenate([p for _, p in cur])) == 100
    cur.set_epoch(2)
    assert len(np.concatenate([p for _, p in cur])) == 500


def test_loader_with_workers_matches_single_process(shards):
    ds = builder(shards).joint(GRID.train, "train")
    files = ds.store.table["file"][ds.rows]
    batches = []
    for workers in (0, 2):
        s = EpochBatchSampler(len(ds), 100, seed=5, files=files, window=2)
        s.set_epoch(1)
        batches.append(list(make_loader(ds, s, num_workers=workers)))
    assert len(batches[0]) == len(batches[1]) > 3
    for a, b in zip(*batches, strict=True):
        assert set(a) == set(b)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_inputs_are_reported_with_the_file(tmp_path):
    from paratag.presets import load_preset
    from paratag.shards import write_shards

    n = 8
    arrays = _tiny_arrays(n)
    arrays["features"][2, 1, 3] = np.nan
    write_shards(
        {"Sig": {"arrays": arrays}},
        tmp_path,
        preset=load_preset("event").to_dict(),
        condition_names=("mHc", "mA"),
    )
    store = ShardStore(tmp_path)
    ds = GraphDataset(store, np.arange(n), arrays["condition"], np.ones(n))
    with pytest.raises(InvalidValueError, match=r"Sig\.0000\.parquet.*features"):
        ds[(0, np.arange(n))]


def test_binary_merges_background_classes(tmp_path):
    make_synthetic_shards(
        tmp_path, [(130, 90)], n_signal=50, n_background=50, labels={"WZ": 2, "TTbar": 3}
    )
    store = ShardStore(tmp_path)
    grid = MassGrid(("mHc", "mA"), ((130.0, 90.0),))
    multi = SampleBuilder(store, grid, DataConfig(), mean=(0, 0), std=(1, 1))
    assert sorted(np.unique(multi.label).tolist()) == [0, 2, 3]
    ds = multi.single_point((130.0, 90.0), "train")
    sums = [ds.weight[ds.labels == c].sum() for c in (0, 2, 3)]
    assert sums == pytest.approx([sums[0]] * 3, rel=1e-5)  # every class has the same summed weight
    binary = SampleBuilder(store, grid, DataConfig(binary=True), mean=(0, 0), std=(1, 1))
    ds = binary.single_point((130.0, 90.0), "train")
    assert sorted(np.unique(ds.labels).tolist()) == [0, 1]
    assert ds[(0, np.arange(len(ds)))]["label"].max() == 1


def _tiny_arrays(n: int) -> dict[str, np.ndarray]:
    return {
        "points": np.zeros((n, 2, 4), np.float32),
        "features": np.zeros((n, 3, 4), np.float32),
        "mask": np.ones((n, 1, 4), np.float32),
        "label": np.zeros(n, np.int64),
        "condition": np.tile(np.float32([130, 90]), (n, 1)),
        "weight": np.ones(n, np.float32),
        "spec_event": np.arange(n, dtype=np.float64),
    }


def test_shard_shorter_than_its_manifest_is_named(tmp_path):
    """Issue 16: a shard with 40 of 100 rows trained silently."""
    import pyarrow.parquet as pq

    from paratag.presets import load_preset
    from paratag.shards import write_shards

    write_shards(
        {"Sig": {"arrays": _tiny_arrays(100)}},
        tmp_path,
        preset=load_preset("event").to_dict(),
        condition_names=("mHc", "mA"),
    )
    path = tmp_path / "Sig.0000.parquet"
    pq.write_table(pq.read_table(path).slice(0, 40), path)
    with pytest.raises(InputFileError, match=r"Sig\.0000\.parquet.*40 rows.*lists 100"):
        ShardStore(tmp_path)


def test_zero_row_shard_reads_as_empty_arrays(tmp_path):
    from paratag.presets import load_preset
    from paratag.shards import write_shards

    write_shards(
        {"Sig": {"arrays": _tiny_arrays(0)}, "Bkg": {"arrays": _tiny_arrays(5)}},
        tmp_path,
        preset=load_preset("event").to_dict(),
        condition_names=("mHc", "mA"),
    )
    manifest = read_manifest(tmp_path)
    for ds in manifest["datasets"]:
        for f in ds["files"]:
            arrays = read_shard(tmp_path / f["path"], manifest["shapes"])
            assert arrays["features"].shape[1:] == (3, 4)
    assert len(ShardStore(tmp_path)) == 5
