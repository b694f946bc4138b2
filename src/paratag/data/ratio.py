"""The training sample of a hypothesis ratio: signal of one mass point against its partners.

A signal-versus-SM tagger cannot learn the parameters of the hypothesis that
the backgrounds do not depend on (mHc of the charged-Higgs search; see
:mod:`paratag.models.ratio`). The ratio model learns them from signal alone:
at every training point θ, signal of θ (class 0) against the signal of its
*partners* (class 1) — the other training points that differ from θ only in the
``vary`` parameters — every event evaluated at hypothesis θ. Within each
hypothesis the two classes weigh the same, and every partner the same share of
class 1, so the model's log-odds estimates ``log p_θ(x) / p̄(x)`` with ``p̄`` the
partners' mixture. Points without a partner contribute nothing (the model
interpolates there).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from paratag.data.dataset import GraphDataset
from paratag.data.selection import SampleBuilder
from paratag.errors import ConfigError

__all__ = ["hypothesis_ratio_dataset", "ratio_partners"]

Point = tuple[float, ...]


def ratio_partners(
    points: Sequence[Point], names: Sequence[str], vary: Sequence[str]
) -> dict[int, list[int]]:
    """For every point, the indices of the other points equal to it outside ``vary``.

    Example: with names ``(mHc, mA)`` and ``vary=("mHc",)``, (130, 90) is
    partnered with every other training point at mA = 90.
    """
    unknown = set(vary) - set(names)
    if unknown or not vary:
        raise ConfigError(
            f"ratio.vary {list(vary)} must name condition parameters among {list(names)}"
        )
    fixed = [k for k, n in enumerate(names) if n not in vary]
    return {
        i: [
            j for j, q in enumerate(points) if j != i and all(np.isclose(q[k], p[k]) for k in fixed)
        ]
        for i, p in enumerate(points)
    }


def hypothesis_ratio_dataset(
    builder: SampleBuilder, points: Sequence[Point], fold: str, vary: Sequence[str]
) -> GraphDataset:
    """Signal of each point (label 0) vs its partners' signal (label 1), all at its hypothesis.

    Raises :class:`ConfigError` when no point has a partner (nothing to learn).
    """
    partners = ratio_partners(points, builder.grid.names, vary)
    if not any(partners.values()):
        raise ConfigError(
            f"no two training points differ only in {list(vary)}: the hypothesis ratio has "
            "nothing to learn (set ratio.vary, or add training points that share the others)"
        )
    rows, cond, label, weight, group = [], [], [], [], []
    signal = {i: builder.point_rows(p, fold) for i, p in enumerate(points)}
    for i, others in partners.items():
        if not others or not len(signal[i]):
            continue
        parts = [(signal[i], 0, 1.0)] + [(signal[j], 1, 1.0 / len(others)) for j in others]
        for r, lab, share in parts:
            if not len(r):
                continue
            w = builder.base_weight[r]
            rows.append(r)
            cond.append(np.tile(np.asarray(points[i], np.float32), (len(r), 1)))
            label.append(np.full(len(r), lab, np.int64))
            weight.append(share * w / w.sum())
            group.append(np.full(len(r), i))
    w = np.concatenate(weight)
    return builder._dataset(
        np.concatenate(rows),
        np.concatenate(cond),
        (w * (len(w) / w.sum())).astype(np.float32),
        np.concatenate(label),
        group=np.concatenate(group),
    )
