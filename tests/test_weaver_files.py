"""``paratag import-weaver`` on files that are not a weaver checkpoint: clear errors.

(No weaver-core needed: the file checks come before any architecture is read.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paratag.errors import InputFileError
from paratag.weaver import read_state_dict


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such checkpoint"):
        read_state_dict(tmp_path / "absent.pt")


def test_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(InputFileError, match="not a torch checkpoint") as err:
        read_state_dict(path)
    assert str(path) in str(err.value)


def test_file_without_tensors(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"epoch": 3, "lr": 0.01}, path)
    with pytest.raises(InputFileError, match="no state_dict of tensors"):
        read_state_dict(path)


def test_state_dict_under_a_common_key(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"epoch": 3, "state_dict": {"w": torch.ones(2)}}, path)
    assert list(read_state_dict(path)) == ["w"]
