"""``paratag build``: run GraphBuilder over a fileset and write dataset shards.

Filesets and file checks are :mod:`paratag.runner`'s (the same for
``paratag score``); condition keys are checked against the datasets' metadata
before anything runs, and skipped files are recorded in the manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from paratag.config import dump, to_dict
from paratag.errors import ConfigError

# the fileset runner lives in paratag.runner; these names stay importable from here
from paratag.runner import check_file, load_fileset, make_executor, run_processor, unwrap_error
from paratag.validity import OnInvalid, check_on_invalid, invalid_summary

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
        background_only: the fileset holds backgrounds only (e.g. a sculpting sample): no
            dataset carries the condition, whose columns are NaN (drawn when scored).
        label: optional dataset → class mapping (otherwise metadata ``label``).
        schema: coffea schema, "nanoaod" or "pfnanoaod".
        max_rows: rows per parquet shard.
        on_invalid: NaN, inf or negative-pT input values (:mod:`paratag.validity`):
            "drop" the objects/constituents holding them, "replace" constituent values
            as CMSSW does, or "raise"; always counted in the manifest's cutflow.
    """

    preset: str = "jet"
    selection: str | None = None
    max_particles: int | None = None
    max_svs: int | None = None
    condition: tuple[str, ...] = ()
    background_only: bool = False
    label: dict[str, int] = field(default_factory=dict)
    schema: Literal["nanoaod", "pfnanoaod"] = "nanoaod"
    max_rows: int = 50_000
    on_invalid: OnInvalid = "drop"

    def __post_init__(self) -> None:
        check_on_invalid(self.on_invalid)
        for name in ("max_particles", "max_svs", "max_rows"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"BuildConfig.{name} must be > 0, got {value}")


def check_condition_metadata(
    fileset: Mapping[str, Mapping[str, Any]],
    condition: Sequence[str],
    background_only: bool = False,
) -> None:
    """Every condition key must be in the metadata of some dataset, and all or none per dataset.

    A typo (``condition: [mH]``) would otherwise write shards whose condition column
    is NaN everywhere. With ``background_only`` no dataset may carry any of the keys.
    """
    if not condition:
        return
    if background_only:
        carrying = [
            ds for ds, e in fileset.items() if set(condition) & set(e.get("metadata") or {})
        ]
        if carrying:
            raise ConfigError(
                f"background_only: datasets {carrying} carry condition keys {list(condition)} "
                "(signal?); build them without background_only"
            )
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


def run_builder(
    fileset: str | Path | Mapping[str, Any],
    config: BuildConfig = BuildConfig(),
    *,
    executor: str | Any = "iterative",
    workers: int = 2,
    chunksize: int = 100_000,
    skip_bad_files: bool = False,
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Run GraphBuilder; return (per-dataset output, skipped files with reasons)."""
    from paratag.processors.graph_builder import GraphBuilder

    builder = GraphBuilder(
        config.preset,
        selection=config.selection,
        max_particles=config.max_particles,
        label=config.label or None,
        condition=config.condition,
        max_svs=config.max_svs,
        on_invalid=config.on_invalid,
    )
    return run_processor(
        fileset,
        builder,
        executor=executor,
        workers=workers,
        chunksize=chunksize,
        skip_bad_files=skip_bad_files,
        schema=config.schema,
        progress=progress,
    )


def build_shards(
    fileset: str | Path | Mapping[str, Any],
    out_dir: str | Path,
    config: BuildConfig = BuildConfig(),
    *,
    executor: str = "iterative",
    workers: int = 2,
    chunksize: int = 100_000,
    skip_bad_files: bool = False,
    progress: bool = True,
) -> Path:
    """Run GraphBuilder over ``fileset`` and write shards + manifest to ``out_dir``."""
    from paratag.presets import load_preset
    from paratag.shards import write_shards

    check_condition_metadata(load_fileset(fileset), config.condition, config.background_only)
    out, skipped = run_builder(
        fileset,
        config,
        executor=executor,
        workers=workers,
        chunksize=chunksize,
        skip_bad_files=skip_bad_files,
        progress=progress,
    )
    for line in invalid_summary(out):
        log.warning(line)
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
