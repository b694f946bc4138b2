"""Interpretability: permutation importance and saliency on a case where one feature decides."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paratag.evaluate.importance import permutation_importance, saliency_images

N, P, S = 400, 12, 3
NAMES = {"pf": ["etarel", "phirel", "f0", "f1", "f2"], "sv": ["d", "ptrel", "s0"]}


def _inputs(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Signal (first half) has feature f1 near +1, background near -1; nothing else differs.

    Signal particles sit at the jet centre, background particles near (0.7, 0.7).
    """
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(N // 2), np.zeros(N // 2)]
    counts = rng.integers(3, P + 1, N)
    mask = (np.arange(P)[None, None, :] < counts[:, None, None]).astype(np.float32)
    centre = np.where(y[:, None, None] > 0, 0.0, 0.7)
    points = (centre + 0.03 * rng.normal(size=(N, 2, P))) * mask
    features = rng.normal(size=(N, 3, P))
    features[:, 1] = np.where(y[:, None] > 0, 1.0, -1.0) + 0.5 * rng.normal(size=(N, P))
    sv_mask = np.ones((N, 1, S), np.float32)
    arrays = {
        "points": points,
        "features": features * mask,
        "mask": mask,
        "sv_points": rng.normal(size=(N, 2, S)),
        "sv_features": rng.normal(size=(N, 1, S)),
        "sv_mask": sv_mask,
    }
    return {k: v.astype(np.float32) for k, v in arrays.items()}, y


class _MeanF1(torch.nn.Module):
    """Logits (3 * masked mean of feature 1, 0): only f1 of the PF cloud matters."""

    def forward(self, points, features, mask, condition=None, sv_features=None, sv_mask=None):
        mean = (features[:, 1] * mask[:, 0]).sum(1) / mask[:, 0].sum(1)
        return torch.stack([3.0 * mean, torch.zeros_like(mean)], dim=1)


def _score(x):
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    with torch.no_grad():
        return torch.softmax(_MeanF1()(t["points"], t["features"], t["mask"]), 1)[:, 0].numpy()


def test_permutation_importance_finds_the_one_feature_and_its_cloud() -> None:
    inputs, y = _inputs()
    imp = permutation_importance(_score, inputs, y, None, NAMES, seed=1)
    assert imp.baseline_auc > 0.99 and imp.n_events == N
    assert list(imp.features)[0] == "pf: f1"  # ranked first
    assert imp.features["pf: f1"] > 0.4
    assert all(abs(v) < 1e-9 for k, v in imp.features.items() if k != "pf: f1")
    assert imp.clouds["pf"] > 0.4 and imp.clouds["sv"] == pytest.approx(0.0, abs=1e-9)
    assert set(imp.to_dict()["features"]) == {f"pf: {n}" for n in NAMES["pf"]} | {
        f"sv: {n}" for n in NAMES["sv"]
    }
    # padded slots stay zero under the shuffle
    from paratag.evaluate.importance import _shuffle_channel

    shuffled = _shuffle_channel(inputs["features"], inputs["mask"], 1, np.random.default_rng(0))
    assert np.all(shuffled[:, 1][inputs["mask"][:, 0] == 0] == 0)
    assert np.allclose(np.sort(shuffled[:, 1].ravel()), np.sort(inputs["features"][:, 1].ravel()))


def test_saliency_images_show_where_the_deciding_particles_are() -> None:
    inputs, y = _inputs()
    images = saliency_images(_MeanF1(), inputs, y, n_pixels=8, half_width=0.8, batch_size=64)
    sig, bkg = images["signal"], images["background"]
    assert sig.shape == bkg.shape == (8, 8)
    # bin of (0, 0) is (4, 4); of (0.7, 0.7) is floor((0.7 + 0.8) / 0.2) = 7
    assert np.unravel_index(np.argmax(sig), sig.shape) in {(3, 3), (3, 4), (4, 3), (4, 4)}
    assert np.unravel_index(np.argmax(bkg), bkg.shape) == (7, 7)
    assert sig[7, 7] == 0 and bkg[4, 4] == 0
