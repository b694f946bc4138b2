"""What a jet tagger looks at: permutation importance and per-particle saliency images.

- :func:`permutation_importance`: the AUC lost when one input is made uninformative
  while keeping its distribution — one feature (its values shuffled among all real
  particles of the sample) or one whole cloud (each jet gets another jet's PF
  candidates, or another jet's secondary vertices);
- :func:`saliency_images`: per particle, |gradient × input| of the signal log-odds
  summed over the particle's inputs, drawn as the average (Δη, Δφ) image of signal
  jets and of background jets.

Inputs are the padded arrays of the model contract keyed as in the shards
(``points``, ``features``, ``mask``, and ``<cloud>_points``, ``<cloud>_features``,
``<cloud>_mask`` for a second cloud: :func:`paratag.presets.cloud_keys`); a model enters through a ``score(inputs) ->
(N,)`` callable for the importance and as a torch module for the saliency.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from paratag.evaluate.metrics import roc_auc
from paratag.presets import cloud_keys

__all__ = ["Importance", "permutation_importance", "saliency_images"]

Inputs = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Importance:
    """AUC drops per input feature and per cloud, and the saliency images.

    Attributes:
        baseline_auc: AUC on the untouched inputs.
        features: ``{feature name: AUC drop}`` (largest first).
        clouds: ``{cloud name: AUC drop}`` when the cloud is replaced by another jet's.
        saliency: ``{"signal" | "background": (n, n) mean image}`` or None.
        half_width: half-width of the saliency images in Δη and Δφ.
        n_events: events used.
    """

    baseline_auc: float
    features: dict[str, float]
    clouds: dict[str, float]
    saliency: dict[str, np.ndarray] | None = None
    half_width: float = 0.8
    n_events: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (images as nested lists)."""
        return {
            "baseline_auc": self.baseline_auc,
            "features": dict(self.features),
            "clouds": dict(self.clouds),
            "saliency": None
            if self.saliency is None
            else {k: v.tolist() for k, v in self.saliency.items()},
            "half_width": self.half_width,
            "n_events": self.n_events,
        }

    def report_blocks(self, fig_dir: Any) -> list[tuple[Any, ...]]:
        """The report section: the AUC-drop tables and the saliency figure."""
        from paratag.evaluate.plots import plot_saliency

        text = (
            f"AUC lost ({self.n_events} test events, baseline AUC {self.baseline_auc:.4f}) when "
            "an input is made uninformative: a feature shuffled among all real particles, or "
            "a whole cloud replaced by another jet's."
        )
        rows = [[k, f"{v:+.4f}"] for k, v in {**self.clouds, **self.features}.items()]
        blocks: list[tuple[Any, ...]] = [("p", text), ("table", ["input", "AUC drop"], rows)]
        if self.saliency is not None:
            png = plot_saliency(self.saliency, self.half_width, fig_dir)
            blocks.append(
                ("fig", png, "Mean per-particle saliency |∂ log-odds/∂x · x| in (Δη, Δφ)")
            )
        return blocks


def _shuffle_channel(values: np.ndarray, mask: np.ndarray, channel: int, rng: Any) -> np.ndarray:
    """``values`` with one channel's real-particle entries permuted among all particles."""
    out = values.copy()
    real = mask[:, 0] > 0  # (N, P)
    column = out[:, channel][real]
    out[:, channel][real] = rng.permutation(column)
    return out


def permutation_importance(
    score: Callable[[Inputs], np.ndarray],
    inputs: Inputs,
    labels: np.ndarray,
    weights: np.ndarray | None,
    names: Mapping[str, Sequence[str]],
    *,
    seed: int = 0,
) -> Importance:
    """AUC drop for each named input channel and each cloud (see the module docstring).

    Args:
        score: signal discriminant of a batch of inputs, ``(N,)``.
        inputs: the padded arrays (see the module docstring).
        labels: 1 for signal, 0 for background.
        weights: event weights (None: unit).
        names: per cloud in preset order (the first cloud, then the secondary one), the
            names of its point channels then its feature channels, e.g.
            ``{"pf": ["pfcand_etarel", ..., "pfcand_pt_log", ...], "sv": [...]}``.
        seed: permutation seed.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(labels, np.float64)

    def auc(x: Inputs) -> float:
        return roc_auc(y, np.asarray(score(x), np.float64), weights)

    base = auc(inputs)
    features: dict[str, float] = {}
    clouds: dict[str, float] = {}
    for index, (cloud, channel_names) in enumerate(names.items()):
        pkey, fkey, mkey = cloud_keys(cloud, index)
        if fkey not in inputs:
            continue
        n_points = inputs[pkey].shape[1]
        for i, name in enumerate(channel_names):
            key, ch = (pkey, i) if i < n_points else (fkey, i - n_points)
            shuffled = {**inputs, key: _shuffle_channel(inputs[key], inputs[mkey], ch, rng)}
            features[f"{cloud}: {name}"] = base - auc(shuffled)
        order = rng.permutation(len(y))
        swapped = {**inputs, **{k: inputs[k][order] for k in (pkey, fkey, mkey)}}
        clouds[cloud] = base - auc(swapped)
    ranked = dict(sorted(features.items(), key=lambda kv: -kv[1]))
    return Importance(base, ranked, clouds, n_events=len(y))


def saliency_images(
    model: Any,
    inputs: Inputs,
    labels: np.ndarray,
    *,
    signal_index: int = 0,
    condition: np.ndarray | None = None,
    n_pixels: int = 16,
    half_width: float = 0.8,
    batch_size: int = 256,
    minimum: int = 1,
) -> dict[str, np.ndarray]:
    """Mean |gradient × input| image of signal and of background jets (PF cloud).

    The gradient is that of the signal log-odds (logit of ``signal_index`` minus the
    log-sum-exp of the others); each particle's saliency (summed over its points and
    features) is added at its (Δη, Δφ) = ``points[:, :2]``. Each batch of the first cloud
    is cut to its longest graph (at least ``minimum``: the model's kNN k + 1).
    """
    import torch

    from paratag.data.dataset import trim_padding
    from paratag.models.io import graph_forward

    y = np.asarray(labels) > 0.5
    sums = {"signal": np.zeros((n_pixels, n_pixels)), "background": np.zeros((n_pixels, n_pixels))}
    edges = np.linspace(-half_width, half_width, n_pixels + 1)
    model.eval()
    for lo in range(0, len(y), batch_size):
        sl = slice(lo, lo + batch_size)
        part = trim_padding({k: v[sl] for k, v in inputs.items()}, minimum)
        batch = {k: torch.from_numpy(v) for k, v in part.items()}
        for k in ("points", "features"):
            batch[k].requires_grad_(True)
        if condition is not None:
            batch["condition"] = torch.from_numpy(np.ascontiguousarray(condition[sl]))
        logits = graph_forward(model, batch)
        others = torch.cat([logits[:, :signal_index], logits[:, signal_index + 1 :]], dim=1)
        odds = logits[:, signal_index] - torch.logsumexp(others, dim=1)
        odds.sum().backward()
        grads = [batch[k].grad for k in ("points", "features")]
        parts = [
            (g * batch[k]).abs().sum(dim=1)
            for g, k in zip(grads, ("points", "features"), strict=True)
            if g is not None
        ]
        sal = (torch.stack(parts).sum(dim=0) * batch["mask"][:, 0]).detach().numpy()  # (b, P)
        pts = part["points"]
        for name, sel in (("signal", y[sl]), ("background", ~y[sl])):
            real = part["mask"][sel][:, 0] > 0
            h, _, _ = np.histogram2d(
                pts[sel][:, 0][real],
                pts[sel][:, 1][real],
                bins=(edges, edges),
                weights=sal[sel][real],
            )
            sums[name] += h
    counts = {"signal": max(int(y.sum()), 1), "background": max(int((~y).sum()), 1)}
    return {k: v / counts[k] for k, v in sums.items()}
