"""Ground-truth labels of a radiance grid from the MuJoCo scene: boxes and per-voxel classes.

Every labelled instance is a body subtree with primitive geoms (box, sphere, capsule,
cylinder, ellipsoid): the task objects, the goal markers and the gripper (`CLASS_NAMES`; the
table, the floor and empty space are class 0). From the geoms' exact shapes
(`embodied_vision.geometry.primitives`, no sampling):

- AABB: the hull of the geoms' extents along the world axes;
- OBB: the same along the instance's yaw axes (its body x axis projected onto the table,
  or its y axis when x points up), so `(x, y, z, w, l, h, theta)` with `w` along the yaw
  direction; tight for the geoms in that frame, exact for upright objects;
- per-voxel class: an occupied voxel (alpha > `occupied_alpha`) gets the class of the
  instance whose geoms contain its centre (`samples_per_axis=1`), or most of a `k^3` lattice
  of probes in its cell (`k > 1`: a voxel that the object's surface crosses, as NeRF-MAE's
  labels from voxelised surface points; thin walls such as the bowl's 6 mm need it); ties
  and interpenetrating contacts go to the lower class id.

`voxel_boxes` converts world boxes to NeRF-RPN's voxel units and applies its filters.
"""
from dataclasses import dataclass, field

import mujoco
import numpy as np

from embodied_vision.geometry.primitives import primitive_contains, primitives_extent
from embodied_vision.sim.tasks.base import OBJECT_NAMES

__all__ = ['CLASS_NAMES', 'Instance', 'class_table', 'scene_instances', 'voxel_boxes',
           'voxel_semantics', 'world_boxes']

#: Class id -> name; 0 is background (table, floor, empty space).
CLASS_NAMES = ('background', *OBJECT_NAMES, 'gripper')
_BODY_OF_CLASS = {'gripper': 'hand'}  # other classes are bodies of the same name
_DESCRIPTIONS = {'background': 'table, floor and empty space',
                 'gripper': 'parallel-jaw gripper (palm, wrist link and fingers)',
                 **OBJECT_NAMES}
_MJ_PRIMITIVES = {2: 'sphere', 3: 'capsule', 4: 'ellipsoid', 5: 'cylinder', 6: 'box'}


def class_table() -> list[dict]:
    """`[{'id', 'name', 'description'}, ...]` for `classes.json`."""
    return [{'id': i, 'name': name, 'description': _DESCRIPTIONS[name]}
            for i, name in enumerate(CLASS_NAMES)]


@dataclass
class Instance:
    """One labelled body subtree: its class and primitive geoms `(kind, size, pose)`."""

    name: str
    class_id: int
    primitives: list = field(default_factory=list)
    yaw: float = 0.0


def _yaw(rotation: np.ndarray) -> float:
    """Heading of the body x axis on the table (its y axis when x is near vertical), in
    [-pi/2, pi/2): a box is the same box turned by pi."""
    x_axis, y_axis = rotation[:, 0], rotation[:, 1]
    if np.hypot(*x_axis[:2]) >= np.hypot(*y_axis[:2]):
        yaw = np.arctan2(x_axis[1], x_axis[0])
    else:
        yaw = np.arctan2(y_axis[1], y_axis[0]) - np.pi / 2
    return float((yaw + np.pi / 2) % np.pi - np.pi / 2)


def scene_instances(env) -> list[Instance]:
    """The labelled instances present in the env's scene, in class-id order."""
    model, data = env.model, env.data
    instances = []
    for class_id, name in enumerate(CLASS_NAMES[1:], start=1):
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, _BODY_OF_CLASS.get(name, name))
        if body < 0:
            continue
        primitives = []
        for g in range(model.ngeom):
            kind = _MJ_PRIMITIVES.get(int(model.geom_type[g]))
            if kind is None or not env._belongs_to(model.geom_bodyid[g], body):
                continue
            pose = np.eye(4)
            pose[:3, :3] = data.geom_xmat[g].reshape(3, 3)
            pose[:3, 3] = data.geom_xpos[g]
            primitives.append((kind, model.geom_size[g].copy(), pose))
        if primitives:
            instances.append(Instance(name, class_id, primitives,
                                      _yaw(data.xmat[body].reshape(3, 3))))
    return instances


def world_boxes(instance: Instance) -> tuple[np.ndarray, np.ndarray]:
    """World-frame `(aabb (6,), obb (7,))` of an instance, metres and radians."""
    extent = primitives_extent(instance.primitives, np.eye(3))
    aabb = np.concatenate([extent[:, 0], extent[:, 1]])
    c, s = np.cos(instance.yaw), np.sin(instance.yaw)
    axes = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # rows: box x, y, z
    extent = primitives_extent(instance.primitives, axes)
    centre = extent.mean(axis=1) @ axes
    obb = np.concatenate([centre, extent[:, 1] - extent[:, 0], [instance.yaw]])
    return aabb, obb


def voxel_boxes(aabb_world: np.ndarray, obb_world: np.ndarray, grid
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World boxes `(N, 6)`, `(N, 7)` -> NeRF-RPN voxel units, and which rows to keep.

    A point maps to `(p - bbox_min) / spacing`; OBB sizes are divided by the x, y, z spacing
    as upstream (our grids are isotropic to ~1 %). As NeRF-RPN's box preprocessing, an
    instance is kept when its OBB centre lies inside the grid and its AABB is clipped to
    `[0, resolution]`. Returns `(aabb (K, 6), obb (K, 7), keep (N,) bool)`, float32.
    """
    aabb_world = np.asarray(aabb_world, np.float64).reshape(-1, 6)
    obb_world = np.asarray(obb_world, np.float64).reshape(-1, 7)
    spacing = grid.spacing
    resolution = grid.resolution.astype(np.float64)
    aabb = (aabb_world - np.tile(grid.bbox_min, 2)) / np.tile(spacing, 2)
    aabb = np.clip(aabb, 0.0, np.tile(resolution, 2))
    obb = obb_world.copy()
    obb[:, :3] = (obb_world[:, :3] - grid.bbox_min) / spacing
    obb[:, 3:6] = obb_world[:, 3:6] / spacing
    keep = np.all((obb[:, :3] >= 0) & (obb[:, :3] <= resolution), axis=1)
    keep &= np.all(aabb[:, 3:] > aabb[:, :3], axis=1)
    return aabb[keep].astype(np.float32), obb[keep].astype(np.float32), keep


def voxel_semantics(grid, instances, occupied_alpha: float = 0.01,
                    samples_per_axis: int = 1) -> np.ndarray:
    """`(X, Y, Z)` uint8 class per voxel (0 = background) of `grid`'s occupied voxels.

    With `samples_per_axis=1` a voxel gets the class of the instance containing its centre;
    with `k > 1` each voxel cell is probed on a `k^3` lattice (cell-centred, so odd `k`
    includes the centre) and gets the instance containing most probes, if any.
    """
    if int(samples_per_axis) < 1:
        raise ValueError(f'samples_per_axis must be >= 1, got {samples_per_axis}')
    labels = np.zeros(tuple(int(r) for r in grid.resolution), np.uint8)
    occupied = np.nonzero(grid.alpha > occupied_alpha)
    if len(occupied[0]) == 0 or not instances:
        return labels
    axes = grid.axes()
    centres = np.stack([axes[a][occupied[a]] for a in range(3)], axis=1)
    k = int(samples_per_axis)
    steps = (np.arange(k) + 0.5) / k - 0.5
    offsets = np.stack(np.meshgrid(steps, steps, steps, indexing='ij'), -1).reshape(-1, 3)
    offsets = offsets * grid.spacing
    best = np.zeros(len(centres), np.int64)  # probes inside the current best instance
    for instance in sorted(instances, key=lambda i: i.class_id):
        lo, hi = np.split(primitives_extent(instance.primitives, np.eye(3)).T, 2)
        near = np.flatnonzero(np.all((centres + offsets.min(0) <= hi)
                                     & (centres + offsets.max(0) >= lo), axis=1))
        if len(near) == 0:
            continue
        probes = (centres[near, None, :] + offsets).reshape(-1, 3)
        inside = np.zeros(len(probes), bool)
        for kind, size, pose in instance.primitives:
            inside |= primitive_contains(kind, size, pose, probes)
        count = inside.reshape(len(near), len(offsets)).sum(axis=1)
        wins = count > best[near]  # ties go to the lower class id
        best[near[wins]] = count[wins]
        labels[tuple(index[near[wins]] for index in occupied)] = instance.class_id
    return labels
