from __future__ import annotations

import numpy as np
import pytest

from paratag.conditions import (
    GRID_PRESETS,
    GridConfig,
    MassGrid,
    draw_background_conditions,
    fold_roles,
    match_points,
    point_name,
    uniform_hash,
)
from paratag.config import from_dict
from paratag.errors import ConfigError, UnknownMassPointError


def test_default_charged_higgs_splits_match_the_plan():
    grid = MassGrid.from_config(GridConfig())
    assert grid.names == ("mHc", "mA")
    assert grid.train == (
        (100, 85),
        (115, 90),
        (130, 85),
        (130, 90),
        (130, 95),
        (145, 90),
        (160, 95),
    )
    assert grid.validation == ((115, 85), (145, 95), (160, 90))
    assert grid.interpolation == ((110, 87), (125, 91), (140, 93))
    assert grid.extrapolation == ((95, 80), (165, 97))
    assert grid.role_of((125, 91)) == "interpolation"
    assert grid.role_of([95.0, 80.0]) == "extrapolation"
    assert len(grid.points()) == 15


def test_full_grid_has_fifteen_points_and_trains_on_twelve():
    grid = MassGrid.from_config(GridConfig(preset="charged_higgs_full"))
    full = {(m, a) for m in (100, 115, 130, 145, 160) for a in (85, 90, 95)}
    assert set(grid.train) | set(grid.validation) == full
    assert len(grid.train) == 12 and len(grid.validation) == 3


def test_grid_overrides_and_big_grids_work():
    cfg = from_dict(
        GridConfig,
        {
            "preset": None,
            "names": ["mHc", "mA"],
            "train": [[m, a] for m in range(100, 165, 5) for a in (85, 90)],
        },
    )
    grid = MassGrid.from_config(cfg)
    assert len(grid.train) == 26 and grid.validation == ()
    assert grid.name(grid.train[0]) == "mHc100_mA85"
    assert grid.parse("mHc160_mA90") == (160.0, 90.0)
    mean, std = grid.normalisation()
    assert mean == pytest.approx((130.0, 87.5)) and std[1] == pytest.approx(2.5)


def test_grid_errors_name_the_problem():
    with pytest.raises(ConfigError, match="both 'train' and 'validation'"):
        MassGrid.from_config(GridConfig(validation=((100, 85),)))
    with pytest.raises(ConfigError, match="unknown"):
        GridConfig(preset="nope")
    with pytest.raises(ConfigError, match="has 1 values"):
        MassGrid(names=("mHc", "mA"), train=((100.0,),))
    with pytest.raises(UnknownMassPointError, match="mHc131_mA90"):
        MassGrid.from_config(GridConfig()).role_of((131, 90))
    assert "xbb" in GRID_PRESETS and point_name((12.5,), ("mX",)) == "mX12p5"


def test_match_points_ignores_backgrounds():
    cond = np.array([[130, 90], [np.nan, np.nan], [100, 85], [131, 90]], np.float32)
    assert match_points(cond, [(100, 85), (130, 90)]).tolist() == [1, -1, 0, -1]


def test_fold_roles_are_deterministic_by_event_number():
    event = np.arange(1000)
    roles = fold_roles(event, 5, 0)
    assert np.array_equal(roles, fold_roles(event[::-1], 5, 0)[::-1])
    assert (roles == 2).sum() == 200 and (roles == 1).sum() == 200 and (roles == 0).sum() == 600
    assert np.all(roles[event % 5 == 0] == 2) and np.all(roles[event % 5 == 1] == 1)
    assert np.all(fold_roles(event, 5, 4)[event % 5 == 0] == 1)
    with pytest.raises(ConfigError, match="fold"):
        fold_roles(event, 5, 5)


def test_background_conditions_follow_the_grid_and_the_epoch():
    points = [(100, 85), (130, 90), (160, 95)]
    rows = np.arange(30000)
    a = draw_background_conditions(rows, points, [0.5, 0.25, 0.25], seed=1, epoch=0)
    assert a.shape == (30000, 2)
    idx = match_points(a, points)
    assert np.all(idx >= 0)
    frac = np.bincount(idx) / len(idx)
    assert frac == pytest.approx([0.5, 0.25, 0.25], abs=0.02)
    assert np.array_equal(
        a, draw_background_conditions(rows, points, [0.5, 0.25, 0.25], seed=1, epoch=0)
    )
    b = draw_background_conditions(rows, points, [0.5, 0.25, 0.25], seed=1, epoch=1)
    assert 0.4 < np.mean(np.any(a != b, axis=1)) < 0.8
    # the draw of a row does not depend on which other rows are drawn with it
    assert np.array_equal(
        draw_background_conditions(rows[7:9], points, seed=3),
        draw_background_conditions(rows, points, seed=3)[7:9],
    )


def test_uniform_hash_is_uniform():
    u = uniform_hash(5, np.arange(100000))
    assert u.min() >= 0 and u.max() < 1
    assert np.histogram(u, bins=10, range=(0, 1))[0] == pytest.approx([10000] * 10, rel=0.05)
