"""Synthetic posed RGB-D views of an axis-aligned box, rendered by ray casting in numpy."""
# K, R, T (intrinsics, rotation, pose) follow camera-geometry notation
# ruff: noqa: N803, N806
from types import SimpleNamespace

import numpy as np
import pytest

BOX_MIN = np.array([-0.2, -0.3, 0.25])
BOX_MAX = np.array([0.2, 0.3, 0.75])
# colour per face, indexed by (axis, side): -x, +x, -y, +y, -z, +z
FACE_COLOURS = np.array([[200, 0, 0], [0, 200, 0], [0, 0, 200],
                         [200, 200, 0], [0, 200, 200], [200, 0, 200]], np.uint8)
PLANE_COLOUR = np.array([90, 90, 90], np.uint8)


def intrinsics(width, height, fov_deg=60.0):
    f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])


def look_at(eye, target, up=(0.0, 0.0, 1.0)):
    """Camera-to-world pose of an OpenCV camera (x right, y down, z forward)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, forward], axis=1)
    T[:3, 3] = eye
    return T


def render_box(K, T_world_cam, width, height, box_min=BOX_MIN, box_max=BOX_MAX,
               plane=False, background=0.0):
    """Depth (z along the optical axis) and colour of a box (and optionally the plane z=0)."""
    v, u = np.mgrid[0:height, 0:width].astype(float)
    rays_cam = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # z = 1
    rays = rays_cam @ T_world_cam[:3, :3].T
    origin = T_world_cam[:3, 3]
    with np.errstate(divide='ignore', invalid='ignore'):
        t1 = (box_min - origin) / rays
        t2 = (box_max - origin) / rays
    t_near = np.minimum(t1, t2).max(-1)
    t_far = np.maximum(t1, t2).min(-1)
    hit = (t_near <= t_far) & (t_near > 0)
    depth = np.where(hit, t_near, np.inf)
    axis = np.minimum(t1, t2).argmax(-1)
    side = (rays[np.arange(height)[:, None], np.arange(width), axis] < 0).astype(int)
    rgb = FACE_COLOURS[2 * axis + side]
    if plane:
        with np.errstate(divide='ignore', invalid='ignore'):
            t_plane = -origin[2] / rays[..., 2]
        on_plane = (t_plane > 0) & (t_plane < depth)
        depth = np.where(on_plane, t_plane, depth)
        rgb = np.where(on_plane[..., None], PLANE_COLOUR, rgb)
    missed = ~np.isfinite(depth)
    depth[missed] = background
    rgb[missed] = 0
    return depth.astype(np.float32), rgb.astype(np.uint8)


def box_surface_distance(points, box_min=BOX_MIN, box_max=BOX_MAX):
    """Unsigned distance from points to the surface of an axis-aligned box."""
    centre, half = (box_min + box_max) / 2, (box_max - box_min) / 2
    q = np.abs(points - centre) - half
    outside = np.linalg.norm(np.maximum(q, 0), axis=-1)
    inside = np.minimum(q.max(-1), 0)
    return np.abs(outside + inside)


def make_views(n_views=2, size=96, plane=False, background=0.0, radius=1.6):
    views = []
    K = intrinsics(size, size)
    target = (BOX_MIN + BOX_MAX) / 2
    for i in range(n_views):
        angle = 2 * np.pi * i / n_views + 0.4
        eye = target + radius * np.array([np.cos(angle), np.sin(angle), 0.7])
        T = look_at(eye, target)
        depth, rgb = render_box(K, T, size, size, plane=plane, background=background)
        views.append({'depth': depth, 'rgb': rgb, 'K': K, 'T_world_cam': T})
    return views


@pytest.fixture
def synth():
    """This module: the renderer and box helpers, for tests in this folder."""
    return SimpleNamespace(**{k: v for k, v in globals().items() if not k.startswith('_')})
