"""Camera intrinsics/extrinsics agree with rendered depth; point clouds and radiance grids."""
import numpy as np
import pytest

pytest.importorskip('mujoco')
gym = pytest.importorskip('gymnasium')

from embodied_vision.geometry.pointcloud import depth_to_points, project_points  # noqa: E402
import embodied_vision.sim  # noqa: E402, F401
from embodied_vision.sim.cameras import STEREO_BASELINE  # noqa: E402


@pytest.fixture(scope='module')
def env():
    env = gym.make('embodied_vision/Reach-v0', cameras=('front',), image_size=(48, 64))
    env.reset(seed=0)
    yield env.unwrapped
    env.close()


@pytest.mark.parametrize('camera', ['front', 'side', 'stereo_left', 'wrist'])
def test_extrinsics_are_rigid_opencv_poses(env, camera):
    params = env.camera_params(camera)
    t = params['T_world_cam']
    np.testing.assert_allclose(t[:3, :3] @ t[:3, :3].T, np.eye(3), atol=1e-6)
    assert np.linalg.det(t[:3, :3]) == pytest.approx(1.0, abs=1e-6)
    # OpenCV: +z looks forward (down towards the table), +y points down in the image
    assert t[2, 2] < 0
    k = params['K']
    assert k[0, 0] == k[1, 1] and k[0, 2] == (64 - 1) / 2 and k[1, 2] == (48 - 1) / 2


@pytest.mark.parametrize('camera', ['front', 'side', 'stereo_right'])
def test_depth_back_projects_onto_the_table(env, camera):
    view = env.camera_view(camera, image_size=(48, 64))
    points, _ = depth_to_points(view['depth'], view['K'], T_world_cam=view['T_world_cam'])
    on_table = (np.abs(points[:, 2]) < 0.004) & (np.abs(points[:, 0]) < 0.44) & (
        np.abs(points[:, 1]) < 0.59)
    assert on_table.mean() > 0.4


def test_world_point_projects_to_the_right_pixel(env):
    """The cube's top-face centre projects to a pixel whose rendered depth matches."""
    cube = env.body_pos('red_cube')
    top = cube + np.array([0.0, 0.0, 0.02])
    for camera in ('front', 'side'):
        view = env.camera_view(camera, image_size=(96, 128))
        uv, depth = project_points(top[None], view['K'], view['T_world_cam'])
        u, v = np.rint(uv[0]).astype(int)
        assert 0 <= u < 128 and 0 <= v < 96
        # the rendered depth at that pixel back-projects onto the cube's top face
        d = view['depth'][v, u]
        ray = np.linalg.inv(view['K']) @ np.array([u, v, 1.0])
        hit = view['T_world_cam'] @ np.append(ray * d, 1.0)
        assert hit[2] == pytest.approx(top[2], abs=0.001)
        assert np.abs(hit[:2] - cube[:2]).max() < 0.02
        assert d == pytest.approx(depth[0], abs=0.01)
        # and the pixel is red (the cube)
        r, g, b = view['rgb'][v, u].astype(int)
        assert r > g + 40 and r > b + 40


def test_stereo_pair_has_known_baseline(env):
    left = env.camera_params('stereo_left')['T_world_cam']
    right = env.camera_params('stereo_right')['T_world_cam']
    np.testing.assert_allclose(left[:3, :3], right[:3, :3], atol=1e-9)
    offset = np.linalg.inv(left) @ right
    np.testing.assert_allclose(offset[:3, 3], [STEREO_BASELINE, 0.0, 0.0], atol=1e-6)


def test_fused_point_cloud(env):
    points, colors = env.point_cloud(cameras=('front', 'side'), image_size=32)
    assert points.dtype == np.float32 and points.shape[1] == 3 and len(points) > 500
    assert colors.dtype == np.uint8 and colors.shape == points.shape
    assert points[:, 2].min() >= -0.0101 and points[:, 2].max() <= 0.3001
    cam_points, _ = env.point_cloud(cameras=('front',), frame='front', image_size=32)
    assert np.median(cam_points[:, 2]) > 0.3  # in front of the camera
    with pytest.raises(ValueError, match='valid cameras'):
        env.point_cloud(cameras=('top',))


def test_object_point_cloud(env):
    points = env.object_point_cloud('red_cube', n=512)
    assert points.shape == (512, 3) and points.dtype == np.float32
    centre = env.body_pos('red_cube')
    assert np.abs(points - centre).max() < 0.0201 * np.sqrt(3)
    with pytest.raises(ValueError, match='red_cube'):
        env.object_point_cloud('piano')


def test_radiance_grid(env):
    grid = env.radiance_grid(n_views=4, max_resolution=20, image_size=32)
    assert grid.rgbsigma.shape[-1] == 4 and max(grid.rgbsigma.shape[:3]) == 20
    assert (grid.rgbsigma[..., 3] > 0).any()


def test_wrist_mount_is_constant(env):
    mount = env.wrist_mount()
    env.step(np.array([1.0, -1.0, -1.0, 0.0]))
    np.testing.assert_allclose(env.wrist_mount(), mount, atol=1e-4)
    np.testing.assert_allclose(env.ee_pose @ mount, env.camera_params('wrist')['T_world_cam'],
                               atol=1e-9)



def test_free_views_see_the_cube_where_their_pose_says():
    """A free (orbiting) view's pose is the centre the mono render uses, not one stereo eye
    (3.4 cm to the side): the cube's top-face centre projects onto the red top face."""
    env = gym.make('embodied_vision/Reach-v0', cameras=('front',), image_size=(96, 128))
    env.reset(seed=0)
    env = env.unwrapped
    cube = env.body_pos('red_cube')
    top = cube + np.array([0.0, 0.0, 0.02])
    hits = []
    for view in env.radiance_views(n_views=6, image_size=(96, 128)):
        uv, depth = project_points(top[None], view['K'], view['T_world_cam'])
        u, v = np.rint(uv[0]).astype(int)
        assert 0 <= u < 128 and 0 <= v < 96
        ray = np.linalg.inv(view['K']) @ np.array([u, v, 1.0])
        hit = view['T_world_cam'] @ np.append(ray * view['depth'][v, u], 1.0)
        r, g, b = view['rgb'][v, u].astype(int)
        hits.append(abs(hit[2] - top[2]) < 0.002 and np.abs(hit[:2] - cube[:2]).max() < 0.02
                    and r > g + 40 and r > b + 40)
    env.close()
    assert all(hits), hits
