from __future__ import annotations

import numpy as np
import pytest
import torch

from paratag.graphs import knn, local_index, pad_cloud


def random_flat(rng, counts, cp=2, cf=3):
    m = int(np.sum(counts))
    return rng.normal(size=(cp, m)), rng.normal(size=(cf, m)), rng.exponential(10, size=m)


def reference_pad(points, features, counts, p, key):
    """Straightforward per-graph loop, used only to check the vectorised version."""
    n = len(counts)
    out_p = np.zeros((n, points.shape[0], p), np.float32)
    out_f = np.zeros((n, features.shape[0], p), np.float32)
    out_m = np.zeros((n, 1, p), np.float32)
    start = 0
    for i, c in enumerate(counts):
        sl = slice(start, start + c)
        order = np.argsort(-key[sl], kind="stable")[:p]
        out_p[i, :, : len(order)] = points[:, sl][:, order]
        out_f[i, :, : len(order)] = features[:, sl][:, order]
        out_m[i, 0, : len(order)] = 1
        start += c
    return out_p, out_f, out_m


def test_local_index():
    np.testing.assert_array_equal(local_index(np.array([2, 0, 3])), [0, 1, 0, 1, 2])


def test_pad_cloud_matches_loop_and_pads_with_zero():
    rng = np.random.default_rng(1)
    counts = np.array([0, 1, 5, 12, 3])
    pts, feats, key = random_flat(rng, counts)
    out = pad_cloud(pts, feats, counts, max_particles=8, sort_key=key)
    ref = reference_pad(pts, feats, counts, 8, key)
    np.testing.assert_allclose(out.points, ref[0], rtol=1e-6)
    np.testing.assert_allclose(out.features, ref[1], rtol=1e-6)
    np.testing.assert_array_equal(out.mask, ref[2])
    for arr in (out.points, out.features, out.mask):
        assert arr.dtype == np.float32
        assert np.all(arr[np.broadcast_to(out.mask == 0, arr.shape)] == 0)
    np.testing.assert_array_equal(out.mask.sum(axis=(1, 2)), np.minimum(counts, 8))


def test_pad_cloud_empty():
    out = pad_cloud(
        np.zeros((2, 0)), np.zeros((3, 0)), np.zeros(0, np.int64), 5, sort_key=np.zeros(0)
    )
    assert (
        out.points.shape == (0, 2, 5)
        and out.features.shape == (0, 3, 5)
        and out.mask.shape == (0, 1, 5)
    )


def _padded_inputs(seed=0, n=4, p=20, real=(20, 13, 9, 17)):
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(n, 2, p, generator=g)
    mask = torch.zeros(n, 1, p)
    for i, r in enumerate(real):
        mask[i, 0, :r] = 1
    return pts * mask, mask


def test_knn_never_picks_padding_and_excludes_self():
    pts, mask = _padded_inputs()
    idx = knn(pts, mask, k=5)
    assert idx.shape == (4, 20, 5)
    real = mask[:, 0].bool()
    for i in range(4):
        rows = torch.nonzero(real[i]).flatten()
        chosen = idx[i, rows]
        assert real[i][chosen].all(), "a padded point was chosen as a neighbour"
        assert not (chosen == rows[:, None]).any(), "a point is its own neighbour"


def test_knn_matches_bruteforce_and_is_permutation_equivariant():
    pts, mask = _padded_inputs(seed=3, n=1, p=12, real=(12,))
    idx = knn(pts, mask, k=4)[0]
    d = torch.cdist(pts[0].T, pts[0].T) + torch.eye(12) * 1e9
    ref = d.topk(4, largest=False).indices
    assert torch.equal(torch.sort(idx, dim=1).values, torch.sort(ref, dim=1).values)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    idx_p = knn(pts[:, :, perm], mask[:, :, perm], k=4)[0]
    # neighbours of permuted point j are the permuted neighbours of point perm[j]
    inv = torch.argsort(perm)
    mapped = inv[idx[perm]]
    assert torch.equal(torch.sort(idx_p, dim=1).values, torch.sort(mapped, dim=1).values)


@pytest.mark.filterwarnings(
    "ignore::torch.jit.TracerWarning"
)  # tracing warns about shape-derived ints
def test_knn_exports_to_onnx(tmp_path):
    import onnxruntime as ort

    class Wrap(torch.nn.Module):
        def forward(self, points, mask):
            return knn(points, mask, 3)

    f = tmp_path / "knn.onnx"
    pts, mask = _padded_inputs()
    torch.onnx.export(
        Wrap(),
        (pts, mask),
        f,
        input_names=["points", "mask"],
        output_names=["idx"],
        dynamic_axes={"points": {0: "n", 2: "p"}, "mask": {0: "n", 2: "p"}},
        opset_version=17,
        dynamo=False,
    )
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    for seed, n, p, real in [(1, 2, 10, (10, 6)), (2, 3, 30, (30, 4, 17))]:
        pts, mask = _padded_inputs(seed, n, p, real)
        got = sess.run(None, {"points": pts.numpy(), "mask": mask.numpy()})[0]
        exp = knn(pts, mask, 3).numpy()
        valid = mask[:, 0].bool().numpy()
        assert np.array_equal(np.sort(got, -1)[valid], np.sort(exp, -1)[valid])


def test_knn_excludes_self_even_with_duplicate_coordinates():
    # a lepton inside its jet: two constituents with identical (eta, phi)
    pts = torch.tensor([[[0.1, 0.5, 0.5, -0.3, 0.9]], [[0.2, 0.4, 0.4, 0.0, -0.7]]]).transpose(0, 1)
    pts = pts.reshape(1, 2, 5)
    mask = torch.ones(1, 1, 5)
    idx = knn(pts, mask, k=2)[0]
    assert not (idx == torch.arange(5)[:, None]).any()
    assert 2 in idx[1].tolist() and 1 in idx[2].tolist(), (
        "duplicates must be each other's neighbour"
    )
