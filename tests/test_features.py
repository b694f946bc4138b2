from __future__ import annotations

import json

import numpy as np
import pytest

from paratag.errors import ConfigError
from paratag.features import FeatureSpec, apply_preprocessing, evaluate, parse, referenced_names


def resolver(values):
    return lambda name: values[name]


def test_expressions_evaluate_without_eval():
    v = {
        "pt": np.array([10.0, 20.0]),
        "jet.pt": np.array([100.0, 100.0]),
        "phi": np.array([3.0, -3.0]),
        "jet.phi": np.array([-3.0, 3.0]),
        "pdgId": np.array([-211, 22]),
    }
    np.testing.assert_allclose(evaluate("log(div(pt, jet.pt))", resolver(v)), np.log([0.1, 0.2]))
    # dphi wraps into [-pi, pi)
    np.testing.assert_allclose(
        evaluate("dphi(phi, jet.phi)", resolver(v)), [6.0 - 2 * np.pi, 2 * np.pi - 6.0]
    )
    np.testing.assert_array_equal(evaluate("eq(abs(pdgId), 211)", resolver(v)), [1.0, 0.0])
    np.testing.assert_array_equal(evaluate("isin(pdgId, 22, 11)", resolver(v)), [0.0, 1.0])
    assert referenced_names("hypot(sub(eta, jet.eta), dphi(phi, jet.phi))") == {
        "eta",
        "jet.eta",
        "phi",
        "jet.phi",
    }


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("__import__('os')", "unexpected character"),
        ("exp(pt)", "unknown function 'exp'"),
        ("log(pt, eta)", "takes 1 argument"),
        ("log(pt", "missing"),
        ("pt eta", "trailing input"),
    ],
)
def test_bad_expressions(text, match):
    with pytest.raises(ConfigError, match=match):
        parse(text)


def test_spec_validation_and_json_round_trip():
    spec = FeatureSpec(
        name="pfcand_pt_log",
        expr="log(pt)",
        median=1.0,
        norm_factor=0.5,
        lower_bound=-5,
        upper_bound=5,
    )
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert FeatureSpec.from_dict("charge").expr == "charge"
    with pytest.raises(ConfigError, match="lower_bound"):
        FeatureSpec(name="x", lower_bound=1, upper_bound=0)
    with pytest.raises(ConfigError, match="unknown key"):
        FeatureSpec.from_dict({"name": "x", "center": 1})


def test_preprocessing_matches_weaver_definition():
    specs = [
        FeatureSpec(
            name="a",
            median=1.0,
            norm_factor=2.0,
            lower_bound=-3,
            upper_bound=3,
            replace_inf_value=-1.0,
        )
    ]
    raw = np.array([[1.0, 2.0, 10.0, np.inf, np.nan, -np.inf]])
    out = apply_preprocessing(raw, specs)
    # (x - 1) * 2, clipped to [-3, 3]; non-finite -> -1 before scaling -> -4 -> clipped -3
    np.testing.assert_array_equal(out, [[0.0, 2.0, 3.0, -3.0, -3.0, -3.0]])
    assert out.dtype == np.float32
