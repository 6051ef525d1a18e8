"""ScanObjectNN-like partial scans of procedural shapes, rendered with MuJoCo.

ScanObjectNN (Uy et al., ICCV 2019, https://arxiv.org/abs/1908.04616) crops real scans to
each object's box: only the sides the sensor saw, with noise, holes and, in its OBJ_BG
variant, the floor and pieces of neighbouring objects inside the box. One scan here:

1. the target shape is scaled to a half-diagonal of `object_size` metres, turned by a random
   yaw and stood on a floor plane; 1 to 3 (`neighbours`) other random shapes stand around
   it, just outside its box, away from the cameras so they cannot hide it;
2. `views` depth cameras on an arc of `arc` degrees (random start, elevation in
   `elevation`) look at the crop box from where it fills the image; each renders depth and
   per-pixel geom ids, the domain's depth noise and dropout are added
   (`embodied_vision.sim.domains.add_sensor_noise`), and the pixels are back-projected
   (`embodied_vision.geometry.depth_to_points`) into the world;
3. the fused points inside the crop box (the object's box grown by `margin * object_size`
   per side, floor included) are resampled to `n` points, turned y-up and normalised as
   the full clouds are (`embodied_vision.sim.shape_clouds`); `mask` is -1 for background points
   and, as ScanObjectNN's non-negative ids, the index of the object part seen otherwise.

One compiled model serves every scan: it holds a floor, the cameras and a pool of
`max_geoms` hidden geom slots; a scan writes its primitives' types, sizes and poses into
slots (the compiled model's `geom_*` and `cam_*` fields, as `view_pairs` does for cameras)
and hides the rest, so one renderer is created once instead of once per shape (~0.2 s each).
`scene_xml` writes the same scene as a standalone MJCF, to inspect or check it.
"""
# R, T, K (rotations, poses, intrinsics) follow camera-geometry notation
# ruff: noqa: N803, N806
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from embodied_vision.geometry.pointcloud import depth_to_points
from embodied_vision.geometry.primitives import primitives_extent
from embodied_vision.sim.cameras import intrinsics
from embodied_vision.sim.domains import add_sensor_noise, make_domain
from embodied_vision.sim.shape_categories import CATEGORIES, Shape, make_shape, place_parts
from embodied_vision.sim.shape_clouds import normalize_points, to_y_up

__all__ = ['Scan', 'ScanConfig', 'ScanLayout', 'ShapeScanner']

_GEOM_TYPES = {'sphere': mujoco.mjtGeom.mjGEOM_SPHERE, 'capsule': mujoco.mjtGeom.mjGEOM_CAPSULE,
               'ellipsoid': mujoco.mjtGeom.mjGEOM_ELLIPSOID,
               'cylinder': mujoco.mjtGeom.mjGEOM_CYLINDER, 'box': mujoco.mjtGeom.mjGEOM_BOX}
_HIDDEN_GROUP = 5
_ZNEAR, _ZFAR = 0.01, 20.0  # metres (the model's extent is fixed to 1)
_CLEAR = 40.0  # degrees kept free of neighbours on either side of the camera arc
_SLICES = 48  # tessellation of round primitives: depth within 0.22 % of a radius of the surface


@dataclass(frozen=True)
class ScanConfig:
    """How partial scans are taken (the `scan:` group of `shapes.yaml`).

    Args:
        views: depth cameras fused per scan.
        arc: degrees of azimuth between the first and the last camera.
        elevation: (min, max) camera elevation in degrees above the floor.
        image_size: depth image side in pixels.
        fovy: vertical field of view in degrees.
        neighbours: (min, max) count of clutter objects around the target.
        margin: the crop box grows by `margin * object_size` on every side.
        object_size: the target's half-diagonal in metres.
        domain: sensor-noise domain (`sim` has none, `real` adds noise and dropout).
        depth_noise: depth noise std at 1 m in metres (None: the domain's).
    """

    views: int = 2
    arc: float = 60.0
    elevation: tuple = (15.0, 50.0)
    image_size: int = 128
    fovy: float = 45.0
    neighbours: tuple = (1, 3)
    margin: float = 0.15
    object_size: float = 0.15
    domain: str = 'real'
    depth_noise: float | None = 0.02

    def __post_init__(self):
        if int(self.views) < 1 or int(self.image_size) < 8:
            raise ValueError(f'scan.views={self.views} must be >= 1 and scan.image_size='
                             f'{self.image_size} >= 8')
        low, high = self.elevation
        if not 0.0 <= low <= high < 90.0:
            raise ValueError(f'scan.elevation={list(self.elevation)} must be [min, max] '
                             f'degrees with 0 <= min <= max < 90')
        if not 0.0 <= self.arc <= 360.0 - 2 * _CLEAR or not 5.0 <= self.fovy < 170.0:
            raise ValueError(f'scan.arc={self.arc} must be in [0, {360 - 2 * _CLEAR}] and '
                             f'scan.fovy={self.fovy} in [5, 170)')
        if not 0 <= int(self.neighbours[0]) <= int(self.neighbours[1]):
            raise ValueError(f'scan.neighbours={list(self.neighbours)} must be [min, max] '
                             f'with 0 <= min <= max')
        if self.margin < 0 or self.object_size <= 0:
            raise ValueError(f'scan.margin={self.margin} must be >= 0 and scan.object_size='
                             f'{self.object_size} > 0')
        if self.depth_noise is not None and self.depth_noise < 0:
            raise ValueError(f'scan.depth_noise={self.depth_noise} must be >= 0 or null')
        make_domain(self.domain)  # raises on an unknown domain, listing the valid ones


@dataclass
class ScanLayout:
    """A scene: target and clutter parts (world frame) and the cameras.

    Args:
        target_parts: `(kind, size, T_world)` of the target.
        clutter_parts: the same for every neighbour, concatenated.
        cameras: `(position, R_gl)` per camera: MuJoCo camera frame (x right, y up, looking
            along -z) in the world.
        box_pose: 4x4 crop-box-to-world pose (yaw only).
        box_half: (3,) half sizes of the crop box.
    """

    target_parts: tuple
    clutter_parts: tuple
    cameras: list
    box_pose: np.ndarray
    box_half: np.ndarray


@dataclass
class Scan:
    """A partial scan.

    Args:
        points: float32 (n, 3), y-up, centred, max norm 1.
        mask: int32 (n,): -1 background, else the index of the target part seen.
        centre: (3,) centre of the normalisation, `points = (to_y_up(world) - centre) / scale`.
        scale: its scale.
        layout: the scene it was taken in.
        object_fraction: fraction of the cropped points (before resampling) on the target.
    """

    points: np.ndarray
    mask: np.ndarray
    centre: np.ndarray
    scale: float
    layout: ScanLayout
    object_fraction: float


def _quat(R: np.ndarray) -> np.ndarray:
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(R, np.float64).reshape(9))
    return quat


def _rbound(kind: str, size: np.ndarray) -> float:
    if kind == 'box' or kind == 'ellipsoid':
        return float(np.linalg.norm(size[:3]) if kind == 'box' else size.max())
    if kind == 'sphere':
        return float(size[0])
    return float(size[0] + size[1]) if kind == 'capsule' else float(np.hypot(*size[:2]))


def _look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(right, forward), -forward], axis=1)


class ShapeScanner:
    """Takes partial scans of shapes with one reused MuJoCo model and renderer.

    Args:
        config: how scans are taken.
        max_geoms: size of the geom pool (target plus clutter primitives per scene).
    """

    def __init__(self, config: ScanConfig | None = None, max_geoms: int = 320):
        self.config = config or ScanConfig()
        cfg = self.config
        noise = {} if cfg.depth_noise is None else {'depth_noise': float(cfg.depth_noise)}
        self.domain = make_domain(cfg.domain, **noise)
        self.K = intrinsics(cfg.fovy, cfg.image_size, cfg.image_size)
        slots = ''.join(f'<geom name="slot{i}" type="sphere" size="0.01" pos="0 0 -5" '
                        f'group="{_HIDDEN_GROUP}"/>' for i in range(max_geoms))
        self.model = mujoco.MjModel.from_xml_string(self._xml(slots, cfg.views))
        self.data = mujoco.MjData(self.model)
        self._slots = self.model.geom('slot0').id + np.arange(max_geoms)
        self.model.geom_sameframe[self._slots] = 0  # poses change: never take the body frame
        self._option = mujoco.MjvOption()
        self._option.geomgroup[_HIDDEN_GROUP] = 0
        self._renderer = mujoco.Renderer(self.model, cfg.image_size, cfg.image_size)
        self._owner = np.full(self.model.ngeom + 1, -1, np.int32)  # geom id -> target part

    def _xml(self, geoms: str, cameras: int | list) -> str:
        size = self.config.image_size
        if isinstance(cameras, int):
            cameras = [(np.array([1.0, 0.0, 1.0]), _look_at(np.ones(3), np.zeros(3)))] * cameras
        cams = ''.join(f'<camera name="scan{i}" pos="{" ".join(map(str, p))}" xyaxes="'
                       f'{" ".join(map(str, np.concatenate([R[:, 0], R[:, 1]])))}" '
                       f'fovy="{self.config.fovy}"/>' for i, (p, R) in enumerate(cameras))
        return (f'<mujoco model="shape_scan"><statistic extent="1" center="0 0 0"/>'
                f'<visual><global offwidth="{size}" offheight="{size}"/><quality '
                f'offsamples="0" numslices="{_SLICES}" numstacks="{_SLICES // 2}"/>'
                f'<map znear="{_ZNEAR}" zfar="{_ZFAR}"/></visual><worldbody>'
                f'<geom name="floor" type="plane" size="10 10 0.1"/>{geoms}{cams}'
                f'</worldbody></mujoco>')

    # ------------------------------------------------------------------ layout
    def layout(self, shape: Shape, rng: np.random.Generator) -> ScanLayout:
        """Place the target, its neighbours and the cameras at random."""
        cfg = self.config
        size = float(cfg.object_size)
        lo, hi = shape.extent().T
        scale = size / (np.linalg.norm(hi - lo) / 2)
        yaw = rng.uniform(0.0, 2 * np.pi)
        target = place_parts(shape.parts, scale, yaw)
        margin = cfg.margin * size
        box_lo, box_hi = lo * scale - margin, hi * scale + margin
        box_pose = np.eye(4)
        box_pose[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0],
                            [0.0, 0.0, 1.0]]
        box_pose[:3, 3] = box_pose[:3, :3] @ ((box_lo + box_hi) / 2)
        box_half = (box_hi - box_lo) / 2
        start = rng.uniform(0.0, 360.0)
        cameras = []
        reach = np.linalg.norm(box_half) / np.sin(np.deg2rad(cfg.fovy) / 2)
        for i in range(cfg.views):
            azimuth = start + (cfg.arc * (i / (cfg.views - 1) - 0.5) if cfg.views > 1 else 0)
            elevation = np.deg2rad(rng.uniform(*cfg.elevation))
            distance = reach * rng.uniform(1.0, 1.2)
            a = np.deg2rad(azimuth)
            position = box_pose[:3, 3] + distance * np.array(
                [np.cos(elevation) * np.cos(a), np.cos(elevation) * np.sin(a), np.sin(elevation)])
            cameras.append((position, _look_at(position, box_pose[:3, 3])))
        clutter = self._neighbours(rng, target, start, len(target))
        return ScanLayout(target, clutter, cameras, box_pose, box_half)

    def _neighbours(self, rng, target, start: float, used: int) -> tuple:
        cfg = self.config
        radius = _horizontal_radius(target)
        placed, parts = [], []
        for _ in range(int(rng.integers(cfg.neighbours[0], cfg.neighbours[1] + 1))):
            shape = make_shape(str(rng.choice(list(CATEGORIES))), rng)
            lo, hi = shape.extent().T
            scale = cfg.object_size * rng.uniform(0.5, 1.2) / (np.linalg.norm(hi - lo) / 2)
            own = place_parts(shape.parts, scale, rng.uniform(0.0, 2 * np.pi))
            own_radius = _horizontal_radius(own)
            for _ in range(10):  # keep clear of the cameras and of the other neighbours
                side = rng.choice([-1.0, 1.0])
                azimuth = np.deg2rad(start + side * rng.uniform(cfg.arc / 2 + _CLEAR, 180.0))
                gap = rng.uniform(0.0, 1.0) * cfg.margin * cfg.object_size
                distance = radius + own_radius + gap
                at = distance * np.array([np.cos(azimuth), np.sin(azimuth)])
                if all(np.linalg.norm(at - p) >= own_radius + r for p, r in placed):
                    break
            else:
                continue
            if used + len(parts) + len(own) > len(self._slots):
                break
            placed.append((at, own_radius))
            parts += place_parts(own, offset=(at[0], at[1], 0.0))
        return tuple(parts)

    def scene_xml(self, layout: ScanLayout) -> str:
        """The scene of `layout` as a standalone MJCF (geoms `target<j>` and `clutter<k>`)."""
        geoms = []
        for prefix, parts in (('target', layout.target_parts), ('clutter', layout.clutter_parts)):
            for j, (kind, size, T) in enumerate(parts):
                geoms.append(f'<geom name="{prefix}{j}" type="{kind}" size="'
                             f'{" ".join(f"{v:.9g}" for v in size)}" pos="'
                             f'{" ".join(f"{v:.9g}" for v in T[:3, 3])}" quat="'
                             f'{" ".join(f"{v:.12g}" for v in _quat(T[:3, :3]))}"/>')
        return self._xml(''.join(geoms), layout.cameras)

    # ------------------------------------------------------------------ rendering
    def render(self, layout: ScanLayout) -> list[dict]:
        """Clean depth and target-part ids per camera: `depth`, `part`, `K`, `T_world_cam`."""
        model, data = self.model, self.data
        parts = list(layout.target_parts) + list(layout.clutter_parts)
        if len(parts) > len(self._slots) or len(layout.cameras) > model.ncam:
            raise ValueError(f'the scene has {len(parts)} primitives and {len(layout.cameras)} '
                             f'cameras; the pool holds {len(self._slots)} and {model.ncam} '
                             f'(raise max_geoms, or scan with a scanner of as many views)')
        self._owner[:] = -1
        for slot, (j, (kind, size, T)) in zip(self._slots, enumerate(parts)):
            model.geom_type[slot] = _GEOM_TYPES[kind]
            model.geom_size[slot] = np.pad(size, (0, 3 - len(size)))
            model.geom_pos[slot], model.geom_quat[slot] = T[:3, 3], _quat(T[:3, :3])
            model.geom_rbound[slot], model.geom_group[slot] = _rbound(kind, size), 0
            self._owner[slot] = j if j < len(layout.target_parts) else -1
        model.geom_group[self._slots[len(parts):]] = _HIDDEN_GROUP
        for i, (position, R) in enumerate(layout.cameras):
            model.cam_pos[i], model.cam_quat[i] = position, _quat(R)
        mujoco.mj_kinematics(model, data)
        mujoco.mj_camlight(model, data)
        views = []
        for i in range(len(layout.cameras)):
            self._renderer.update_scene(data, camera=i, scene_option=self._option)
            self._renderer.enable_depth_rendering()
            depth = self._renderer.render().copy()
            self._renderer.disable_depth_rendering()
            self._renderer.enable_segmentation_rendering()
            ids = self._renderer.render()[..., 0]
            self._renderer.disable_segmentation_rendering()
            T = np.eye(4)
            T[:3, :3] = data.cam_xmat[i].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
            T[:3, 3] = data.cam_xpos[i]
            depth[depth >= 0.999 * _ZFAR] = 0.0  # nothing hit
            views.append({'depth': depth, 'part': self._owner[ids], 'K': self.K,
                          'T_world_cam': T})
        return views

    def scan(self, shape: Shape, rng: np.random.Generator, n: int = 2048) -> Scan:
        """A partial scan of `shape`: `n` points with their object/background mask."""
        layout = self.layout(shape, rng)
        points, owners = [], []
        for view in self.render(layout):
            noisy = {'scan/depth': view['depth']}
            add_sensor_noise(noisy, self.domain, rng)
            depth = np.where(view['depth'] > 0, noisy['scan/depth'], 0.0).astype(np.float32)
            world, _ = depth_to_points(depth, view['K'], T_world_cam=view['T_world_cam'])
            points.append(world)
            owners.append(view['part'][depth > 0])
        points, owners = np.concatenate(points), np.concatenate(owners)
        local = (points - layout.box_pose[:3, 3]) @ layout.box_pose[:3, :3]
        inside = np.all(np.abs(local) <= layout.box_half, axis=1)
        points, owners = points[inside], owners[inside]
        on_object = int((owners >= 0).sum())
        if on_object == 0:
            raise RuntimeError(f'{shape.category}: no point of the object is visible in the '
                               f'{len(layout.cameras)} views; expected the cameras to see it')
        pick = rng.choice(len(points), int(n), replace=len(points) < int(n))
        cloud = normalize_points(to_y_up(points[pick]))
        return Scan(cloud.points, owners[pick].astype(np.int32), cloud.centre, cloud.scale,
                    layout, on_object / len(points))

    def close(self) -> None:
        """Free the renderer."""
        self._renderer.close()


def _horizontal_radius(parts) -> float:
    """Radius about the z axis of a circle holding the parts' footprint (from 16 directions)."""
    angles = np.linspace(0.0, 2 * np.pi, 16, endpoint=False)
    directions = np.stack([np.cos(angles), np.sin(angles), np.zeros(16)], axis=1)
    return float(np.abs(primitives_extent(parts, directions)).max() / np.cos(np.pi / 16))

