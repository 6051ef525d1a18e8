"""FPS and kNN grouping of the I2P-MAE pipeline on CPU: ours against libraries, in one run.

    .venv/bin/python benchmarks/point_ops.py [--iterations 7] [--threads 2] [--points 2048]
        [--batches 1 32] [--clouds 16]

The pipeline of I2P-MAE pretraining (https://arxiv.org/abs/2212.06785): FPS of 512 centers
from 2048 points, 256 from those 512, 64 from those 256 (`--points` scales all three), then
kNN of each scale's centers among its source points with k = 16, 8, 8. Each row times one op
of ours (`farthest_point_sample(..., backend='torch')`, the torch loop; `knn`) and one other
implementation on the same batch of random clouds, interleaved, and prints the medians and
their ratio (ours / other: above 1 the other is faster). Times include the tensor <-> numpy
(and open3d) conversions a caller would pay. Nothing is asserted.

`identical` counts the clouds on which the other implementation returns exactly our indices
(same order): `--clouds` random Gaussian clouds and 3 tie-heavy ones (a 3D grid in raster
order, a shuffled grid, 64 distinct points each repeated). Each stage gets our previous
stage's centers as input. `fpsample` and `open3d` columns are skipped with a note when the
package is missing (`pip install 'embodied_vision[sim]'` installs both).

What one run showed (`--iterations 3 --threads 2` on 2 cores shared with other jobs, so
noisy: a rerun moved ratios by up to ~1.5x; x86_64, torch 2.14.1, fpsample 0.3.3, open3d
0.20.0; ours ms vs other ms):

    fps 2048->512  batch 1   torch loop 14.2   fpsample (as wired) 4.7   previous loop 23.2
    fps 512->256   batch 1              5.0                        0.8                 6.0
    fps 256->64    batch 1              1.9                        0.3                 2.5
    fps 2048->512  batch 32            71.5                       90.2               396.3
    fps 512->256   batch 32            17.2                       15.3                39.0
    fps 256->64    batch 32             3.5                        2.9                11.0

- `fpsample.fps_sampling(start_idx=0)` has our indices on random clouds but not on ties: it
  keeps the *last* of equal maxima (0/3 tie clouds). Run on the reversed cloud from its last
  point, indices mapped back (`fpsample (as wired)`, what `farthest_point_sample` does for
  float32 CPU clouds), it is identical on every cloud (also 1,200 random, grid, duplicate and
  rounding-heavy clouds checked while writing it) and 3-7x faster than the torch loop for one
  cloud; at batch 32 (runs of clouds on `--threads` threads) the two are within noise
  (0.8-1.4x over two runs). So it is wired in.
- `bucket_fps_kdtree_sampling` and `fps_npdu_sampling` are approximate or do not start at
  index 0 (0 clouds identical). open3d's `farthest_point_down_sample` returns a cloud whose
  points are sorted by index, so the FPS order is lost (0 identical; ~1.5-3x faster than
  the torch loop at batch 32, ~10-17x at batch 1).
- The torch loop on planar `(3, B, N)` buffers is 1.2-1.6x (batch 1) to 2-5x (batch 32)
  faster than the previous `(points - c).square().sum(-1)` loop, with the same indices.
- kNN: open3d's `core.nns` kNN is the fastest at batch 32 (5.7x at 512x2048, 2.4x at
  256x512) with our indices on random clouds; scipy's cKDTree wins only at 512x2048. Neither
  is wired in: on grids the order among equal distances differs (topk leaves it unspecified),
  and the grouping needs torch distances for gradients.
- In the pipeline, FPS of a scale's centers (already in FPS order, from index 0) returns
  0..g-1: stages 2 and 3 could slice instead of sampling. The identical-indices checks
  therefore run on fresh clouds of each stage's size.
"""
import argparse
from importlib import metadata
import math
import platform
import statistics

import numpy as np
import torch

from embodied_vision.deploy.bench import interleaved
from embodied_vision.layers.point_ops import farthest_point_sample, gather_points, knn

try:
    import fpsample
except ImportError:
    fpsample = None
try:
    import open3d as o3d
except ImportError:
    o3d = None
try:
    from scipy.spatial import cKDTree
except ImportError:
    cKDTree = None  # noqa: N816

KS = (16, 8, 8)


# ---------------------------------------------------------------- other implementations
def previous_torch_fps(points: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Our FPS before the planar-buffer rewrite: `(B, N, 3)` temporaries every step."""
    b, n, _ = points.shape
    chosen = torch.zeros(b, n_samples, dtype=torch.long)
    nearest = torch.full((b, n), float('inf'))
    rows, latest = torch.arange(b), torch.zeros(b, dtype=torch.long)
    for i in range(1, n_samples):
        nearest = torch.minimum(nearest, (points - points[rows, latest][:, None]).square()
                                .sum(-1))
        latest = nearest.argmax(dim=1)
        chosen[:, i] = latest
    return chosen


def _per_cloud(sample):
    """A numpy one-cloud sampler -> a batched `(B, N, 3)` tensor -> `(B, m)` int64 sampler."""
    def run(points: torch.Tensor, m: int) -> torch.Tensor:
        rows = [sample(cloud, m) for cloud in points.numpy()]
        return torch.from_numpy(np.stack(rows).astype(np.int64))
    return run


def _open3d_fps(points: torch.Tensor, m: int) -> None:
    for cloud in points.numpy():
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.astype(np.float64)))
        pcd.farthest_point_down_sample(m, 0)


def _open3d_fps_indices(points: torch.Tensor, m: int) -> list:
    """The indices open3d keeps, carried through in the normals (it returns points only; a
    point chosen twice comes back once, so rows can be shorter than `m`)."""
    rows = []
    for cloud in points.numpy():
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.astype(np.float64)))
        tags = np.zeros((len(cloud), 3))
        tags[:, 0] = np.arange(len(cloud))
        pcd.normals = o3d.utility.Vector3dVector(tags)
        kept = np.asarray(pcd.farthest_point_down_sample(m, 0).normals)[:, 0]
        rows.append(torch.from_numpy(kept.astype(np.int64)))
    return rows


def fps_others() -> dict:
    """name -> (timed fn, index fn or None for the timed one)."""
    others = {'previous torch loop': (previous_torch_fps, None)}
    if fpsample is not None:
        others['fpsample (as wired)'] = (
            lambda p, m: farthest_point_sample(p, m, backend='fpsample'), None)
        others['fpsample.fps_sampling'] = (
            _per_cloud(lambda c, m: fpsample.fps_sampling(c, m, start_idx=0)), None)
        others['fpsample.bucket_fps_kdtree'] = (
            _per_cloud(lambda c, m: fpsample.bucket_fps_kdtree_sampling(c, m, start_idx=0)),
            None)
        others['fpsample.fps_npdu'] = (
            _per_cloud(lambda c, m: fpsample.fps_npdu_sampling(c, m, start_idx=0)), None)
    if o3d is not None:
        others['open3d farthest_point_down'] = (_open3d_fps, _open3d_fps_indices)
    return others


def _knn_mm(centers, source, k):
    d = torch.cdist(centers, source, compute_mode='use_mm_for_euclid_dist').square()
    return d.topk(k, dim=2, largest=False).indices


def _knn_kdtree(threads):
    def run(centers, source, k):
        rows = [cKDTree(s).query(c, k, workers=threads)[1]
                for c, s in zip(centers.numpy(), source.numpy())]
        return torch.from_numpy(np.stack(rows).astype(np.int64))
    return run


def _knn_open3d(centers, source, k):
    rows = []
    for c, s in zip(centers.numpy(), source.numpy()):
        search = o3d.core.nns.NearestNeighborSearch(o3d.core.Tensor(s))
        search.knn_index()
        rows.append(search.knn_search(o3d.core.Tensor(c), k)[0].numpy())
    return torch.from_numpy(np.stack(rows).astype(np.int64))


def knn_others(threads: int) -> dict:
    others = {'torch cdist mm + topk': _knn_mm}
    if cKDTree is not None:
        others['scipy cKDTree'] = _knn_kdtree(threads)
    if o3d is not None:
        others['open3d core.nns'] = _knn_open3d
    return others


# ---------------------------------------------------------------------------- clouds
def random_clouds(batch: int, n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(size=(batch, n, 3)).astype(np.float32))


def tie_clouds(n: int, seed: int = 0) -> torch.Tensor:
    """Grid in raster order, shuffled grid, 64 distinct points repeated: `(3, n, 3)`."""
    rng = np.random.default_rng(seed)
    side = math.ceil(n ** (1 / 3))
    axis = np.arange(side, dtype=np.float32) * 0.1
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing='ij'), -1).reshape(-1, 3)
    repeated = rng.normal(size=(64, 3)).astype(np.float32)[rng.integers(0, 64, n)]
    return torch.from_numpy(np.stack([grid[:n], grid[rng.permutation(len(grid))[:n]],
                                      repeated]))


def check_clouds(args, groups: tuple) -> list:
    """(random, tie-heavy) clouds of each stage's input size. Not the pipeline's centers: those
    come in FPS order, and FPS of their first g from index 0 is just 0..g-1."""
    sizes = (args.points,) + groups[:-1]
    return [(random_clouds(args.clouds, n, seed=10 + i), tie_clouds(n, seed=i))
            for i, n in enumerate(sizes)]


def stage_inputs(clouds: torch.Tensor, groups: tuple) -> list:
    """Input of each FPS stage: the clouds, then our previous stage's centers."""
    inputs, source = [], clouds
    for g in groups:
        inputs.append(source)
        source = gather_points(source, farthest_point_sample(source, g, backend='torch'))
    return inputs


# ---------------------------------------------------------------------------- timing
def median_ms(fns: dict, iterations: int) -> dict:
    """Median ms of each fn, all warmed up once and then called in turn."""
    return {name: statistics.median(t) * 1e3 for name, t in interleaved(fns, iterations).items()}


def identical(ours: torch.Tensor, other: torch.Tensor) -> int:
    return sum(torch.equal(a, b) for a, b in zip(ours, other))


def _row(op, batch, ours_ms, name, other_ms, same):
    print(f'{op:16s} {batch:>5d} {ours_ms:9.2f}  {name:28s} {other_ms:9.2f} '
          f'{ours_ms / other_ms:8.2f}  {same}')


def _header(title):
    print(f'\n{title}')
    print(f'{"op":16s} {"batch":>5s} {"ours ms":>9s}  {"other":28s} {"other ms":>9s} '
          f'{"ours/oth":>8s}  identical (random, ties)')


def bench_fps(args, groups):
    _header('farthest point sampling (ours: the torch loop)')
    others = fps_others()
    checks = {}  # stage -> name -> 'identical random, identical ties'
    for stage, (r, t) in enumerate(check_clouds(args, groups)):
        g = groups[stage]
        ours = (farthest_point_sample(r, g, backend='torch'),
                farthest_point_sample(t, g, backend='torch'))
        checks[stage] = {}
        for name, (fn, index_fn) in others.items():
            index_fn = index_fn or fn
            checks[stage][name] = (f'{identical(ours[0], index_fn(r, g))}/{len(r)}, '
                                   f'{identical(ours[1], index_fn(t, g))}/{len(t)}')
    for batch in args.batches:
        inputs = stage_inputs(random_clouds(batch, args.points, seed=2), groups)
        for stage, g in enumerate(groups):
            points = inputs[stage]
            fns = {'ours': lambda p=points, g=g: farthest_point_sample(p, g, backend='torch')}
            fns.update({name: (lambda fn=fn, p=points, g=g: fn(p, g))
                        for name, (fn, _) in others.items()})
            ms = median_ms(fns, args.iterations)
            op = f'fps {points.shape[1]}->{g}'
            for name in others:
                _row(op, batch, ms['ours'], name, ms[name], checks[stage][name])


def bench_knn(args, groups):
    _header(f'kNN grouping, k = {", ".join(map(str, KS))} (ours: cdist direct mode + topk)')
    others = knn_others(torch.get_num_threads())
    checks = {}
    for stage, clouds in enumerate(check_clouds(args, groups)):
        g, k = groups[stage], KS[stage]
        checks[stage] = {}
        for name, fn in others.items():
            found = []
            for source in clouds:
                centers = gather_points(source, farthest_point_sample(source, g))
                ours = knn(centers, source, k)[1]
                found.append(f'{identical(ours, fn(centers, source, k))}/{len(source)}')
            checks[stage][name] = ', '.join(found)
    for batch in args.batches:
        inputs = stage_inputs(random_clouds(batch, args.points, seed=2), groups)
        for stage, (g, k) in enumerate(zip(groups, KS)):
            source = inputs[stage]
            centers = gather_points(source, farthest_point_sample(source, g))
            fns = {'ours': lambda c=centers, s=source, k=k: knn(c, s, k)}
            fns.update({name: (lambda fn=fn, c=centers, s=source, k=k: fn(c, s, k))
                        for name, fn in others.items()})
            ms = median_ms(fns, args.iterations)
            op = f'knn {g}x{source.shape[1]} k{k}'
            for name in others:
                _row(op, batch, ms['ours'], name, ms[name], checks[stage][name])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iterations', type=int, default=7, help='timed calls per row')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (also the fpsample and cKDTree workers)')
    parser.add_argument('--points', type=int, default=2048,
                        help='input points; the stages keep points/4, /8, /32')
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 32])
    parser.add_argument('--clouds', type=int, default=16,
                        help='random clouds of the identical-indices check')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    groups = (args.points // 4, args.points // 8, args.points // 32)
    if min(groups) < max(KS):
        parser.error(f'--points {args.points} is too few: the last stage keeps {groups[-1]}')
    versions = [f'python {platform.python_version()}', f'torch {torch.__version__}',
                f'numpy {np.__version__}']
    for name, module in (('fpsample', fpsample), ('open3d', o3d)):
        if module is None:
            print(f'({name} not installed: its rows are skipped)')
        else:
            versions.append(f'{name} {metadata.version(name)}')
    if cKDTree is None:
        print('(scipy not installed: the cKDTree rows are skipped)')
    print(f'{", ".join(versions)}; {platform.machine()}, {torch.get_num_threads()} threads, '
          f'{args.iterations} iterations, median ms')
    bench_fps(args, groups)
    bench_knn(args, groups)


if __name__ == '__main__':
    main()
