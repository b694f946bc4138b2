"""``paratag evaluate``: a tiny real training run on synthetic shards, scored into the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from paratag.training import load_model
from paratag.training.dedicated import dedicated_trainer
from paratag.training.run import TrainConfig, train
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from paratag.cli import app
from paratag.conditions import fold_roles, match_points
from paratag.config import from_dict
from paratag.data.dataset import ShardStore
from paratag.data.synthetic import make_synthetic_shards
from paratag.errors import ConfigError, InputFileError
from paratag.evaluate.run import evaluate_run, parse_pileup

TRAIN = [(100.0, 30.0), (130.0, 50.0), (160.0, 70.0)]
INTERP, EXTRAP = (115.0, 40.0), (190.0, 60.0)
MODEL = {
    "name": "parametric_particlenet",
    "n_classes": 2,
    "options": {
        "conv_params": [[4, [8, 8]]],
        "fc_params": [[16, 0.0]],
        "use_fusion": False,
        "encoder_dims": [8],
        "embed_dim": 8,
        "attention_heads": 2,
    },
}


def _config(shards: Path, run_dir: Path, seed: int, stage1: bool = True) -> TrainConfig:
    grid = {
        "preset": None,
        "names": ["mHc", "mA"],
        "train": [list(p) for p in TRAIN],
        "validation": [],
        "interpolation": [list(INTERP)],
        "extrapolation": [list(EXTRAP)],
    }
    return from_dict(
        TrainConfig,
        {
            "data": {"shards": str(shards), "n_folds": 5, "fold": 0},
            "grid": grid,
            "model": MODEL,
            "stage1": {"epochs": 2, "batch_size": 128, "lr": 0.003, "enabled": stage1},
            "stage2": {"enabled": stage1},
            "stage3": {
                "epochs": 2,
                "batch_size": 128,
                "lr": 0.003,
                "curriculum": [{"epochs": 2, "masses": "all"}],
            },
            "run_dir": str(run_dir),
            "seed": seed,
            "device": "cpu",
            "progress": False,
            "tensorboard": False,
        },
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic shards, a three-stage run, a second-seed run (stage 3 only) and a separate sample."""
    tmp = tmp_path_factory.mktemp("evaluate_run")
    torch.manual_seed(0)
    shards = tmp / "shards"
    make_synthetic_shards(shards, [*TRAIN, INTERP, EXTRAP], n_signal=150, n_background=300, seed=1)
    other = tmp / "other"
    make_synthetic_shards(other, [*TRAIN, INTERP], n_signal=60, n_background=120, seed=2)
    train(_config(shards, tmp / "run", seed=0))
    train(_config(shards, tmp / "run_seed1", seed=1, stage1=False))
    return {
        "shards": shards,
        "other": other,
        "run": tmp / "run",
        "run2": tmp / "run_seed1",
        "tmp": tmp,
    }


def test_evaluate_run_report_has_real_numbers(trained: dict[str, Path]) -> None:
    out = trained["tmp"] / "eval_api"
    md = evaluate_run(
        trained["run"],
        trained["shards"],
        out,
        n_boot=10,
        seeds_runs=[trained["run2"]],
        pileup_shards={"PU-other": trained["other"]},
        dedicated_trainer=dedicated_trainer(trained["run"]),
        progress=False,
    )
    assert md == out / "report.md" and (out / "report.html").is_file()
    res = json.loads((out / "results.json").read_text())
    info = json.loads((out / "evaluation.json").read_text())
    assert info["selection"] == "test fold (event % 5 == 0)"
    assert info["events"]["mHc100_mA30"] == 30 and info["events"]["background"] == 120
    # the wall time of every study that ran, within the whole evaluation's
    steps = info["timings_s"]
    assert {"per-point AUCs", "hypothesis study", "seeds", "pileup", "metrics"} <= set(steps)
    assert "interpretability" not in steps  # not asked for
    assert all(t >= 0 for t in steps.values()) and sum(steps.values()) <= info["time_s"]

    rows = {tuple(r["point"]): r for r in res["comparison"]["rows"]}
    for p in TRAIN:  # parametric and dedicated (stage-1) AUC at every training point
        assert rows[p]["split"] == "train"
        assert rows[p]["auc_parametric"] > 0.5
        assert 0.0 < rows[p]["auc_dedicated"] <= 1.0
        assert rows[p]["ratio"] == pytest.approx(
            rows[p]["auc_parametric"] / rows[p]["auc_dedicated"]
        )
    # on-demand dedicated models at the untrained points, with their splits
    assert rows[INTERP]["split"] == "interp" and rows[EXTRAP]["split"] == "extrap"
    assert (
        "mHc115_mA40" in info["dedicated_models"]
        and "dedicated" in info["dedicated_models"]["mHc115_mA40"]
    )

    text = md.read_text()
    assert (
        "| mHc=100,mA=30 | train |" in text
        and "| point | split | AUC param. | AUC dedicated | ratio |" in text
    )
    assert "| mHc=115,mA=40 | interp |" in text and "| mHc=190,mA=60 | extrap |" in text

    # overall metrics, KS train vs test, sculpting on the mll spectator, curves of both stages
    assert res["metrics"]["nominal"]["auc"] > 0.5
    assert set(res["ks"]) == {"signal", "TTbar+WZ"}
    assert info["mass_spectator"] == "mll" and res["decorrelation"]["model"]["inv_bkg_eff"] > 1
    assert set(res["training"]) == {"stage1", "stage3"}
    wh = res["wrong_hypothesis"]
    assert np.asarray(wh["matrix"]).shape == (5, 5)
    assert sorted(res["seeds"]["seeds"]) == [0, 1] and len(res["seeds"]["per_point"]) == 5
    assert list(res["pileup"]) == ["PU-other"]
    assert res["auc_grid"]["split"] and not any(
        k in res["skipped"] for k in ("metrics", "interp_extrap", "seed_stability", "pileup")
    )

    # independent check of one number: the parametric AUC at (130, 50) on the test fold
    model, ck = load_model(trained["run"] / "stage3" / "model.pt")
    store = ShardStore(trained["shards"])
    t = store.table
    test = fold_roles(t["spec_event"], 5, 0) == 2
    sig = test & (t["label"] == 0) & (match_points(t["condition"], [TRAIN[1]]) == 0)
    rows_ = np.flatnonzero(sig | (test & (t["label"] == 1)))
    x = store.gather(rows_, ["points", "features", "mask"])
    cond = (
        np.asarray(TRAIN[1], np.float32) - np.asarray(ck["condition_mean"], np.float32)
    ) / np.asarray(ck["condition_std"], np.float32)
    with torch.no_grad():
        logits = model(
            *(torch.from_numpy(x[k]) for k in ("points", "features", "mask")),
            torch.from_numpy(np.tile(cond, (len(rows_), 1))),
        )
    score = torch.softmax(logits, 1)[:, 0].numpy()
    expected = roc_auc_score((t["label"][rows_] == 0).astype(int), score)
    assert rows[TRAIN[1]]["auc_parametric"] == pytest.approx(expected, abs=1e-6)


def test_model_comparison_uses_the_same_events(trained: dict[str, Path]) -> None:
    """The table's numbers agree with the per-point comparison computed independently."""
    out = trained["tmp"] / "eval_compare"
    point = "mHc130_mA50"
    compare = {
        "dedicated_130_50": trained["run"] / "stage1" / point / "model.pt",
        "seed1": trained["run2"] / "stage3" / "model.pt",
    }
    evaluate_run(
        trained["run"],
        trained["shards"],
        out,
        n_boot=0,
        compare=compare,
        importance=200,
        progress=False,
    )
    res = json.loads((out / "results.json").read_text())
    imp = res["importance"]  # all 3 x 30 test-fold signal events, 100 of the 120 backgrounds
    assert (
        imp["n_events"] == 90 + 100
        and len(imp["features"]) >= 3
        and list(imp["clouds"]) == ["objects"]
    )
    assert imp["clouds"]["objects"] > 0.05  # the synthetic signal lives in the object cloud
    assert np.asarray(imp["saliency"]["signal"]).shape == (16, 16)
    mc = res["model_comparison"]
    assert mc["models"] == ["parametric", "dedicated_130_50", "seed1"]
    assert mc["rows"][-1] == "all" and mc["n_signal"][point] == 30 and mc["n_background"] == 120
    rows = {tuple(r["point"]): r for r in res["comparison"]["rows"]}
    for p, r in rows.items():
        name = "mHc{:g}_mA{:g}".format(*p)
        assert mc["nominal"]["parametric"][name]["auc"] == pytest.approx(r["auc_parametric"])
    assert mc["nominal"]["dedicated_130_50"][point]["auc"] == pytest.approx(
        rows[TRAIN[1]]["auc_dedicated"]
    )
    assert mc["conditioned"] == {"parametric": True, "dedicated_130_50": True, "seed1": True}
    report = (out / "report.md").read_text()
    assert "## Model comparison (same test events)" in report
    assert "figures/saliency.png" in report and "| objects |" in report
    with pytest.raises(ConfigError, match="'parametric' names the run's own model"):
        evaluate_run(
            trained["run"], trained["shards"], out, compare={"parametric": compare["seed1"]}
        )


def test_cli_evaluate_separate_sample_and_skips(trained: dict[str, Path]) -> None:
    out = trained["tmp"] / "eval_cli"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(trained["run"]),
            "--test",
            str(trained["other"]),
            "--out",
            str(out),
            "--n-boot",
            "0",
            "--no-progress",
            "--compare",
            f"seed1={trained['run2'] / 'stage3' / 'model.pt'}",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'report.md'}" in result.output
    assert "| seed1 | all | 180 |" in (out / "report.md").read_text()  # 3 training points x 60
    text = (out / "report.md").read_text()
    info = json.loads((out / "evaluation.json").read_text())
    assert info["selection"] == "all events (separate test sample)"
    assert info["events"]["mHc100_mA30"] == 60  # every event of the separate sample
    # no dedicated model at the interpolation point and no on-demand training: said in the report
    assert "**not run:** no dedicated model for mHc=115,mA=40" in text
    assert "**not run:** one run given" in text and "**not run:** no pileup shards" in text
    assert "| mHc=130,mA=50 | train |" in text


def test_cli_evaluate_takes_the_sculpting_shapes_from_a_separate_sample(
    trained: dict[str, Path],
) -> None:
    """``--sculpting``: every background event of that sample, cuts from the test signal."""
    out = trained["tmp"] / "eval_sculpting"
    args = ["evaluate", str(trained["run"]), "--test", str(trained["shards"]), "--out", str(out)]
    result = CliRunner().invoke(
        app, [*args, "--n-boot", "0", "--no-progress", "--sculpting", str(trained["other"])]
    )
    assert result.exit_code == 0, result.output
    sculpt = json.loads((out / "results.json").read_text())["sculpting"]["model"]
    from paratag.data import ShardStore

    labels = ShardStore(trained["other"]).table["label"]
    assert sculpt["n_background"] == int((labels != 0).sum())  # all of them, not one fold
    assert 0 < sculpt["n_pass"]["0.9"] <= sculpt["n_background"]
    assert "jets passing" in (out / "report.md").read_text()
    # a sculpting sample with no background jets is a named error, not an empty histogram
    signal_only = trained["tmp"] / "signal_only"
    make_synthetic_shards(signal_only, TRAIN, n_signal=20, backgrounds=(), seed=5)
    with pytest.raises(InputFileError, match="the sculpting sample needs background jets"):
        evaluate_run(trained["run"], trained["shards"], out, n_boot=0, sculpting_shards=signal_only)


def test_skipped_studies_are_left_out_and_said(trained: dict[str, Path]) -> None:
    """``--skip``: those studies are not scored, their sections say so, the rest is unchanged."""
    full, part, hyp = (trained["tmp"] / f"eval_{k}" for k in ("full0", "skip", "skip_hyp"))
    evaluate_run(trained["run"], trained["shards"], full, n_boot=0, progress=False)
    args = ["evaluate", str(trained["run"]), "--test", str(trained["shards"]), "--out", str(part)]
    skip = ["--skip", "points", "--skip", "overtraining"]
    result = CliRunner().invoke(app, [*args, "--n-boot", "0", "--no-progress", *skip])
    assert result.exit_code == 0, result.output
    r_full, r_part = (json.loads((d / "results.json").read_text()) for d in (full, part))
    assert r_part["metrics"]["nominal"]["auc"] == r_full["metrics"]["nominal"]["auc"]
    assert r_part["decorrelation"] == r_full["decorrelation"]
    steps = json.loads((part / "evaluation.json").read_text())["timings_s"]
    assert not {"per-point AUCs", "dedicated models", "hypothesis study"} & set(steps)
    assert r_full["ks"] and r_full["auc_grid"] and r_full["hypotheses"]
    assert not any(r_part.get(k) for k in ("ks", "auc_grid", "wrong_hypothesis", "hypotheses"))
    for key in ("auc_grid", "wrong_hypothesis", "mass_awareness", "parametric_vs_dedicated"):
        assert r_part["skipped"][key] == "left out on request (skip='points')"
    assert r_part["skipped"]["ks"] == "left out on request (skip='overtraining')"
    assert "**not run:** left out on request (skip='points')" in (part / "report.md").read_text()
    # 'hypotheses' alone keeps the per-point AUCs and the wrong-hypothesis matrix
    evaluate_run(trained["run"], trained["shards"], hyp, n_boot=0, skip=["hypotheses"])
    r_hyp = json.loads((hyp / "results.json").read_text())
    assert r_hyp["auc_grid"] == r_full["auc_grid"] and r_hyp["wrong_hypothesis"]
    assert not r_hyp.get("hypotheses") and r_hyp["ks"] == r_full["ks"]
    with pytest.raises(ConfigError, match=r"skip=\['ks'\]: unknown studies"):
        evaluate_run(trained["run"], trained["shards"], part, skip=("ks",))


def test_bad_run_dir_is_a_clear_error(trained: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "config.yaml").write_text((trained["run"] / "config.yaml").read_text())
    with pytest.raises(InputFileError, match="no stage-3 parametric model"):
        evaluate_run(tmp_path / "partial", trained["shards"], tmp_path / "x", progress=False)
    with pytest.raises(InputFileError, match="not a paratag run directory"):
        evaluate_run(tmp_path, trained["shards"], progress=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "paratag.cli",
            "evaluate",
            str(tmp_path / "missing"),
            "--test",
            str(trained["shards"]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "run directory does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_parse_pileup() -> None:
    assert parse_pileup(["PU0=a", "PU60=b/c"]) == {"PU0": Path("a"), "PU60": Path("b/c")}
    with pytest.raises(ConfigError, match="LEVEL=SHARD_DIR"):
        parse_pileup(["PU0"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_pileup(["PU0=a", "PU0=b"])


def test_scorer_batches_fit_the_memory_budget() -> None:
    """Long graphs get fewer rows per batch; every row is scored exactly once, in order."""
    from paratag.conditions import ConditionSpace
    from paratag.evaluate.inference import Scorer
    from paratag.evaluate.runs import LoadedModel
    from paratag.models.footprint import estimate_graph_bytes
    from paratag.models.interaction_net import InteractionNet

    net = InteractionNet(2, 5, sv_dims=3)
    model = LoadedModel(net, {}, ConditionSpace(), use_sv=True)
    lengths = np.r_[np.full(300, 10), np.full(300, 100)]
    shapes = {"sv_mask": [1, 7]}
    per_long = estimate_graph_bytes(net, [100, 7])
    budget_mb = 40 * per_long / 2**20  # 40 long graphs
    scorer = Scorer(0, None, 256, torch.device("cpu"), False, memory_mb=budget_mb)
    batches = scorer._batches(model, lengths, shapes)
    assert [lo for lo, _ in batches][0] == 0 and batches[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(batches, batches[1:], strict=False))
    sizes = {lo: hi - lo for lo, hi in batches}
    assert sizes[0] == 256  # short graphs: the row limit
    assert max(hi - lo for lo, hi in batches if lo >= 300) == 40  # long ones: the memory limit
    roomy = Scorer(0, None, 256, torch.device("cpu"), False, memory_mb=1e6)
    assert len(roomy._batches(model, lengths, shapes)) == 3


def test_importance_without_background_is_not_run(trained: dict[str, Path]) -> None:
    """A test sample with no background: importance says so instead of failing."""
    from paratag.evaluate.inference import importance_of
    from paratag.evaluate.runs import EvalSample, load_run

    run = load_run(trained["run"], torch.device("cpu"))
    test = EvalSample(Path(trained["shards"]), run, "auto", None)
    assert importance_of(run, test, 50, 0) is not None
    test.background = test.background[:0]
    assert importance_of(run, test, 50, 0) is None


def test_seed_aucs_score_each_signal_at_its_own_hypothesis_only(trained: dict[str, Path]) -> None:
    """The seed runs' per-point AUCs equal the full matrix's diagonal."""
    from paratag.evaluate.inference import Scorer, diagonal_aucs, per_point
    from paratag.evaluate.runs import EvalSample, load_run

    run = load_run(trained["run2"], torch.device("cpu"))
    test = EvalSample(Path(trained["shards"]), run, "auto", None)
    hyps = [p for p in run.grid.points() if p in test.points]
    scorer = Scorer(run.cfg.data.signal_label, None, 64, torch.device("cpu"), False)
    full = per_point(scorer, run.model, test, hyps, "full")[0]
    diag = diagonal_aucs(scorer, run.model, test, hyps, "diagonal")
    assert len(hyps) >= 3 and list(diag) == hyps
    assert all(0.5 < diag[p] <= 1.0 for p in hyps)
    np.testing.assert_allclose([diag[p] for p in hyps], [full[p] for p in hyps], atol=1e-6)
