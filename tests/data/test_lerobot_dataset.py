"""Episode files <-> LeRobotDataset v3.0 folders: the layout LeRobot reads, and round trips
(exact with PNG frames, within H.264's error with videos)."""
import json

import numpy as np
import pytest

from embodied_vision.data.episodes import EpisodeReader, EpisodeWriter
from embodied_vision.data.lerobot_dataset import export_lerobot, import_lerobot
from tests.data.test_episodes import fake_episode

pa = pytest.importorskip('pyarrow')
pq = pytest.importorskip('pyarrow.parquet')


def _smooth_episode(rng, steps, size=32):
    # H.264 keeps smooth images (what cameras see) close; random pixels it would not
    buffer = fake_episode(rng, steps, size)
    yy, xx = np.mgrid[:size, :size]
    for t, frame in enumerate(buffer.obs['front/rgb']):
        frame[...] = np.stack([(xx * 7 + t * 9) % 256, (yy * 5) % 256,
                               np.full_like(xx, 40 + 20 * t)], -1).astype(np.uint8)
    return buffer


@pytest.fixture
def demos(tmp_path):
    rng = np.random.default_rng(0)
    buffers = [_smooth_episode(rng, steps) for steps in (5, 3, 4)]
    buffers[2].instruction = 'push the block'
    path = tmp_path / 'demos.hdf5'
    with EpisodeWriter(path, env_args={'task': 'PickPlace', 'control_dt': 0.1}) as writer:
        for buffer in buffers:
            writer.add_episode(buffer)
    return path


def test_the_folder_has_lerobots_layout(demos, tmp_path):
    out = tmp_path / 'lerobot'
    info = export_lerobot([demos], out)
    assert info['codebase_version'] == 'v3.0' and info['fps'] == 10
    assert info['total_episodes'] == 3 and info['total_frames'] == 12 and info['total_tasks'] == 2
    assert info['features']['observation.images.front']['dtype'] == 'video'
    assert info['features']['observation.state']['shape'] == [8]
    assert json.loads((out / 'meta' / 'info.json').read_text()) == info
    episodes = pq.read_table(out / 'meta/episodes/chunk-000/file-000.parquet').to_pylist()
    assert [(e['dataset_from_index'], e['dataset_to_index']) for e in episodes] == \
        [(0, 5), (5, 8), (8, 12)]
    assert episodes[1]['videos/observation.images.front/to_timestamp'] == pytest.approx(0.3)
    data = pq.read_table(out / 'data/chunk-000/file-002.parquet')
    assert data.column('index').to_pylist() == [8, 9, 10, 11]
    assert data.column('timestamp').to_numpy() == pytest.approx([0.0, 0.1, 0.2, 0.3])
    tasks = pq.read_table(out / 'meta/tasks.parquet')
    assert tasks.column('task').to_pylist() == ['put the carrot in the bowl', 'push the block']
    assert json.loads(tasks.schema.metadata[b'pandas'])['index_columns'] == ['task']
    stats = json.loads((out / 'meta/stats.json').read_text())
    assert np.array(stats['observation.images.front']['mean']).shape == (3, 1, 1)
    assert stats['action']['count'] == [12]
    assert (out / 'videos/observation.images.front/chunk-000/file-001.mp4').is_file()
    with pytest.raises(FileExistsError):
        export_lerobot([demos], out)


@pytest.mark.parametrize('videos', [False, True], ids=['png', 'h264'])
def test_round_trip_keeps_the_episodes(demos, tmp_path, videos):
    export_lerobot([demos], tmp_path / 'lerobot', videos=videos)
    back = tmp_path / 'back.hdf5'
    assert import_lerobot(tmp_path / 'lerobot', back) == 3
    with EpisodeReader(demos) as original, EpisodeReader(back) as imported:
        assert imported.env_args['fps'] == 10
        for i in range(3):
            a, b = original.episode(i), imported.episode(i)
            for key in ('actions', 'rewards', 'dones', 'success'):
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
            np.testing.assert_array_equal(a['obs']['proprio'], b['obs']['proprio'])
            assert a['instruction'] == b['instruction']
            frames, decoded = a['obs']['front/rgb'], b['obs']['front/rgb']
            assert decoded.shape == frames.shape and decoded.dtype == np.uint8
            if videos:  # lossy, at the encoder's highest quality
                assert np.abs(frames.astype(int) - decoded).mean() < 4.0
            else:
                np.testing.assert_array_equal(frames, decoded)


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='not a LeRobot dataset'):
        import_lerobot(tmp_path, tmp_path / 'x.hdf5')
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'info.json').write_text(json.dumps({'codebase_version': 'v2.1'}))
    with pytest.raises(ValueError, match="format 'v2.1'; this reads v3.0"):
        import_lerobot(tmp_path, tmp_path / 'x.hdf5')
