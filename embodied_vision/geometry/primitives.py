"""Exact geometry of MuJoCo-style primitives: point containment and extents along directions.

A primitive is `(kind, size, pose)`: `kind` and `size` as in `embodied_vision.geometry.sampling`
(MuJoCo's `geom size`; cylinder and capsule axes along the local z) and `pose` the 4x4
primitive-to-world transform (MuJoCo's `geom_xpos` / `geom_xmat`). Used to label voxels and to
fit boxes from a simulator's ground truth.
"""
# R (rotation) follows camera-geometry notation
# ruff: noqa: N806
import numpy as np

from embodied_vision.geometry.sampling import _kind_and_size

__all__ = ['primitive_contains', 'primitive_half_extent', 'primitives_extent']


def _pose(pose):
    pose = np.asarray(pose, np.float64)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        raise ValueError(f'pose must be a finite 4x4 transform, got shape {pose.shape}')
    return pose[:3, :3], pose[:3, 3]


def _as_rows(values, name):
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or values.shape[1] != 3:
        raise ValueError(f'{name} must have shape (N, 3), got {values.shape}')
    return values


def primitive_contains(kind, size, pose, points) -> np.ndarray:
    """Boolean `(N,)`: which world `points` `(N, 3)` lie inside the primitive or on its surface."""
    kind, s = _kind_and_size(kind, size)
    R, centre = _pose(pose)
    local = (_as_rows(points, 'points') - centre) @ R  # rows of R^T (p - c)
    if kind == 'box':
        return np.all(np.abs(local) <= s, axis=1)
    if kind == 'sphere':
        return np.einsum('ij,ij->i', local, local) <= s[0] ** 2
    if kind == 'ellipsoid':
        return np.sum((local / s) ** 2, axis=1) <= 1.0
    radial = local[:, 0] ** 2 + local[:, 1] ** 2
    if kind == 'cylinder':
        return (radial <= s[0] ** 2) & (np.abs(local[:, 2]) <= s[1])
    beyond_segment = local[:, 2] - np.clip(local[:, 2], -s[1], s[1])  # capsule
    return radial + beyond_segment ** 2 <= s[0] ** 2


def primitive_half_extent(kind, size, pose, directions) -> np.ndarray:
    """`(M,)` support of the primitive about its centre: max of `(x - centre) . d` over it.

    Every primitive is centrally symmetric, so it spans `centre . d +- half_extent` along
    each direction `d` (rows of `directions` `(M, 3)`; unit rows give metres).
    """
    kind, s = _kind_and_size(kind, size)
    R, _ = _pose(pose)
    local = _as_rows(directions, 'directions') @ R
    if kind == 'box':
        return np.abs(local) @ s
    if kind == 'sphere':
        return s[0] * np.linalg.norm(local, axis=1)
    if kind == 'ellipsoid':
        return np.linalg.norm(local * s, axis=1)
    if kind == 'cylinder':
        return s[0] * np.hypot(local[:, 0], local[:, 1]) + s[1] * np.abs(local[:, 2])
    return s[0] * np.linalg.norm(local, axis=1) + s[1] * np.abs(local[:, 2])  # capsule


def primitives_extent(primitives, directions) -> np.ndarray:
    """`(M, 2)` min and max of `x . d` over the union of `primitives` for each direction `d`.

    Exact (no sampling): the union's extent is the hull of the primitives' extents.
    """
    if len(primitives) == 0:
        raise ValueError('primitives is empty: an extent needs at least one (kind, size, pose)')
    directions = _as_rows(directions, 'directions')
    lows, highs = [], []
    for kind, size, pose in primitives:
        centre = _pose(pose)[1] @ directions.T
        half = primitive_half_extent(kind, size, pose, directions)
        lows.append(centre - half)
        highs.append(centre + half)
    return np.stack([np.min(lows, axis=0), np.max(highs, axis=0)], axis=1)
