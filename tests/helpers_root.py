"""Write small NanoAOD-like ROOT files (subsets of the fixtures) for bad-input tests."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import awkward as ak
import uproot


def write_subset(
    src: Path,
    dst: Path,
    *,
    drop: tuple[str, ...] = (),
    prefixes: tuple[str, ...] = (),
    branches: set[str] | None = None,
    tree: str = "Events",
    transform=None,
) -> Path:
    """Copy the branches of ``src`` whose collection is in ``prefixes`` (minus ``drop``) to ``dst``.

    ``branches`` selects exact branch names instead of collections (e.g. a preset's
    ``Preset.branches()``); names absent from ``src`` are ignored.

    Jagged collections are written the NanoAOD way (``nX`` counter + ``X_field[nX]``) with
    ``mktree``/``extend``, so coffea reads the result like a real file.
    """
    events = uproot.open(src)["Events"]
    names = [
        n
        for n in events.keys()  # noqa: SIM118 - a TTree iterates over branches, not names
        if n not in drop
        and not n.startswith("n")
        and (
            n in branches
            if branches is not None
            else (n.split("_")[0] in prefixes or n in prefixes)
        )
    ]
    arrays = events.arrays(names, library="ak")
    if transform is not None:
        arrays = transform(arrays)
    groups: dict[str, dict[str, ak.Array]] = defaultdict(dict)
    flat: dict[str, ak.Array] = {}
    for name in arrays.fields:
        col = arrays[name]
        if "_" in name and col.ndim == 2:
            coll, field = name.split("_", 1)
            groups[coll][field] = col
        else:
            flat[name] = col
    data = dict(flat)
    for coll, fields in groups.items():
        data[coll] = ak.zip(fields)
    with uproot.recreate(dst) as f:
        f.mktree(tree, {k: v.type for k, v in data.items()})
        f[tree].extend(data)
    return dst
