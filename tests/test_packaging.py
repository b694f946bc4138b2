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
