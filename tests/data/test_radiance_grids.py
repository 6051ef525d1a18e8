"""The radiance-grid dataset reader on folders built by hand in NeRF-RPN / NeRF-MAE's layout."""
import json

import numpy as np
import pytest
import torch

from embodied_vision.data.radiance_grids import (
    RadianceGridDataset,
    read_grid_header,
    read_split,
)

SHAPE = (4, 3, 2)


def _grid(seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    rgbsigma = rng.uniform(0.0, 1.0, (*shape, 4)).astype(np.float32)
    rgbsigma[..., 3] = rng.uniform(-20.0, 60.0, shape)  # raw density, negative = empty
    return rgbsigma


def _write_grid(root, name, rgbsigma=None, **keys):
    """features/<name>.npz with NeRF-RPN's keys (and the extra ScanNet ones); `keys`
    replace entries, a value of None drops the key."""
    rgbsigma = _grid() if rgbsigma is None else rgbsigma
    data = {'rgbsigma': rgbsigma, 'resolution': np.array(rgbsigma.shape[:3]),
            'bbox_min': np.array([-1.0, -1.0, 0.0]), 'bbox_max': np.array([1.0, 0.5, 1.0]),
            'scale': np.float64(1.0), 'offset': np.zeros(3)}
    data.update(keys)
    (root / 'features').mkdir(parents=True, exist_ok=True)
    path = root / 'features' / f'{name}.npz'
    np.savez_compressed(path, **{k: v for k, v in data.items() if v is not None})
    return path


def _write_split(root, train, val=(), test=(), file='front3d_split.npz'):
    np.savez(root / file, train_scenes=np.array(train, dtype=str),
             val_scenes=np.array(val, dtype=str), test_scenes=np.array(test, dtype=str))


def _write_labels(root, name, aabb=None, obb=None, semantics=None):
    for kind, value, default in (
            ('aabb', aabb, [[0.5, 0.5, 0.0, 2.0, 1.5, 1.0]]),
            ('obb', obb, [[1.0, 1.0, 0.5, 1.0, 0.5, 1.0, 0.3]])):
        (root / kind).mkdir(exist_ok=True)
        np.save(root / kind / f'{name}.npy', np.asarray(default if value is None else value))
    (root / 'voxel_front3d').mkdir(exist_ok=True)
    labels = np.arange(np.prod(SHAPE)).reshape(SHAPE) % 3 if semantics is None else semantics
    np.save(root / 'voxel_front3d' / f'{name}.npy', labels)


@pytest.fixture
def dataset_dir(tmp_path):
    for i, name in enumerate(['scene_a', 'scene_b', 'scene_c']):
        _write_grid(tmp_path, name, _grid(i))
        _write_labels(tmp_path, name)
    _write_split(tmp_path, ['scene_b', 'scene_a'], ['scene_c'])
    return tmp_path


def test_items_follow_nerf_mae_preprocessing(dataset_dir):
    dataset = RadianceGridDataset(dataset_dir, 'train')
    assert len(dataset) == 2 and dataset.names == dataset.ids == ['scene_b', 'scene_a']
    item = dataset[1]
    assert item['name'] == 'scene_a' and set(item) == {'name', 'grid'}
    raw = _grid(0)
    grid = item['grid']
    assert grid.dtype == torch.float32 and grid.shape == (4, *SHAPE)
    np.testing.assert_allclose(grid[:3].numpy(), raw[..., :3].transpose(3, 0, 1, 2))
    alpha = 1.0 - np.exp(-np.maximum(raw[..., 3], 0.0) / 100.0)  # ScanNet / ReLU grids
    np.testing.assert_allclose(grid[3].numpy(), alpha, rtol=1e-5, atol=1e-7)
    exp_grids = RadianceGridDataset(dataset_dir, 'train', density_activation='exp')
    expected = np.clip(1.0 - np.exp(-np.exp(raw[..., 3]) / 100.0), 0, 1)  # Instant-NGP
    np.testing.assert_allclose(exp_grids[1]['grid'][3].numpy(), expected, atol=1e-6)
    assert RadianceGridDataset(dataset_dir, 'val').names == ['scene_c']
    assert RadianceGridDataset(dataset_dir, 'test').names == []
    assert RadianceGridDataset(dataset_dir, None).names == ['scene_a', 'scene_b', 'scene_c']
    assert read_split(dataset_dir) == {'train': ['scene_b', 'scene_a'], 'val': ['scene_c'],
                                       'test': []}


def test_labels_and_classes(dataset_dir):
    item = RadianceGridDataset(dataset_dir, 'val', labels=True)[0]
    assert item['aabb'].dtype == torch.float32 and item['aabb'].shape == (1, 6)
    assert item['obb'].shape == (1, 7) and item['obb'][0, 6].item() == pytest.approx(0.3)
    assert item['semantics'].dtype == torch.int64 and item['semantics'].shape == SHAPE
    only_obb = RadianceGridDataset(dataset_dir, 'val', labels=['obb'])[0]
    assert set(only_obb) == {'name', 'grid', 'obb'}
    np.save(dataset_dir / 'aabb' / 'scene_c.npy', np.zeros((0,)))  # upstream: no boxes
    assert RadianceGridDataset(dataset_dir, 'val', labels=True)[0]['aabb'].shape == (0, 6)
    assert RadianceGridDataset(dataset_dir, 'val').classes is None
    (dataset_dir / 'classes.json').write_text(json.dumps({'classes': [
        {'id': 1, 'name': 'cube'}, {'id': 0, 'name': 'background'}]}))
    assert RadianceGridDataset(dataset_dir, 'val').classes == ['background', 'cube']
    with pytest.raises(ValueError, match='subset of'):
        RadianceGridDataset(dataset_dir, labels=['boxes'])
    with pytest.raises(ValueError, match='split must be one of'):
        RadianceGridDataset(dataset_dir, 'training')


def test_uint8_grid_is_divided_by_255(tmp_path):
    rgbsigma = np.full((*SHAPE, 4), 128, np.uint8)
    rgbsigma[..., 3] = 255
    _write_grid(tmp_path, 'quantised', rgbsigma)
    _write_split(tmp_path, ['quantised'])
    grid = RadianceGridDataset(tmp_path)[0]['grid']
    np.testing.assert_allclose(grid[:3].numpy(), 128 / 255, rtol=1e-6)
    np.testing.assert_allclose(grid[3].numpy(), 1.0 - np.exp(-1.0 / 100.0), rtol=1e-5)
    assert read_grid_header(tmp_path / 'features' / 'quantised.npz')['dtype'] == np.uint8


BAD_GRIDS = {
    'missing_key': ({'bbox_max': None}, r"missing key\(s\) \['bbox_max'\]"),
    'wrong_shape': ({'rgbsigma': np.zeros((*SHAPE, 3), np.float32)},
                    r'rgbsigma has shape \(4, 3, 2, 3\); expected \(X, Y, Z, 4\)'),
    'integer_grid': ({'rgbsigma': np.zeros((*SHAPE, 4), np.int32)}, 'expected float or uint8'),
    'resolution': ({'resolution': np.array([4, 3, 3])},
                   r'resolution \[4, 3, 3\] does not match .*expected resolution == \[4, 3, 2\]'),
    'inverted_box': ({'bbox_min': np.array([0.0, 0.0, 2.0])}, 'empty or inverted grid box'),
    'empty_box': ({'bbox_max': np.array([-1.0, 0.5, 1.0])}, 'empty or inverted grid box'),
    'nan_box': ({'bbox_min': np.array([np.nan, 0.0, 0.0])}, 'expected three finite'),
}


@pytest.mark.parametrize('case', sorted(BAD_GRIDS))
def test_bad_grid_is_refused_at_construction(tmp_path, case):
    keys, message = BAD_GRIDS[case]
    _write_grid(tmp_path, 'good')
    path = _write_grid(tmp_path, case, **keys)
    _write_split(tmp_path, ['good', case])
    with pytest.raises(ValueError, match=message) as err:
        RadianceGridDataset(tmp_path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize('value', [np.nan, np.inf])
def test_non_finite_grid_is_refused_at_load(tmp_path, value):
    rgbsigma = _grid()
    rgbsigma[1, 2, 0, 3] = value
    path = _write_grid(tmp_path, 'broken', rgbsigma)
    _write_split(tmp_path, ['broken'])
    dataset = RadianceGridDataset(tmp_path)  # the header is fine
    with pytest.raises(ValueError, match='holds 1 NaN/inf values; expected finite') as err:
        dataset[0]
    assert str(path) in str(err.value)


BAD_LABELS = {
    'inverted_aabb': ({'aabb': [[0, 0, 0, 1, 1, 1], [2, 0, 0, 1, 1, 1]]},
                      'box 1 is empty or inverted .*expected x_min < x_max', 'aabb'),
    'flat_obb': ({'obb': [[1, 1, 1, 2, 0, 1, 0]]}, r'box 0 is empty .*w, l, h > 0', 'obb'),
    'aabb_columns': ({'aabb': [[0, 0, 0, 1, 1]]}, r'shape \(1, 5\); expected \(N, 6\)', 'aabb'),
    'nan_obb': ({'obb': [[1, 1, 1, 2, np.nan, 1, 0]]}, 'NaN/inf', 'obb'),
    'semantics_shape': ({'semantics': np.zeros((4, 3, 3), np.int64)},
                        r'expected integers of the grid shape \(4, 3, 2\)', 'voxel_front3d'),
    'semantics_float': ({'semantics': np.zeros(SHAPE, np.float32)}, 'dtype float32',
                        'voxel_front3d'),
}


@pytest.mark.parametrize('case', sorted(BAD_LABELS))
def test_bad_labels_are_refused(tmp_path, case):
    labels, message, folder = BAD_LABELS[case]
    _write_grid(tmp_path, 'scene')
    _write_labels(tmp_path, 'scene', **labels)
    _write_split(tmp_path, ['scene'])
    RadianceGridDataset(tmp_path)  # the grid alone is fine
    with pytest.raises(ValueError, match=message) as err:
        RadianceGridDataset(tmp_path, labels=True)
    assert str(tmp_path / folder / 'scene.npy') in str(err.value)


def test_missing_files_and_bad_split(tmp_path):
    with pytest.raises(FileNotFoundError, match='no features/ folder'):
        RadianceGridDataset(tmp_path)
    _write_grid(tmp_path, 'scene')
    with pytest.raises(FileNotFoundError, match='found no split files'):
        RadianceGridDataset(tmp_path)
    np.savez(tmp_path / 'broken_split.npz', train_scenes=np.array(['scene']))
    with pytest.raises(ValueError, match=r"broken_split.npz: missing key\(s\) \['val_scenes'"):
        read_split(tmp_path)
    _write_split(tmp_path, ['scene', 'ghost'], file='other_split.npz')
    with pytest.raises(FileNotFoundError, match='found 2'):
        read_split(tmp_path)
    with pytest.raises(FileNotFoundError, match='ghost.npz: grid of scene'):
        RadianceGridDataset(tmp_path, split_file=tmp_path / 'other_split.npz')
    _write_split(tmp_path, ['scene'], file='other_split.npz')
    with pytest.raises(FileNotFoundError, match='aabb/scene.npy: box file missing'):
        RadianceGridDataset(tmp_path, labels=['aabb'], split_file=tmp_path / 'other_split.npz')
    (tmp_path / 'features' / 'scene.npz').write_text('not a zip')
    with pytest.raises(ValueError, match='scene.npz: not an .npz archive'):
        RadianceGridDataset(tmp_path, split_file=tmp_path / 'other_split.npz')
