"""``paratag build``: run GraphBuilder over a fileset and write dataset shards.

Filesets use coffea's layout, in YAML or JSON::

    HplusToWA_mHc130_mA90:
      files: {gen/HplusToWA_mHc130_mA90.root: Events}
      metadata: {label: 0, mHc: 130, mA: 90}
    TTbar:
      files: [gen/TTbar.root]
      metadata: {label: 1}

Every file is checked before processing (exists, is ROOT, has the tree, is
not truncated, looks like NanoAOD); a bad file raises
:class:`~paratag.errors.InputFileError`, or is reported and skipped when
``skip_bad_files`` is set. Relative paths are resolved against the fileset's
directory.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from paratag.config import dump, read_mapping, to_dict
from paratag.errors import ConfigError, InputFileError, ParatagError

__all__ = [
    "BuildConfig",
    "build_shards",
    "check_file",
    "load_fileset",
    "make_executor",
    "run_builder",
    "unwrap_error",
]

log = logging.getLogger(__name__)

Executor = Literal["iterative", "futures", "dask"]


@dataclass(frozen=True)
class BuildConfig:
    """What GraphBuilder builds.

    Attributes:
        preset: preset name or YAML path.
        selection: per-graph selection overriding the preset's (None keeps it).
        max_particles: P of the first cloud (None keeps the preset's).
        max_svs: length of the second cloud (None keeps the preset's).
        condition: condition names read from dataset metadata, e.g. ["mHc", "mA"].
        label: optional dataset → class mapping (otherwise metadata ``label``).
        schema: coffea schema, "nanoaod" or "pfnanoaod".
        max_rows: rows per parquet shard.
    """

    preset: str = "jet"
    selection: str | None = None
    max_particles: int | None = None
    max_svs: int | None = None
    condition: tuple[str, ...] = ()
    label: dict[str, int] = field(default_factory=dict)
    schema: Literal["nanoaod", "pfnanoaod"] = "nanoaod"
    max_rows: int = 50_000


def load_fileset(fileset: str | Path | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Read a fileset and normalise it to ``{ds: {"files": {path: tree}, "metadata": {...}}}``."""
    base = Path(".")
    if not isinstance(fileset, Mapping):
        base = Path(fileset).parent
        fileset = read_mapping(fileset)
    out: dict[str, dict[str, Any]] = {}
    for name, entry in fileset.items():
        if isinstance(entry, list | tuple):
            entry = {"files": list(entry)}
        if not isinstance(entry, Mapping) or "files" not in entry:
            raise ConfigError(f"fileset dataset {name!r}: expected a mapping with a `files` entry")
        files = entry["files"]
        if isinstance(files, list | tuple):
            files = {f: "Events" for f in files}
        resolved = {}
        for path, tree in files.items():
            p = Path(path)
            if not p.is_absolute() and "://" not in str(path):
                p = base / p
            resolved[str(p)] = tree or "Events"
        out[str(name)] = {"files": resolved, "metadata": dict(entry.get("metadata", {}))}
    if not out:
        raise ConfigError("the fileset is empty: add at least one dataset")
    return out


def check_file(path: str, treename: str = "Events") -> int:
    """Check that ``path`` is a readable NanoAOD file; return its number of events."""
    import uproot

    if "://" not in path and not Path(path).is_file():
        raise InputFileError(path, "file does not exist", "check the path in your fileset")
    try:
        f = uproot.open(path)
    except Exception as exc:  # uproot raises many types for non-ROOT or truncated files
        raise InputFileError(
            path,
            f"not a readable ROOT file ({type(exc).__name__}: {exc})",
            "re-copy or regenerate it",
        ) from exc
    with f:
        if treename not in f:
            trees = [
                k.split(";")[0]
                for k, c in f.classnames().items()
                if c in ("TTree", "ROOT::RNTuple")
            ]
            raise InputFileError(
                path,
                f"has no {treename!r} tree (trees: {trees})",
                "this is not NanoAOD (e.g. a Delphes or Scouting file); convert it to NanoAOD first",
            )
        tree = f[treename]
        missing = [b for b in ("run", "luminosityBlock", "event") if b not in tree]
        if missing:
            raise InputFileError(
                path,
                f"{treename} lacks {missing}",
                "this is not NanoAOD; GraphBuilder needs NanoAOD/PFNano",
            )
        n = int(tree.num_entries)
        try:
            if n:
                tree["event"].array(entry_start=n - 1, library="np")
        except Exception as exc:
            raise InputFileError(
                path,
                f"cannot read its last entry ({type(exc).__name__}: {exc})",
                "the file is truncated or corrupt; re-copy or regenerate it",
            ) from exc
    return n


@contextlib.contextmanager
def make_executor(kind: str, workers: int = 2, retries: int = 0) -> Iterator[Any]:
    """Yield a coffea executor; for "dask" a LocalCluster on loopback lives as long as the block.

    ``retries`` defaults to 0: paratag's errors are deterministic, and coffea's
    retries only help with flaky remote reads (raise it for XRootD inputs).
    """
    from coffea import processor

    if kind not in ("iterative", "futures", "dask"):
        raise ConfigError(f"executor {kind!r}: use iterative, futures or dask")
    if kind != "iterative" and workers < 1:
        raise ConfigError(f"--workers {workers}: the {kind} executor needs at least 1 worker")
    if kind == "iterative":
        yield processor.IterativeExecutor(retries=retries)
    elif kind == "futures":
        yield processor.FuturesExecutor(workers=workers, retries=retries)
    elif kind == "dask":
        from paratag.errors import require

        distributed = require("distributed", "dask")
        cluster = distributed.LocalCluster(  # type: ignore[attr-defined]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = distributed.Client(cluster)  # type: ignore[attr-defined]
        try:
            yield processor.DaskExecutor(client=client, status=False, retries=retries)
        finally:
            client.close()
            cluster.close()
    else:
        raise ConfigError(f"unknown executor {kind!r}; use iterative, futures or dask")


def check_condition_metadata(
    fileset: Mapping[str, Mapping[str, Any]], condition: Sequence[str]
) -> None:
    """Every condition key must be in the metadata of some dataset, and all or none per dataset.

    A typo (``condition: [mH]``) would otherwise write shards whose condition column
    is NaN everywhere.
    """
    if not condition:
        return
    full, seen_keys = [], set()
    for ds, entry in fileset.items():
        meta = dict(entry.get("metadata") or {})
        seen_keys |= set(meta)
        have = [c for c in condition if c in meta]
        if have and len(have) != len(condition):
            missing = [c for c in condition if c not in meta]
            raise ConfigError(
                f"dataset {ds!r}: metadata has condition keys {have} but not {missing}; "
                f"give every signal dataset all of {list(condition)}"
            )
        if have:
            full.append(ds)
    if not full:
        raise ConfigError(
            f"condition {list(condition)}: no dataset of the fileset has these metadata keys "
            f"(keys present: {sorted(seen_keys)}); fix the names in `condition: [...]` or the "
            "signal datasets' metadata"
        )


def unwrap_error(exc: BaseException) -> BaseException:
    """The paratag error inside coffea's "Failed processing file" wrapper, else ``exc``."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ParatagError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return exc


def _schema(name: str) -> Any:
    from coffea.nanoevents import NanoAODSchema, PFNanoAODSchema

    return {"nanoaod": NanoAODSchema, "pfnanoaod": PFNanoAODSchema}[name]


def run_builder(
    fileset: str | Path | Mapping[str, Any],
    config: BuildConfig = BuildConfig(),
    *,
    executor: str | Any = "iterative",
    workers: int = 2,
    chunksize: int = 100_000,
    skip_bad_files: bool = False,
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Run GraphBuilder; return (per-dataset output, skipped files with reasons)."""
    from coffea import processor

    from paratag.processors.graph_builder import GraphBuilder

    fs = load_fileset(fileset)
    skipped: list[dict[str, str]] = []
    for ds in fs.values():
        for path, tree in list(ds["files"].items()):
            try:
                check_file(path, tree)
            except InputFileError as exc:
                if not skip_bad_files:
                    raise
                log.warning("skipping bad file: %s", exc)
                skipped.append({"file": path, "reason": str(exc)})
                del ds["files"][path]
    fs = {name: ds for name, ds in fs.items() if ds["files"]}
    if not fs:
        raise InputFileError("<fileset>", "no readable files left", "fix the fileset")
    builder = GraphBuilder(
        config.preset,
        selection=config.selection,
        max_particles=config.max_particles,
        label=config.label or None,
        condition=config.condition,
        max_svs=config.max_svs,
    )

    def run(ex: Any) -> dict[str, Any]:
        try:
            return _run(ex)
        except ParatagError:
            raise
        except Exception as exc:
            inner = unwrap_error(exc)
            if inner is exc:
                raise
            raise inner from exc

    def _run(ex: Any) -> dict[str, Any]:
        # A fresh metadata cache: coffea's default cache is keyed by (dataset, file, tree) and
        # would hand back the user metadata (labels, masses) of an earlier run in this process.
        runner = processor.Runner(
            ex, schema=_schema(config.schema), chunksize=chunksize, metadata_cache={}
        )
        return runner(fs, processor_instance=builder, treename="Events")

    if isinstance(executor, str):
        with make_executor(executor, workers) as ex:
            out = run(ex)
    else:
        out = run(executor)
    return out, skipped


def build_shards(
    fileset: str | Path | Mapping[str, Any],
    out_dir: str | Path,
    config: BuildConfig = BuildConfig(),
    *,
    executor: str = "iterative",
    workers: int = 2,
    chunksize: int = 100_000,
    skip_bad_files: bool = False,
) -> Path:
    """Run GraphBuilder over ``fileset`` and write shards + manifest to ``out_dir``."""
    from paratag.presets import load_preset
    from paratag.shards import write_shards

    check_condition_metadata(load_fileset(fileset), config.condition)
    out, skipped = run_builder(
        fileset,
        config,
        executor=executor,
        workers=workers,
        chunksize=chunksize,
        skip_bad_files=skip_bad_files,
    )
    preset = load_preset(config.preset)
    lengths = {}
    if config.max_particles is not None:
        lengths[preset.clouds[0].name] = config.max_particles
    if config.max_svs is not None and len(preset.clouds) > 1:
        lengths[preset.clouds[1].name] = config.max_svs
    preset = preset.with_lengths(**lengths)
    out_dir = Path(out_dir)
    dump(config, out_dir / "build_config.yaml")
    return write_shards(
        out,
        out_dir,
        preset=preset.to_dict(),
        condition_names=config.condition,
        max_rows=config.max_rows,
        extra={"build_config": to_dict(config), "skipped_files": skipped},
    )
