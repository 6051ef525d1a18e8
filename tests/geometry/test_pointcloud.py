"""Back-projection, projection and multi-view fusion against analytic answers."""
# K, R, T (intrinsics, rotation, pose) follow camera-geometry notation
# ruff: noqa: N803, N806
import numpy as np
import pytest

from embodied_vision.geometry import (
    depth_to_points,
    fuse_views,
    project_points,
    transform_points,
    voxel_downsample,
)


def _rot_z(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_fronto_parallel_plane(synth):
    width, height, d = 64, 48, 2.5
    K = synth.intrinsics(width, height)
    points, colors = depth_to_points(np.full((height, width), d), K)
    assert points.shape == (width * height, 3) and points.dtype == np.float32
    assert colors is None
    np.testing.assert_allclose(points[:, 2], d)
    half_w = (width - 1) / 2 * d / K[0, 0]
    half_h = (height - 1) / 2 * d / K[1, 1]
    np.testing.assert_allclose(points[:, 0].min(), -half_w, rtol=1e-6)
    np.testing.assert_allclose(points[:, 0].max(), half_w, rtol=1e-6)
    np.testing.assert_allclose(points[:, 1].min(), -half_h, rtol=1e-6)
    np.testing.assert_allclose(points[:, 1].max(), half_h, rtol=1e-6)
    # row-major order: the first point is the top-left pixel (x < 0, y < 0)
    assert points[0, 0] < 0 and points[0, 1] < 0


def test_invalid_depth_dropped_and_stride():
    K = np.array([[50.0, 0, 3.5], [0, 50.0, 3.5], [0, 0, 1]])
    depth = np.ones((8, 8), np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3] = np.nan, 0.0, np.inf, -1.0
    depth[1, 0] = 5.0
    rgb = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    points, colors = depth_to_points(depth, K, rgb=rgb, max_depth=4.0)
    assert len(points) == 64 - 5
    np.testing.assert_array_equal(colors[0], rgb[0, 4])
    points, _ = depth_to_points(depth, K, min_depth=2.0)
    assert len(points) == 1 and points[0, 2] == 5.0
    points, colors = depth_to_points(np.ones((8, 8)), K, rgb=rgb, stride=2)
    assert len(points) == 16
    np.testing.assert_array_equal(colors[1], rgb[0, 2])
    np.testing.assert_allclose(points[1, 0], (2 - 3.5) / 50.0, rtol=1e-6)


def test_backproject_then_project_is_identity():
    rng = np.random.default_rng(0)
    K = np.array([[120.0, 0.5, 40.2], [0, 118.0, 29.7], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3] = _rot_z(0.7) @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0.0]])
    T[:3, 3] = [0.3, -1.2, 0.8]
    depth = rng.uniform(0.5, 3.0, (60, 80))
    points, _ = depth_to_points(depth, K, T_world_cam=T)
    uv, z = project_points(points, K, T)
    v, u = np.mgrid[0:60, 0:80]
    np.testing.assert_allclose(uv, np.stack([u.ravel(), v.ravel()], 1), atol=1e-3)
    np.testing.assert_allclose(z, depth.ravel(), rtol=1e-5)


def test_world_frame_with_known_pose():
    K = np.array([[100.0, 0, 2.0], [0, 100.0, 2.0], [0, 0, 1]])
    depth = np.zeros((5, 5))
    depth[2, 2] = 2.0  # principal point: camera (0, 0, 2)
    depth[2, 4] = 1.0  # two pixels right: camera (0.02, 0, 1)
    T = np.eye(4)
    T[:3, :3] = _rot_z(np.pi / 2)
    T[:3, 3] = [1.0, 2.0, 3.0]
    points, _ = depth_to_points(depth, K, T_world_cam=T)
    np.testing.assert_allclose(points, [[1.0, 2.0, 5.0], [1.0, 2.02, 4.0]], atol=1e-6)
    np.testing.assert_allclose(transform_points(np.array([[0.0, 0, 2], [0.02, 0, 1]]), T),
                               points, atol=1e-6)


def test_fuse_two_views_of_a_box(synth):
    views = synth.make_views(n_views=2, size=96, plane=True)
    points, colors = fuse_views(views)
    on_plane = np.abs(points[:, 2]) < 1e-4
    assert on_plane.any() and (~on_plane).sum() > 1000
    assert synth.box_surface_distance(points[~on_plane]).max() < 1e-4
    assert len(colors) == len(points)
    np.testing.assert_array_equal(colors[on_plane], np.broadcast_to(synth.PLANE_COLOUR,
                                                                    (on_plane.sum(), 3)))
    # the two views see different faces: at least four distinct faces (top + three sides)
    faces = {tuple(c) for c in colors[~on_plane]}
    assert len(faces) >= 4
    lo, hi = synth.BOX_MIN - 0.01, synth.BOX_MAX + 0.01
    cropped, cropped_colors = fuse_views(views, bbox_min=lo, bbox_max=hi)
    assert np.all((cropped >= lo) & (cropped <= hi))
    assert synth.box_surface_distance(cropped).max() < 1e-4
    assert len(cropped) == (~on_plane).sum()
    assert len(cropped_colors) == len(cropped)
    # an open-sided crop: only z >= 0.5
    upper, _ = fuse_views(views, bbox_min=[-np.inf, -np.inf, 0.5])
    assert len(upper) and upper[:, 2].min() >= 0.5


def test_fuse_views_colours_only_when_all_views_have_rgb(synth):
    views = synth.make_views(n_views=2, size=32)
    views[1] = {k: v for k, v in views[1].items() if k != 'rgb'}
    points, colors = fuse_views(views)
    assert colors is None and len(points)


def test_voxel_downsample_count_and_mean():
    cell = 0.1
    idx = np.stack(np.meshgrid(*[np.arange(20)] * 3, indexing='ij'), -1).reshape(-1, 3)
    points = (idx * cell / 2 + cell / 4).astype(np.float32)  # 8 points in each 0.1 voxel
    colors = np.zeros((len(points), 3), np.uint8)
    colors[idx[:, 0] % 2 == 1] = 100  # half of each voxel's points are 100
    down, down_colors = voxel_downsample(points, cell, colors, origin=np.zeros(3))
    assert len(down) == 10 ** 3
    np.testing.assert_allclose(np.sort(np.unique(down[:, 0])), np.arange(10) * cell + cell / 2,
                               atol=1e-6)
    np.testing.assert_array_equal(down_colors, 50)


def test_fuse_views_voxel_size(synth):
    views = synth.make_views(n_views=2, size=64)
    points, _ = fuse_views(views)
    down, colors = fuse_views(views, voxel_size=0.05, bbox_min=synth.BOX_MIN - 0.05,
                              bbox_max=synth.BOX_MAX + 0.05)
    keys = np.floor((points - (synth.BOX_MIN - 0.05)) / 0.05)
    assert len(down) == len(np.unique(keys, axis=0)) < len(points)
    assert len(colors) == len(down)


def test_errors():
    K = np.eye(3)
    with pytest.raises(ValueError, match=r'depth must have shape \(H, W\)'):
        depth_to_points(np.ones((2, 2, 1)), K)
    with pytest.raises(ValueError, match='K must have shape'):
        depth_to_points(np.ones((2, 2)), np.eye(4))
    with pytest.raises(ValueError, match='rgb must have shape'):
        depth_to_points(np.ones((2, 2)), K, rgb=np.zeros((3, 2, 3), np.uint8))
    with pytest.raises(ValueError, match='stride'):
        depth_to_points(np.ones((2, 2)), K, stride=0)
    with pytest.raises(ValueError, match="missing 'T_world_cam'"):
        fuse_views([{'depth': np.ones((2, 2)), 'K': K}])
    with pytest.raises(ValueError, match='at least one'):
        fuse_views([])
    with pytest.raises(ValueError, match='points must have shape'):
        transform_points(np.ones((4, 2)), np.eye(4))
