"""Which events train what: folds, mass points, event weights and class balancing.

:class:`DataConfig` is the ``data:`` section of a train config;
:class:`SampleBuilder` turns a :class:`~paratag.data.dataset.ShardStore` plus a
:class:`~paratag.conditions.MassGrid` into the datasets of each stage.

Event weights, in order:

1. ``genWeight`` (the shard ``weight`` column; ``use_gen_weight: false`` sets 1)
   times an optional user column (``weight_column``: a spectator ``spec_<name>``);
2. optional cross sections per background group: ``xsec: {pattern: sigma}``
   (dataset names, shell patterns) scales every event of a matching dataset
   by ``sigma / sum of its weights``, so backgrounds mix in proportion to their
   cross sections (the luminosity cancels in step 3);
3. class balancing (``balance_classes``): per-class normalisation so every
   class has the same summed weight, as in the origin analysis; with
   ``balance_points`` each signal mass point gets an equal share of the signal
   class. Weights are finally scaled to mean 1.
4. optional wrong-mass negatives (``wrong_mass_weight``, stage 3 only): every
   training-point signal event is added once more at another training point's
   hypothesis (neighbours preferred), labelled as a background; at every
   hypothesis the copies weigh that fraction of the signal trained there.

Why wrong-mass negatives: a search scans hypotheses, and a score that is as high
for signal of (130, 85) at hypothesis (100, 85) as at its own lights up every
hypothesis near a real excess. The signal-versus-SM objective never rewards
telling two signal masses apart when the backgrounds barely depend on the
hypothesis (mHc here); the copies do, and a small weight keeps the SM rejection.

Folds come from the event number (:func:`paratag.conditions.fold_roles`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from collections.abc import Sequence

import numpy as np

from paratag.conditions import ConditionSpace, MassGrid, fit_subset, fold_roles, match_points
from paratag.data.dataset import GraphDataset, ShardStore
from paratag.errors import ConfigError, InvalidValueError, UnknownMassPointError

__all__ = ["DataConfig", "SampleBuilder", "balance_weights"]

log = logging.getLogger(__name__)

Point = tuple[float, ...]
_FOLD = {"train": 0, "validation": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The ``data:`` section of a train config.

    Attributes:
        shards: shard directory written by ``paratag build`` (relative to the working directory).
        cache_size: decoded shard files kept in memory per process (LRU).
        num_workers: DataLoader worker processes.
        n_folds: k of the k-fold split by event number.
        fold: the test fold; fold + 1 validates, the rest trains.
        signal_label: the signal class label (others are backgrounds).
        use_gen_weight: multiply by the shard ``weight`` (genWeight).
        weight_column: spectator name multiplied into the weight (e.g. a pileup weight).
        xsec: background dataset name (shell pattern) -> cross section (any unit).
        xsec_key: dataset metadata key holding the cross section of each
            background dataset (``xsec_pb``, written by ``paratag generate``);
            ``xsec`` entries take precedence.
        balance_classes: equal summed weight per class.
        balance_points: equal summed weight per signal mass point.
        use_sv: feed the secondary-vertex cloud (Interaction Network).
        max_events: keep at most this many events per dataset (quick runs).
        binary: merge every background label into one class (signal vs
            background, labels 0/1 with the signal keeping ``signal_label``).
        wrong_mass_weight: stage 3: signal copies at other training points' hypotheses,
            as background; their summed weight at each hypothesis as a fraction of the
            signal weight there (0: off).
        wrong_mass_label: the (background) class of those copies; ``None``: the
            first label that is not ``signal_label``.
        ragged: batches of similar constituent count (length buckets of ``ragged_bucket``
            batches, shuffled between and within buckets) cut to their own longest graph:
            exact, nothing is truncated; pays only for real constituents.
        ragged_bucket: batches per length bucket.
        fit_fraction: share of training and validation events kept (fixed; test whole).
    """

    shards: str = ""
    cache_size: int = 8
    num_workers: int = 0
    n_folds: int = 5
    fold: int = 0
    signal_label: int = 0
    use_gen_weight: bool = True
    weight_column: str | None = None
    xsec: dict[str, float] = dataclasses.field(default_factory=dict)
    xsec_key: str | None = None
    balance_classes: bool = True
    balance_points: bool = True
    use_sv: bool = False
    max_events: int | None = None
    binary: bool = False
    wrong_mass_weight: float = 0.0
    wrong_mass_label: int | None = None
    ragged: bool = False
    ragged_bucket: int = 16
    fit_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.ragged_bucket < 1:
            raise ConfigError(f"data.ragged_bucket must be >= 1, got {self.ragged_bucket}")
        if not 0.0 < self.fit_fraction <= 1.0:
            raise ConfigError(f"data.fit_fraction must be in (0, 1], got {self.fit_fraction}")
        if not 0.0 <= self.wrong_mass_weight <= 10.0:
            raise ConfigError(
                f"data.wrong_mass_weight must be in [0, 10], got {self.wrong_mass_weight}"
            )
        if self.wrong_mass_label is not None and self.wrong_mass_label == self.signal_label:
            raise ConfigError(
                f"data.wrong_mass_label {self.wrong_mass_label} is the signal label; "
                "wrong-mass copies must be a background class"
            )


def balance_weights(
    weight: np.ndarray,
    label: np.ndarray,
    group: np.ndarray | None = None,
    *,
    balance_classes: bool = True,
) -> np.ndarray:
    """Per-class (and per-group within a class) normalisation, then mean 1.

    Every class gets the same summed weight; within a class every ``group``
    value (e.g. signal mass point, -1 for none) gets an equal share.
    """
    w = np.asarray(weight, dtype=np.float64).copy()
    if len(w) == 0:
        return w.astype(np.float32)
    classes = np.unique(label)
    for c in classes:
        sel = label == c
        sub_groups = np.unique(group[sel]) if group is not None else [None]
        for g in sub_groups:
            s = sel if g is None else sel & (group == g)
            total = w[s].sum()
            if total <= 0:
                raise InvalidValueError(
                    f"class {int(c)}{'' if g is None else f' group {int(g)}'} has summed weight "
                    f"{total:.4g} <= 0; check genWeight / weight_column / xsec"
                )
            share = (
                1.0 / len(sub_groups)
                if balance_classes
                else w[sel].sum() / w.sum() / len(sub_groups)
            )
            w[s] *= share / total
    return (w * (len(w) / w.sum())).astype(np.float32)


def _active(group: np.ndarray, hypothesis: np.ndarray, points: Sequence[int]) -> np.ndarray:
    """Rows of a curriculum phase: backgrounds, and events whose point and hypothesis are active."""
    return (np.isin(group, points) & np.isin(hypothesis, points)) | (group < 0)


class SampleBuilder:
    """Build the datasets of every stage from a store and a grid.

    Args:
        store: the shard store.
        grid: the resolved mass grid.
        config: data settings.
        mean, std: condition normalisation of the model.
        seed: run seed (background condition draws).
        spectator: spectator to put in every batch (DisCo).
    """

    def __init__(
        self,
        store: ShardStore,
        grid: MassGrid,
        config: DataConfig,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int = 0,
        spectator: str | None = None,
    ) -> None:
        self.store, self.grid, self.config = store, grid, config
        self.space = ConditionSpace(grid.names, tuple(mean), tuple(std))
        self.seed, self.spectator = seed, spectator
        t = store.table
        names = store.condition_names
        if list(names) != list(grid.names):
            raise ConfigError(
                f"{store.path}: shards have conditions {names}, the grid has {list(grid.names)}; "
                f"set grid.names (or rebuild with `condition: {list(grid.names)}`)"
            )
        self.is_signal = t["label"] == config.signal_label
        self.label = t["label"]
        if config.binary:
            other = 1 if config.signal_label == 0 else 0
            self.label = np.where(self.is_signal, config.signal_label, other).astype(np.int64)
        self.fold = fold_roles(t["spec_event"], config.n_folds, config.fold)
        self.points = grid.points("all")
        self.point = np.where(self.is_signal, match_points(t["condition"], self.points), -1)
        self.selected = np.ones(len(store), bool)
        if config.max_events is not None:
            for d in np.unique(t["dataset"]):
                rows = np.flatnonzero(t["dataset"] == d)
                self.selected[rows[config.max_events :]] = False
        if config.fit_fraction < 1.0:  # the test fold stays whole
            self.selected &= fit_subset(t["spec_event"], config.fit_fraction) | (self.fold == 2)
        unmatched = self.is_signal & (self.point < 0)
        if unmatched.any():
            seen = {tuple(round(float(v), 3) for v in c) for c in t["condition"][unmatched]}
            log.info(
                "ignoring %d signal events at mass points not in the grid: %s",
                unmatched.sum(),
                sorted(seen),
            )
        self.base_weight = self._base_weights()

    def _base_weights(self) -> np.ndarray:
        t, cfg = self.store.table, self.config
        w = t["weight"].astype(np.float64) if cfg.use_gen_weight else np.ones(len(self.store))
        if cfg.weight_column:
            key = f"spec_{cfg.weight_column}"
            if key not in t:
                raise ConfigError(
                    f"data.weight_column {cfg.weight_column!r}: the store was opened without it"
                )
            w = w * t[key]
        if cfg.xsec or cfg.xsec_key:
            for d, entry in enumerate(self.store.datasets):
                rows = t["dataset"] == d
                if self.is_signal[rows].all():
                    continue
                name, meta = entry["name"], entry.get("metadata", {})
                match = [p for p in cfg.xsec if fnmatch.fnmatchcase(name, p)]
                if match:
                    sigma = float(cfg.xsec[match[0]])
                elif cfg.xsec_key and cfg.xsec_key in meta:
                    sigma = float(meta[cfg.xsec_key])
                else:
                    raise ConfigError(
                        f"{self.store.path}: no cross section for background dataset {name!r}: "
                        f"data.xsec patterns {sorted(cfg.xsec)} do not match it"
                        + (f" and its metadata has no {cfg.xsec_key!r}" if cfg.xsec_key else "")
                    )
                total = w[rows].sum()
                if total <= 0 or sigma <= 0:
                    raise InvalidValueError(
                        f"dataset {name!r}: summed weight {total:.4g} or cross section {sigma:.4g} <= 0"
                    )
                w[rows] *= sigma / total
        return w

    def point_rows(self, point: Point, fold: str) -> np.ndarray:
        """Signal rows of ``point`` in ``fold`` (train, validation or test)."""
        idx = self.points.index(tuple(point))
        return np.flatnonzero(self.selected & (self.point == idx) & (self.fold == _FOLD[fold]))

    def background_rows(self, fold: str) -> np.ndarray:
        """Background rows in ``fold``."""
        return np.flatnonzero(self.selected & ~self.is_signal & (self.fold == _FOLD[fold]))

    def available(self, points: Sequence[Point], fold: str = "train") -> list[Point]:
        """The ``points`` that have signal events in ``fold``."""
        return [p for p in points if len(self.point_rows(p, fold))]

    def require(self, points: Sequence[Point], fold: str = "train") -> None:
        """Raise :class:`UnknownMassPointError` for points without signal events."""
        missing = [self.grid.name(p) for p in points if not len(self.point_rows(p, fold))]
        if missing:
            have = sorted(
                {self.grid.name(self.points[i]) for i in np.unique(self.point[self.point >= 0])}
            )
            raise UnknownMassPointError(
                f"{self.store.path}: no {fold}-fold signal events for mass point(s) {missing}; "
                f"the shards have {have}. Generate/build them or remove them from grid.train"
            )
        if not len(self.background_rows(fold)):
            raise UnknownMassPointError(
                f"{self.store.path}: no background events in the {fold} fold"
            )

    def _dataset(
        self,
        rows: np.ndarray,
        cond: np.ndarray,
        weight: np.ndarray,
        labels: np.ndarray | None = None,
        **kw,
    ) -> GraphDataset:
        return GraphDataset(
            self.store,
            rows,
            cond,
            weight,
            labels=self.label[rows] if labels is None else labels,
            space=self.space,
            seed=self.seed,
            use_sv=self.config.use_sv,
            spectator=self.spectator,
            **kw,
        )

    def single_point(self, point: Point, fold: str) -> GraphDataset:
        """Stage 1: signal of ``point`` vs every background, condition fixed to ``point``."""
        rows = np.concatenate([self.point_rows(point, fold), self.background_rows(fold)])
        cond = np.tile(np.asarray(point, np.float32), (len(rows), 1))
        w = balance_weights(
            self.base_weight[rows], self.label[rows], balance_classes=self.config.balance_classes
        )
        return self._dataset(rows, cond, w)

    def inclusive(self, points: Sequence[Point], fold: str, condition: Point) -> GraphDataset:
        """The inclusive baseline: signal of all ``points`` vs every background, one condition.

        Every row gets the same ``condition``, so a conditioned model trained on it
        cannot use the hypothesis (the third network of Baldi et al., arXiv:1601.07913).
        """
        sig = [self.point_rows(p, fold) for p in points]
        bkg = self.background_rows(fold)
        rows = np.concatenate([*sig, bkg])
        group = np.concatenate(
            [np.full(len(r), i) for i, r in enumerate(sig)] + [np.full(len(bkg), -1)]
        )
        cond = np.tile(np.asarray(condition, np.float32), (len(rows), 1))
        w = balance_weights(
            self.base_weight[rows],
            self.label[rows],
            group if self.config.balance_points else None,
            balance_classes=self.config.balance_classes,
        )
        return self._dataset(rows, cond, w)

    def joint(
        self,
        points: Sequence[Point],
        fold: str = "train",
        phases: Sequence[tuple[int, Sequence[Point]]] = (),
    ) -> GraphDataset:
        """Stage 3: signal of all ``points`` + backgrounds with conditions drawn from ``points``.

        ``phases`` (curriculum) restrict later epochs to subsets of ``points``;
        weights and background draws are rebalanced per phase, and the
        sampler's active positions come from :meth:`phase_positions`. With
        ``wrong_mass_weight`` > 0 the signal rows are followed by their
        wrong-mass copies (see the module docstring).
        """
        sig = [self.point_rows(p, fold) for p in points]
        bkg = self.background_rows(fold)
        n_sig = sum(len(r) for r in sig)
        src = np.concatenate([np.full(len(r), i) for i, r in enumerate(sig)] + [np.zeros(0, int)])
        # point index of the event (-1: background) and of its hypothesis (-1: drawn)
        group = np.concatenate([src, np.full(len(bkg), -1)])
        hyp = group.copy()
        rows = np.concatenate([*sig, bkg])
        labels = self.label[rows]
        copy_rows, copy_hyp = self._wrong_mass_copies(rows[:n_sig], src, points)
        n_orig = len(rows)
        if len(copy_rows):
            rows = np.concatenate([rows, copy_rows])
            group = np.concatenate([group, src])
            hyp = np.concatenate([hyp, copy_hyp])
            labels = np.concatenate([labels, np.full(len(copy_rows), self._wrong_mass_label())])
        cond = np.full((len(rows), len(self.grid.names)), np.nan, np.float32)
        cond[:n_sig] = np.asarray(self.store.table["condition"][rows[:n_sig]])
        if len(copy_rows):
            cond[n_orig:] = np.asarray(points, np.float32)[copy_hyp]
        index = {tuple(p): i for i, p in enumerate(points)}

        def weights(active: Sequence[Point]) -> tuple[np.ndarray, list[float]]:
            idx = [index[tuple(p)] for p in active]
            on = _active(group, hyp, idx)
            w = np.zeros(len(rows), np.float32)
            act = np.flatnonzero(on[:n_orig])
            g = group[act] if self.config.balance_points else None
            w[act] = balance_weights(
                self.base_weight[rows[act]],
                labels[act],
                g,
                balance_classes=self.config.balance_classes,
            )
            probs = [float(w[:n_orig][group[:n_orig] == i].sum()) for i in idx]
            if len(copy_rows):
                w[n_orig:] = self._copy_weights(
                    w[:n_sig], hyp[:n_sig], w[: len(copy_rows)], hyp[n_orig:], on[n_orig:]
                )
                w *= len(w) / w.sum()
            return w, probs

        w0, p0 = weights(points)
        ds_phases = []
        for first, active in phases:
            wa, pa = weights(active)
            ds_phases.append((first, wa, [tuple(p) for p in active], pa))
        ds = self._dataset(
            rows,
            cond,
            w0,
            labels,
            background_points=list(points),
            background_probabilities=p0,
            phases=ds_phases,
        )
        ds.point_group = group  # type: ignore[attr-defined]
        ds.hypothesis_group = hyp  # type: ignore[attr-defined]
        return ds

    def _copy_weights(
        self,
        signal_w: np.ndarray,
        signal_hyp: np.ndarray,
        source_w: np.ndarray,
        copy_hyp: np.ndarray,
        active: np.ndarray,
    ) -> np.ndarray:
        """Copy weights: at every hypothesis, ``wrong_mass_weight`` x the signal weight there.

        Within a hypothesis each copy keeps its event's relative weight. Without the
        per-hypothesis normalisation the central points of a grid would receive more
        copies than its edges, and the score would carry a hypothesis-dependent offset
        (higher at the edges) instead of a preference for the true mass.
        """
        out = np.where(active, source_w, 0.0).astype(np.float64)
        for q in np.unique(copy_hyp[active]):
            at = active & (copy_hyp == q)
            total = out[at].sum()
            if total > 0:
                out[at] *= self.config.wrong_mass_weight * signal_w[signal_hyp == q].sum() / total
        return out.astype(np.float32)

    def _wrong_mass_label(self) -> int:
        if self.config.wrong_mass_label is not None:
            return int(self.config.wrong_mass_label)
        return 1 if self.config.signal_label == 0 else 0

    def _wrong_mass_copies(
        self, rows: np.ndarray, src: np.ndarray, points: Sequence[Point]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Signal ``rows`` (point index ``src``) again, each at another point's hypothesis.

        The other point is drawn once per event (run seed) with probability
        proportional to 1 / d², d the distance in normalised condition units:
        a scan must above all separate neighbouring hypotheses.
        """
        if self.config.wrong_mass_weight <= 0 or len(points) < 2 or not len(rows):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        z = self.space.normalise(points).astype(np.float64)
        d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d2, np.inf)
        prob = 1.0 / np.maximum(d2, 1e-12)
        cum = np.cumsum(prob / prob.sum(1, keepdims=True), axis=1)
        u = np.random.default_rng([self.seed, 0x57A6]).random(len(rows))
        dst = (u[:, None] > cum[src]).sum(1)
        return rows.copy(), np.minimum(dst, len(points) - 1)

    @staticmethod
    def phase_positions(
        ds: GraphDataset, points: Sequence[Point], phases: Sequence[tuple[int, Sequence[Point]]]
    ) -> list[tuple[int, np.ndarray]]:
        """Sampler phases ``(first_epoch, positions)`` matching :meth:`joint`'s ``phases``."""
        group = ds.point_group  # type: ignore[attr-defined]
        hyp = ds.hypothesis_group  # type: ignore[attr-defined]
        out = []
        for first, active in phases:
            idx = [list(points).index(tuple(p)) for p in active]
            out.append((first, np.flatnonzero(_active(group, hyp, idx))))
        return out

    def grouped(self, points: Sequence[Point], fold: str = "validation") -> GraphDataset:
        """Every point's signal vs all backgrounds evaluated at that point (group = point index).

        Each group is class-balanced and every group has the same summed
        weight, so the mean loss weighs mass points equally.
        """
        bkg = self.background_rows(fold)
        rows, cond, weight, group = [], [], [], []
        for i, p in enumerate(points):
            r = np.concatenate([self.point_rows(p, fold), bkg])
            rows.append(r)
            cond.append(np.tile(np.asarray(p, np.float32), (len(r), 1)))
            weight.append(
                balance_weights(
                    self.base_weight[r], self.label[r], balance_classes=self.config.balance_classes
                )
                / max(len(r), 1)
            )
            group.append(np.full(len(r), i))
        w = np.concatenate(weight)
        return self._dataset(
            np.concatenate(rows),
            np.concatenate(cond),
            w * (len(w) / w.sum()),
            group=np.concatenate(group),
        )
