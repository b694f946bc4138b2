"""The ``paratag`` command line: a thin layer that parses arguments into configs.

Each command loads its frozen config and calls one library function; no
physics or training logic lives here. Errors from :mod:`paratag.errors` are
printed as one clear line and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from paratag import cli_model, cli_workflows
from paratag.cli_options import (
    ChunksizeOption,
    ExecutorOption,
    OnInvalidOption,
    ProgressOption,
    RunDirOption,
    ShardsOption,
    SkipBadFilesOption,
    SkipStudiesOption,
    WorkersOption,
    setup_console,
)
from paratag.errors import ConfigError, ParatagError

app = typer.Typer(
    name="paratag",
    help="Parametric graph-network taggers for coffea analyses.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from paratag import __version__

        typer.echo(f"paratag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Parametric graph-network taggers for coffea analyses."""


for _command in (
    cli_model.export,
    cli_model.import_weaver,
    cli_workflows.demo,
    cli_workflows.validate,
):
    app.command()(_command)

config_app = typer.Typer(help="Show the packaged configs and presets.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("list")
def config_list() -> None:
    """List packaged train/generate configs and presets."""
    from importlib import resources

    for folder in ("configs", "preset_files"):
        for f in sorted(p.name for p in (resources.files("paratag") / folder).iterdir()):
            if f.endswith(".yaml"):
                typer.echo(f"{folder}/{f}")


@config_app.command("show")
def config_show(
    name: Annotated[str, typer.Argument(help="e.g. train_demo, generate_validate, event, jet")],
) -> None:
    """Print a packaged config or preset YAML (copy it to start your own)."""
    from importlib import resources

    base = resources.files("paratag")
    for cand in (f"configs/{name}.yaml", f"preset_files/{name}.yaml", f"configs/train_{name}.yaml"):
        f = base / cand
        if f.is_file():
            typer.echo(f.read_text())
            return
    raise ConfigError(f"no packaged config or preset {name!r}; see `paratag config list`")


@app.command()
def build(
    fileset: Annotated[
        Path, typer.Argument(help="fileset YAML/JSON: {dataset: {files: [...], metadata: {...}}}")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="shard directory to write")],
    config: Annotated[Path | None, typer.Option(help="build config YAML (BuildConfig)")] = None,
    executor: ExecutorOption = "iterative",
    workers: WorkersOption = 2,
    chunksize: ChunksizeOption = 100_000,
    skip_bad_files: SkipBadFilesOption = False,
    on_invalid: OnInvalidOption = None,
    progress: ProgressOption = True,
) -> None:
    """Run GraphBuilder over a fileset and write parquet shards with a manifest."""
    import dataclasses

    from paratag.build import BuildConfig, build_shards

    cfg = BuildConfig() if config is None else _load(BuildConfig, config)
    if on_invalid is not None:
        cfg = dataclasses.replace(cfg, on_invalid=on_invalid)  # type: ignore[arg-type]
    manifest = build_shards(
        fileset,
        out,
        cfg,
        executor=executor,
        workers=workers,
        chunksize=chunksize,
        skip_bad_files=skip_bad_files,
        progress=progress,
    )
    typer.echo(f"wrote {manifest}")


@app.command()
def generate(
    config: Annotated[
        str, typer.Argument(help="generate config YAML, or a preset name (charged_higgs, xbb_jets)")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="output folder for ROOT files + fileset.json")
    ],
    events: Annotated[
        int, typer.Option("--events", "-n", help="events per process / mass point")
    ] = 1000,
    workers: WorkersOption = 1,
    seed: Annotated[int, typer.Option(help="master random seed (same seed, same arrays)")] = 1,
    progress: ProgressOption = True,
) -> None:
    """Generate Pythia8 + FastJet samples in the PFNano layout and write fileset.json."""
    from paratag.generate import GenerateConfig
    from paratag.generate import generate as run_generate

    cfg = GenerateConfig.from_file(config)
    fileset = run_generate(cfg, out, events, workers=workers, seed=seed, progress=progress)
    typer.echo(f"wrote {fileset}")


@app.command()
def score(
    fileset: Annotated[
        Path, typer.Argument(help="fileset YAML/JSON: {dataset: {files: [...], metadata: {...}}}")
    ],
    model: Annotated[Path, typer.Option(help="exported model.onnx (preprocess.json next to it)")],
    hypotheses: Annotated[
        str, typer.Option(help='"mHc=130,mA=90;mHc=160,mA=90" or a YAML with `hypotheses:`')
    ] = "",
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")] = Path("scores"),
    executor: ExecutorOption = "iterative",
    workers: WorkersOption = 2,
    chunksize: ChunksizeOption = 100_000,
    threads: Annotated[int, typer.Option(help="onnxruntime threads per worker")] = 1,
    memory_mb: Annotated[
        float, typer.Option(help="working-memory budget per onnxruntime call")
    ] = 2000.0,
    parquet: Annotated[
        bool, typer.Option(help="also write scores.parquet (event id + scores)")
    ] = False,
    skip_bad_files: SkipBadFilesOption = False,
    providers: Annotated[
        str, typer.Option(help="onnxruntime providers: auto, cpu, cuda or names")
    ] = "auto",
    scheduler: Annotated[
        str | None,
        typer.Option(help="existing Dask scheduler, e.g. tcp://host:8786 (with --executor dask)"),
    ] = None,
    on_invalid: OnInvalidOption = None,
    progress: ProgressOption = True,
) -> None:
    """Score a fileset with an exported model; write histograms (and optionally parquet)."""
    from paratag.processors.tagger import Tagger, parse_hypotheses, score_fileset, write_scores
    from paratag.validity import invalid_summary

    tagger = Tagger(
        model,
        parse_hypotheses(hypotheses),
        output="both" if parquet else "hist",
        threads=threads,
        memory_mb=memory_mb,
        providers=providers,
        on_invalid=on_invalid or "drop",  # type: ignore[arg-type]
    )
    result = score_fileset(
        fileset,
        tagger,
        executor=executor,
        workers=workers,
        chunksize=chunksize,
        skip_bad_files=skip_bad_files,
        scheduler=scheduler,
        progress=progress,
    )
    for bad in result.get("skipped_files", []):
        typer.secho(f"skipped {bad['file']}: {bad['reason']}", fg=typer.colors.YELLOW, err=True)
    for line in invalid_summary(result):
        typer.secho(line, fg=typer.colors.YELLOW, err=True)
    for path in write_scores(result, out, parquet=parquet):
        typer.echo(f"wrote {path}")


@app.command()
def train(
    config: Annotated[
        str, typer.Argument(help="train YAML, or a packaged config name (e.g. demo)")
    ],
    shards: ShardsOption = None,
    run_dir: RunDirOption = None,
    stage: Annotated[
        list[int] | None,
        typer.Option(
            help="run only this stage (repeatable: --stage 2 --stage 3; 4: the hypothesis ratio)"
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue interrupted stages from last.pt")] = False,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (overrides device)")] = None,
    seed: Annotated[int | None, typer.Option(help="run seed (overrides seed)")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a config value, e.g. --set stage3.epochs=5 (repeat)"),
    ] = None,
    progress: Annotated[
        bool | None, typer.Option(help="progress bars (default: the config's `progress`)")
    ] = None,
) -> None:
    """Train a parametric tagger with the three-stage schedule (works under torchrun for DDP)."""
    import dataclasses

    from paratag.config import apply_overrides
    from paratag.training.config import load_train_config
    from paratag.training.run import train as run_train

    cfg = load_train_config(config, shards=shards, run_dir=run_dir, device=device, seed=seed)
    cfg = apply_overrides(cfg, set_ or [])
    if progress is not None:
        cfg = dataclasses.replace(cfg, progress=progress)
    summary = run_train(cfg, stages=stage or None, resume=resume)
    typer.echo(f"run directory: {summary.get('run_dir', cfg.run_dir)}")


@app.command()
def tune(
    config: Annotated[str, typer.Argument(help="train YAML, or a packaged config name")],
    trials: Annotated[
        int, typer.Option(help="trials to run now (the study database keeps earlier ones)")
    ] = 20,
    shards: ShardsOption = None,
    run_dir: RunDirOption = None,
    epochs: Annotated[
        int | None, typer.Option(help="epochs per trial (default: stage1.epochs)")
    ] = None,
    study_name: Annotated[str, typer.Option(help="Optuna study name")] = "paratag",
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL (default: RUN_DIR/tune/study.db)")
    ] = None,
) -> None:
    """Search learning rate, k, widths and dropout with Optuna (resumable)."""
    from paratag.training.config import load_train_config
    from paratag.training.tune import TuneConfig
    from paratag.training.tune import tune as run_tune

    cfg = load_train_config(config, shards=shards, run_dir=run_dir)
    result = run_tune(
        cfg, TuneConfig(n_trials=trials, epochs=epochs, study_name=study_name, storage=storage)
    )
    typer.echo(
        f"best AUC {result['best_value']:.4f} with {result['best_params']} ({result['n_trials']} trials)"
    )


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="training run directory of `paratag train`")],
    test: Annotated[Path, typer.Option("--test", help="shard directory to evaluate on")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output folder (default RUN_DIR/evaluation)")
    ] = None,
    seed_run: Annotated[
        list[Path] | None, typer.Option(help="another run trained with a different seed (repeat)")
    ] = None,
    pileup: Annotated[
        list[str] | None, typer.Option(help="LEVEL=SHARD_DIR for the pileup study (repeat)")
    ] = None,
    train_dedicated: Annotated[
        bool, typer.Option(help="train dedicated models at untrained points")
    ] = False,
    inclusive: Annotated[
        bool,
        typer.Option(
            help="train (once, cached in RUN_DIR/inclusive) the inclusive model: same network "
            "and epochs, all training points' signal, no hypothesis"
        ),
    ] = False,
    compare: Annotated[
        list[str] | None,
        typer.Option(help="NAME=CHECKPOINT of another tagger for the comparison table (repeat)"),
    ] = None,
    importance: Annotated[
        int,
        typer.Option(help="events for permutation importance and saliency images (0: off)"),
    ] = 0,
    sculpting: Annotated[
        Path | None,
        typer.Option(
            help="background-only shard directory whose jets give the sculpting study's "
            "mass shapes (default: the test background)"
        ),
    ] = None,
    skip: SkipStudiesOption = None,
    n_boot: Annotated[int, typer.Option(help="bootstrap replicas (0 disables)")] = 100,
    batch_size: Annotated[int, typer.Option(help="inference batch size")] = 2048,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Score a trained run on test shards and write report.md, report.html and results.json."""
    from paratag.evaluate.run import evaluate_run, parse_pileup
    from paratag.evaluate.runs import parse_named_paths
    from paratag.training import dedicated_trainer

    inclusive_model = None
    if inclusive:
        import dataclasses

        from paratag.training import load_train_config, train_inclusive

        cfg = load_train_config(run_dir / "config.yaml")
        inclusive_model = train_inclusive(
            dataclasses.replace(cfg, run_dir=str(run_dir), progress=progress, tensorboard=False)
        )
    md = evaluate_run(
        run_dir,
        test,
        out,
        n_boot=n_boot,
        seeds_runs=seed_run or (),
        pileup_shards=parse_pileup(pileup or ()),
        dedicated_trainer=dedicated_trainer(run_dir, progress=progress)
        if train_dedicated
        else None,
        inclusive_model=inclusive_model,
        compare=parse_named_paths(compare or (), "--compare", "pnlite=runs/pn/inclusive/model.pt"),
        importance=importance,
        sculpting_shards=sculpting,
        skip=skip or (),
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    typer.echo(f"wrote {md}")


def _load(cls, path: Path):
    from paratag.config import load

    return load(cls, path)


def main() -> None:
    """Entry point of the ``paratag`` console script."""
    setup_console()
    try:
        app()
    except ParatagError as exc:
        typer.secho(f"paratag: error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
