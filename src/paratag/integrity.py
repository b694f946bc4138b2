"""Consistency checks of NanoAOD files that would otherwise give wrong numbers silently.

NanoEvents builds every collection from its counter branch (``nPFCands``) and
the flat contents of its fields (``PFCands_pt``). When a file's counter
disagrees with its contents — a hand-edited or badly skimmed file — every later
event is misaligned and nothing fails. :func:`check_counts` compares, for each
collection a preset reads, the counter with the per-entry lengths that ROOT
stored with the contents, over the entry range of one chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import awkward as ak
import numpy as np

from paratag.errors import InvalidValueError

__all__ = ["check_counts", "check_chunk_counts"]


def _collections(branches: Iterable[str]) -> dict[str, str]:
    """Collection → one of its field branches, for ``Collection_field`` names."""
    out: dict[str, str] = {}
    for b in sorted(branches):
        coll, sep, _ = b.partition("_")
        if sep and coll not in out:
            out[coll] = b
    return out


def check_counts(
    filename: str, treename: str, start: int, stop: int, branches: Iterable[str]
) -> None:
    """Raise :class:`InvalidValueError` if ``n<Collection>`` disagrees with its contents.

    Args:
        filename: the ROOT file.
        treename: its events tree.
        start: first entry to check (one chunk).
        stop: entry after the last one.
        branches: the branches a preset reads (``Collection_field`` names).
    """
    import uproot

    with uproot.open(filename) as f:
        tree = f[treename]
        keys = set(tree.keys())
        for coll, field in _collections(branches).items():
            counter = f"n{coll}"
            if counter not in keys or field not in keys:
                continue
            counts = np.asarray(
                tree[counter].array(entry_start=start, entry_stop=stop, library="np"), np.int64
            )
            stored = ak.num(tree[field].array(entry_start=start, entry_stop=stop), axis=1)
            real = np.asarray(ak.to_numpy(stored), np.int64)
            bad = np.flatnonzero(counts != real)
            if bad.size:
                i = int(bad[0])
                raise InvalidValueError(
                    f"{filename}: branch {counter!r} disagrees with the contents of {field!r} in "
                    f"{bad.size} of {len(counts)} entries of [{start}, {stop}) (first: entry "
                    f"{start + i}, {counter} = {counts[i]} but {real[i]} values stored); every "
                    "later event of the collection would be misaligned: regenerate or re-skim "
                    "the file, or drop it (--skip-bad-files)"
                )


def check_chunk_counts(metadata: Mapping[str, Any], branches: Iterable[str]) -> None:
    """:func:`check_counts` over the chunk described by coffea's ``events.metadata``.

    Chunks without a file behind them (in-memory events) are not checked.
    """
    filename, treename = metadata.get("filename"), metadata.get("treename")
    if not filename or not treename or "entrystart" not in metadata:
        return
    check_counts(
        str(filename),
        str(treename),
        int(metadata["entrystart"]),
        int(metadata["entrystop"]),
        branches,
    )
