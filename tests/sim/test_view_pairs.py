"""CroCo view pairs from the sim suite: overlap filter, camera perturbation, HDF5 output."""
import h5py
import numpy as np
import pytest

from embodied_vision.data.view_pairs import FORMAT, read_pairs
from embodied_vision.sim.view_pairs import (
    compose_config,
    covisibility,
    main,
    render_pairs,
    render_view,
    view_overlap,
)


def _plane_view(tx=0.0, depth=2.0, size=40, f=40.0):
    """A camera at x=`tx` looking down +z at a fronto-parallel plane `depth` metres away."""
    k = np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1.0]])
    pose = np.eye(4)
    pose[0, 3] = tx
    return {'depth': np.full((size, size), depth, np.float32), 'K': k, 'T_world_cam': pose}


def test_overlap_of_shifted_plane_views_is_geometric():
    a = _plane_view()
    assert covisibility(a, a) == pytest.approx(1.0)
    # Shifting by half the field of view's width at the plane: half the pixels stay visible.
    half = _plane_view(tx=0.5 * 40 / 40.0 * 2.0)
    assert covisibility(a, half) == pytest.approx(0.5, abs=0.05)
    far_away = _plane_view(tx=10.0)
    assert covisibility(a, far_away) == 0.0


def test_occluded_points_do_not_count():
    a = _plane_view(depth=2.0)
    blocked = _plane_view(depth=1.0)  # same pose, but something sits in front of the plane
    assert view_overlap(a['depth'], a['K'], a['T_world_cam'], blocked['depth'], blocked['K'],
                        blocked['T_world_cam']) == 0.0
    invalid = dict(a, depth=np.zeros_like(a['depth']))
    assert covisibility(invalid, a) == 0.0


@pytest.fixture(scope='module')
def env():
    import gymnasium as gym

    import embodied_vision.sim  # noqa: F401
    e = gym.make('embodied_vision/PickPlace-v0', cameras=(), image_size=32, depth=False,
                 shadows=False)
    e.reset(seed=0)
    yield e.unwrapped
    e.close()


def test_sim_views_overlap_filter_and_camera_restored(env):
    before = env.model.cam_pos.copy(), env.model.cam_quat.copy()
    params = env.camera_params('front')
    front = render_view(env, 'front')
    np.testing.assert_allclose(front['T_world_cam'], params['T_world_cam'])
    nudged = render_view(env, 'front', offset=(0.02, 0.0, 0.0))
    # Turned half around about the camera's own y axis: looks away from the table.
    away = render_view(env, 'front', rotation=(0.0, 0.0, 1.0, 0.0))
    np.testing.assert_array_equal(env.model.cam_pos, before[0])
    np.testing.assert_array_equal(env.model.cam_quat, before[1])
    np.testing.assert_allclose(env.camera_params('front')['T_world_cam'], params['T_world_cam'])
    assert not np.allclose(nudged['T_world_cam'], front['T_world_cam'])
    far = 0.99 * float(env._far)
    assert covisibility(front, nudged, max_depth=far) > 0.7
    assert covisibility(front, away, max_depth=far) < 0.05
    assert covisibility(front, render_view(env, 'side'), max_depth=far) > 0.2


def test_pairs_are_written_and_filtered(tmp_path):
    out = tmp_path / 'pairs.hdf5'
    # Huge rotations: many draws look away and are rejected by the overlap filter.
    cfg = compose_config([f'out={out}', 'n=6', 'size=32', 'progress=false', 'camera_rot=3.0',
                          'min_overlap=0.3', 'max_overlap=0.97', 'shadows=false',
                          'max_expert_steps=3', 'pairs_per_scene=3'])
    summary = render_pairs(cfg)
    assert summary['pairs'] == 6 and summary['rejected_low'] > 0
    data = read_pairs(out, ('rgb1', 'rgb2', 'depth1', 'K2', 'T1', 'overlap', 'camera1',
                            'domain'))
    assert data['rgb1'].shape == data['rgb2'].shape == (6, 32, 32, 3)
    assert data['rgb1'].dtype == np.uint8 and data['depth1'].shape == (6, 32, 32)
    assert data['K2'].shape == (6, 3, 3) and data['T1'].shape == (6, 4, 4)
    assert ((data['overlap'] >= 0.3) & (data['overlap'] <= 0.97)).all()
    assert set(data['camera1']) <= {'front', 'side'} and set(data['domain']) == {0, 1}
    with h5py.File(out, 'r') as f:
        assert f.attrs['format'] == FORMAT and f.attrs['accepted'] == 6
        assert f.attrs['attempts'] == summary['attempts'] > 6


def test_main_reports_and_rejects_bad_config(tmp_path, capsys):
    out = tmp_path / 'p.hdf5'
    assert main([f'out={out}', 'n=2', 'size=32', 'progress=false', 'shadows=false',
                 'domains=[sim]', 'max_expert_steps=0']) == 0
    assert 'wrote 2 view pairs' in capsys.readouterr().out
    assert main(['camera_pairs=[[front,nope]]', 'progress=false']) == 2
    assert main(['min_overlap=0.9', 'max_overlap=0.5', 'progress=false']) == 2
