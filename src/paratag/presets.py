"""Point-cloud presets: which collections become which padded inputs, as data.

A preset is a YAML file (see ``paratag/preset_files/``): the built-in ``jet``
preset takes AK8 ``FatJet`` with their PF candidates and secondary vertices
through the PFNano link tables; ``event`` takes the muons, electrons, jets and
MET of an event as one cloud. A new analysis writes its own YAML and passes its
path wherever a preset name is accepted; no Python changes.

:func:`paratag.inputs.build_inputs` (importable from here too) turns a chunk of
events into the padded inputs a preset describes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from paratag.config import from_dict, read_mapping
from paratag.errors import ConfigError
from paratag.features import FeatureSpec, parse, referenced_names

__all__ = [
    "DEFAULT_SECONDARY",
    "CloudSpec",
    "Preset",
    "SourceSpec",
    "cloud_keys",
    "constituent_names",
    "secondary_cloud",
    "source_names",
    "builtin_presets",
    "load_preset",
]


#: GenPart branches the truth matching reads (:mod:`paratag.labels`).
TRUTH_BRANCHES = frozenset(f"GenPart_{f}" for f in ("pdgId", "genPartIdxMother", "eta", "phi"))


@dataclass(frozen=True)
class SourceSpec:
    """One collection that contributes constituents to a cloud.

    Attributes:
        collection: NanoAOD collection name, e.g. ``PFCands`` or ``Muon``.
        link: PFNano link table that assigns constituents to objects
            (``FatJetPFCands``); jet presets only.
        link_object_index: link-table field holding the object index.
        link_target_index: link-table field holding the constituent index; empty
            when the link table itself is the constituent collection (``FatJetSVs``).
        fields: alias → expression; when given, the cloud sees exactly these
            names (plus ``type``), which lets several collections share one cloud.
        selection: expression; constituents where it is zero are dropped.
        type_id: value of the ``type`` alias for this source.
    """

    collection: str
    link: str = ""
    link_object_index: str = "jetIdx"
    link_target_index: str = "pFCandsIdx"
    fields: dict[str, str] = field(default_factory=dict)
    selection: str = ""
    type_id: int = 0


@dataclass(frozen=True)
class CloudSpec:
    """One padded point cloud: coordinates, features, length and ordering."""

    name: str
    sources: tuple[SourceSpec, ...]
    points: tuple[FeatureSpec, ...]
    features: tuple[FeatureSpec, ...]
    max_length: int = 100
    sort_by: str = "pt"

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError(f"cloud {self.name!r}: needs at least one source")
        if self.max_length <= 0:
            raise ConfigError(f"cloud {self.name!r}: max_length must be > 0")
        if len(self.sources) > 1 and any(not s.fields for s in self.sources):
            raise ConfigError(
                f"cloud {self.name!r}: several sources need `fields` aliases on every source"
            )


@dataclass(frozen=True)
class Preset:
    """A named set of clouds built per object (``jet``) or per event (``event``).

    ``reference`` names a physics reference scorer with no ML for the evaluation
    (:mod:`paratag.evaluate.reference`), e.g. ``{kind: pair_mass, select:
    obj_isMuon, charge: obj_charge, condition: mA}``: ``-min |m(pair) - mA|``
    over opposite-sign pairs of the selected objects; ``distance_edges`` and
    ``min_distances`` set how the mass-awareness index is binned in pair distance.

    ``truth`` (jet presets) labels jets by generator matching instead of by dataset
    (:class:`paratag.labels.TruthMatch`), e.g. ``{resonance: [25], daughters: [5],
    min_daughters: 2, max_dr: 0.8}``: unmatched jets of signal datasets are dropped.
    """

    name: str
    kind: Literal["jet", "event"]
    clouds: tuple[CloudSpec, ...]
    object: str = ""
    selection: str = ""
    spectators: dict[str, str] = field(default_factory=dict)
    weight: str = "event.genWeight"
    reference: dict[str, Any] = field(default_factory=dict)
    truth: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind == "jet" and not self.object:
            raise ConfigError(f"preset {self.name!r}: kind 'jet' needs `object` (e.g. FatJet)")
        for expr in [self.selection, *self.spectators.values()]:
            if expr:
                parse(expr)

    def cloud(self, name: str) -> CloudSpec:
        """The cloud called ``name``."""
        for c in self.clouds:
            if c.name == name:
                return c
        raise ConfigError(f"preset {self.name!r} has no cloud {name!r}")

    def with_lengths(self, **lengths: int) -> Preset:
        """A copy with other ``max_length`` per cloud, e.g. ``with_lengths(pf=50)``."""
        clouds = tuple(
            dataclasses.replace(c, max_length=lengths.get(c.name, c.max_length))
            for c in self.clouds
        )
        return dataclasses.replace(self, clouds=clouds)

    def pair_kinematics(self) -> dict[str, Any]:
        """Where the first cloud's (pT, η, φ) are, for models with pairwise features.

        pT comes from the feature whose expression is ``log(pt)`` (with its
        preprocessing); η and φ are the first two point channels (absolute, or
        relative to the jet axis: only differences enter pair features). The
        result is the ``pair_kinematics`` option of the graph models.
        """
        cloud = self.clouds[0]
        index = next((i for i, f in enumerate(cloud.features) if f.expr == "log(pt)"), None)
        if index is None or len(cloud.points) < 2:
            raise ConfigError(
                f"preset {self.name!r}: pair features need a `log(pt)` feature and (eta, phi) "
                f"as the first two points of cloud {cloud.name!r}; add them or set "
                f"model.options.pair_kinematics explicitly"
            )
        spec = cloud.features[index]
        return {
            "log_pt_index": index,
            "log_pt_median": float(spec.median),
            "log_pt_norm_factor": float(spec.norm_factor),
            "eta_index": 0,
            "phi_index": 1,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-serialisable form (round-trips through :func:`load_preset`)."""
        from paratag.config import to_dict

        return to_dict(self)

    def required_branches(self) -> set[str]:
        """:meth:`branches` that every file must have.

        Generator-level branches are optional: collision data has no ``genWeight``
        (unit weights) and truth labels read ``GenPart`` only in signal datasets.
        """
        optional = set(TRUTH_BRANCHES) if self.truth else set()
        if self.weight == "event.genWeight":
            optional.add("genWeight")
        return self.branches() - optional

    def graph_names(self, selection: str | None = None, *, with_weight: bool = True) -> set[str]:
        """Per-graph names (``jet.x``, ``event.y``) this preset reads.

        From the selection (``selection`` overrides the preset's), the spectators, the
        weight (unless ``with_weight`` is False) and every source's expressions.
        """
        sel = self.selection if selection is None else selection
        exprs = [sel, *self.spectators.values(), self.weight if with_weight else ""]
        names = set().union(*(referenced_names(e) for e in exprs if e))
        for cloud in self.clouds:
            for src in cloud.sources:
                names |= source_names(cloud, src)
        return {n for n in names if n.startswith(("jet.", "event."))}

    def branch(self, name: str, src: SourceSpec | None = None) -> str:
        """The NanoAOD branch of a name as expressions write it (``jet.pt`` → ``FatJet_pt``).

        Bare and ``link.`` names are fields of ``src``'s collection and link table.
        """
        if name.startswith("jet."):
            return f"{self.object}_{name[4:]}"
        if name.startswith("event."):
            return name[6:].replace(".", "_")
        if src is None:
            raise ConfigError(f"preset {self.name!r}: {name!r} needs its source to name a branch")
        if name.startswith("link."):
            return f"{src.link}_{name[5:]}"
        return f"{src.collection}_{name}"

    def branches(self) -> set[str]:
        """NanoAOD branch names this preset reads (for column-usage checks)."""
        out = {self.branch(n) for n in self.graph_names()}
        for cloud in self.clouds:
            for src in cloud.sources:
                out |= {self.branch(n, src) for n in constituent_names(cloud, src)}
                if src.link:
                    out.add(f"{src.link}_{src.link_object_index}")
                    if src.link_target_index:
                        out.add(f"{src.link}_{src.link_target_index}")
        if self.truth:
            out |= TRUTH_BRANCHES
        return out


def source_names(cloud: CloudSpec, src: SourceSpec) -> set[str]:
    """Every name ``src`` reads for ``cloud``: bare, ``link.``, ``jet.``, ``event.``, ``type``.

    With ``fields`` the cloud sees only those aliases, so the names are the aliases'
    expressions'; otherwise the cloud's own expressions. Plus the source's selection.
    """
    if src.fields:
        exprs = [*src.fields.values()]
    else:
        exprs = [s.expr for s in (*cloud.points, *cloud.features)] + [cloud.sort_by]
    return set().union(*(referenced_names(e) for e in [*exprs, src.selection] if e))


def constituent_names(cloud: CloudSpec, src: SourceSpec) -> set[str]:
    """:func:`source_names` of the constituents themselves (bare and ``link.``)."""
    return {
        n for n in source_names(cloud, src) if n != "type" and not n.startswith(("jet.", "event."))
    }


#: Name of the second cloud where none is recorded (checkpoints, shards and models
#: before presets named it): the jet preset's secondary vertices.
DEFAULT_SECONDARY = "sv"


def cloud_keys(name: str, index: int) -> tuple[str, str, str]:
    """Array keys of cloud ``index`` (called ``name``) of a preset: ``(points, features, mask)``.

    The first cloud is ``points, features, mask``; any other is ``<name>_points,
    <name>_features, <name>_mask``. These are the keys of GraphBuilder output, shards,
    batches and the ONNX / preprocess.json inputs alike.
    """
    prefix = "" if index == 0 else f"{name}_"
    return f"{prefix}points", f"{prefix}features", f"{prefix}mask"


def secondary_cloud(preset: Preset | Mapping[str, Any] | None) -> str:
    """Name of the second cloud of ``preset`` (a Preset or its dict, e.g. a checkpoint's).

    :data:`DEFAULT_SECONDARY` (``sv``) when there is no preset or no second cloud.
    """
    if preset is None:
        return DEFAULT_SECONDARY
    if isinstance(preset, Preset):
        names = [c.name for c in preset.clouds]
    else:
        names = [str(c.get("name", "")) for c in preset.get("clouds") or ()]
    return names[1] if len(names) > 1 and names[1] else DEFAULT_SECONDARY


def builtin_presets() -> list[str]:
    """Names of the presets shipped with paratag."""
    files = resources.files("paratag") / "preset_files"
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".yaml"))


@lru_cache(maxsize=32)
def _load_cached(name: str) -> Preset:
    path: Any
    if name in builtin_presets():
        path = resources.files("paratag") / "preset_files" / f"{name}.yaml"
        with resources.as_file(path) as real:
            data = read_mapping(real)
    elif Path(name).suffix in (".yaml", ".yml", ".json"):
        data = read_mapping(name)
    else:
        raise ConfigError(
            f"unknown preset {name!r}; use one of {builtin_presets()} or a path to a preset YAML"
        )
    return from_dict(Preset, data, where=f"preset {name!r}")


def load_preset(preset: str | Path | Mapping[str, Any] | Preset) -> Preset:
    """Load a preset by built-in name, YAML path, mapping or pass one through."""
    if isinstance(preset, Preset):
        return preset
    if isinstance(preset, Mapping):
        return from_dict(Preset, preset, where="preset")
    return _load_cached(str(preset))
