"""HDF5 episode round trip, the torch Dataset, and video export (no simulator needed)."""
import h5py
import numpy as np
import pytest
import torch

from embodied_vision.data.episodes import (
    EpisodeBuffer,
    EpisodeDataset,
    EpisodeReader,
    EpisodeWriter,
)
from embodied_vision.data.video import depth_to_uint8, export_episode_video


def _obs(rng, size):
    return {'front/rgb': rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
            'front/depth': rng.uniform(0.2, 2.0, (size, size)).astype(np.float32),
            'proprio': rng.normal(size=8).astype(np.float32),
            'instruction': 'put the carrot in the bowl'}


def fake_episode(rng, steps=5, size=8):
    buffer = EpisodeBuffer({'stage': 0, 'stage_text': 'moving to the carrot'})
    obs = _obs(rng, size)
    for t in range(steps):
        info = {'stage': min(t + 1, 4), 'stage_text': f'stage {min(t + 1, 4)}',
                'success': t == steps - 1}
        after = _obs(rng, size)
        buffer.add(obs, rng.uniform(-1, 1, 4), float(t), t == steps - 1, info,
                   next_obs=after, state=rng.normal(size=6))
        obs = after
    return buffer


@pytest.fixture
def h5file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / 'episodes.hdf5'
    episodes = [fake_episode(rng, steps) for steps in (5, 3)]
    arrays = [e.arrays() for e in episodes]
    with EpisodeWriter(path, env_args={'task': 'PickPlace', 'K': np.eye(3)}) as writer:
        for i, episode in enumerate(episodes):
            assert writer.add_episode(episode, attrs={
                'seed': i, 'camera_params': {'front': {'K': np.eye(3), 'T_world_cam':
                                                       np.eye(4)}}}) == i
    return path, arrays


def test_round_trip(h5file):
    path, arrays = h5file
    with EpisodeReader(path) as reader:
        assert len(reader) == 2
        assert reader.env_args == {'task': 'PickPlace', 'K': np.eye(3).tolist()}
        assert reader.obs_keys() == ['front/depth', 'front/rgb', 'proprio']
        for i, expected in enumerate(arrays):
            episode = reader.episode(i)
            for key, value in expected['obs'].items():
                np.testing.assert_array_equal(episode['obs'][key], value)
            np.testing.assert_array_equal(episode['actions'], expected['actions'])
            np.testing.assert_array_equal(episode['stage'], expected['stage'])
            assert episode['stage_text'] == expected['stage_text']
            assert episode['dones'][-1] and not episode['dones'][:-1].any()
            assert episode['instruction'] == 'put the carrot in the bowl'
            assert episode['attrs']['seed'] == i
        np.testing.assert_array_equal(reader.camera_params(1)['front']['T_world_cam'], np.eye(4))
    # stage labels belong to the observation the action was chosen from
    assert arrays[0]['stage'].tolist() == [0, 1, 2, 3, 4]
    assert arrays[0]['stage_text'][0] == 'moving to the carrot'


def test_documented_layout(h5file):
    path, _ = h5file
    with h5py.File(path, 'r') as f:
        assert f.attrs['format'] == 'embodied_vision.episodes'
        assert f['data'].attrs['total'] == 8 and f['data'].attrs['num_demos'] == 2
        demo = f['data/demo_0']
        for key in ('obs/front/rgb', 'obs/front/depth', 'obs/proprio', 'actions', 'rewards',
                    'dones', 'stage', 'stage_text', 'success'):
            assert key in demo, key
        assert demo['obs/front/rgb'].dtype == np.uint8
        assert demo.attrs['num_samples'] == 5


def test_append_mode(h5file):
    path, _ = h5file
    with EpisodeWriter(path, mode='a') as writer:
        assert writer.add_episode(fake_episode(np.random.default_rng(1))) == 2
    with EpisodeReader(path) as reader:
        assert len(reader) == 3 and reader.env_args['task'] == 'PickPlace'


def test_torch_dataset(h5file):
    path, arrays = h5file
    dataset = EpisodeDataset([path])
    assert len(dataset) == 8
    sample = dataset[6]
    assert sample['episode'] == 1 and sample['step'] == 1
    assert sample['obs']['front/rgb'].shape == (3, 8, 8)
    assert sample['obs']['front/rgb'].dtype == torch.uint8
    assert sample['obs']['front/depth'].shape == (1, 8, 8)
    np.testing.assert_array_equal(sample['obs']['front/rgb'].permute(1, 2, 0).numpy(),
                                  arrays[1]['obs']['front/rgb'][1])
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=0)
    batch = next(iter(loader))
    assert batch['action'].shape == (4, 4) and batch['stage'].dtype == torch.int64
    assert len(batch['stage_text']) == 4


def test_in_memory_dataset_matches_the_file_and_no_longer_reads_it(h5file, tmp_path):
    path, _ = h5file
    copy = tmp_path / 'copy.hdf5'
    copy.write_bytes(path.read_bytes())
    on_disk = EpisodeDataset([path], obs_keys=['front/rgb', 'proprio'])
    in_memory = EpisodeDataset([copy], obs_keys=['front/rgb', 'proprio'], in_memory=True)
    copy.unlink()  # every sample must now come from memory
    assert len(in_memory) == len(on_disk) == 8
    for i in range(len(on_disk)):
        a, b = on_disk[i], in_memory[i]
        assert a.keys() == b.keys() and a['obs'].keys() == b['obs'].keys() == {'front/rgb',
                                                                               'proprio'}
        for key in a['obs']:
            assert a['obs'][key].dtype == b['obs'][key].dtype
            torch.testing.assert_close(a['obs'][key], b['obs'][key], rtol=0, atol=0)
        for key in ('action', 'reward', 'done', 'stage'):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        assert (a['stage_text'], a['instruction'], a['episode'], a['step']) == \
            (b['stage_text'], b['instruction'], b['episode'], b['step'])
    in_memory[0]['obs']['proprio'].zero_()  # a sample is a copy, not a view of the cache
    in_memory[0]['action'].zero_()
    torch.testing.assert_close(in_memory[0]['obs']['proprio'], on_disk[0]['obs']['proprio'])
    torch.testing.assert_close(in_memory[0]['action'], on_disk[0]['action'])


def test_episode_with_no_obs_keys_reads_no_observations(h5file):
    path, _ = h5file
    with EpisodeReader(path) as reader:
        episode = reader.episode(0, obs_keys=[])
    assert episode['obs'] == {} and len(episode['stage_text']) == 5


def test_bad_file_and_empty_buffer(tmp_path):
    path = tmp_path / 'other.hdf5'
    with h5py.File(path, 'w') as f:
        f.create_group('data')
    with pytest.raises(ValueError, match='embodied_vision.episodes'):
        EpisodeReader(path)
    with pytest.raises(ValueError, match='empty'):
        EpisodeBuffer().arrays()


@pytest.mark.parametrize('suffix', ['.mp4', '.gif'])
def test_video_export(h5file, tmp_path, suffix):
    path, _ = h5file
    out = export_episode_video(path, tmp_path / f'ep{suffix}', episode=0, camera='front')
    assert (tmp_path / f'ep{suffix}').stat().st_size > 0 and out.endswith(suffix)
    export_episode_video(path, tmp_path / f'd{suffix}', stream='depth')
    with pytest.raises(ValueError, match='front/rgb'):
        export_episode_video(path, tmp_path / f'x{suffix}', camera='wrist')
    with pytest.raises(ValueError, match='suffix'):
        export_episode_video(path, tmp_path / 'x.avi')


def test_depth_to_uint8():
    depth = np.array([[[0.0, 1.0], [2.0, 3.0]]], np.float32)
    img = depth_to_uint8(depth)
    assert img.shape == (1, 2, 2, 3) and img[0, 0, 0, 0] == 0
    assert img[0, 0, 1, 0] > img[0, 1, 1, 0]
