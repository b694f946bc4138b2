"""Model-file commands: ``paratag export`` and ``paratag import-weaver`` (registered in :mod:`paratag.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def export(
    run_dir: Annotated[Path, typer.Argument(help="training run directory (or a .pt checkpoint)")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output folder (default RUN_DIR/export)")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="compare PyTorch and onnxruntime; fail above --tolerance")
    ] = False,
    events: Annotated[
        Path | None,
        typer.Option(help="NanoAOD/PFNano file for --check (default: synthetic inputs)"),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="largest allowed |torch - onnx| for --check")
    ] = 1e-4,
    hypotheses_axis: Annotated[
        bool,
        typer.Option(
            help="also write model_hypotheses.onnx: condition (H, K) -> (N, H, C), one pass for all hypotheses"
        ),
    ] = False,
) -> None:
    """Export a trained model to model.onnx + preprocess.json (CMSSW/weaver layout)."""
    from paratag.export import export_run

    res = export_run(
        run_dir,
        out,
        check=check,
        check_events=events,
        tolerance=tolerance,
        hypotheses_axis=hypotheses_axis,
    )
    typer.echo(f"wrote {res.onnx_path} and {res.preprocess_path}")
    if res.parity is not None:
        typer.echo(f"parity: {res.parity}")


def import_weaver(
    checkpoint: Annotated[
        Path,
        typer.Argument(help="weaver ParticleNet state_dict (.pt; e.g. net_best_epoch_state.pt)"),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")],
    preset: Annotated[
        str, typer.Option(help="paratag preset with the inputs the model was trained on")
    ] = "jet",
    k: Annotated[
        str | None,
        typer.Option(
            help="neighbours per EdgeConv block, e.g. 16 or 16,16,16 (default: the paper backbone with the same widths)"
        ),
    ] = None,
    class_names: Annotated[
        str | None, typer.Option(help="comma-separated output class names, signal first")
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(help="NanoAOD/PFNano file for the parity check (default: synthetic inputs)"),
    ] = None,
) -> None:
    """Convert a weaver-core ParticleNet checkpoint into a paratag model (model.pt, ONNX, preprocess.json)."""
    from paratag.weaver import import_weaver as convert

    ks = None if k is None else [int(x) for x in k.split(",")]
    names = None if class_names is None else [x.strip() for x in class_names.split(",")]
    res = convert(checkpoint, out, preset=preset, k=ks, class_names=names, check_events=events)
    typer.echo(f"wrote {out / 'model.pt'}, {res.onnx_path} and {res.preprocess_path}")
    typer.echo(f"parity: {res.parity}")
