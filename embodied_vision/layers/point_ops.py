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
"""
import torch

__all__ = ['chamfer_l2', 'farthest_point_sample', 'flatten_indices', 'gather_points', 'knn',
           'square_distances', 'three_nn_interpolate']


def _check_points(name: str, points: torch.Tensor) -> None:
    if points.ndim != 3 or points.shape[-1] != 3 or not points.is_floating_point():
        raise ValueError(f'{name} must be float (B, N, 3) points, got {points.dtype} '
                         f'{tuple(points.shape)}')


def square_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`(B, N, M)` squared Euclidean distances between `(B, N, 3)` and `(B, M, 3)`."""
    _check_points('a', a)
    _check_points('b', b)
    return torch.cdist(a, b, compute_mode='donot_use_mm_for_euclid_dist').square()


def gather_points(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`values[b, index[b, ...]]`: `(B, N, C)` gathered by `(B, ...)` indices -> `(B, ..., C)`."""
    batch = torch.arange(values.shape[0], device=values.device)
    return values[batch.view(-1, *([1] * (index.ndim - 1))), index]


def farthest_point_sample(points: torch.Tensor, n_samples: int) -> torch.Tensor:
    """`(B, n_samples)` int64 indices of pointnet2's farthest point sampling (starts at 0)."""
    _check_points('points', points)
    b, n, _ = points.shape
    if not 1 <= n_samples <= n:
        raise ValueError(f'n_samples={n_samples} must be in 1..{n} (the points per cloud)')
    chosen = torch.zeros(b, n_samples, dtype=torch.long, device=points.device)
    nearest = torch.full((b, n), float('inf'), dtype=points.dtype, device=points.device)
    rows = torch.arange(b, device=points.device)
    latest = torch.zeros(b, dtype=torch.long, device=points.device)
    for i in range(1, n_samples):
        step = (points - points[rows, latest][:, None]).square().sum(-1)
        nearest = torch.minimum(nearest, step)
        latest = nearest.argmax(dim=1)
        chosen[:, i] = latest
    return chosen


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
