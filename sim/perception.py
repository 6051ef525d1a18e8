"""3D perception helpers of the tabletop env: fused point clouds, radiance grids, object clouds.

These are mixed into `TabletopEnv` and call the core geometry module
(`embodied_vision.geometry`, numpy only) on RGB-D rendered from the current state:

- `point_cloud(cameras, frame)`: multi-view fused, coloured point cloud (I2P-MAE inputs);
- `radiance_grid(n_views, max_resolution)`: NeRF-MAE-format grid fused from posed RGB-D
  views on a ring around the workspace;
- `object_point_cloud(name, n)`: points sampled on an object's surface from its MJCF geoms.

Renders here are noise-free and do not touch the env's RNG, so calling them never changes the
episode that follows.
"""
import numpy as np

from embodied_vision.geometry.pointcloud import fuse_views, transform_points
from embodied_vision.geometry.radiance_grid import RadianceGrid, fuse_radiance_grid
from embodied_vision.geometry.sampling import sample_object_points

__all__ = ['PerceptionMixin', 'WORKSPACE_BBOX']

#: World-frame box around the table top and everything on it (min, max), metres.
WORKSPACE_BBOX = (np.array([-0.3, -0.35, -0.01]), np.array([0.3, 0.35, 0.3]))
_PRIMITIVE_TYPES = {
    2: 'sphere', 3: 'capsule', 4: 'ellipsoid', 5: 'cylinder', 6: 'box',
}


class PerceptionMixin:
    """Point clouds and radiance grids for `TabletopEnv` (needs `rig`, `model`, `data`)."""

    def camera_view(self, name: str, image_size=None) -> dict:
        """Render camera `name` as a posed RGB-D view dict (`rgb`, `depth`, `K`, `T_world_cam`)."""
        h, w = self._size(image_size)
        rgb, depth = self.rig.render(name, depth=True, height=h, width=w)
        params = self.rig.params(name, height=h, width=w)
        return {'rgb': rgb, 'depth': depth, 'K': params['K'],
                'T_world_cam': params['T_world_cam']}

    def point_cloud(self, cameras=None, frame: str = 'world', image_size=None, stride: int = 1,
                    voxel_size: float | None = None, crop: bool = True):
        """Fused coloured point cloud from the RGB-D of `cameras`.

        Args:
            cameras: camera names; default the enabled cameras, or front + side if none.
            frame: `world`, or a camera name to express the points in that camera's OpenCV
                frame.
            image_size: render resolution (default the env's `image_size`).
            stride: keep every `stride`-th pixel row/column.
            voxel_size: optional voxel down-sampling (metres).
            crop: keep only points inside `WORKSPACE_BBOX` (drops the floor and far walls).

        Returns:
            `(points (N, 3) float32, colors (N, 3) uint8)`.
        """
        cameras = self.rig.check_names(cameras or self.cameras or ('front', 'side'))
        if frame != 'world':
            self.rig.check_names(frame)
        views = [self.camera_view(c, image_size) for c in cameras]
        lo, hi = WORKSPACE_BBOX if crop else (None, None)
        points, colors = fuse_views(views, bbox_min=lo, bbox_max=hi, voxel_size=voxel_size,
                                    stride=stride)
        if frame != 'world':
            t_cam_world = np.linalg.inv(self.rig.params(frame)['T_world_cam'])
            points = transform_points(points, t_cam_world).astype(np.float32)
        return points, colors

    def radiance_views(self, n_views: int = 12, image_size=96, distance: float = 0.85,
                       elevations=(-30.0, -55.0), bbox=None) -> list[dict]:
        """Posed RGB-D views on a ring around the workspace centre (free cameras)."""
        if n_views < 1:
            raise ValueError(f'n_views must be >= 1, got {n_views}')
        lo, hi = bbox if bbox is not None else WORKSPACE_BBOX
        centre = (np.asarray(lo) + np.asarray(hi)) / 2.0
        h, w = self._size(image_size)
        views = []
        for i in range(n_views):
            azimuth = 360.0 * i / n_views
            elevation = elevations[i % len(elevations)]
            views.append(self.rig.render_free(centre, distance, azimuth, elevation, h, w))
        return views

    def radiance_grid(self, n_views: int = 12, max_resolution: int = 160, image_size=96,
                      bbox=None) -> RadianceGrid:
        """A NeRF-MAE-format radiance grid (`rgbsigma` (X, Y, Z, 4)) of the current scene.

        Renders `n_views` posed RGB-D views around `bbox` (default `WORKSPACE_BBOX`) and fuses
        them with `embodied_vision.geometry.radiance_grid.fuse_radiance_grid`; the longest side
        of the grid has `max_resolution` samples.
        """
        lo, hi = bbox if bbox is not None else WORKSPACE_BBOX
        views = self.radiance_views(n_views, image_size, bbox=(lo, hi))
        return fuse_radiance_grid(views, lo, hi, max_resolution=max_resolution)

    def object_point_cloud(self, name: str, n: int = 2048, seed: int | None = 0) -> np.ndarray:
        """`(n, 3)` float32 world points sampled on the surface of object `name`'s geoms."""
        valid = tuple(self.task.objects)
        if name not in valid:
            raise ValueError(f'unknown object {name!r} for task {self.task.name}; '
                             f'valid objects: {list(valid)}')
        body = self.model.body(name).id
        primitives = []
        for g in range(self.model.ngeom):
            if not self._belongs_to(self.model.geom_bodyid[g], body):
                continue
            kind = _PRIMITIVE_TYPES.get(int(self.model.geom_type[g]))
            if kind is None:
                continue
            pose = np.eye(4)
            pose[:3, :3] = self.data.geom_xmat[g].reshape(3, 3)
            pose[:3, 3] = self.data.geom_xpos[g]
            primitives.append((kind, self.model.geom_size[g].copy(), pose))
        return sample_object_points(primitives, n=n, rng=np.random.default_rng(seed))

    # ------------------------------------------------------------------ helpers
    def _belongs_to(self, body: int, root: int) -> bool:
        while body > 0:
            if body == root:
                return True
            body = self.model.body_parentid[body]
        return False

    def _size(self, image_size) -> tuple[int, int]:
        if image_size is None:
            return self.image_size
        if isinstance(image_size, (int, np.integer)):
            return int(image_size), int(image_size)
        return int(image_size[0]), int(image_size[1])
