"""Cameras: RGB-D rendering with reused renderers, intrinsics and extrinsics.

Conventions:

- `K` is the 3x3 pinhole matrix of an `H x W` image rendered with MuJoCo's vertical field of
  view `fovy`: `fy = fx = (H / 2) / tan(fovy / 2)` (square pixels) and the principal point at
  the image centre in OpenCV pixel coordinates (integer coordinates are pixel centres), i.e.
  `cx = (W - 1) / 2`, `cy = (H - 1) / 2`. Pixel `(u, v)` = (column, row) of the arrays.
- `T_world_cam` is the 4x4 camera-to-world transform in the OpenCV camera convention
  (x right, y down, z forward). MuJoCo cameras look down their -z axis with y up, so
  `T_cv = T_gl @ diag(1, -1, -1, 1)`.
- Depth is metric planar depth (distance along the optical axis, the z of the OpenCV frame) in
  metres, float32.

One `mujoco.Renderer` is created per image resolution, lazily, and reused for every camera and
step; depth is read with the renderer's depth mode (a second, cheap pass without lighting).
Only requested cameras are rendered.
"""
import logging

import mujoco
import numpy as np

__all__ = [
    'CAMERA_NAMES',
    'CameraRig',
    'intrinsics',
    'STEREO_BASELINE',
]

_logger = logging.getLogger(__name__)

#: Cameras defined by the tabletop scenes (see `assets/common/table.xml`, `gripper.xml`).
CAMERA_NAMES = ('front', 'side', 'wrist', 'stereo_left', 'stereo_right')
#: Distance between the stereo cameras along their x axis, in metres.
STEREO_BASELINE = 0.06
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def intrinsics(fovy_deg: float, height: int, width: int) -> np.ndarray:
    """The 3x3 intrinsic matrix of a MuJoCo camera with vertical field of view `fovy_deg`."""
    f = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0],
                     [0.0, f, (height - 1) / 2.0],
                     [0.0, 0.0, 1.0]])


def _pose_cv(position: np.ndarray, rotation_gl: np.ndarray) -> np.ndarray:
    """Camera-to-world (OpenCV) from a position and a GL camera rotation (columns x, y, z)."""
    t = np.eye(4)
    t[:3, :3] = rotation_gl
    t[:3, 3] = position
    return t @ _GL_TO_CV


class CameraRig:
    """Renders RGB-D from the scene's cameras and reports their parameters.

    Args:
        model: compiled model.
        data: the simulation data rendered from.
        height: default image height.
        width: default image width.
        shadows: render shadows (about 3/4 of the cost of an RGB frame with software GL).
    """

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, height: int, width: int,
                 shadows: bool = True):
        self.model = model
        self.data = data
        self.height = int(height)
        self.width = int(width)
        self.shadows = bool(shadows)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._ids = {name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
                     for name in CAMERA_NAMES}
        missing = [n for n, i in self._ids.items() if i < 0]
        if missing:
            raise ValueError(f'scene is missing camera(s) {missing}')

    # ------------------------------------------------------------------ validation
    @staticmethod
    def check_names(names) -> tuple[str, ...]:
        """Validate camera names; raise ValueError listing the valid ones."""
        if isinstance(names, str):
            names = (names,)
        names = tuple(names)
        bad = [n for n in names if n not in CAMERA_NAMES]
        if bad:
            raise ValueError(f'unknown camera(s) {bad}; valid cameras: {list(CAMERA_NAMES)}')
        if len(set(names)) != len(names):
            raise ValueError(f'duplicate camera names in {list(names)}')
        return names

    # ------------------------------------------------------------------ rendering
    def renderer(self, height: int | None = None, width: int | None = None) -> mujoco.Renderer:
        """The (cached) renderer for one resolution."""
        key = (int(height or self.height), int(width or self.width))
        renderer = self._renderers.get(key)
        if renderer is None:
            glob = self.model.vis.global_
            glob.offheight = max(glob.offheight, key[0])
            glob.offwidth = max(glob.offwidth, key[1])
            renderer = mujoco.Renderer(self.model, height=key[0], width=key[1])
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.shadows
            self._renderers[key] = renderer
            _logger.debug('created renderer %dx%d', *key)
        return renderer

    def _render(self, camera, depth: bool, height, width):
        renderer = self.renderer(height, width)
        renderer.update_scene(self.data, camera=camera)
        rgb = renderer.render()
        depth_img = None
        if depth:
            renderer.enable_depth_rendering()
            try:
                depth_img = renderer.render()
            finally:
                renderer.disable_depth_rendering()
        return renderer, rgb, depth_img

    def render(self, name: str, depth: bool = True, height: int | None = None,
               width: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Render camera `name`: uint8 RGB `(H, W, 3)` and float32 depth `(H, W)` or None."""
        self.check_names(name)
        _, rgb, depth_img = self._render(self._ids[name], depth, height, width)
        return rgb, depth_img

    def render_free(self, lookat, distance: float, azimuth: float, elevation: float,
                    height: int | None = None, width: int | None = None) -> dict:
        """Render an RGB-D view from a free camera orbiting `lookat` (angles in degrees).

        Returns a view dict with `rgb`, `depth`, `K` and `T_world_cam` (OpenCV convention).
        """
        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        cam.lookat[:] = lookat
        cam.distance = distance
        cam.azimuth = azimuth
        cam.elevation = elevation
        renderer, rgb, depth_img = self._render(cam, True, height, width)
        # A mono render uses the average of the two stereo eyes (mjv_averageCamera); each
        # eye sits ipd / 2 (3.4 cm by default) to the side of it.
        left, right = renderer.scene.camera[0], renderer.scene.camera[1]
        position = (np.asarray(left.pos, np.float64) + np.asarray(right.pos, np.float64)) / 2
        forward = np.asarray(left.forward, np.float64) + np.asarray(right.forward, np.float64)
        forward /= np.linalg.norm(forward)
        up = np.asarray(left.up, np.float64) + np.asarray(right.up, np.float64)
        up -= forward * (up @ forward)
        up /= np.linalg.norm(up)
        rotation = np.stack([np.cross(forward, up), up, -forward], axis=1)
        h, w = rgb.shape[:2]
        return {
            'rgb': rgb,
            'depth': depth_img,
            'K': intrinsics(self.model.vis.global_.fovy, h, w),
            'T_world_cam': _pose_cv(position, rotation),
        }

    # ------------------------------------------------------------------ parameters
    def params(self, name: str, height: int | None = None, width: int | None = None) -> dict:
        """Intrinsics and current extrinsics of camera `name`.

        Returns a dict with `K` (3x3), `T_world_cam` (4x4, OpenCV convention), `height`,
        `width`, `fovy` (degrees) and `name`. The wrist camera moves with the hand, so query it
        at the step you need.
        """
        self.check_names(name)
        cam = self._ids[name]
        h, w = int(height or self.height), int(width or self.width)
        fovy = float(self.model.cam_fovy[cam])
        rotation = self.data.cam_xmat[cam].reshape(3, 3).astype(np.float64)
        return {
            'name': name,
            'height': h,
            'width': w,
            'fovy': fovy,
            'K': intrinsics(fovy, h, w),
            'T_world_cam': _pose_cv(self.data.cam_xpos[cam].astype(np.float64), rotation),
        }

    def close(self) -> None:
        """Free every renderer."""
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
