"""What an evaluation reads: a trained run (its models, grid, config) and selected samples.

:func:`load_run` opens a run directory of ``paratag train`` (the stage-3
parametric model and the stage-1 dedicated models); :class:`EvalSample` selects
the events of a shard directory to score (the run's test fold when the shards are
the training shards, else all), per signal point and background.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from paratag.conditions import ConditionSpace, MassGrid
from paratag.data.dataset import ShardStore
from paratag.data.selection import SampleBuilder
from paratag.errors import ConfigError, InputFileError
from paratag.presets import DEFAULT_SECONDARY, cloud_keys, secondary_cloud
from paratag.shards import read_manifest

__all__ = [
    "MASS_SPECTATORS",
    "EvalSample",
    "LoadedModel",
    "LoadedRun",
    "load_model_for_eval",
    "load_run",
    "parse_named_paths",
    "parse_pileup",
]

Point = tuple[float, ...]
Selection = Literal["auto", "test_fold", "all"]
#: Spectators tried (in order) for the sculpting study when ``mass_spectator`` is not given.
MASS_SPECTATORS = ("jet_sdmass", "jet_msoftdrop", "fj_msoftdrop", "mll", "jet_mass")
_FOLD = {"train": 0, "validation": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A loaded checkpoint with what inference needs.

    ``secondary`` is the name of the second cloud of the preset recorded with the
    model (``sv`` for checkpoints that record none); with ``use_sv`` the model reads it.
    """

    module: torch.nn.Module
    info: dict[str, Any]
    space: ConditionSpace
    use_sv: bool
    secondary: str = DEFAULT_SECONDARY

    @property
    def keys(self) -> tuple[str, ...]:
        """The shard arrays the model reads: the first cloud, then the second if used."""
        second = cloud_keys(self.secondary, 1) if self.use_sv else ()
        return (*cloud_keys("", 0), *second)


@dataclasses.dataclass(frozen=True)
class LoadedRun:
    """A run directory: resolved config, grid, parametric model, dedicated checkpoints."""

    path: Path
    cfg: Any  # paratag.training.config.TrainConfig
    grid: MassGrid
    model: LoadedModel
    dedicated: dict[Point, Path]


def load_model_for_eval(path: Path, device: torch.device) -> LoadedModel:
    """A checkpoint with its condition space, ready for inference on ``device``."""
    from paratag.models.io import load_model

    module, info = load_model(path, device=device)
    names = tuple(getattr(module, "condition_names", ()))
    space = ConditionSpace(names, tuple(info["condition_mean"]), tuple(info["condition_std"]))
    use_sv = bool(info["input_dims"].get("sv_dims"))
    return LoadedModel(module, dict(info), space, use_sv, secondary_cloud(info.get("preset")))


def load_run(run_dir: str | Path, device: torch.device) -> LoadedRun:
    """A training run directory: config, grid, delivered model and existing dedicated models.

    The delivered model is the hypothesis-ratio model when the run trained a current
    one (:func:`paratag.models.io.delivered_checkpoint`), else the stage-3 model.
    """
    from paratag.models.io import delivered_checkpoint
    from paratag.run_config import load_train_config

    run = Path(run_dir)
    ckpt = delivered_checkpoint(run) or run / "stage3" / "model.pt"
    train_hint = "pass the RUN_DIR written by `paratag train`"
    for bad, where, problem, hint in (
        (not run.is_dir(), run, "run directory does not exist", train_hint),
        (
            not (run / "config.yaml").is_file(),
            run,
            "not a paratag run directory (no config.yaml)",
            train_hint,
        ),
        (
            not ckpt.is_file(),
            ckpt,
            "the run has no stage-3 parametric model",
            "train stage 3 first",
        ),
    ):
        if bad:
            raise InputFileError(str(where), problem, hint)
    cfg = load_train_config(run / "config.yaml")
    grid = MassGrid.from_config(cfg.grid)
    files = {p: run / "stage1" / grid.name(p) / "model.pt" for p in grid.points()}
    dedicated = {p: f for p, f in files.items() if f.is_file()}
    return LoadedRun(run, cfg, grid, load_model_for_eval(ckpt, device), dedicated)


def parse_named_paths(
    items: Iterable[str], option: str, example: str, form: str = "NAME=PATH"
) -> dict[str, Path]:
    """Parse ``NAME=PATH`` strings of a repeated CLI option into ``{name: path}``."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"{option} {item!r}: expected {form}, e.g. {example}")
        if name in out:
            raise ConfigError(f"{option}: {name!r} is given twice")
        out[name] = Path(path)
    return out


def parse_pileup(items: Iterable[str]) -> dict[str, Path]:
    """Parse ``LEVEL=SHARD_DIR`` strings (the CLI's ``--pileup``) into ``{level: dir}``."""
    return parse_named_paths(items, "--pileup", "PU60=shards_pu60", "LEVEL=SHARD_DIR")


def same_shards(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    ma, mb = a / "manifest.json", b / "manifest.json"
    return ma.is_file() and mb.is_file() and ma.read_bytes() == mb.read_bytes()


class EvalSample:
    """Selected rows of a shard store: signal per grid point, backgrounds, weights, spectator mass."""

    def __init__(
        self,
        path: Path,
        run: LoadedRun,
        selection: Selection | Literal["train_fold"],
        mass_spectator: str | None,
    ) -> None:
        cfg = run.cfg
        shapes = read_manifest(path)["shapes"]
        if mass_spectator is None:
            auto = [cfg.loss.disco_spectator] if cfg.loss.disco_spectator else []
            mass_spectator = next(
                (s for s in (*auto, *MASS_SPECTATORS) if f"spec_{s}" in shapes), None
            )
        self.mass_name = mass_spectator
        specs = [s for s in (cfg.data.weight_column, mass_spectator) if s]
        self.store = ShardStore(path, cfg.data.cache_size, spectators=specs)
        m = run.model
        b = SampleBuilder(
            self.store, run.grid, cfg.data, mean=m.space.mean, std=m.space.std, seed=cfg.seed
        )
        train_path = Path(cfg.data.shards) if cfg.data.shards else None
        same = train_path is not None and train_path.is_dir() and same_shards(path, train_path)
        if selection == "train_fold":
            keep, self.selection = b.fold == _FOLD["train"], "training fold"
        elif selection == "all" or (selection == "auto" and not same):
            keep, self.selection = (
                np.ones(len(self.store), bool),
                "all events (separate test sample)",
            )
        elif cfg.data.n_folds == 2:
            keep = b.fold == _FOLD["validation"]
            self.selection = f"validation fold {cfg.data.fold} of 2 (a 2-fold run has no test fold)"
        else:
            keep = b.fold == _FOLD["test"]
            self.selection = f"test fold (event % {cfg.data.n_folds} == {cfg.data.fold})"
        self.points: dict[Point, np.ndarray] = {}
        for i, p in enumerate(b.points):
            rows = np.flatnonzero(keep & (b.point == i))
            if len(rows):
                self.points[p] = rows
        self.background = np.flatnonzero(keep & ~b.is_signal)
        self.label = self.store.table["label"]
        self.weight = b.base_weight
        self.mass = None if mass_spectator is None else self.store.table[f"spec_{mass_spectator}"]

    def counts(self, grid: MassGrid) -> dict[str, int]:
        """Events per signal point and of background."""
        return {
            **{grid.name(p): len(r) for p, r in self.points.items()},
            "background": len(self.background),
        }
