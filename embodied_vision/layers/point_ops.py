"""Point-cloud operations in plain torch (CPU and CUDA): farthest point sampling, kNN,
3-NN inverse-distance interpolation and the Chamfer-L2 distance.

They reproduce the semantics of the CUDA extensions that Point-M2AE / I2P-MAE
(https://arxiv.org/abs/2212.06785) build on, without compiling anything:

- `farthest_point_sample`: pointnet2's FPS; the first index is 0, then each step takes the
  point whose squared distance to the chosen set is largest (ties: the lowest index).
- `knn`: the k nearest reference points of each query by squared Euclidean distance,
  nearest first, and `flatten_indices` turns them into rows of a `(B * N, C)` tensor (the
  batch-offset indices of token merging).
- `three_nn_interpolate`: features at new points from their 3 nearest known points,
  weighted by inverse squared distance (the decoder's token propagation).
- `chamfer_l2`: mean squared distance to the nearest point of the other cloud, both ways,
  summed (the `ChamferDistanceL2` of the upstream extension).

All take `(B, N, 3)` float tensors; distances are computed without the `|a|^2 + |b|^2 - 2ab`
expansion, so near-ties order as an exact computation would (`torch.cdist`'s direct mode).

On CPU, float32 FPS runs through `fpsample` (https://github.com/leonardodalinky/fpsample, MIT;
installed with the `sim` extra) when it is importable: its vanilla `fps_sampling` does the
same float32 arithmetic as our loop, `(dx^2 + dy^2) + dz^2`, but breaks ties towards the
*highest* index, so it runs on the reversed cloud from its last point and the indices are
mapped back. That gives exactly our indices (tested on random, grid and duplicate clouds) and
is 3-7x faster for one cloud, about even at batch 32 on 2 cores (`benchmarks/point_ops.py`;
batches run as one run of clouds per torch thread). CUDA tensors, other dtypes,
non-finite points and traced/compiled graphs always take the torch loop; `backend='torch'`
forces it.
"""
from concurrent.futures import ThreadPoolExecutor
import os

import numpy as np
import torch

try:
    import fpsample as _fpsample
except ImportError:  # optional (`sim` extra): the torch loop runs instead
    _fpsample = None

__all__ = ['FPSAMPLE_AVAILABLE', 'FPS_BACKENDS', 'chamfer_l2', 'farthest_point_sample',
           'flatten_indices', 'gather_points', 'knn', 'square_distances', 'three_nn_interpolate']

FPSAMPLE_AVAILABLE = _fpsample is not None
FPS_BACKENDS = ('auto', 'torch', 'fpsample')
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _check_points(name: str, points: torch.Tensor) -> None:
    if points.ndim != 3 or points.shape[-1] != 3 or not points.is_floating_point():
        raise ValueError(f'{name} must be float (B, N, 3) points, got {points.dtype} '
                         f'{tuple(points.shape)}')


def square_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`(B, N, M)` squared Euclidean distances between `(B, N, 3)` and `(B, M, 3)`."""
    _check_points('a', a)
    _check_points('b', b)
    if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
        # cdist has no ONNX lowering: the same sum of squared differences, broadcast
        return (a[:, :, None] - b[:, None]).square().sum(-1)
    return torch.cdist(a, b, compute_mode='donot_use_mm_for_euclid_dist').square()


def gather_points(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`values[b, index[b, ...]]`: `(B, N, C)` gathered by `(B, ...)` indices -> `(B, ..., C)`."""
    batch = torch.arange(values.shape[0], device=values.device)
    return values[batch.view(-1, *([1] * (index.ndim - 1))), index]


def farthest_point_sample(points: torch.Tensor, n_samples: int,
                          backend: str = 'auto') -> torch.Tensor:
    """`(B, n_samples)` int64 indices of pointnet2's farthest point sampling (starts at 0).

    Args:
        points: `(B, N, 3)` float clouds.
        n_samples: points to keep per cloud, 1..N.
        backend: `'auto'` (fpsample for finite float32 CPU clouds when installed, else the
            torch loop), `'torch'` (always the loop) or `'fpsample'` (raises if unusable).
    """
    _check_points('points', points)
    if backend not in FPS_BACKENDS:
        raise ValueError(f'backend={backend!r} must be one of {FPS_BACKENDS}')
    n = points.shape[1]
    if not 1 <= n_samples <= n:
        raise ValueError(f'n_samples={n_samples} must be in 1..{n} (the points per cloud)')
    if backend == 'fpsample':
        _require_fpsample(points)
        return _fps_fpsample(points, n_samples)
    if backend == 'auto' and _fpsample_applies(points):
        return _fps_fpsample(points, n_samples)
    return _fps_torch(points, n_samples)


def _fps_torch(points: torch.Tensor, n_samples: int) -> torch.Tensor:
    # planar (3, B, N) coordinates and reused buffers: a handful of vectorised ops per step
    b, n, _ = points.shape
    xyz = points.detach().permute(2, 0, 1).contiguous()
    diff = torch.empty_like(xyz)
    step = torch.empty(b, n, dtype=points.dtype, device=points.device)
    nearest = torch.full_like(step, float('inf'))
    latest = torch.zeros(b, 1, dtype=torch.long, device=points.device)
    chosen = [latest]
    for _ in range(1, n_samples):
        torch.sub(xyz, xyz.gather(2, latest.expand(3, b, 1)), out=diff)
        diff.mul_(diff)
        torch.add(diff[0], diff[1], out=step).add_(diff[2])  # the order of .sum(-1)
        torch.minimum(nearest, step, out=nearest)
        latest = nearest.argmax(dim=1, keepdim=True)  # ties: the lowest index
        chosen.append(latest)
    return torch.cat(chosen, dim=1)


def _fpsample_applies(points: torch.Tensor) -> bool:
    return (_fpsample is not None and points.device.type == 'cpu'
            and points.dtype == torch.float32 and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling() and bool(torch.isfinite(points).all()))


def _require_fpsample(points: torch.Tensor) -> None:
    if _fpsample is None:
        raise ImportError("fpsample is not installed (needed for backend='fpsample'). Install "
                          "it with `pip install 'embodied_vision[sim]'`.")
    if points.device.type != 'cpu' or points.dtype != torch.float32:
        raise ValueError(f"backend='fpsample' needs float32 CPU points, got {points.dtype} on "
                         f'{points.device}')
    if not torch.isfinite(points).all():
        raise ValueError("backend='fpsample' needs finite points (it fails on NaN)")


def _fps_fpsample(points: torch.Tensor, n_samples: int) -> torch.Tensor:
    # fpsample keeps the last of equal maxima: on the reversed cloud that is our lowest index
    b, n, _ = points.shape
    reversed_clouds = points.detach().numpy()[:, ::-1]

    def sample(clouds: np.ndarray) -> list[np.ndarray]:
        return [_fpsample.fps_sampling(cloud, n_samples, start_idx=n - 1) for cloud in clouds]

    workers = min(torch.get_num_threads(), b)
    if workers > 1:  # it releases the GIL: one run of clouds per thread
        parts = _thread_pool(workers).map(sample, np.array_split(reversed_clouds, workers))
        rows = [row for part in parts for row in part]
    else:
        rows = sample(reversed_clouds)
    return (n - 1) - torch.from_numpy(np.stack(rows).astype(np.int64))


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    key = (os.getpid(), workers)  # a forked child has none of its parent's threads
    if key not in _POOLS:
        _POOLS.clear()
        _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix='fpsample')
    return _POOLS[key]


def knn(query: torch.Tensor, reference: torch.Tensor, k: int) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
    """`(squared distances, indices)`, each `(B, M, k)`, of the `k` nearest `reference`
    points of each `query` point, nearest first."""
    if not 1 <= k <= reference.shape[1]:
        raise ValueError(f'k={k} must be in 1..{reference.shape[1]} (the reference points)')
    return square_distances(query, reference).topk(k, dim=2, largest=False, sorted=True)


def flatten_indices(index: torch.Tensor, n_points: int) -> torch.Tensor:
    """Per-cloud indices `(B, ...)` into `n_points` -> rows `b * n_points + j` of the
    `(B * n_points, C)` flattened tensor."""
    offset = torch.arange(index.shape[0], device=index.device) * n_points
    return index + offset.view(-1, *([1] * (index.ndim - 1)))


def three_nn_interpolate(points: torch.Tensor, known: torch.Tensor,
                         features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """`(B, N, C)` features at `points` from the 3 nearest of `known` `(B, M, 3)` (features
    `(B, M, C)`), weighted by `1 / (squared distance + eps)` and normalised."""
    if features.shape[:2] != known.shape[:2]:
        raise ValueError(f'features {tuple(features.shape)} must have one row per known '
                         f'point {tuple(known.shape[:2])}')
    distances, index = knn(points, known, min(3, known.shape[1]))
    weights = 1.0 / (distances + eps)
    weights = weights / weights.sum(dim=2, keepdim=True)
    return (gather_points(features, index) * weights[..., None]).sum(dim=2)


def chamfer_l2(a: torch.Tensor, b: torch.Tensor, reduction: str = 'mean') -> torch.Tensor:
    """Chamfer-L2 of clouds `(B, N, 3)` and `(B, M, 3)`: per pair, the mean squared distance
    from each point of `a` to its nearest in `b` plus the same from `b` to `a`; averaged
    over the batch (`reduction='mean'`) or one per pair (`'none'`)."""
    if reduction not in ('mean', 'none'):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    distances = square_distances(a, b)
    per_pair = distances.min(dim=2).values.mean(dim=1) + distances.min(dim=1).values.mean(dim=1)
    return per_pair.mean() if reduction == 'mean' else per_pair
