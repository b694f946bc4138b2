"""ONNX export, preprocess.json (paratag and CMSSW flavours) and the parity check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import onnx
import pytest
import torch
import uproot

from conftest import TINY_PN
from paratag.config import ModelConfig
from paratag.errors import ConfigError, InputFileError, ModelMismatchError, SchemaError
from paratag.export import export_model
from paratag.inputs import build_inputs
from paratag.model_check import check_model
from paratag.models import build_model
from paratag.preprocess import load_preprocess, preset_from_preprocess
from paratag.presets import load_preset

TINY_IN = {"relational_hidden": [8], "edge_dim": 4, "object_hidden": [8], "object_dim": 4}


def tiny_parametric():
    cfg = ModelConfig(
        name="parametric_particlenet",
        condition_names=("mHc", "mA"),
        condition_mean=(130.0, 90.0),
        condition_std=(20.0, 10.0),
        options=TINY_PN,
    )
    return build_model(cfg, point_dims=2, feature_dims=15)


def _events(path: Path):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    return NanoEventsFactory.from_root(
        {str(path): "Events"},
        schemaclass=NanoAODSchema,
        mode="virtual",
        metadata={"filename": str(path)},
    ).events()


@pytest.fixture(scope="module")
def pf_events(pfnano_path):
    return _events(pfnano_path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, pf_events):
    model = tiny_parametric()
    out = tmp_path_factory.mktemp("export_pn")
    res = export_model(
        model, "jet", out, class_names=["signal", "background"], check_events=pf_events
    )
    return model, res


def test_onnx_signature_and_parity(exported):
    model, res = exported
    m = onnx.load(str(res.onnx_path))
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    names = [i.name for i in m.graph.input]
    assert names == ["points", "features", "mask", "condition"]
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in m.graph.input
    }
    assert dims["features"] == ["N", 15, "P_pf"] and dims["condition"] == ["N", 2]
    assert [o.name for o in m.graph.output] == ["softmax"]
    # three batch sizes x two particle counts on real PFNano jets
    parity = res.parity
    assert parity is not None and parity.ok
    assert {c[0] for c in parity.cases} == {1, 5, 24} and {c[1] for c in parity.cases} == {100, 50}
    assert parity.max_abs_diff < 1e-4
    assert model.training  # built in train mode; export restores the caller's mode


def test_preprocess_fields(exported):
    _, res = exported
    data = json.loads(res.preprocess_path.read_text())
    assert data["input_names"] == ["points", "features", "mask", "condition"]
    # CMSSW/weaver convention: output_names are the class labels; the tensor is in the paratag block
    assert data["output_names"] == ["signal", "background"]
    assert data["paratag"]["onnx_output"] == "softmax"
    feats = data["features"]
    assert feats["var_length"] == 100 and len(feats["var_names"]) == 15
    info = feats["var_infos"]["pfcand_pt_log"]
    assert info == {
        "median": 1.0,
        "norm_factor": 0.5,
        "replace_inf_value": 0.0,
        "lower_bound": -5.0,
        "upper_bound": 5.0,
        "pad": 0.0,
    }
    cond = data["condition"]["var_infos"]["mHc"]
    assert cond["median"] == 130.0 and cond["norm_factor"] == pytest.approx(1 / 20.0)
    block = data["paratag"]
    assert block["condition_names"] == ["mHc", "mA"] and block["class_names"] == [
        "signal",
        "background",
    ]
    assert block["preset_name"] == "jet" and block["version"] and block["format_version"] == 1
    pp = load_preprocess(res.preprocess_path)
    assert pp.preset().to_dict() == load_preset("jet").to_dict()


def test_interaction_net_export_has_sv_inputs(tmp_path, pf_events):
    cfg = ModelConfig(name="interaction_net", condition_names=("mHc", "mA"), options=TINY_IN)
    model = build_model(cfg, point_dims=2, feature_dims=15, sv_dims=10)
    res = export_model(model, "jet", tmp_path, check_events=pf_events)
    pp = load_preprocess(res.preprocess_path)
    assert pp.input_names == ("points", "features", "mask", "condition", "sv_features", "sv_mask")
    assert (
        pp.inputs["sv_features"].max_length == 7 and len(pp.inputs["sv_features"].var_names) == 10
    )
    assert res.parity is not None and res.parity.max_abs_diff < 1e-4


def test_wrong_preset_dims_rejected(tmp_path):
    model = tiny_parametric()
    with pytest.raises(ModelMismatchError, match="feature_dims=15"):
        export_model(model, "event", tmp_path)


def _cmssw_features(path: Path, spec_infos: dict, var_names: list[str], length: int) -> np.ndarray:
    """PF-candidate features of every AK8 jet, computed and preprocessed the CMSSW way."""
    with uproot.open(path) as f:
        t = f["Events"]
        b = t.arrays(
            [
                "FatJet_pt",
                "FatJet_eta",
                "FatJet_phi",
                "FatJetPFCands_jetIdx",
                "FatJetPFCands_pFCandsIdx",
                "PFCands_pt",
                "PFCands_eta",
                "PFCands_phi",
                "PFCands_charge",
                "PFCands_pdgId",
                "PFCands_d0",
                "PFCands_d0Err",
                "PFCands_dz",
                "PFCands_dzErr",
                "PFCands_puppiWeight",
            ],
            library="np",
        )
    jets = []
    for ev in range(len(b["FatJet_pt"])):
        for j in range(len(b["FatJet_pt"][ev])):
            jpt, jeta, jphi = (b[f"FatJet_{k}"][ev][j] for k in ("pt", "eta", "phi"))
            idx = [
                int(c)
                for i, c in zip(
                    b["FatJetPFCands_jetIdx"][ev], b["FatJetPFCands_pFCandsIdx"][ev], strict=False
                )
                if i == j and c >= 0
            ]
            cands = []
            for c in idx:

                def g(name, c=c, ev=ev):
                    return float(b[f"PFCands_{name}"][ev][c])

                pt, eta, phi = g("pt"), g("eta"), g("phi")
                dphi = (phi - jphi + np.pi) % (2 * np.pi) - np.pi
                pdg = abs(g("pdgId"))
                with np.errstate(divide="ignore", invalid="ignore"):
                    raw = {
                        "pfcand_pt_log": np.log(pt),
                        "pfcand_e_log": np.log(pt * np.cosh(eta)),
                        "pfcand_logptrel": np.log(pt / jpt),
                        "pfcand_deltaR": np.hypot(eta - jeta, dphi),
                        "pfcand_charge": g("charge"),
                        "pfcand_isChargedHad": float(pdg == 211),
                        "pfcand_isNeutralHad": float(pdg == 130),
                        "pfcand_isGamma": float(pdg == 22),
                        "pfcand_isEl": float(pdg == 11),
                        "pfcand_isMu": float(pdg == 13),
                        "pfcand_d0": np.tanh(g("d0")),
                        "pfcand_dz": np.tanh(g("dz")),
                        "pfcand_d0sig": np.float64(g("d0")) / np.float64(g("d0Err")),
                        "pfcand_dzsig": np.float64(g("dz")) / np.float64(g("dzErr")),
                        "pfcand_puppiw": g("puppiWeight"),
                    }
                cands.append((pt, raw))
            cands.sort(key=lambda c: -c[0])
            out = np.zeros((len(var_names), length), dtype=np.float32)
            for v, name in enumerate(var_names):
                info = spec_infos[name]
                for i in range(length):  # CMSSW center_norm_pad
                    if i < len(cands):
                        x = cands[i][1][name]
                        x = info["replace_inf_value"] if not np.isfinite(x) else x
                        x = (x - info["median"]) * info["norm_factor"]
                        out[v, i] = min(max(x, info["lower_bound"]), info["upper_bound"])
                    else:
                        out[v, i] = info["pad"]
            jets.append(out)
    return np.stack(jets)


def test_cmssw_reapplication_matches_paratag(exported, pfnano_path, pf_events):
    _, res = exported
    data = json.loads(res.preprocess_path.read_text())
    block = data["features"]
    expected = _cmssw_features(
        pfnano_path, block["var_infos"], block["var_names"], block["var_length"]
    )
    pp = load_preprocess(res.preprocess_path)
    inputs = build_inputs(pf_events, pp.preset(), "")
    got = inputs.clouds["pf"].features
    assert got.shape == expected.shape == (24, 15, 100)
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=1e-5)


CMSSW_PP = {
    "output_names": ["softmax"],
    "input_names": ["pf_points", "pf_features", "pf_mask", "sv_points", "sv_features", "sv_mask"],
    "pf_points": {
        "var_names": ["pfcand_etarel", "pfcand_phirel"],
        "min_length": 10,
        "max_length": 50,
        "var_infos": {
            "pfcand_etarel": {
                "median": 0,
                "norm_factor": 1,
                "replace_inf_value": 0,
                "lower_bound": -1e32,
                "upper_bound": 1e32,
            }
        },
    },
    "pf_features": {
        "var_names": ["pfcand_pt_log", "pfcand_deltaR", "pfcand_charge"],
        "min_length": 10,
        "max_length": 50,
        "var_infos": {
            "pfcand_pt_log": {
                "median": 2.0,
                "norm_factor": 0.25,
                "replace_inf_value": 0,
                "lower_bound": -5,
                "upper_bound": 5,
                "pad": 0,
            }
        },
    },
    "pf_mask": {"var_names": ["pfcand_mask"], "min_length": 10, "max_length": 50},
    "sv_points": {"var_names": ["sv_deltaR", "sv_ptrel"], "min_length": 1, "max_length": 5},
    "sv_features": {"var_names": ["sv_mass", "sv_ntracks"], "min_length": 1, "max_length": 5},
    "sv_mask": {"var_names": ["sv_mask"], "min_length": 1, "max_length": 5},
}


def test_loader_reads_cmssw_variant_and_rebuilds_inputs(tmp_path, pf_events):
    path = tmp_path / "preprocess.json"
    path.write_text(json.dumps(CMSSW_PP))
    pp = load_preprocess(path)
    assert not pp.is_paratag and pp.inputs["pf_features"].min_length == 10
    assert pp.inputs["pf_features"].max_length == 50
    preset = preset_from_preprocess(pp, "jet")
    inputs = build_inputs(pf_events, preset, "")
    pf, sv = inputs.clouds["pf"], inputs.clouds["sv"]
    assert pf.features.shape == (24, 3, 50) and sv.features.shape == (24, 2, 5)
    # the CMSSW file's own preprocessing is applied: (log(pt) - 2) * 0.25, clipped
    ref = build_inputs(pf_events, "jet", "").clouds["pf"].features[:, 0, :50]
    raw = ref / 0.5 + 1.0  # undo paratag's pfcand_pt_log preprocessing
    m = pf.mask[:, 0] > 0
    np.testing.assert_allclose(
        pf.features[:, 0][m], np.clip((raw[m] - 2.0) * 0.25, -5, 5), atol=1e-5
    )


def test_loader_unknown_variable_named(tmp_path):
    bad = json.loads(json.dumps(CMSSW_PP))
    bad["pf_features"]["var_names"].append("pfcand_btagEtaRel")
    path = tmp_path / "preprocess.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(SchemaError, match="pfcand_btagEtaRel"):
        preset_from_preprocess(load_preprocess(path), "jet")


def test_loader_structure_errors(tmp_path):
    path = tmp_path / "preprocess.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_preprocess(path)
    path.write_text(
        json.dumps(
            {"input_names": ["points"], "output_names": ["softmax"], "points": {"var_names": ["a"]}}
        )
    )
    with pytest.raises(ConfigError, match="var_length"):
        load_preprocess(path)
    with pytest.raises(InputFileError, match="does not exist"):
        load_preprocess(tmp_path / "missing.json")


def test_mismatch_edited_or_swapped_preprocess(exported, tmp_path):
    _, res = exported
    data = json.loads(res.preprocess_path.read_text())
    data["features"]["var_infos"]["pfcand_pt_log"]["median"] = 2.0
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    with pytest.raises(ModelMismatchError, match="edited after export"):
        load_preprocess(edited)
    # a preprocess file of another model (different inputs) does not fit this model
    other = tmp_path / "cmssw.json"
    other.write_text(json.dumps(CMSSW_PP))
    with pytest.raises(ModelMismatchError, match="input_names"):
        check_model(load_preprocess(other), res.onnx_path)
    # same inputs, different preprocessing: the fingerprint in the ONNX metadata differs
    del data["paratag"]["fingerprint"]
    data["paratag"]["class_names"] = ["a", "b"]
    relabeled = tmp_path / "relabeled.json"
    relabeled.write_text(json.dumps(data))
    with pytest.raises(ModelMismatchError, match="different preprocess.json"):
        check_model(load_preprocess(relabeled), res.onnx_path)
    data["paratag"]["format_version"] = 99
    relabeled.write_text(json.dumps(data))
    with pytest.raises(ModelMismatchError, match="format_version 99"):
        load_preprocess(relabeled)


def test_missing_or_corrupt_model(exported, tmp_path):
    _, res = exported
    pp = load_preprocess(res.preprocess_path)
    with pytest.raises(InputFileError, match="does not exist"):
        check_model(pp, tmp_path / "nope.onnx")
    broken = tmp_path / "model.onnx"
    shutil.copy(res.onnx_path, broken)
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(InputFileError, match="not a valid ONNX"):
        check_model(pp, broken)


def test_jet_preset_on_nanoaod_without_pf_candidates(nano_dy_path):
    events = _events(nano_dy_path)
    assert ak.num(events.FatJet, axis=0) == 40  # the jets are there, their constituents are not
    with pytest.raises(SchemaError, match="PFCands"):
        build_inputs(events, "jet")


def test_cli_export_run_dir_with_check(tmp_path):
    from paratag.training.checkpoint import save_checkpoint
    from typer.testing import CliRunner

    from paratag.cli import app

    model = tiny_parametric()
    cfg = ModelConfig(
        name="parametric_particlenet",
        condition_names=("mHc", "mA"),
        condition_mean=(130.0, 90.0),
        condition_std=(20.0, 10.0),
        options=TINY_PN,
    )
    from paratag.config import to_dict

    info = {
        "model_config": to_dict(cfg),
        "input_dims": {"point_dims": 2, "feature_dims": 15},
        "preset": load_preset("jet").to_dict(),
        "condition_names": ["mHc", "mA"],
        "condition_mean": [130.0, 90.0],
        "condition_std": [20.0, 10.0],
        "class_names": ["HpToWA", "ttbar"],
    }
    save_checkpoint(tmp_path / "run" / "stage3" / "model.pt", model, info)
    res = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--check"])
    assert res.exit_code == 0, res.output
    assert "parity: max |torch - onnxruntime|" in res.output
    pp = load_preprocess(tmp_path / "run" / "export" / "preprocess.json")
    assert pp.class_names == ("HpToWA", "ttbar")
    check_model(pp, tmp_path / "run" / "export" / "model.onnx")
    res = CliRunner().invoke(app, ["export", str(tmp_path / "empty")])
    assert res.exit_code != 0


def test_hypotheses_axis_export_parity_and_record(tmp_path, pf_events):
    cfg = ModelConfig(
        name="parametric_particlenet",
        condition_names=("mHc", "mA"),
        options={**TINY_PN, "shared_trunk": True},
    )
    model = build_model(cfg, point_dims=2, feature_dims=15)
    with torch.no_grad():  # non-zero condition pathways, as after training
        for name, p in model.named_parameters():
            if name in model.condition_parameter_names() or "out_proj" in name:
                p.normal_(0, 0.5)
    res = export_model(model, "jet", tmp_path, check_events=pf_events, hypotheses_axis=True)
    hyp_path = tmp_path / "model_hypotheses.onnx"
    pp = load_preprocess(res.preprocess_path)
    assert pp.paratag["hypotheses_model"] == "model_hypotheses.onnx"
    check_model(pp, hyp_path)  # same inputs and fingerprint as model.onnx
    m = onnx.load(str(hyp_path))
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in m.graph.input
    }
    assert dims["condition"] == ["H", 2] and dims["points"] == ["N", 2, "P_pf"]
    out_dims = [d.dim_param or d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == ["N", "H", 2]
    # model.onnx parity (6 cases) + hypotheses graph vs forward per hypothesis (H = 1, 4)
    assert res.parity is not None and len(res.parity.cases) == 6 + 4
    assert res.parity.max_abs_diff < 1e-4
    # a later export without the axis removes the stale graph and the record
    res2 = export_model(model, "jet", tmp_path)
    assert (
        not hyp_path.exists()
        and "hypotheses_model" not in load_preprocess(res2.preprocess_path).paratag
    )


def test_hypotheses_axis_needs_conditioned_model(tmp_path):
    options = {"conv_params": [[4, [8]]], "fc_params": [[8, 0.0]], "use_fusion": False}
    model = build_model(
        ModelConfig(name="particlenet", options=options), point_dims=2, feature_dims=15
    )
    with pytest.raises(ConfigError, match="hypotheses_axis"):
        export_model(model, "jet", tmp_path, hypotheses_axis=True)


def test_pair_feature_model_exports_with_parity(tmp_path, pf_events):
    """ParT pair features, resonance windows, cascade masses and edge/input conditioning trace to ONNX."""
    preset = load_preset("jet")
    cfg = ModelConfig(
        name="parametric_particlenet",
        condition_names=("mHc", "mA"),
        condition_mean=(130.0, 90.0),
        condition_std=(20.0, 10.0),
        options={
            **TINY_PN,
            "pair_features": True,
            "pair_kinematics": preset.pair_kinematics(),
            "resonance": "mA",
            "cascade": "mHc",
            "masked_edges": True,
            "condition_edges": True,
            "condition_input": True,
        },
    )
    model = build_model(cfg, point_dims=2, feature_dims=15)
    res = export_model(
        model, "jet", tmp_path, class_names=["signal", "background"], check_events=pf_events
    )
    assert res.parity is not None and res.parity.ok
    assert res.parity.max_abs_diff < 1e-4


def test_paratag_export_is_checked_without_its_paratag_block(exported, tmp_path):
    """Issue 16: dropping the paratag block must not bypass the metadata check."""
    from paratag.preprocess import write_preprocess

    _, res = exported
    pp = load_preprocess(res.preprocess_path)
    # the CMSSW flavour of the export keeps the exported inputs: accepted, labels as outputs
    cmssw = write_preprocess(pp, tmp_path / "cmssw" / "preprocess.json", cmssw=True)
    data = json.loads(cmssw.read_text())
    assert "paratag" not in data and data["output_names"] == ["signal", "background"]
    assert data["features"]["min_length"] == pp.paratag["min_particles"]
    assert data["features"]["max_length"] == 100 and data["condition"]["min_length"] == 1
    check_model(load_preprocess(cmssw), res.onnx_path)
    # an edited condition median in a file without the paratag block is refused
    data["condition"]["var_infos"]["mHc"]["median"] = 150.0
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    with pytest.raises(ModelMismatchError, match="no paratag block"):
        check_model(load_preprocess(edited), res.onnx_path)
