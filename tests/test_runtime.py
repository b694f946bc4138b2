"""paratag.runtime: the CPU settings of a training or evaluation run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from paratag.errors import ConfigError
from paratag.runtime import cpu_settings

# Allocates 256 MB; prints whether retain_heap applied and how much the [heap]
# mapping grew (KB).
_PROBE = textwrap.dedent(
    """
    import sys
    from paratag.runtime import retain_heap

    def heap_kb():
        for line in open("/proc/self/maps"):
            if line.rstrip().endswith("[heap]"):
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                return (hi - lo) // 1024
        return 0

    applied = retain_heap() if sys.argv[1] == "retain" else False
    before = heap_kb()
    block = bytearray(256 << 20)
    grown = heap_kb() - before
    print(applied, grown)
    """
)


def _probe(mode: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], check=True, capture_output=True, text=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_retain_heap_serves_large_blocks_from_the_heap() -> None:
    applied, grown = _probe("system")
    assert not applied and grown < 1024  # glibc's default: a 256 MB block is its own mmap
    applied, grown = _probe("retain")
    assert applied and grown >= 250 * 1024  # the heap grew by (almost) the whole block


def test_cpu_settings_restores_threads_and_checks_the_heap_name() -> None:
    before = torch.get_num_threads()
    with cpu_settings(threads=1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="heap must be"), cpu_settings(heap="jemalloc"):  # type: ignore[arg-type]
        pass
