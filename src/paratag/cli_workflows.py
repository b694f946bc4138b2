"""``paratag demo`` and ``paratag validate``: the workflow commands (registered in :mod:`paratag.cli`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path(
        "demo_output"
    ),
    events: Annotated[int, typer.Option(help="generated events per process / mass point")] = 1500,
    workers: Annotated[int, typer.Option(help="parallel workers")] = 2,
    seed: Annotated[int, typer.Option(help="master seed")] = 1,
    force: Annotated[
        bool, typer.Option("--force", help="redo every step, ignoring the cache")
    ] = False,
    real_file: Annotated[
        Path | None,
        typer.Option(
            help="a real NanoAOD file also scored (default: the checkout's tests/data/nano_dy.root)"
        ),
    ] = None,
) -> None:
    """Run the whole chain on generated data: generate, build, train, evaluate, export, score."""
    from paratag.demo import DemoConfig, run_demo

    fixture = real_file or Path(__file__).resolve().parents[2] / "tests" / "data" / "nano_dy.root"
    if not fixture.is_file():
        typer.echo(
            f"no real NanoAOD file at {fixture}: scoring generated samples only "
            "(pass --real-file PATH to add one)"
        )
    cfg = DemoConfig(
        out=str(out),
        events=events,
        workers=workers,
        seed=seed,
        real_fixture=str(fixture) if fixture.is_file() else "",
    )
    summary = run_demo(cfg, force=force, log=typer.echo)
    typer.echo("\nstep        time [s]")
    for name, info in summary.items():
        if isinstance(info, dict):
            typer.echo(f"{name:<10} {info['time_s']:9.1f}")
    typer.echo(f"{'total':<10} {summary['total_time_s']:9.1f}")
    typer.echo(f"\nreport : {summary['evaluate']['html']}")
    typer.echo(f"model  : {summary['export']['onnx']} (parity: {summary['export']['parity']})")
    typer.echo(f"plots  : {out / 'scores' / 'plots'}")


def validate(
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path(
        "validation_output"
    ),
    events: Annotated[int, typer.Option(help="events per signal point and background")] = 10_000,
    xbb_events: Annotated[int | None, typer.Option(help="X->bb events (default --events)")] = None,
    pileup_events: Annotated[
        int | None, typer.Option(help="pileup test events (events/10)")
    ] = None,
    pileup_train_events: Annotated[
        int | None, typer.Option(help="pileup training events (events/4)")
    ] = None,
    seeds: Annotated[
        list[int] | None, typer.Option("--seeds", help="training seed (repeat)")
    ] = None,
    workers: Annotated[int, typer.Option(help="parallel workers")] = 2,
    pileup_mu: Annotated[
        list[float] | None,
        typer.Option("--pileup-mu", help="pileup level besides mu = 0 (repeat; default 20 40 60)"),
    ] = None,
    stage1_epochs: Annotated[int | None, typer.Option(help="override stage-1 epochs")] = None,
    stage3_epochs: Annotated[int | None, typer.Option(help="override stage-3 epochs")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="redo every step, ignoring the cache")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="run only this chain: higgs, pileup, xbb or disco (repeat)"),
    ] = None,
    generate_config: Annotated[
        str, typer.Option(help="charged-Higgs generate preset or YAML")
    ] = "validate",
    train_config: Annotated[
        str, typer.Option(help="charged-Higgs train config or YAML")
    ] = "validate",
    xbb_tagger: Annotated[
        list[str] | None,
        typer.Option(
            help="unconditioned X->bb tagger of the jet table (repeat; default: "
            "interaction_net, particlenet_lite, resnet15_image)"
        ),
    ] = None,
    xbb_train_config: Annotated[
        str, typer.Option(help="X->bb train config or YAML (both jet chains)")
    ] = "validate_xbb",
    xbb_disco_lambda: Annotated[
        list[float] | None,
        typer.Option(help="DisCo strength of a disco-chain run (repeat; default 10, 30, 100)"),
    ] = None,
    disco_qcd_events: Annotated[int, typer.Option(help="QCD sculpting-sample events")] = 40_000,
    disco_epochs: Annotated[int, typer.Option(help="epochs of each disco-chain run")] = 3,
    disco_batches: Annotated[str, typer.Option(help="DisCo batches: padded or ragged")] = "padded",
) -> None:
    """Larger validation run: AUC ratios, mass awareness, seed spread, sculpting, pileup, wall times."""
    from paratag.validate import ValidateConfig, run_validate

    cfg = ValidateConfig(
        out=str(out),
        events=events,
        xbb_events=xbb_events,
        pileup_events=pileup_events,
        seeds=tuple(seeds or (0, 1, 2)),
        workers=workers,
        pileup_mu=tuple(pileup_mu or ValidateConfig.pileup_mu),
        pileup_train_events=pileup_train_events,
        stage1_epochs=stage1_epochs,
        stage3_epochs=stage3_epochs,
        only=tuple(only or ()),
        generate_config=generate_config,
        train_config=train_config,
        xbb_train_config=xbb_train_config,
        xbb_disco_lambdas=tuple(xbb_disco_lambda or ValidateConfig.xbb_disco_lambdas),
        disco_qcd_events=disco_qcd_events,
        disco_epochs=disco_epochs,
        disco_batches=disco_batches,  # type: ignore[arg-type]  # checked by ValidateConfig
        xbb_taggers=tuple(xbb_tagger or ValidateConfig.xbb_taggers),
    )
    run_validate(cfg, force=force, command="paratag " + " ".join(sys.argv[1:]), log=typer.echo)
    typer.echo((out / "validation.md").read_text())
