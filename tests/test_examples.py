"""The examples/ scripts run end to end at tiny size (subprocesses, as a user runs them).

One module-scoped chain — generate, build, train, export through the ``paratag`` CLI,
as in examples/charged_higgs/README.md — makes the files and the model every
charged-Higgs / Dask / CMSSW example reuses; the X -> bb example generates its own.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HYPOTHESES = "mHc=130,mA=90;mHc=160,mA=90"

GENERATE_YAML = """\
chunk_size: 150
processes:
  - {name: HplusToWA, kind: charged_higgs, group: signal, leptonic: true,
     mass_points: [{mHc: 130, mA: 90}]}
  - {name: WZ, kind: wz, group: diboson, leptonic: true}
"""

TRAIN_YAML = """\
data: {{shards: "{shards}", n_folds: 5, fold: 0}}
grid: {{preset: null, names: [mHc, mA], train: [[130, 90]], validation: [],
        interpolation: [], extrapolation: []}}
model:
  name: parametric_particlenet
  n_classes: 4
  options: {{conv_params: [[4, [8, 8]]], fc_params: [[8, 0.0]], use_fusion: false,
             encoder_dims: [8], embed_dim: 8, attention_heads: 2}}
loss: {{kind: physics_informed}}
stage1: {{epochs: 1, batch_size: 128}}
stage2: {{averaging: uniform}}
stage3: {{epochs: 1, batch_size: 128, curriculum: [{{epochs: 1, masses: all}}]}}
run_dir: "{run_dir}"
progress: false
tensorboard: false
threads: 1
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, CI="true", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    env.pop("PYTHONWARNINGS", None)
    return env


def run(args: list[str], cwd: Path, timeout: float = 300) -> str:
    """Run ``python ARGS`` and return its stdout; fail with the output on error."""
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc.stdout


def cli(*args: str, cwd: Path) -> str:
    """Run the ``paratag`` command line."""
    return run(["-c", "from paratag.cli import main; main()", *args], cwd)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny charged-Higgs chain through the CLI: generated files, shards, run, export."""
    work = tmp_path_factory.mktemp("charged_higgs")
    (work / "generate.yaml").write_text(GENERATE_YAML)
    cli("generate", "generate.yaml", "--out", "gen", "--events", "150", "--workers", "2",
        "--no-progress", cwd=work)  # fmt: skip
    (work / "build.yaml").write_text("preset: event\ncondition: [mHc, mA]\n")
    cli("build", "gen/fileset.json", "--config", "build.yaml", "--out", "shards", cwd=work)
    (work / "train.yaml").write_text(
        TRAIN_YAML.format(shards=work / "shards", run_dir=work / "run")
    )
    cli("train", "train.yaml", cwd=work)
    cli("export", "run", "--out", "export", "--check", cwd=work)
    return {
        "work": work,
        "fileset": work / "gen" / "fileset.json",
        "model": work / "export" / "model.onnx",
    }


def _png_ok(path: Path) -> None:
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert float(np.std(img)) > 0.01  # not a blank canvas


def test_charged_higgs_analysis(chain: dict[str, Path]) -> None:
    out = chain["work"] / "analysis_out"
    stdout = run(
        [str(EXAMPLES / "charged_higgs" / "run.py"), "--fileset", str(chain["fileset"]),
         "--model", str(chain["model"]), "--hypotheses", HYPOTHESES,
         "--executor", "iterative", "--score-cut", "0.1", "--out", str(out)],
        cwd=chain["work"],
    )  # fmt: skip
    assert "wrote" in stdout
    result: dict[str, Any] = pickle.loads((out / "hists.pkl").read_bytes())
    h = result["hist"]
    assert set(h.axes["hypothesis"]) == {"mHc130_mA90", "mHc160_mA90"}
    assert set(h.axes["dataset"]) == {"HplusToWA_mHc130_mA90", "WZ"}
    flow = result["cutflow"]["HplusToWA_mHc130_mA90"]
    assert flow["all"] == 150 and 0 < flow["OS muon pair"] <= flow["three tight leptons"] <= 150
    for hyp in h.axes["hypothesis"]:
        sub = h[{"dataset": "HplusToWA_mHc130_mA90", "hypothesis": hyp}]
        assert sub.sum().value == pytest.approx(flow["OS muon pair"])  # every event has a score
        flow_bins = sub.project("score").values(flow=True)
        assert flow_bins[0] == 0 and flow_bins[-1] == 0  # every score lies in [0, 1)
    # the signal mA = 90 GeV peak: the most populated m(mumu) bin of the signal is near 90
    mass = h[{"dataset": "HplusToWA_mHc130_mA90", "hypothesis": "mHc130_mA90"}].project("mumu_mass")
    assert abs(mass.axes[0].centers[int(np.argmax(mass.values()))] - 90) < 12
    import uproot

    with uproot.open(out / "hists.root") as f:
        th2 = f["WZ/mHc130_mA90"]
        assert th2.values().sum() > 0
    for hyp in ("mHc130_mA90", "mHc160_mA90"):
        _png_ok(out / f"mumu_mass_{hyp}.png")


def test_dask_scoring(chain: dict[str, Path]) -> None:
    out = chain["work"] / "dask_out"
    stdout = run(
        [str(EXAMPLES / "dask_scoring.py"), "--fileset", str(chain["fileset"]),
         "--model", str(chain["model"]), "--hypotheses", HYPOTHESES, "--workers", "2",
         "--out", str(out)],
        cwd=chain["work"],
    )  # fmt: skip
    assert re.search(r"scheduler tcp://127\.0\.0\.1:\d+, 2 workers", stdout)
    import pyarrow.parquet as pq

    table = pq.read_table(out / "scores.parquet").to_pydict()
    assert sorted(set(table["dataset"])) == ["HplusToWA_mHc130_mA90", "WZ"]
    assert len(table["event"]) == 300
    for name in ("score_mHc130_mA90", "score_mHc160_mA90"):
        s = np.asarray(table[name], dtype=float)
        assert np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()
    hists = pickle.loads((out / "hists.pkl").read_bytes())["hist"]
    assert hists.sum().value == pytest.approx(2 * 300)  # two hypotheses x every event


def test_cmssw_bake_condition_matches_tagger(chain: dict[str, Path]) -> None:
    import onnxruntime as ort
    from paratag.processors import Tagger

    from paratag.preprocess import load_preprocess

    out = chain["work"] / "cmssw_mHc130_mA90"
    run(
        [str(EXAMPLES / "cmssw_bake_condition.py"), "--model", str(chain["model"]),
         "--hypothesis", "mHc=130,mA=90", "--out", str(out)],
        cwd=chain["work"],
    )  # fmt: skip
    doc = json.loads((out / "preprocess.json").read_text())
    assert doc["input_names"] == ["points", "features", "mask"]
    assert "paratag" not in doc and "condition" not in doc
    assert {"min_length", "max_length", "var_names", "var_infos"} <= set(doc["features"])
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["points", "features", "mask"]
    pp = load_preprocess(chain["model"].parent / "preprocess.json")
    rng = np.random.default_rng(0)
    p = pp.inputs["features"].max_length
    feed = {
        "points": rng.normal(size=(7, len(pp.inputs["points"].var_names), p)).astype(np.float32),
        "features": rng.normal(size=(7, len(pp.inputs["features"].var_names), p)).astype(
            np.float32
        ),
        "mask": np.ones((7, 1, p), np.float32),
    }
    baked = session.run(["softmax"], feed)[0][:, 0]
    tagger = Tagger(chain["model"], [{"mHc": 130, "mA": 90}, {"mHc": 160, "mA": 90}])
    scores = tagger.score_arrays(feed)
    np.testing.assert_allclose(baked, scores[:, 0], atol=1e-6)
    assert not np.allclose(scores[:, 0], scores[:, 1], atol=1e-7)  # the condition matters


def test_cmssw_doc_matches_a_real_export(chain: dict[str, Path]) -> None:
    """Every preprocess.json field the doc names exists in a real export; its code parses."""
    import ast

    text = (EXAMPLES / "cmssw_export.md").read_text()
    doc = json.loads((chain["model"].parent / "preprocess.json").read_text())
    for key in ("input_names", "output_names"):
        assert f"`{key}`" in text and key in doc
    info_keys = set(next(iter(doc["features"]["var_infos"].values())))
    for key in ("median", "norm_factor", "lower_bound", "upper_bound", "replace_inf_value", "pad"):
        assert key in text and key in info_keys
    assert "var_length" in text and "var_length" in doc["features"]
    assert doc["condition"]["var_names"] == ["mHc", "mA"] and '"condition"' in text
    for name in ("preprocess_json", "model_path", "flav_names", "BoostedJetONNXJetTagsProducer",
                 "ParticleNetSonicJetTagsProducer"):  # fmt: skip
        assert name in text
    # the variable names of the `jet` preset quoted in the mapping table are real
    from paratag.preprocess import preprocess_for
    from paratag.presets import load_preset

    jet = preprocess_for(load_preset("jet"), ["points", "features", "mask"])
    jet_vars = {v for b in jet.inputs.values() for v in b.var_names}
    quoted = {"pfcand_logptrel", "pfcand_e_log", "pfcand_d0", "pfcand_d0sig", "pf_mask"}
    assert quoted <= jet_vars and all(f"`{v}`" in text for v in quoted)
    # export.py really has no option to bake the condition in (the doc says so)
    import inspect

    from paratag.export import export_model, export_run

    params = {
        *inspect.signature(export_model).parameters,
        *inspect.signature(export_run).parameters,
    }
    assert not any("bake" in p or "fixed" in p for p in params)
    assert "no option" in text
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        ast.parse(block)


def test_xbb_jets(tmp_path: Path) -> None:
    out = tmp_path / "xbb"
    stdout = run(
        [str(EXAMPLES / "xbb_jets" / "run.py"), "--out", str(out), "--events", "150",
         "--masses", "100", "--epochs", "1", "--max-particles", "24", "--workers", "2"],
        cwd=tmp_path,
    )  # fmt: skip
    assert "with DisCo" in stdout and "without DisCo" in stdout
    summary = json.loads((out / "sculpting.json").read_text())
    assert summary["hypothesis_mX"] == 100
    assert set(summary["models"]) == {"with DisCo", "without DisCo"}
    for res in summary["models"].values():
        before = np.asarray(res["before"])
        assert before.sum() > 10  # QCD jets of the held-out fold
        assert set(res["jsd"]) == {"0.8", "0.5", "0.3"}
        for eff, jsd in res["jsd"].items():  # no JSD (null) only where no QCD jet survives
            assert (0 <= jsd <= 1) if res["bkg_eff"][eff] > 0 else jsd is None
        assert all(0 <= v <= 1 for v in res["bkg_eff"].values())
        assert res["bkg_eff"]["0.8"] > 0
    cfg = (out / "run_disco" / "config.yaml").read_text()
    assert "interaction_net" in cfg and "jet_sdmass" in cfg
    assert re.search(r"disco_lambda: 0(\.0)?\n", (out / "run_nodisco" / "config.yaml").read_text())
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    assert manifest["shapes"]["sv_features"][1] == 7 and manifest["shapes"]["mask"] == [1, 24]
    _png_ok(out / "sculpting.png")
