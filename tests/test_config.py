from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from paratag.build import BuildConfig
from paratag.config import ModelConfig, dump, from_dict, load, to_dict
from paratag.errors import ConfigError, ParatagError


def test_round_trip_yaml_and_json(tmp_path):
    cfg = ModelConfig(
        name="parametric_particlenet",
        n_classes=4,
        condition_names=("mHc", "mA"),
        condition_mean=(130.0, 90.0),
        condition_std=(20.0, 10.0),
        options={"k": 8},
    )
    for suffix in (".yaml", ".json"):
        path = dump(cfg, tmp_path / f"model{suffix}")
        assert load(ModelConfig, path) == cfg


def test_frozen():
    cfg = BuildConfig()
    with pytest.raises(FrozenInstanceError):
        cfg.max_particles = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"max_partcles": 10}, "unknown key.*max_partcles"),
        ({"max_particles": "many"}, "max_particles: expected an integer"),
        ({"max_particles": -1}, "max_particles must be > 0"),
        ({"max_rows": 0}, "max_rows must be > 0"),
        ({"max_particles": True}, "expected an integer"),
    ],
)
def test_invalid_graph_config(data, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(BuildConfig, data)


def test_model_config_checks_condition_lengths():
    with pytest.raises(ConfigError, match="condition_mean/std need 2 values"):
        ModelConfig(condition_names=("mHc", "mA"), condition_mean=(130.0,), condition_std=(20.0,))
    with pytest.raises(ConfigError, match="positive"):
        ModelConfig(condition_names=("mX",), condition_mean=(1.0,), condition_std=(0.0,))


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(BuildConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_particles: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(BuildConfig, bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ParatagError, match="top level must be a mapping"):
        load(BuildConfig, lst)


def test_a_root_file_where_a_fileset_goes_is_named(pfnano_path):
    from paratag.runner import load_fileset

    with pytest.raises(ConfigError, match=r"pfnano\.root: not a text .*list it in a fileset"):
        load_fileset(pfnano_path)


def test_to_dict_is_plain():
    d = to_dict(
        ModelConfig(condition_names=("mX",), condition_mean=(100.0,), condition_std=(50.0,))
    )
    assert d["condition_names"] == ["mX"]
    assert isinstance(d["options"], dict)


def test_command_line_overrides_are_typed_and_validated():
    from paratag.training.run import load_train_config

    from paratag.config import apply_overrides

    cfg = load_train_config("demo", shards="x")
    new = apply_overrides(
        cfg, ["stage3.epochs=5", "data.shards=other/", "model.options.resonance=null"]
    )
    assert new.stage3.epochs == 5 and new.data.shards == "other/"
    assert new.model.options["resonance"] is None and cfg.stage3.epochs != 5  # cfg unchanged
    with pytest.raises(ConfigError, match="expected an integer"):
        apply_overrides(cfg, ["stage3.epochs=five"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides(cfg, ["stage4.epochs=1"])
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(cfg, ["stage3.epoch=1"])
