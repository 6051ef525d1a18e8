"""Full point clouds of procedural shapes (ModelNet-like): surface samples, y-up, normalised.

- `sample_shape_surface`: points uniform over the surface of the union of a shape's
  primitives; each part gets an area-proportional share and points strictly inside another
  part (faces hidden inside the object, e.g. where wall segments overlap, or the half of a
  bottle's shoulder inside its body) are dropped and redrawn;
- `to_y_up`: MuJoCo is z-up; ShapeNet, ModelNet and ScanObjectNN are y-up. `Y_UP` turns the
  object by -90 degrees about x, `(x, y, z) -> (x, z, -y)`, so the front stays +x;
- `normalize_points`: centred on the mean, scaled to max norm 1 (PointNet's `pc_normalize`).
"""
from typing import NamedTuple

import numpy as np

from embodied_vision.geometry.primitives import primitive_contains, primitives_extent
from embodied_vision.geometry.sampling import primitive_area, sample_primitive_surface
from embodied_vision.sim.shape_categories import Shape

__all__ = ['Y_UP', 'Normalized', 'full_cloud', 'normalize_points', 'sample_shape_surface',
           'to_y_up']

#: z-up (MuJoCo) to y-up (ShapeNet / ModelNet / ScanObjectNN): `(x, y, z) -> (x, z, -y)`.
Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


class Normalized(NamedTuple):
    """A normalised cloud: `points = (raw - centre) / scale`, float32."""

    points: np.ndarray
    centre: np.ndarray
    scale: float


def to_y_up(points) -> np.ndarray:
    """MuJoCo z-up points (N, 3) in the y-up convention of ShapeNet / ModelNet."""
    return np.asarray(points, np.float64) @ Y_UP.T


def normalize_points(points) -> Normalized:
    """Centre on the mean and scale to max norm 1 (PointNet's `pc_normalize`)."""
    points = np.asarray(points, np.float64)
    centre = points.mean(axis=0)
    scale = float(np.linalg.norm(points - centre, axis=1).max())
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f'cannot normalise {len(points)} points: they span {scale} (expected '
                         f'a finite, non-zero extent)')
    return Normalized(((points - centre) / scale).astype(np.float32), centre, scale)


def sample_shape_surface(parts, n: int, rng: np.random.Generator, max_rounds: int = 50):
    """`n` points uniform over the surface of the union of `parts`, and each point's part.

    Each part gets an area-proportional share; points strictly inside another part (faces
    hidden inside the object, e.g. where wall segments overlap) are dropped and redrawn.

    Returns:
        `(points (n, 3) float64, part (n,) int64)`, in random order.
    """
    if len(parts) == 0 or int(n) < 1:
        raise ValueError(f'need at least one part and n >= 1, got {len(parts)} parts, n={n}')
    areas = np.array([primitive_area(kind, size) for kind, size, _ in parts])
    span = np.ptp(primitives_extent(parts, np.eye(3)), axis=1).max()
    eps = 1e-6 * span
    kept, owners, have, batch = [], [], 0, int(n)
    for _ in range(max_rounds):
        counts = rng.multinomial(batch, areas / areas.sum())
        chunks, owner = [], []
        for j, ((kind, size, pose), count) in enumerate(zip(parts, counts)):
            local = sample_primitive_surface(kind, size, int(count), rng)
            chunks.append(local @ pose[:3, :3].T + pose[:3, 3])
            owner.append(np.full(int(count), j))
        points, owner = np.concatenate(chunks), np.concatenate(owner)
        order = rng.permutation(len(points))
        points, owner = points[order], owner[order]
        inside = np.zeros(len(points), bool)
        for j, (kind, size, pose) in enumerate(parts):
            other = owner != j
            inside[other] |= primitive_contains(kind, np.maximum(size - eps, eps), pose,
                                                points[other])
        kept.append(points[~inside])
        owners.append(owner[~inside])
        have += int((~inside).sum())
        if have >= n:
            return np.concatenate(kept)[:n], np.concatenate(owners)[:n]
        batch = int((n - have) / max((~inside).mean(), 0.02) * 1.2) + 16
    raise RuntimeError(f'only {have} of {n} surface points lie outside the other parts after '
                       f'{max_rounds} rounds: the parts hide almost all of their surfaces')


def full_cloud(shape: Shape, n: int, rng: np.random.Generator) -> Normalized:
    """A ModelNet-like cloud of `shape`: `n` surface points, y-up, centred, max norm 1."""
    points, _ = sample_shape_surface(shape.parts, n, rng)
    return normalize_points(to_y_up(points))
