"""Point operations against brute-force float64 references (loops written out in numpy)."""
import numpy as np
import pytest
import torch

from embodied_vision.layers.point_ops import (
    chamfer_l2,
    farthest_point_sample,
    flatten_indices,
    gather_points,
    knn,
    three_nn_interpolate,
)

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def _clouds(b, n, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(b, n, 3))).float()


def _fps_reference(points: np.ndarray, n: int) -> list[int]:
    chosen, nearest = [0], np.full(len(points), np.inf)
    for _ in range(n - 1):
        nearest = np.minimum(nearest, ((points - points[chosen[-1]]) ** 2).sum(1))
        chosen.append(int(np.argmax(nearest)))
    return chosen


@pytest.mark.parametrize('device', DEVICES)
def test_farthest_point_sample_follows_pointnet2(device):
    points = _clouds(3, 200)
    index = farthest_point_sample(points.to(device), 40).cpu()
    assert index.shape == (3, 40) and index.dtype == torch.int64
    for b in range(3):
        assert index[b].tolist() == _fps_reference(points[b].double().numpy(), 40)
    assert len(set(index[0].tolist())) == 40  # distinct while distinct points remain
    line = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [10, 0, 0], [6, 0, 0]]])
    assert farthest_point_sample(line, 3).tolist() == [[0, 3, 4]]  # 0, farthest, then 6
    with pytest.raises(ValueError, match='n_samples=6 must be in 1..5'):
        farthest_point_sample(line, 6)
    with pytest.raises(ValueError, match=r'float \(B, N, 3\) points'):
        farthest_point_sample(line[..., :2], 2)


@pytest.mark.parametrize('device', DEVICES)
def test_knn_finds_the_nearest_points_nearest_first(device):
    query, reference = _clouds(2, 30, seed=1), _clouds(2, 100, seed=2)
    distances, index = knn(query.to(device), reference.to(device), 8)
    distances, index = distances.cpu(), index.cpu()
    q, r = query.double().numpy(), reference.double().numpy()
    for b in range(2):
        exact = ((q[b, :, None] - r[b, None]) ** 2).sum(-1)   # (30, 100)
        order = np.argsort(exact, axis=1, kind='stable')[:, :8]
        np.testing.assert_allclose(distances[b].double().numpy(),
                                   np.take_along_axis(exact, order, 1), rtol=1e-5, atol=1e-6)
        # the same neighbour sets (ties between distinct random points do not occur)
        assert all(set(a) == set(e) for a, e in zip(index[b].tolist(), order.tolist()))
    assert torch.all(distances[..., 1:] >= distances[..., :-1])
    flat = flatten_indices(index, 100)
    rows = reference.reshape(-1, 3)[flat]
    torch.testing.assert_close(rows, gather_points(reference, index))
    with pytest.raises(ValueError, match='k=101 must be in 1..100'):
        knn(query, reference, 101)


@pytest.mark.parametrize('device', DEVICES)
def test_three_nn_interpolation_weights_by_inverse_squared_distance(device):
    points, known = _clouds(2, 20, seed=3), _clouds(2, 50, seed=4)
    features = torch.randn(2, 50, 5, generator=torch.Generator().manual_seed(0))
    out = three_nn_interpolate(points.to(device), known.to(device), features.to(device)).cpu()
    p, k, f = points.double().numpy(), known.double().numpy(), features.double().numpy()
    expected = np.zeros((2, 20, 5))
    for b in range(2):
        for i in range(20):
            d = ((k[b] - p[b, i]) ** 2).sum(1)
            near = np.argsort(d)[:3]
            w = 1 / (d[near] + 1e-8)
            expected[b, i] = (w[:, None] * f[b, near]).sum(0) / w.sum()
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-4, atol=1e-5)
    # at a known point the interpolation returns (almost exactly) its feature
    at_known = three_nn_interpolate(known[:, :4], known, features)
    torch.testing.assert_close(at_known, features[:, :4], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='one row per known point'):
        three_nn_interpolate(points, known, features[:, :10])


@pytest.mark.parametrize('device', DEVICES)
def test_chamfer_l2_is_the_sum_of_both_mean_squared_nearest_distances(device):
    a, b = _clouds(3, 16, seed=5), _clouds(3, 24, seed=6)
    per_pair = chamfer_l2(a.to(device), b.to(device), reduction='none').cpu()
    x, y = a.double().numpy(), b.double().numpy()
    for i in range(3):
        d = ((x[i, :, None] - y[i, None]) ** 2).sum(-1)
        assert per_pair[i].item() == pytest.approx(d.min(1).mean() + d.min(0).mean(), rel=1e-5)
    assert chamfer_l2(a, b).item() == pytest.approx(per_pair.mean().item(), rel=1e-6)
    assert chamfer_l2(a, a[:, torch.randperm(16)]).item() == pytest.approx(0.0, abs=1e-6)
    moved = a.clone().requires_grad_(True)
    chamfer_l2(moved, b).backward()
    assert torch.all(torch.isfinite(moved.grad)) and moved.grad.abs().sum() > 0
    same = a.clone().requires_grad_(True)
    chamfer_l2(same, a).backward()  # zero distances: finite (zero) gradients
    assert torch.all(torch.isfinite(same.grad))
