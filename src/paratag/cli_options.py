"""Command-line options shared by several ``paratag`` commands, and the console set-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "ChunksizeOption",
    "ExecutorOption",
    "OnInvalidOption",
    "ProgressOption",
    "RunDirOption",
    "ShardsOption",
    "SkipBadFilesOption",
    "SkipStudiesOption",
    "WorkersOption",
    "setup_console",
]

#: options shared by the commands that run over filesets (build, score) and others
ExecutorOption = Annotated[str, typer.Option(help="iterative, futures or dask")]
WorkersOption = Annotated[int, typer.Option(help="parallel workers (futures/dask processes)")]
ChunksizeOption = Annotated[int, typer.Option(help="events per chunk")]
#: ``paratag evaluate --skip``: studies of :data:`paratag.evaluate.run.SKIPPABLE` to leave out
SkipStudiesOption = Annotated[
    list[str] | None,
    typer.Option(help="study to leave out: points, hypotheses or overtraining (repeat)"),
]
SkipBadFilesOption = Annotated[
    bool, typer.Option(help="skip unreadable or non-NanoAOD files (logged and recorded)")
]
ProgressOption = Annotated[bool, typer.Option(help="show progress bars")]
OnInvalidOption = Annotated[
    str | None,
    typer.Option(help="NaN/inf/negative-pT inputs: drop, replace or raise (always counted)"),
]


#: options shared by `train` and `tune`
ShardsOption = Annotated[Path | None, typer.Option(help="shard directory (overrides data.shards)")]
RunDirOption = Annotated[
    Path | None, typer.Option("--run-dir", help="output directory (overrides run_dir)")
]


def setup_console() -> None:
    """Console defaults of the ``paratag`` command: log lines on stderr, known warnings quiet.

    One line per training epoch (``paratag.training``) and other progress messages
    go to stderr with a timestamp. coffea's NanoAODSchema warns for every
    cross-reference a file lacks (e.g. the generator's ``Electron_genPartIdx``);
    paratag never follows those references, so that warning is silenced.
    """
    import logging
    import warnings

    warnings.filterwarnings("ignore", message="Missing cross-reference", category=RuntimeWarning)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("paratag")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
