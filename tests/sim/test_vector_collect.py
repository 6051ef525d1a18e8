"""Vector envs (sync and async) and the collect command end to end."""
import numpy as np
import pytest

pytest.importorskip('mujoco')
pytest.importorskip('gymnasium')
pytest.importorskip('hydra')

from embodied_vision.data.episodes import EpisodeDataset, EpisodeReader  # noqa: E402
from embodied_vision.sim import make_vector_env  # noqa: E402
from embodied_vision.sim.collect import compose_config, main  # noqa: E402


@pytest.mark.parametrize('asynchronous', [False, True], ids=['sync', 'async'])
def test_vector_env_steps_experts(asynchronous):
    envs = make_vector_env('Reach', num_envs=2, asynchronous=asynchronous,
                           cameras=('front',), image_size=16)
    try:
        obs, infos = envs.reset(seed=0)
        assert obs['front/rgb'].shape == (2, 16, 16, 3)
        assert len(obs['instruction']) == 2
        for _ in range(3):
            actions = np.stack(envs.call('expert_action'))
            obs, rewards, terminated, truncated, infos = envs.step(actions)
        assert actions.shape == (2, 4) and rewards.shape == (2,)
        assert infos['stage'].shape == (2,)
    finally:
        envs.close()


def test_vector_env_rejects_bad_arguments():
    with pytest.raises(ValueError, match='num_envs'):
        make_vector_env('Reach', num_envs=0)
    with pytest.raises(ValueError, match='valid tasks'):
        make_vector_env('Fly', num_envs=1)


def test_collect_config_composes():
    cfg = compose_config(['task=Push', 'cameras=[front,wrist]', 'size=32'])
    assert cfg.task == 'Push' and list(cfg.cameras) == ['front', 'wrist']
    assert cfg.out == 'Push_sim.hdf5'


def test_collect_end_to_end(tmp_path):
    out = tmp_path / 'demos.hdf5'
    code = main(['task=Reach', 'domain=real', 'n=2', f'out={out}', 'cameras=[front,wrist]',
                 'size=16', 'seed=3', 'num_envs=2', 'progress=false'])
    assert code == 0
    with EpisodeReader(out) as reader:
        assert len(reader) == 2
        assert reader.env_args['task'] == 'Reach'
        assert reader.env_args['domain']['name'] == 'real'
        assert sorted(reader.attrs(i)['seed'] for i in range(2)) == [3, 4]
        episode = reader.episode(0)
        assert episode['obs']['front/rgb'].shape[1:] == (16, 16, 3)
        assert episode['obs']['wrist/depth'].dtype == np.float32
        assert episode['dones'][-1] and episode['success'][-1]
        assert episode['states'].shape[0] == len(episode['actions'])  # physics, per step
        assert episode['instruction'] == 'reach the red target'
        assert reader.camera_params(0)['front']['K'].shape == (3, 3)
    dataset = EpisodeDataset(out)
    sample = dataset[0]
    assert sample['obs']['front/rgb'].shape == (3, 16, 16)
    assert sample['stage_text'] == 'moving to the red target'
    # Async workers (spawned: they import the env registry themselves) record the same.
    spawned = tmp_path / 'async.hdf5'
    assert main(['task=Reach', 'domain=real', 'n=2', f'out={spawned}', 'cameras=[front,wrist]',
                 'size=16', 'seed=3', 'num_envs=2', 'vector=async', 'progress=false']) == 0
    with EpisodeReader(out) as sync, EpisodeReader(spawned) as workers:
        by_seed = {workers.attrs(i)['seed']: i for i in range(2)}
        for i in range(2):
            j = by_seed[sync.attrs(i)['seed']]
            np.testing.assert_array_equal(sync.episode(i)['actions'],
                                          workers.episode(j)['actions'])


def test_collect_reports_bad_arguments(tmp_path, capsys):
    assert main(['task=Juggle', f'out={tmp_path / "x.hdf5"}']) == 2
    assert 'valid tasks' in capsys.readouterr().err
    # overrides hydra cannot apply: one line naming the key, not a hydra traceback
    assert main(['nn=3', f'out={tmp_path / "x.hdf5"}']) == 2
    assert "Could not override 'nn'" in capsys.readouterr().err
    assert main(['task_kwargs={target_object: carrot}', f'out={tmp_path / "x.hdf5"}']) == 2
    assert "Key 'target_object' is not in struct" in capsys.readouterr().err
    # the documented spelling of a task option
    cfg = compose_config(['task=PickPlace', '+task_kwargs.target_object=carrot'])
    assert dict(cfg.task_kwargs) == {'target_object': 'carrot'}


def test_collect_refuses_the_evaluation_seeds(tmp_path, capsys):
    """Demos never start from the initial states `embodied-vision evaluate` scores on."""
    from embodied_vision.sim import EVALUATION_SEED_BASE
    out = tmp_path / 'x.hdf5'
    for seed in (EVALUATION_SEED_BASE - 10, EVALUATION_SEED_BASE + 3, -1):  # 10: 2n attempts
        assert main(['task=Reach', 'n=5', 'num_envs=1', f'seed={seed}', f'out={out}']) == 2
        assert 'held out for evaluation' in capsys.readouterr().err
    assert not out.exists()
