"""Our episode files as robomimic reads them: `SequenceDataset` on the flat observation keys,
`next_obs` and `mask/`, values equal to what was recorded (no simulator needed)."""
import h5py
import numpy as np
import pytest

from embodied_vision.data.episodes import EpisodeReader, EpisodeWriter
from tests.data.test_episodes import fake_episode

dataset_module = pytest.importorskip('robomimic.utils.dataset')
obs_utils = pytest.importorskip('robomimic.utils.obs_utils')

KEYS = ('front_rgb', 'proprio')


@pytest.fixture
def episodes(tmp_path):
    rng = np.random.default_rng(0)
    buffers = [fake_episode(rng, steps) for steps in (5, 3, 4, 2, 6, 3, 3, 2, 4, 5, 1)]
    arrays = [b.arrays() for b in buffers]
    path = tmp_path / 'demos.hdf5'
    with EpisodeWriter(path, env_args={'task': 'PickPlace'}) as writer:
        for buffer in buffers:
            writer.add_episode(buffer)
    moved = tmp_path / 'moved.hdf5'
    path.rename(moved)  # the virtual next_obs point inside the file, wherever it lies
    return moved, arrays


def test_next_obs_states_and_masks_are_written(episodes):
    path, arrays = episodes
    with h5py.File(path, 'r') as f:
        for i, expected in enumerate(arrays):
            demo = f[f'data/demo_{i}']
            for key in ('front/rgb', 'front/depth', 'proprio'):
                recorded = np.concatenate([expected['obs'][key][1:],
                                           expected['final_obs'][key][None]])
                flat = key.replace('/', '_')
                np.testing.assert_array_equal(demo[f'next_obs/{flat}'][()], recorded)
                np.testing.assert_array_equal(demo[f'obs/{flat}'][()], demo[f'obs/{key}'][()])
            np.testing.assert_array_equal(demo['states'][()], expected['states'])
        assert [d.decode() for d in f['mask/valid'][()]] == ['demo_9']
        assert len(f['mask/train']) == 10 and b'demo_9' not in f['mask/train'][()]
    with EpisodeReader(path) as reader:
        np.testing.assert_array_equal(reader.episode(2)['states'], arrays[2]['states'])


def test_robomimic_sequence_dataset_reads_the_file(episodes):
    path, arrays = episodes
    obs_utils.initialize_obs_utils_with_obs_specs(
        {'obs': {'rgb': ['front_rgb'], 'low_dim': ['proprio']}})
    data = dataset_module.SequenceDataset(
        hdf5_path=str(path), obs_keys=KEYS, dataset_keys=('actions', 'rewards', 'dones'),
        load_next_obs=True, frame_stack=1, seq_length=1, pad_frame_stack=True,
        pad_seq_length=True, get_pad_mask=False, goal_mode=None, hdf5_cache_mode=None,
        hdf5_use_swmr=True, hdf5_normalize_obs=False, filter_by_attribute='train')
    train_steps = sum(len(a['actions']) for i, a in enumerate(arrays) if i != 9)
    assert len(data) == train_steps
    sample = data[1]  # demo_0, step 1
    np.testing.assert_allclose(sample['actions'][0], arrays[0]['actions'][1])
    np.testing.assert_allclose(sample['obs']['proprio'][0], arrays[0]['obs']['proprio'][1])
    np.testing.assert_allclose(sample['next_obs']['proprio'][0],
                               arrays[0]['obs']['proprio'][2])
    # the dataset hands raw frames, (H, W, 3) as floats; robomimic's algorithms process them
    np.testing.assert_array_equal(sample['obs']['front_rgb'][0],
                                  arrays[0]['obs']['front/rgb'][1].astype(np.float32))
    frames = obs_utils.process_obs(sample['obs']['front_rgb'], obs_key='front_rgb')
    assert frames.shape == (1, 3, 8, 8) and frames.max() <= 1.0
