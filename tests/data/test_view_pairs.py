"""The view-pair reader of core: layout checks without the simulator."""
import h5py
import numpy as np
import pytest

from embodied_vision.data.view_pairs import FORMAT, STRING_DTYPE, read_pairs


def _write(path, fmt=FORMAT):
    with h5py.File(path, 'w') as f:
        f.attrs['format'] = fmt
        f.attrs['accepted'] = 2
        pairs = f.create_group('pairs')
        pairs['rgb1'] = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
        pairs['rgb2'] = np.zeros((2, 4, 4, 3), np.uint8)
        pairs.create_dataset('camera1', data=['front', 'side'], dtype=STRING_DTYPE)
    return path


def test_reads_the_keys_asked_for_with_strings_and_attrs(tmp_path):
    data = read_pairs(_write(tmp_path / 'p.hdf5'), ('rgb1', 'camera1'))
    assert set(data) == {'rgb1', 'camera1', 'attrs'}
    assert data['rgb1'].dtype == np.uint8 and data['rgb1'].shape == (2, 4, 4, 3)
    assert data['rgb1'][1, 0, 0].tolist() == [48, 49, 50]
    assert list(data['camera1']) == ['front', 'side']
    assert data['attrs']['format'] == FORMAT and data['attrs']['accepted'] == 2
    with pytest.raises(KeyError):
        read_pairs(tmp_path / 'p.hdf5', ('depth1',))


def test_refuses_a_file_of_another_format(tmp_path):
    path = _write(tmp_path / 'e.hdf5', fmt='embodied_vision.episodes')
    with pytest.raises(ValueError, match="format attribute 'embodied_vision.episodes', "
                                         "expected 'embodied_vision.view_pairs'"):
        read_pairs(path)
