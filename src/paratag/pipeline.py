"""Cached workflow steps: what ``paratag demo`` and ``paratag validate`` are made of.

A step is one library call. :class:`Steps` runs it, or skips it when its marker
``OUT/steps/<name>.json`` says it already ran with the same inputs. A step is
redone when forced, when its recorded inputs differ, when an earlier step of one
of its chains ran in this invocation, or when its marker is older than an
earlier step's (an interrupted run that retrained models must not report a
cached evaluation).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["Steps"]


class Steps:
    """The cached steps of one workflow directory.

    Args:
        out: the workflow's output directory (markers go to ``out/steps``).
        force: redo every step.
        log: progress messages (one line per step).

    Attributes:
        done: step name → its marker (``time_s`` and what the step returned).
    """

    def __init__(self, out: str | Path, *, force: bool = False, log: Callable[[str], None] = print):
        self.out, self.force, self.log = Path(out), force, log
        self.done: dict[str, dict[str, Any]] = {}
        self._redo: dict[str, bool] = {}
        self._newest: dict[str, float] = {}

    def marker(self, name: str) -> Path:
        """Path of a step's marker."""
        return self.out / "steps" / f"{name}.json"

    def run(
        self,
        name: str,
        fn: Callable[[], Mapping[str, Any]],
        *,
        inputs: Mapping[str, Any] | None = None,
        chains: str | tuple[str, ...] = "main",
    ) -> dict[str, Any]:
        """Run step ``name`` (``fn()`` returns what its marker records) or reuse its marker."""
        chains = (chains,) if isinstance(chains, str) else chains
        marker = self.marker(name)
        old = json.loads(marker.read_text()) if marker.is_file() else None
        redo = self.force or any(self._redo.get(c, False) for c in chains)
        if old is not None and inputs is not None:
            recorded = old.get("inputs", inputs)  # markers without inputs stay valid
            if json.loads(json.dumps(dict(inputs), default=str)) != recorded:
                self.log(f"[{name}] inputs changed since it ran ({recorded} -> {dict(inputs)})")
                redo = True
        newest = max((self._newest.get(c, 0.0) for c in chains), default=0.0)
        if old is not None and not redo and marker.stat().st_mtime < newest:
            self.log(f"[{name}] older than a step it depends on: redoing it")
            redo = True
        if old is not None and not redo:
            self.log(f"[{name}] cached ({old['time_s']:.1f} s when it ran) -- use --force to redo")
            info, ran = old, False
        else:
            info, ran = self._execute(name, fn, inputs), True
        for c in chains:
            self._redo[c] = self._redo.get(c, False) or ran
            self._newest[c] = max(self._newest.get(c, 0.0), marker.stat().st_mtime)
        self.done[name] = info
        return info

    def _execute(
        self, name: str, fn: Callable[[], Mapping[str, Any]], inputs: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        self.log(f"[{name}] running ...")
        t0 = time.perf_counter()
        result = dict(fn())
        info = {"time_s": time.perf_counter() - t0, **result}
        if inputs is not None:
            info["inputs"] = dict(inputs)
        marker = self.marker(name)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(info, indent=2, default=str) + "\n")
        self.log(f"[{name}] done in {info['time_s']:.1f} s")
        return info
