"""``paratag validate``: the orchestration on a tiny real chain (generate → build → train → evaluate)."""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from pathlib import Path

import pytest
import yaml
from paratag.training import load_train_config

from paratag.errors import ConfigError
from paratag.jobs import config_crc32, scaled_schedule
from paratag.validate import ValidateConfig, render_markdown, run_validate
from paratag.validate_pileup import pileup_markdown, pileup_verdict
from paratag.validation_jets import jets_verdict

GENERATE = {
    "chunk_size": 50,
    "processes": [
        {
            "name": "HplusToWA",
            "kind": "charged_higgs",
            "group": "signal",
            "leptonic": True,
            "mass_points": [{"mHc": 100, "mA": 85}, {"mHc": 160, "mA": 90}, {"mHc": 130, "mA": 88}],
        },
        {"name": "TTbar", "kind": "ttbar", "group": "nonprompt", "leptonic": True},
        {"name": "WZ", "kind": "wz", "group": "diboson", "leptonic": True},
    ],
}


def _train_yaml(path: Path) -> Path:
    with resources.as_file(resources.files("paratag") / "configs" / "train_validate.yaml") as p:
        cfg = yaml.safe_load(p.read_text())
    cfg["grid"].update(
        train=[[100, 85], [160, 90]], validation=[], interpolation=[[130, 88]], extrapolation=[]
    )
    cfg["model"]["options"] = {
        "conv_params": [[4, [8, 8]]],
        "fc_params": [[8, 0.0]],
        "use_fusion": False,
        "encoder_dims": [8],
        "embed_dim": 8,
        "attention_heads": 2,
    }
    cfg["stage1"]["batch_size"] = cfg["stage3"]["batch_size"] = 64
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_xbb_yaml(path: Path, batch_size: int) -> Path:
    """The packaged X->bb train config with a tiny Interaction Network."""
    with resources.as_file(resources.files("paratag") / "configs" / "train_validate_xbb.yaml") as p:
        cfg = yaml.safe_load(p.read_text())
    cfg["model"]["options"] = {
        "relational_hidden": [8],
        "edge_dim": 4,
        "object_hidden": [8],
        "object_dim": 4,
    }
    cfg["stage1"]["batch_size"] = cfg["stage3"]["batch_size"] = batch_size
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_scaled_schedule_keeps_curriculum_shares() -> None:
    """Shorter stage 3: phases keep their order and sum to the new epoch count."""
    cfg = scaled_schedule(load_train_config("validate"), 3, 6)
    assert cfg.stage1.epochs == 3
    assert cfg.stage3.epochs == 6
    assert [p.epochs for p in cfg.stage3.curriculum] == [1, 1, 4]
    assert [p.masses for p in cfg.stage3.curriculum] == ["easy", "medium", "all"]
    assert cfg.stage3.patience == 5


def test_config_crc32_keys_what_is_trained_not_how_it_runs() -> None:
    cfg = load_train_config("validate_xbb")
    crc = config_crc32(cfg)
    same = dataclasses.replace(cfg, run_dir="elsewhere", heap="system", threads=2, progress=True)
    assert config_crc32(same) == crc
    assert config_crc32(scaled_schedule(cfg, None, cfg.stage3.epochs + 1)) != crc
    wrong_mass = dataclasses.replace(cfg.data, wrong_mass_weight=0.5)
    assert config_crc32(dataclasses.replace(cfg, data=wrong_mass)) != crc


def test_the_jet_tables_resnet_draws_absolute_pt_images_and_config_checks_stay_torch_free(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from paratag.baselines.resnet import ABSOLUTE_PT
    from paratag.validate_xbb import _tagger_config

    base = load_train_config("validate_xbb")
    assert _tagger_config(base, "resnet15_image", tmp_path).model.options == ABSOLUTE_PT
    assert _tagger_config(base, "interaction_net", tmp_path).model.options == base.model.options
    code = (
        "import sys; from paratag.validate import ValidateConfig; ValidateConfig(out='x'); "
        "assert 'torch' not in sys.modules, 'ValidateConfig imported torch'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_disco_runs_train_padded_unless_asked_and_the_jet_table_under_cpu_amp(
    tmp_path: Path,
) -> None:
    from paratag.generate import GenerateConfig
    from paratag.validate_xbb import _conditioned_config

    base = load_train_config("validate_xbb")
    assert base.stage1.cpu_amp and base.stage3.cpu_amp  # bfloat16 autocast on CPU
    table = _conditioned_config(base, tmp_path, None)
    padded = _conditioned_config(base, tmp_path, 10.0)
    ragged = _conditioned_config(base, tmp_path, 10.0, ragged=True)
    assert table.data.ragged and table.data.wrong_mass_weight == 0.3
    assert not padded.data.ragged and ragged.data.ragged
    assert padded.data.wrong_mass_weight == ragged.data.wrong_mass_weight == 0.0
    assert padded.loss.disco_lambda == ragged.loss.disco_lambda == 10.0
    with pytest.raises(ConfigError, match="disco_batches"):
        ValidateConfig(out="x", disco_batches="bucketed")  # type: ignore[arg-type]
    gen = GenerateConfig.from_file("validate_xbb")  # 10 000 -> >= 10 000 matched jets at 150
    assert {j.dataset: j.n_events for j in gen.jobs(10_000, 1)}["XToBB_mX150"] == 14_200


def test_generate_steps_key_on_the_generate_config_itself() -> None:
    from paratag.generate import GenerateConfig
    from paratag.jobs import sample_inputs

    gcfg = GenerateConfig.from_file("validate_disco_qcd")
    key = sample_inputs("validate_disco_qcd", gcfg, 1000, 7)
    assert key == sample_inputs(
        "validate_disco_qcd", GenerateConfig.from_file("validate_disco_qcd"), 1000, 7
    )
    edited = dataclasses.replace(gcfg, max_events_per_file=5000)  # the same name, edited YAML
    assert sample_inputs("validate_disco_qcd", edited, 1000, 7) != key


def test_pileup_levels_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="pileup levels > 0"):
        ValidateConfig(pileup_mu=(20.0, 0.0))


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="seeds"):
        ValidateConfig(seeds=(1, 1))
    with pytest.raises(ConfigError, match="events"):
        ValidateConfig(events=0)
    with pytest.raises(ConfigError, match="xbb_taggers"):
        ValidateConfig(xbb_taggers=("bdt",))
    with pytest.raises(ConfigError, match="xbb_disco_lambdas"):
        ValidateConfig(xbb_disco_lambdas=(0.0,))


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")  # coffea schema
def test_validate_tiny_chain_writes_numbers_and_caches(tmp_path: Path) -> None:
    """Two seeds on a tiny grid: ratios at train and interp points, seed spread, cached rerun."""
    gen = tmp_path / "generate.yaml"
    gen.write_text(yaml.safe_dump(GENERATE))
    cfg = ValidateConfig(
        out=str(tmp_path / "out"),
        events=60,
        seeds=(0, 1),
        workers=2,
        pileup_mu=(),
        stage1_epochs=1,
        stage3_epochs=1,
        generate_config=str(gen),
        xbb_generate_config="",
        train_config=str(_train_yaml(tmp_path / "train.yaml")),
        n_boot=0,
    )
    logs: list[str] = []
    s = run_validate(cfg, command="pytest", log=logs.append)
    on_disk = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert on_disk["command"] == "pytest"
    assert {r["split"] for r in s["points"]} == {"train", "interp"}
    assert all(0.0 <= r["auc_parametric"] <= 1.0 for r in s["points"])
    assert set(s["verdict"]) == {
        "ratio_train",
        "ratio_interp",
        "seed_std",
        "ma_vs_reference",
        "peaks",
        "per_background",
        "vs_inclusive",
    }
    ma = s["verdict"]["ma_vs_reference"]
    assert ma["value"] == pytest.approx(ma["parametric"] / ma["reference"])
    for name, v in s["verdict"].items():  # one entry shape, so the Targets table reads them all
        assert v["met"] == (v["margin"] > 0 if name == "seed_std" else v["margin"] >= 0), name
        assert f"| {name} | {v['value']:.4f} | {v['required']} |" in render_markdown(s), name
    assert s["verdict"]["seed_std"]["value"] == s["seeds"]["max_point_std"]
    assert {"parametric", "dedicated", "reference"} <= set(s["mass_awareness"]["awareness"])
    assert s["seeds"]["seeds"] == [0, 1]
    assert set(s["wall_time_s"]) == {"generate", "build", "train", "inclusive", "evaluate"}
    md = (tmp_path / "out" / "validation.md").read_text()
    assert md == render_markdown(s)
    # the sizes line names the samples of the chains that ran
    only_higgs = render_markdown({**s, "config": {**s["config"], "only": ["higgs"]}})
    sizes = only_higgs.split("## Sizes")[1].split("\n## ")[0]
    assert "events per signal point / background process: 60" in sizes
    assert "pileup" not in sizes and "X→bb" not in sizes
    assert "pileup test samples" in md.split("## Sizes")[1].split("\n## ")[0]
    assert "| train |" in md and "mHc=130" in md and "## Mass awareness" in md

    # the dedicated model at the untrained point was trained beside the seeds, and the
    # evaluation reused it instead of training it again
    out = tmp_path / "out"
    assert json.loads((out / "steps" / "train.json").read_text())["dedicated"]["dedicated"] == 1
    ded = out / "evaluation" / "dedicated" / "mHc130_mA88" / "stage1" / "mHc130_mA88" / "model.pt"
    assert ded.stat().st_mtime < (out / "steps" / "train.json").stat().st_mtime
    # so was the inclusive model, in a run folder of its own; the inclusive step reused it
    inc = out / "inclusive" / "inclusive" / "model.pt"
    assert json.loads((out / "steps" / "train.json").read_text())["inclusive"]["model"] == str(inc)
    assert inc.stat().st_mtime < (out / "steps" / "train.json").stat().st_mtime
    assert json.loads((out / "steps" / "inclusive.json").read_text())["model"] == str(inc)

    logs.clear()
    run_validate(cfg, log=logs.append)
    assert sum("cached" in line for line in logs) == 5

    # an evaluation older than a step it depends on (e.g. interrupted after retraining) is redone
    os.utime(out / "steps" / "inclusive.json")
    logs.clear()
    run_validate(cfg, log=logs.append)
    assert any("[evaluate] older than a step it depends on" in line for line in logs)
    assert sum("cached" in line for line in logs) == 4

    # a stage-3-only change redoes training but keeps every stage-1 model
    stage1 = sorted((out / "runs").glob("seed*/stage1/*/model.pt")) + [ded]
    stamps = [m.stat().st_mtime_ns for m in stage1]
    train_cfg = yaml.safe_load(Path(cfg.train_config).read_text())
    train_cfg["data"]["wrong_mass_weight"] = 0.5
    Path(cfg.train_config).write_text(yaml.safe_dump(train_cfg))
    logs.clear()
    run_validate(cfg, log=logs.append)
    assert any("[train] inputs changed" in line for line in logs)
    assert [m.stat().st_mtime_ns for m in stage1] == stamps


XBB_GENERATE = {
    "chunk_size": 50,
    "processes": [
        {
            "name": "XToBB",
            "kind": "xbb",
            "group": "xbb",
            "pthat_min": 400.0,
            "mass_points": [{"mX": 50}, {"mX": 100}, {"mX": 125}, {"mX": 150}],
        },
        {"name": "QCD", "kind": "qcd", "group": "qcd", "pthat_min": 300.0},
    ],
}


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")  # coffea schema
def test_validate_jet_chains_write_the_jet_table_and_the_disco_curve(tmp_path: Path) -> None:
    """``xbb`` (conditioned IN + two taggers, one table) and ``disco`` (λ = 0, 5 on a QCD-only
    sculpting sample), sharing the X->bb samples; cached; each can run on its own."""
    gen = tmp_path / "generate_xbb.yaml"
    gen.write_text(yaml.safe_dump(XBB_GENERATE))
    qcd = tmp_path / "generate_qcd.yaml"
    qcd.write_text(yaml.safe_dump({**XBB_GENERATE, "processes": XBB_GENERATE["processes"][1:]}))
    _train_xbb_yaml(tmp_path / "train_xbb.yaml", batch_size=64)
    out = tmp_path / "out"
    kw = {
        "out": str(out),
        "xbb_events": 40,
        "workers": 2,
        "stage1_epochs": 1,
        "stage3_epochs": 1,
        "xbb_generate_config": str(gen),
        "xbb_train_config": str(tmp_path / "train_xbb.yaml"),
        "disco_generate_config": str(qcd),
        "disco_qcd_events": 60,
        "xbb_taggers": ("particlenet_lite", "resnet15_image"),
        "xbb_disco_lambdas": (5.0,),
        "disco_epochs": 3,  # at most stage 3's one epoch
        "disco_fraction": 0.5,
        "n_boot": 0,
    }
    logs: list[str] = []
    s = run_validate(ValidateConfig(**kw, only=("xbb",)), command="pytest", log=logs.append)
    assert s["disco"] == {} and not (out / "steps" / "disco_train.json").exists()
    t = s["xbb_table"]
    assert t["models"] == ["parametric", "particlenet_lite", "resnet15_image"]
    assert t["rows"] == ["mX50", "mX100", "mX150", "mX125", "all"]  # 125: never trained
    assert t["conditioned"] == {
        "parametric": True,
        "particlenet_lite": False,
        "resnet15_image": False,
    }
    assert all(0.0 <= t["nominal"][m]["all"]["auc"] <= 1.0 for m in t["models"])
    assert set(s["xbb_train"]["taggers"]) == {"particlenet_lite", "resnet15_image"}
    assert set(s["xbb_importance"]["clouds"]) == {"pf", "sv"}  # the IN reads both clouds
    md = (out / "validation.md").read_text()
    assert "## X→bb jet taggers" in md and "| resnet15_image | all |" in md
    assert "## Mass awareness of the conditioned IN" in md and "| 50, 100 |" in md
    assert {"xbb_best_graph_auc", "xbb_resnet15_image", "xbb_peaks"} <= set(s["verdict"])
    assert "xbb_in_vs_particlenet" not in s["verdict"]  # no IN among these taggers
    assert "sculpting" not in md.split("## Sizes")[1].split("##")[0]  # disco did not run
    conditioned = load_train_config(out / "xbb" / "run_conditioned" / "config.yaml")
    assert conditioned.data.wrong_mass_weight == 0.3  # the mass-aware conditioned IN
    assert conditioned.loss.disco_lambda == 0.0
    lite = load_train_config(out / "xbb" / "tagger_particlenet_lite" / "config.yaml")
    assert lite.data.wrong_mass_weight == 0.0  # unconditioned: the record says what it trained

    logs.clear()  # the disco chain reuses the X->bb samples
    s = run_validate(ValidateConfig(**kw, only=("disco",)), log=logs.append)
    assert any("[xbb_build] cached" in line for line in logs)
    assert set(s["disco"]) == {"no_disco", "disco_5"}
    runs = {
        k: load_train_config(out / "xbb" / "disco" / f"run_{k}" / "config.yaml") for k in s["disco"]
    }
    assert runs["disco_5"].loss.disco_lambda == 5.0
    assert all(r.stage3.epochs == 1 for r in runs.values()) and s["disco_train"]["epochs"] == 1
    assert all(r.data.fit_fraction == 0.5 for r in runs.values())
    assert conditioned.data.fit_fraction == 1.0  # the jet table trains on every event
    evaluated = json.loads((out / "steps" / "disco_evaluate.json").read_text())
    assert set(evaluated["run_times_s"]) == {"no_disco", "disco_5"}  # parallel jobs
    for k in s["disco"]:  # the curve needs the overall metrics and the sculpting jets only
        info = json.loads(
            (out / "xbb" / "disco" / f"evaluation_{k}" / "evaluation.json").read_text()
        )
        assert "per-point AUCs" not in info["timings_s"] and "test sample" in info["timings_s"]
    assert all(r.data.wrong_mass_weight == 0.0 for r in runs.values())  # decorrelated
    assert conditioned.data.ragged and not any(r.data.ragged for r in runs.values())
    # the QCD shapes come from every jet of the separate sample, not the test fold's few
    from paratag.data import ShardStore

    n_sculpt = len(ShardStore(out / "xbb" / "disco" / "sculpting_shards"))
    assert all(v["n_background"] == n_sculpt for v in s["disco"].values())
    assert n_sculpt > t["n_background"]
    assert all(0 <= v["n_pass"] <= n_sculpt for v in s["disco"].values())
    v = s["verdict"]["disco"]  # a few dozen jets can never meet the 2,000-jet requirement
    assert v["met"] is False and v["value"] is None
    md = (out / "validation.md").read_text()
    assert "| disco 5 |" in md and "QCD jets passing" in md
    assert (out / s["disco_figure"]).is_file() and "disco_curve.png" in md
    assert "## X→bb jet taggers" in md  # both chains' results are reported

    logs.clear()
    run_validate(ValidateConfig(**kw, only=("xbb", "disco")), log=logs.append)  # all cached
    assert sum("cached" in line for line in logs) == 8


@pytest.mark.filterwarnings("ignore:Missing cross-reference index:RuntimeWarning")  # coffea schema
def test_validate_pileup_chain_trains_without_and_with_pileup_and_scores_every_level(
    tmp_path: Path,
) -> None:
    """Event and jet tagger, each trained at mu = 0 and on mixed mu, scored at mu = 0 and 8."""
    event_gen = tmp_path / "generate_pileup.yaml"
    event = {**GENERATE, "processes": [dict(GENERATE["processes"][0]), GENERATE["processes"][2]]}
    event["processes"][0]["mass_points"] = [{"mHc": 130, "mA": 90}]
    event_gen.write_text(yaml.safe_dump(event))
    jet_gen = tmp_path / "generate_pileup_xbb.yaml"
    jet = {
        **XBB_GENERATE,
        "processes": [dict(XBB_GENERATE["processes"][0]), XBB_GENERATE["processes"][1]],
    }
    jet["processes"][0]["mass_points"] = [{"mX": 100}]
    jet_gen.write_text(yaml.safe_dump(jet))
    _train_xbb_yaml(tmp_path / "train_xbb.yaml", batch_size=32)
    cfg = ValidateConfig(
        out=str(tmp_path / "out"),
        events=60,
        pileup_events=30,
        pileup_train_events=80,
        pileup_mu=(8.0,),
        workers=2,
        stage3_epochs=1,
        pileup_config=str(event_gen),
        pileup_xbb_config=str(jet_gen),
        train_config=str(_train_yaml(tmp_path / "train.yaml")),
        xbb_train_config=str(tmp_path / "train_xbb.yaml"),
        only=("pileup",),
        n_boot=0,
    )
    s = run_validate(cfg, command="pytest", log=lambda _: None)
    study = s["pileup_study"]
    assert set(study) == {"event", "jet"}
    for family in ("event", "jet"):
        assert set(study[family]) == {"nominal", "mixed"}
        for per_level in study[family].values():
            assert list(per_level) == ["mu0", "mu8"]
            assert all(0.0 <= v["auc"] <= 1.0 and v["sigma"] is None for v in per_level.values())
    out = tmp_path / "out"
    # the mixed training sample drew each event's mu from {0, 8}; the nominal one has none
    mixed = yaml.safe_load(
        (out / "pileup" / "pileup_event_train_mixed" / "generated" / "fileset.json").read_text()
    )
    assert all(d["metadata"]["pileup_mu_choices"] == [0.0, 8.0] for d in mixed.values())
    run = load_train_config(out / "pileup" / "event_runs" / "mixed" / "config.yaml")
    assert run.grid.train == ((130.0, 90.0),) and not run.stage1.enabled and not run.ratio.enabled
    assert "pileup_drop_event" in s["verdict"] and "pileup_drop_jet" in s["verdict"]
    md = (out / "validation.md").read_text()
    assert "## Pileup robustness (the same hard scatters at every μ)" in md
    assert "| jet tagger | mu0 | mu8 | drop |" in md


def test_pileup_table_gives_each_level_with_its_sigma_and_the_mixed_drop_verdict() -> None:
    study = {
        "jet": {
            "nominal": {
                "mu0": {"auc": 0.95, "sigma": 0.003},
                "mu60": {"auc": 0.90, "sigma": 0.004},
            },
            "mixed": {"mu0": {"auc": 0.94, "sigma": 0.003}, "mu60": {"auc": 0.935, "sigma": None}},
        }
    }
    md = "\n".join(pileup_markdown(study))
    assert "| nominal | 0.9500 ± 0.0030 | 0.9000 ± 0.0040 | +0.0500 |" in md
    assert "| mixed | 0.9400 ± 0.0030 | 0.9350 | +0.0050 |" in md
    verdict = pileup_verdict(study)["pileup_drop_jet"]
    assert verdict["met"] and verdict["value"] == pytest.approx(0.005)
    # levels given out of order: the table's drop and the verdict both take the highest mu
    late = {"mu0": {"auc": 0.95, "sigma": None}, "mu60": {"auc": 0.93, "sigma": None}}
    late["mu20"] = {"auc": 0.94, "sigma": None}
    md_late = "\n".join(pileup_markdown({"event": {"mixed": late}}))
    assert "| mixed | 0.9500 | 0.9300 | 0.9400 | +0.0200 |" in md_late
    assert pileup_verdict({"event": {"mixed": late}})["pileup_drop_event"]["value"] == (
        pytest.approx(0.02)
    )
    study["jet"]["mixed"]["mu60"]["auc"] = 0.92  # a drop of 0.02 misses the target
    assert not pileup_verdict(study)["pileup_drop_jet"]["met"]
    study["jet"]["mixed"]["mu60"]["auc"] = None  # not measured: missed, with no value
    unmeasured = pileup_verdict(study)["pileup_drop_jet"]
    assert unmeasured["value"] is None and not unmeasured["met"]
    assert "| mixed | 0.9400 ± 0.0030 | n/a | n/a |" in "\n".join(pileup_markdown(study))


def test_jet_table_verdict_checks_each_target_against_the_pooled_aucs() -> None:
    def row(auc: float) -> dict[str, dict[str, float]]:
        return {"all": {"auc": auc}}

    aucs = {
        "parametric": 0.99,
        "interaction_net": 0.98,
        "particlenet": 0.995,
        "resnet15_image": 0.93,
    }
    table = {"models": list(aucs), "nominal": {m: row(a) for m, a in aucs.items()}}
    peaks = {"parametric": {"points": [[50.0], [100.0]], "index": [], "peak_fraction": 0.5}}
    v = jets_verdict({"xbb_table": table, "xbb_awareness": peaks})
    assert v["xbb_best_graph_auc"]["value"] == 0.995 and v["xbb_best_graph_auc"]["met"]
    assert v["xbb_in_vs_particlenet"]["value"] == pytest.approx(-0.015)
    assert not v["xbb_in_vs_particlenet"]["met"]  # more than 0.01 below ParticleNet
    bar = 0.5 + 0.9 * (0.995 - 0.5)  # the image model is held to the best graph model
    assert v["xbb_resnet15_image"]["target"] == pytest.approx(bar)
    assert v["xbb_resnet15_image"]["margin"] == pytest.approx(0.93 - bar)
    assert not v["xbb_resnet15_image"]["met"] and not v["xbb_peaks"]["met"]
    table["nominal"]["interaction_net"] = row(0.9875)
    assert jets_verdict({"xbb_table": table})["xbb_in_vs_particlenet"]["met"]
    assert jets_verdict({"xbb_table": None}) == {}


def test_target_entry_is_met_at_a_margin_of_zero_and_never_unmeasured() -> None:
    """A target met exactly counts as met; one not measured (None) is a miss, not a crash."""
    from paratag.validation_targets import target_entry

    met = target_entry(0.99, 0.99, "≥ 0.99", 0.0, min_ratio=0.99)
    assert met["met"] and met["min_ratio"] == 0.99 and met["required"] == "≥ 0.99"
    assert not target_entry(0.98, 0.99, "≥ 0.99", -0.01)["met"]
    assert not target_entry(0.01, 0.01, "< 0.01", 0.0, strict=True)["met"]  # "<" at equality
    unmeasured = target_entry(None, 10.0, "1/JSD ≥ 10", None)
    assert unmeasured["met"] is False and unmeasured["value"] is None


def test_vs_inclusive_verdict_counts_each_column_below_the_inclusive_or_short_of_the_gap() -> None:
    from paratag.validation_summary import _inclusive_verdict

    def aucs(all_: float, tt: float, sigma: float = 0.001) -> dict[str, float]:
        return {"all": all_, "TTbar": tt, "σ all": sigma, "σ TTbar": sigma}

    ma = {
        "processes": ["TTbar"],
        "per_point": {
            # below the inclusive model in "all"; closes 0.0185 / 0.020 = 92% of the tt̄ gap
            "p1": {
                "parametric": aucs(0.9950, 0.8985),
                "dedicated": aucs(0.9950, 0.9000),
                "inclusive": aucs(0.9960, 0.8800),
            },
            # above in both; closes 50% of a tt̄ gap of 0.02 (> 3σ = 0.0042): a miss
            "p2": {
                "parametric": aucs(0.9970, 0.8900),
                "dedicated": aucs(0.9960, 0.9000),
                "inclusive": aucs(0.9960, 0.8800),
            },
            # a gap within 3σ (0.004 < 0.0042) asks nothing more than ≥ inclusive
            "p3": {
                "parametric": aucs(0.9960, 0.8800),
                "dedicated": aucs(0.9960, 0.8840),
                "inclusive": aucs(0.9960, 0.8800),
            },
        },
    }
    v = _inclusive_verdict(ma)["vs_inclusive"]
    assert v["value"] == 2 and not v["met"] and v["margin"] == -2
    assert v["misses"] == [
        "p1 all: 0.9950 < inclusive 0.9960",
        "p2 TTbar: closes 50% of dedicated − inclusive",
    ]
    without = {"processes": [], "per_point": {"p": {"parametric": aucs(0.9, 0.9)}}}
    assert _inclusive_verdict(without) == {}  # no inclusive model evaluated: not a target
