"""The wheel (not only the editable install) ships paratag.processors and paratag.training."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("paratag-*.whl")
    return whl


def test_wheel_contains_mapped_packages(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "paratag/__init__.py",
        "paratag/processors/graph_builder.py",
        "paratag/training/__init__.py",
        "paratag/preset_files/jet.yaml",
        "paratag/preset_files/event.yaml",
        "paratag/py.typed",
    ):
        assert expected in names, expected
    assert not any(n.startswith(("processors/", "training/")) for n in names), (
        "top-level namespace polluted"
    )


def test_installed_wheel_imports_subpackages(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    code = (
        "import paratag, paratag.processors, paratag.training;"
        "from paratag.processors import GraphBuilder;"
        "from paratag.presets import load_preset;"
        "assert load_preset('jet').name == 'jet';"
        "print(paratag.__file__); print(paratag.processors.__file__); print(paratag.training.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    paths = proc.stdout.split()
    assert len(paths) == 3
    assert all(p.startswith(str(target)) for p in paths), paths


def test_core_requirements_leave_training_to_the_train_extra(wheel):
    meta = zipfile.ZipFile(wheel).read(
        next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA"))
    )
    requires = [
        line.split(":", 1)[1].strip()
        for line in meta.decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    core = {r.split(">")[0].split("=")[0].split("[")[0].strip() for r in requires if ";" not in r}
    assert {"coffea", "onnxruntime", "uproot", "awkward"} <= core
    assert not core & {"torch", "scikit-learn", "tensorboard", "h5py", "rich", "vector"}, core
    train = {r.split(">")[0] for r in requires if 'extra == "train"' in r}
    assert {"torch", "scikit-learn", "tensorboard", "h5py"} <= train


#: run in a fresh interpreter in which torch and the other training-only packages cannot import
_BLOCK = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"torch", "sklearn", "tensorboard", "h5py"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Block())
"""


def test_scoring_needs_no_torch_and_training_says_which_extra(model_dir, pfnano_path, tmp_path):
    code = _BLOCK + (
        "import numpy as np, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "from coffea.nanoevents import NanoAODSchema, NanoEventsFactory\n"
        "from paratag.processors import GraphBuilder, Tagger\n"
        f"ev = NanoEventsFactory.from_root({{{str(pfnano_path)!r}: 'Events'}},"
        " schemaclass=NanoAODSchema, mode='eager').events()\n"
        f"t = Tagger({str(model_dir[0] / 'model.onnx')!r}, [{{'mHc': 130, 'mA': 90}}])\n"
        "import awkward as ak\n"
        "s = ak.to_numpy(ak.flatten(t(ev).FatJet.score_mHc130_mA90))\n"
        "print(len(s), int(np.isfinite(s).sum()), 'torch' in sys.modules)\n"
        "try:\n"
        "    import paratag.training\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    first, second = proc.stdout.strip().splitlines()
    assert first == "24 24 False"
    assert second.startswith("DependencyError") and "pip install 'paratag[train]'" in second
    # the CLI turns it into one line, not a traceback
    cli = _BLOCK + "import sys; sys.argv = ['paratag', 'train', 'x.yaml']\nimport paratag.cli\n"
    cli += "paratag.cli.main()\n"
    proc = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "paratag[train]" in proc.stderr
    assert "Traceback" not in proc.stderr
