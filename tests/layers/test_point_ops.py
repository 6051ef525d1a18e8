"""Point operations against brute-force float64 references (loops written out in numpy)."""
import numpy as np
import pytest
import torch

from embodied_vision.layers import point_ops
from embodied_vision.layers.point_ops import (
    FPSAMPLE_AVAILABLE,
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


def _grid(side: int) -> torch.Tensor:
    axis = torch.arange(side, dtype=torch.float32)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing='ij'), -1).reshape(1, -1, 3)


def _tie_clouds(n: int, seed: int = 0) -> torch.Tensor:
    """Tie-heavy `(4, n, 3)` clouds with exact float32 distances: an integer grid in raster
    order, a shuffled one, 40 integer points repeated, one point repeated."""
    rng = np.random.default_rng(seed)
    grid = _grid(int(np.ceil(n ** (1 / 3))))[0]
    shuffled = grid[torch.from_numpy(rng.permutation(len(grid)))]
    repeated = rng.integers(-3, 4, size=(40, 3))[rng.integers(0, 40, n)]
    return torch.stack([grid[:n], shuffled[:n], torch.from_numpy(repeated).float(),
                        torch.ones(n, 3)])


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
def test_farthest_point_sample_breaks_ties_towards_the_lowest_index(device):
    clouds = _tie_clouds(300)
    for backend in ('auto', 'torch'):
        index = farthest_point_sample(clouds.to(device), 100, backend=backend)
        assert index.device.type == device
        for b in range(len(clouds)):
            assert index[b].tolist() == _fps_reference(clouds[b].double().numpy(), 100), b
    line = torch.tensor([[[0.0, 0, 0], [-2, 0, 0], [2, 0, 0], [0, 3, 0], [0, -3, 0]]])
    assert farthest_point_sample(line.to(device), 3).tolist() == [[0, 3, 4]]


def _fast_path_clouds():
    """(name, clouds, n_samples): random at several scales, rounding-heavy and tie-heavy."""
    rng = np.random.default_rng(1)

    def normal(b, n, scale=1.0, offset=0.0):
        return torch.from_numpy((offset + scale * rng.normal(size=(b, n, 3))).astype(np.float32))

    quantized = np.round(rng.uniform(-1, 1, (16, 512, 3)) * 16) / 16
    return [('pipeline 2048', normal(48, 2048), 512), ('512', normal(32, 512), 256),
            ('256', normal(32, 256), 64), ('tiny scale', normal(16, 256, 1e-3), 64),
            ('huge scale', normal(16, 256, 1e3), 64),
            ('far offset', normal(32, 1024, 1e-2, 1000.0), 256),
            ('quantized', torch.from_numpy(quantized.astype(np.float32)), 256),
            ('ties 2048', _tie_clouds(2048), 512), ('ties 256', _tie_clouds(256, seed=1), 64),
            ('one sample', normal(3, 50), 1), ('all samples', normal(3, 50), 50)]


@pytest.mark.skipif(not FPSAMPLE_AVAILABLE, reason='fpsample is not installed')
def test_fpsample_fast_path_returns_exactly_our_indices():
    for name, clouds, n_samples in _fast_path_clouds():
        ours = farthest_point_sample(clouds, n_samples, backend='torch')
        fast = farthest_point_sample(clouds, n_samples, backend='fpsample')
        assert fast.dtype == torch.int64 and fast.shape == ours.shape
        mismatched = [b for b in range(len(clouds)) if not torch.equal(fast[b], ours[b])]
        assert mismatched == [], f'{name}: clouds {mismatched} differ'
    # the I2P-MAE chain 2048 -> 512 -> 256 -> 64 on both paths, batch 1 (one thread)
    source = fast_source = _clouds(1, 2048, seed=7)
    for g in (512, 256, 64):
        index = farthest_point_sample(source, g, backend='torch')
        assert torch.equal(farthest_point_sample(fast_source, g), index)
        source = fast_source = gather_points(source, index)


@pytest.mark.skipif(not FPSAMPLE_AVAILABLE, reason='fpsample is not installed')
def test_auto_backend_uses_fpsample_only_for_finite_float32_cpu_clouds(monkeypatch):
    points = _clouds(2, 64)

    def refuse(*args):
        raise AssertionError('the wrong path ran')

    monkeypatch.setattr(point_ops, '_fps_torch', refuse)
    farthest_point_sample(points, 8)  # float32 CPU: fpsample
    monkeypatch.undo()
    monkeypatch.setattr(point_ops, '_fps_fpsample', refuse)
    farthest_point_sample(points.double(), 8)
    farthest_point_sample(points, 8, backend='torch')
    nan = points.clone()
    nan[0, 5] = float('nan')  # fpsample fails on NaN: the torch loop takes it
    farthest_point_sample(nan, 8)
    with pytest.raises(ValueError, match='finite points'):
        farthest_point_sample(nan, 8, backend='fpsample')
    with pytest.raises(ValueError, match='float32 CPU points'):
        farthest_point_sample(points.double(), 8, backend='fpsample')


def test_fps_backend_is_validated(monkeypatch):
    with pytest.raises(ValueError, match=r"backend='fast' must be one of \('auto'"):
        farthest_point_sample(_clouds(1, 10), 2, backend='fast')
    monkeypatch.setattr(point_ops, '_fpsample', None)
    with pytest.raises(ImportError, match=r'embodied_vision\[sim\]'):
        farthest_point_sample(_clouds(1, 10), 2, backend='fpsample')
    assert farthest_point_sample(_clouds(1, 10), 2).shape == (1, 2)  # the torch loop


def test_fpsample_thread_pool_is_per_process(monkeypatch):
    pool = point_ops._thread_pool(2)
    assert point_ops._thread_pool(2) is pool
    monkeypatch.setattr(point_ops.os, 'getpid', lambda: -1)  # as in a forked child
    assert point_ops._thread_pool(2) is not pool


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_fps_matches_the_cpu_paths():
    for name, clouds, n_samples in _fast_path_clouds():
        cpu = farthest_point_sample(clouds, n_samples)
        cuda = farthest_point_sample(clouds.cuda(), n_samples)
        assert cuda.is_cuda and torch.equal(cuda.cpu(), cpu), name


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
