"""Gymnasium contract of every tabletop env: check_env, determinism, randomised init, errors."""
import warnings

import numpy as np
import pytest

pytest.importorskip('mujoco')
gym = pytest.importorskip('gymnasium')

from gymnasium.utils.env_checker import check_env  # noqa: E402

import embodied_vision.sim  # noqa: E402, F401
from embodied_vision.sim import TASKS  # noqa: E402
from embodied_vision.sim.base import TabletopEnv  # noqa: E402

SIZE = 24


def make(task='Reach', **kwargs):
    kwargs.setdefault('cameras', ('front',))
    kwargs.setdefault('image_size', SIZE)
    return gym.make(f'embodied_vision/{task}-v0', **kwargs)


def test_ids_registered():
    for task in ('Reach', 'Push', 'PickPlace', 'Stack', 'TwoStepPickPlace'):
        assert f'embodied_vision/{task}-v0' in gym.registry


@pytest.mark.parametrize('task', sorted(TASKS))
def test_check_env(task):
    env = make(task, cameras=('front', 'wrist'), render_mode='rgb_array')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()


def _rollout(env, seed, steps=6):
    obs, info = env.reset(seed=seed)
    frames = [obs]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 4))
        frames.append(obs)
    return frames, info


def _assert_obs_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], str):
            assert a[key] == b[key]
        else:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize('task,domain', [('PickPlace', 'sim'), ('Push', 'real')])
def test_same_seed_same_episode(task, domain):
    env1 = make(task, domain=domain, cameras=('front', 'wrist'))
    env2 = make(task, domain=domain, cameras=('front', 'wrist'))
    frames1, info1 = _rollout(env1, seed=3)
    frames2, info2 = _rollout(env2, seed=3)
    for a, b in zip(frames1, frames2):
        _assert_obs_equal(a, b)
    assert info1 == info2
    # and the observations do not share memory with the env
    frames1[-1]['front/rgb'][:] = 0
    _, _ = env1.reset(seed=4)
    assert frames2[-1]['front/rgb'].any()


@pytest.mark.parametrize('task', sorted(TASKS))
def test_initial_state_is_randomised(task):
    env = make(task, cameras=())
    env.reset(seed=0)
    first = env.unwrapped.object_positions()
    ee_first = env.unwrapped.ee_pos
    env.reset(seed=1)
    second = env.unwrapped.object_positions()
    moved = [np.linalg.norm(first[k][:2] - second[k][:2]) > 1e-3 for k in first]
    assert all(moved)
    assert not np.allclose(ee_first, env.unwrapped.ee_pos)


def test_observation_keys_and_shapes():
    env = make('Stack', cameras=('front', 'wrist'), image_size=(20, 28), stereo=True)
    obs, info = env.reset(seed=0)
    cams = ('front', 'wrist', 'stereo_left', 'stereo_right')
    assert set(obs) == {f'{c}/{s}' for c in cams for s in ('rgb', 'depth')} | {
        'proprio', 'instruction'}
    assert obs['front/rgb'].shape == (20, 28, 3) and obs['front/rgb'].dtype == np.uint8
    assert obs['front/depth'].shape == (20, 28) and obs['front/depth'].dtype == np.float32
    assert obs['proprio'].shape == (8,) and obs['proprio'].dtype == np.float32
    assert obs['instruction'] == 'stack the red cube on the green cube'
    assert set(info) >= {'success', 'stage', 'stage_text'}
    no_depth = make('Stack', cameras=('side',), depth=False)
    obs, _ = no_depth.reset(seed=0)
    assert set(obs) == {'side/rgb', 'proprio', 'instruction'}


@pytest.mark.parametrize('action', [np.zeros(3), np.zeros((1, 4)), [0, 0, np.nan, 0],
                                    [np.inf, 0, 0, 0], 'left'])
def test_invalid_actions_raise(action):
    env = make('Reach', cameras=())
    env.reset(seed=0)
    with pytest.raises(ValueError, match='action'):
        env.step(action)


def test_out_of_range_actions_are_clipped():
    env1, env2 = make('Reach', cameras=()), make('Reach', cameras=())
    env1.reset(seed=0)
    env2.reset(seed=0)
    for _ in range(3):
        o1, *_ = env1.step([5.0, -7.0, 2.0, 9.0])
        o2, *_ = env2.step([1.0, -1.0, 1.0, 1.0])
    np.testing.assert_array_equal(o1['proprio'], o2['proprio'])


def test_unknown_names_list_valid_choices():
    with pytest.raises(ValueError, match='PickPlace'):
        TabletopEnv(task='Juggle')
    with pytest.raises(ValueError, match='wrist'):
        TabletopEnv(task='Reach', cameras=('top',))
    with pytest.raises(ValueError, match='real'):
        TabletopEnv(task='Reach', domain='mars')
    with pytest.raises(ValueError, match='friction_scale'):
        TabletopEnv(task='Reach', domain_kwargs={'friction': 2.0})
    with pytest.raises(ValueError, match='carrot'):
        TabletopEnv(task='PickPlace', task_kwargs={'target_object': 'banana'})
    env = TabletopEnv(task='Reach', cameras=())
    with pytest.raises(ValueError, match='front'):
        env.camera_params('top')


def test_domains_change_the_look_and_dynamics():
    sim = make('PickPlace', domain='sim')
    real = make('PickPlace', domain='real', domain_kwargs={'friction_scale': 0.5})
    obs_sim, _ = sim.reset(seed=0)
    obs_real, _ = real.reset(seed=0)
    assert np.abs(obs_sim['front/rgb'].astype(int) - obs_real['front/rgb']).mean() > 5
    fr_sim = sim.unwrapped.model.geom_friction[:, 0]
    np.testing.assert_allclose(real.unwrapped.model.geom_friction[:, 0], 0.5 * fr_sim)
    # the real domain's camera pose differs from the canonical one
    t_sim = sim.unwrapped.camera_params('front')['T_world_cam']
    t_real = real.unwrapped.camera_params('front')['T_world_cam']
    assert not np.allclose(t_sim, t_real)


def test_domain_randomization_redraws_every_episode():
    env = make('Push', domain_randomization=True)
    a, _ = env.reset(seed=0)
    b, _ = env.reset(seed=1)
    c, _ = env.reset(seed=0)
    assert np.abs(a['front/rgb'].astype(int) - b['front/rgb']).mean() > 3
    np.testing.assert_array_equal(a['front/rgb'], c['front/rgb'])
    with pytest.raises(ValueError, match='camera_pos'):
        make('Push', domain_randomization={'camera': 1.0})


def test_stage_text_matches_templates():
    env = make('TwoStepPickPlace', cameras=())
    _, info = env.reset(seed=0)
    templates = env.unwrapped.task.templates
    assert templates.num_stages == 10 == info['num_stages']
    assert info['stage_text'] == templates.text(info['stage'])
    assert 'carrot' in templates.text(0) and 'bowl' in templates.text(5)


def test_shadows_option():
    lit = make('Reach', shadows=True)
    flat = make('Reach', shadows=False)
    a, _ = lit.reset(seed=0)
    b, _ = flat.reset(seed=0)
    assert not np.array_equal(a['front/rgb'], b['front/rgb'])
    np.testing.assert_array_equal(a['front/depth'], b['front/depth'])


@pytest.mark.parametrize('task', sorted(TASKS))
def test_expert_episodes_stay_inside_the_observation_space(task):
    # Fingers pressed together (Push closes them) used to read a width of -5.8 mm, below
    # the Box's 0: every observation of an expert episode is in the space.
    env = make(task)
    obs, _ = env.reset(seed=0)
    space = env.observation_space
    for step in range(200):
        assert space['proprio'].contains(obs['proprio']), (task, step, obs['proprio'])
        obs, _, terminated, truncated, _ = env.step(env.unwrapped.expert_action())
        if terminated or truncated:
            break
    env.close()
