"""The point-cloud reader on folders built by hand in ModelNet40-hdf5 and ScanObjectNN layouts."""
import sys

import numpy as np
import pytest
import torch

from embodied_vision.data.point_clouds import (
    SCANOBJECTNN_CLASSES,
    PointCloudDataset,
    find_layout,
    read_point_cloud_split,
    write_modelnet40,
    write_scanobjectnn,
)

h5py = pytest.importorskip('h5py')
NAMES40 = [f'class{k:02d}' for k in range(40)]


def _clouds(n, points=2048, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, points, 3)).astype(np.float32)


def _write_h5(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, 'w') as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)


@pytest.fixture
def modelnet(tmp_path):
    """Like the original download: two train files, one test file, the originals' extra
    keys (normal, faceId) and list files naming `data/modelnet40_ply_hdf5_2048/...`."""
    folder = tmp_path / 'data' / 'modelnet40_ply_hdf5_2048'
    files = {'ply_data_train1.h5': (3, 0), 'ply_data_train0.h5': (4, 1),
             'ply_data_test0.h5': (2, 2)}
    for name, (n, seed) in files.items():
        labels = (np.arange(n, dtype=np.uint8) * 7 + seed)[:, None] % 40
        _write_h5(folder / name, data=_clouds(n, seed=seed), label=labels,
                  normal=_clouds(n, seed=9), faceId=np.zeros((n, 2048), np.int32))
    (folder / 'train_files.txt').write_text('data/modelnet40_ply_hdf5_2048/ply_data_train1.h5\n'
                                            'data/modelnet40_ply_hdf5_2048/ply_data_train0.h5\n')
    (folder / 'test_files.txt').write_text('data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n')
    (folder / 'shape_names.txt').write_text(''.join(f'{n}\n' for n in NAMES40))
    return folder


@pytest.fixture
def scanobjectnn(tmp_path):
    """Like the ScanObjectNN download: main_split/ with no class names, plain and PB_T50_RS."""
    folder = tmp_path / 'h5_files' / 'main_split'
    for prefix, n in (('training', 5), ('test', 3)):
        mask = np.full((n, 2048), -1, np.int64)
        mask[:, :1000] = 4  # object points carry an id >= 0
        for suffix in ('', '_augmentedrot_scale75'):
            _write_h5(folder / f'{prefix}_objectdataset{suffix}.h5', data=_clouds(n, seed=n),
                      label=np.arange(n, dtype=np.int64) + (10 if suffix else 0), mask=mask)
    return folder


def test_reads_modelnet40_in_list_order_with_the_svm_protocol_subset(modelnet):
    for root in (modelnet, modelnet.parent):  # the folder itself or its parent
        assert find_layout(root) == ('modelnet40', modelnet)
    split = read_point_cloud_split(modelnet.parent, 'train')
    with h5py.File(modelnet / 'ply_data_train1.h5', 'r') as f1, \
            h5py.File(modelnet / 'ply_data_train0.h5', 'r') as f0:  # in train_files.txt order
        np.testing.assert_array_equal(split.points, np.concatenate([f1['data'], f0['data']]))
        labels = np.concatenate([f1['label'], f0['label']])[:, 0]
        np.testing.assert_array_equal(split.labels, labels)
    assert [p.name for p in split.files] == ['ply_data_train1.h5', 'ply_data_train0.h5']
    assert split.labels.dtype == np.int64 and split.shape_names == NAMES40
    dataset = PointCloudDataset(modelnet, 'train', n_points=1024)
    points, label = dataset[5]
    assert isinstance(label, int) and label == split.labels[5]
    assert points.dtype == torch.float32 and points.shape == (1024, 3)
    np.testing.assert_array_equal(points.numpy(), split.points[5, :1024])  # the first 1024
    batch, labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch.shape == (4, 1024, 3) and labels.tolist() == split.labels[:4].tolist()
    assert len(PointCloudDataset(modelnet, 'test')) == 2


def test_reads_scanobjectnn_with_its_classes_mask_and_variants(scanobjectnn):
    dataset = PointCloudDataset(scanobjectnn.parent, 'train', with_mask=True)
    assert dataset.shape_names == list(SCANOBJECTNN_CLASSES) and len(dataset) == 5
    points, label, mask = dataset[2]
    assert points.shape == (2048, 3) and label == 2 and mask.dtype == torch.int64
    assert (mask[:1000] == 4).all() and (mask[1000:] == -1).all()
    rotated = PointCloudDataset(scanobjectnn, 'test', variant='augmentedrot_scale75')
    assert rotated.labels.tolist() == [10, 11, 12]
    assert PointCloudDataset(scanobjectnn, 'test', n_points=512)[0][0].shape == (512, 3)


def test_round_trip_through_the_writers(tmp_path):
    names = ['mug', 'bowl', 'table']
    points, labels = _clouds(5, 64), np.array([0, 2, 1, 1, 0])
    paths = write_modelnet40(tmp_path, 'train', points, labels, names, file_size=2)
    assert [p.name for p in paths] == ['ply_data_train0.h5', 'ply_data_train1.h5',
                                       'ply_data_train2.h5']
    mask = np.where(np.arange(64) < 40, 0, -1)[None].repeat(5, 0)
    write_scanobjectnn(tmp_path, 'train', points, labels, mask, names)
    for layout in ('modelnet40', 'scanobjectnn'):
        split = read_point_cloud_split(tmp_path, 'train', layout=layout,
                                       with_mask=layout == 'scanobjectnn')
        np.testing.assert_array_equal(split.points, points)
        assert split.labels.tolist() == labels.tolist() and split.shape_names == names
    with pytest.raises(ValueError, match=r'labels span 0 to 3; expected 0 to 2'):
        write_modelnet40(tmp_path, 'test', points, [0, 1, 2, 3, 0], names)


def _break(path, **changes):
    """Rewrite an h5 file with keys replaced (None drops a key)."""
    with h5py.File(path, 'r') as f:
        arrays = {k: f[k][()] for k in f}
    arrays.update(changes)
    path.unlink()
    _write_h5(path, **{k: v for k, v in arrays.items() if v is not None})


def test_missing_folders_and_files_are_named(tmp_path, modelnet, scanobjectnn):
    with pytest.raises(FileNotFoundError, match='no such folder; expected a modelnet40_ply'):
        PointCloudDataset(tmp_path / 'nowhere')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='holds neither layout; expected ply_data'):
        PointCloudDataset(tmp_path / 'empty')
    with pytest.raises(FileNotFoundError, match=r'test_objectdataset_nope\.h5: missing; expected '
                                                r'data float \(N, P, 3\)'):
        PointCloudDataset(scanobjectnn, 'test', variant='nope')
    (modelnet / 'ply_data_train1.h5').unlink()
    with pytest.raises(FileNotFoundError, match=r"train_files.txt: lists 'data/modelnet40_ply_"
                                                r"hdf5_2048/ply_data_train1.h5', which is not"):
        PointCloudDataset(modelnet, 'train')
    (modelnet / 'shape_names.txt').unlink()
    with pytest.raises(FileNotFoundError, match='shape_names.txt: missing'):
        PointCloudDataset(modelnet, 'test')
    with pytest.raises(ValueError, match=r"split='val'; expected one of \['train', 'test'\]"):
        PointCloudDataset(scanobjectnn, 'val')


@pytest.mark.parametrize('changes, message', [
    ({'label': None}, r"ply_data_test0.h5: missing key\(s\) \['label'\] \(has \['data', "
                      r"'faceId', 'normal'\]\); expected data float \(N, P, 3\) and label"),
    ({'data': np.zeros((2, 2048, 2), np.float32)},
     r'data has shape \(2, 2048, 2\) and dtype float32; expected float \(N, P, 3\)'),
    ({'data': np.zeros((2, 2048, 3), np.int32)}, r'dtype int32; expected float \(N, P, 3\)'),
    ({'label': np.zeros((3, 1), np.uint8)},
     r'label has shape \(3, 1\) and dtype uint8; expected integer \(2,\) or \(2, 1\)'),
    ({'label': np.zeros((2, 1), np.float32)}, r'dtype float32; expected integer'),
    ({'label': np.array([[3], [40]], np.uint8)},
     r'label 40 \(cloud 1\) is outside the 40 classes of shape_names.txt \(class00 ... '
     r'class39\); expected 0 to 39'),
])
def test_broken_modelnet40_files_are_refused_with_named_errors(modelnet, changes, message):
    _break(modelnet / 'ply_data_test0.h5', **changes)
    with pytest.raises(ValueError, match=message):
        PointCloudDataset(modelnet, 'test')


def test_broken_scanobjectnn_files_and_options_are_refused(scanobjectnn, modelnet):
    path = scanobjectnn / 'test_objectdataset.h5'
    _break(path, label=np.array([0, 1, 15]))
    with pytest.raises(ValueError, match=r'label 15 \(cloud 2\) is outside the 15 classes'):
        PointCloudDataset(scanobjectnn, 'test')
    _break(path, label=np.array([0, 1, 2]), mask=np.zeros((3, 100), np.int64))
    PointCloudDataset(scanobjectnn, 'test')  # the mask is read only when asked for
    with pytest.raises(ValueError, match=r'mask has shape \(3, 100\).*expected integer \(3, '
                                         r'2048\)'):
        PointCloudDataset(scanobjectnn, 'test', with_mask=True)
    _break(path, mask=None)
    with pytest.raises(ValueError, match=r"missing key\(s\) \['mask'\]"):
        PointCloudDataset(scanobjectnn, 'test', with_mask=True)
    with pytest.raises(ValueError, match='n_points=4096; the clouds .* have 2048 points'):
        PointCloudDataset(scanobjectnn, 'train', n_points=4096)
    with pytest.raises(ValueError, match='with_mask needs the ScanObjectNN layout'):
        PointCloudDataset(modelnet, 'test', with_mask=True)
    path.write_bytes(b'not hdf5')
    with pytest.raises(ValueError, match='not a readable hdf5 file'):
        PointCloudDataset(scanobjectnn, 'test')


def test_missing_h5py_names_the_extra(modelnet, monkeypatch):
    monkeypatch.setitem(sys.modules, 'h5py', None)
    with pytest.raises(ImportError, match=r'h5py is not installed .*embodied_vision\[sim\]'):
        PointCloudDataset(modelnet, 'test')
