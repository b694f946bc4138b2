"""Distributed data parallel: set-up from the ``torchrun`` environment, and device choice.

Launch any training command under ``torchrun`` and it runs data-parallel::

    torchrun --nproc-per-node 2 -m paratag.cli train config.yaml

:func:`init_distributed` reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and
initialises the process group (NCCL on CUDA, gloo on CPU). Without those
variables everything runs in one process. Every rank evaluates the full
validation set (identical results, so early-stopping decisions agree without
communication); only rank 0 writes files.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from paratag.runtime import select_device

__all__ = [
    "all_reduce_mean",
    "barrier",
    "cleanup",
    "init_distributed",
    "is_distributed",
    "is_main",
    "rank",
    "select_device",
    "world_size",
]


def is_distributed() -> bool:
    """Whether a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Global rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes outputs (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Synchronise all ranks (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def init_distributed(device: torch.device | None = None) -> bool:
    """Initialise the process group when launched by ``torchrun``; return whether distributed."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return False
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)  # type: ignore[arg-type]
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timedelta(minutes=10))
    return True


def cleanup() -> None:
    """Destroy the process group if this process created one."""
    if is_distributed():
        dist.destroy_process_group()


def all_reduce_mean(value: float, device: torch.device | None = None) -> float:
    """Mean of a Python float over ranks (the value itself when not distributed)."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device or "cpu")
    dist.all_reduce(t)
    return float(t.item()) / world_size()
