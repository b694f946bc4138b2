"""Where and how paratag runs: the torch device and progress bars (shared by every layer)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

import torch

from paratag.errors import ConfigError

__all__ = ["progress", "progress_enabled", "select_device"]


def select_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA (this rank's ``LOCAL_RANK`` GPU) if present, else CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                "device: cuda was requested but no CUDA GPU is available; use auto or cpu"
            )
        if requested == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(requested)


def progress_enabled(requested: bool = True) -> bool:
    """Whether to draw progress bars: requested, stderr is a TTY and not in CI."""
    if not requested or os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(
    iterable: Iterable[Any], *, desc: str = "", total: int | None = None, enabled: bool = True
) -> Any:
    """A tqdm bar over ``iterable`` when :func:`progress_enabled`, else the iterable itself."""
    if not progress_enabled(enabled):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)
