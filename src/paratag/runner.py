"""Run a coffea processor over a fileset: the one runner of ``paratag build`` and ``paratag score``.

Filesets use coffea's layout, in YAML or JSON::

    HplusToWA_mHc130_mA90:
      files: {gen/HplusToWA_mHc130_mA90.root: Events}
      metadata: {label: 0, mHc: 130, mA: 90}
    TTbar:
      files: [gen/TTbar.root]
      metadata: {label: 1}

Relative paths are resolved against the fileset's directory. Every file is
checked before processing (exists, is ROOT, has the tree, is not truncated,
looks like NanoAOD); a bad file raises :class:`~paratag.errors.InputFileError`,
or is logged, recorded and skipped when ``skip_bad_files`` is set.
:func:`run_processor` then runs coffea's Runner with a fresh metadata cache
(coffea's default cache hands back an earlier run's fileset metadata) and
re-raises the paratag error from inside coffea's "Failed processing file" wrapper.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from paratag.config import read_mapping
from paratag.errors import ConfigError, InputFileError, ParatagError, SchemaError

__all__ = [
    "check_file",
    "load_fileset",
    "make_executor",
    "run_processor",
    "unwrap_error",
]

log = logging.getLogger(__name__)

Schema = Literal["nanoaod", "pfnanoaod"]


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


def check_file(path: str, treename: str = "Events", required: Iterable[str] = ()) -> int:
    """Check that ``path`` is a readable NanoAOD file; return its number of events.

    ``required``: branches the processor reads; missing ones raise a :class:`SchemaError`
    listing them (before any chunk runs).
    """
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
        absent = sorted(set(required) - set(tree.keys()))
        if absent:
            raise SchemaError(
                f"{path}: {treename} lacks {len(absent)} branch(es) the processor reads: "
                f"{absent[:12]}{' ...' if len(absent) > 12 else ''}; produce them (PFNano for the "
                "jet preset) or use a preset that matches the file"
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
def make_executor(
    kind: str, workers: int = 2, retries: int = 0, scheduler: str | None = None
) -> Iterator[Any]:
    """Yield a coffea executor; for "dask" a LocalCluster on loopback lives as long as the block.

    ``retries`` defaults to 0: paratag's errors are deterministic, and coffea's
    retries only help with flaky remote reads (raise it for XRootD inputs).
    ``scheduler`` (``tcp://host:8786``) connects to an existing Dask cluster instead
    of starting a LocalCluster (``workers`` is then ignored).
    """
    from coffea import processor

    if kind not in ("iterative", "futures", "dask"):
        raise ConfigError(f"executor {kind!r}: use iterative, futures or dask")
    if kind != "iterative" and workers < 1 and not (kind == "dask" and scheduler):
        raise ConfigError(f"--workers {workers}: the {kind} executor needs at least 1 worker")
    if kind == "iterative":
        yield processor.IterativeExecutor(retries=retries)
    elif kind == "futures":
        yield processor.FuturesExecutor(workers=workers, retries=retries)
    elif kind == "dask":
        from paratag.errors import require

        distributed = require("distributed", "dask")
        if scheduler:
            try:
                client = distributed.Client(scheduler, timeout="10s")  # type: ignore[attr-defined]
            except OSError as exc:
                raise ConfigError(
                    f"--scheduler {scheduler}: cannot connect ({exc}); is the scheduler running?"
                ) from exc
            try:
                yield processor.DaskExecutor(client=client, status=False, retries=retries)
            finally:
                client.close()
            return
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


def run_processor(
    fileset: str | Path | Mapping[str, Any],
    processor_instance: Any,
    *,
    executor: str | Any = "iterative",
    workers: int = 2,
    chunksize: int = 100_000,
    skip_bad_files: bool = False,
    schema: Schema = "nanoaod",
    progress: bool = True,
    treename: str = "Events",
    scheduler: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Run ``processor_instance`` over ``fileset``; return (output, skipped files with reasons).

    Args:
        fileset: a fileset path or mapping (see the module docstring).
        processor_instance: a coffea ``ProcessorABC`` (GraphBuilder, Tagger, your own).
        executor: ``iterative``, ``futures``, ``dask`` or a coffea executor instance.
        workers: workers of the futures/dask executors (>= 1).
        chunksize: events per chunk.
        skip_bad_files: log, record and skip unreadable files, and files that lack a
            branch of the processor's ``required_branches``, instead of raising.
        schema: ``nanoaod`` or ``pfnanoaod``.
        progress: coffea's progress bars.
        treename: the events tree.
        scheduler: address of an existing Dask scheduler (``executor="dask"``).
    """
    from coffea import processor

    fs = load_fileset(fileset)
    skipped: list[dict[str, str]] = []
    required = frozenset(getattr(processor_instance, "required_branches", ()))
    for ds in fs.values():
        for path, tree in list(ds["files"].items()):
            try:
                check_file(path, tree, required)
            except (InputFileError, SchemaError) as exc:
                if not skip_bad_files:
                    raise
                log.warning("skipping bad file: %s", exc)
                skipped.append({"file": path, "reason": str(exc)})
                del ds["files"][path]
    fs = {name: ds for name, ds in fs.items() if ds["files"]}
    if not fs:
        raise InputFileError("<fileset>", "no readable files left", "fix the fileset")

    def run(ex: Any) -> dict[str, Any]:
        if dataclasses.is_dataclass(ex) and not isinstance(ex, type) and hasattr(ex, "status"):
            ex = dataclasses.replace(ex, status=progress)
        runner = processor.Runner(
            ex, schema=_schema(schema), chunksize=chunksize, metadata_cache={}
        )
        try:
            return runner(fs, processor_instance=processor_instance, treename=treename)  # type: ignore[no-any-return]
        except ParatagError:
            raise
        except Exception as exc:
            inner = unwrap_error(exc)
            if inner is exc:
                raise
            raise inner from exc

    with _quiet_coffea(not progress):
        if isinstance(executor, str):
            with make_executor(executor, workers, scheduler=scheduler) as ex:
                return run(ex), skipped
        return run(executor), skipped


@contextlib.contextmanager
def _quiet_coffea(quiet: bool) -> Iterator[None]:
    """Silence coffea's rich console while the block runs.

    coffea's futures executor draws its "Processing"/"Merging" bars whatever its
    ``status`` says, and its Runner draws "Preprocessing" the same way; all of them go
    through ``coffea.util.coffea_console``.
    """
    from coffea import util

    console = getattr(util, "coffea_console", None)
    if not quiet or console is None:
        yield
        return
    before = console.quiet
    console.quiet = True
    try:
        yield
    finally:
        console.quiet = before
