"""View-pair files for CroCo pretraining and pair-geometry heads: the layout and its reader.

The simulator writes them (`embodied_vision.sim.view_pairs`, `embodied-vision view-pairs`);
training code reads them here, with numpy and h5py only (never mujoco).

File layout (`N` pairs, `H x W` images)::

    /                     attrs: format='embodied_vision.view_pairs', version=1, config (JSON),
                                 domains (JSON list), attempts, accepted
    pairs/rgb1, rgb2      uint8   (N, H, W, 3)
    pairs/depth1, depth2  float32 (N, H, W) metres, 0 = invalid (when `save_depth`)
    pairs/K1, K2          float64 (N, 3, 3) intrinsics
    pairs/T1, T2          float64 (N, 4, 4) camera-to-world, OpenCV axes
    pairs/overlap         float32 (N,) symmetric covisibility
    pairs/seed            int64   (N,) reset seed of the scene
    pairs/domain          int8    (N,) index into the `domains` attribute
    pairs/camera1, camera2  utf-8 strings (N,)
"""
from collections.abc import Sequence

import h5py

__all__ = ['FORMAT', 'STRING_DTYPE', 'VERSION', 'read_pairs']

FORMAT = 'embodied_vision.view_pairs'
VERSION = 1
STRING_DTYPE = h5py.string_dtype('utf-8')


def read_pairs(path: str, keys: Sequence[str] = ('rgb1', 'rgb2')) -> dict:
    """Load datasets `keys` of `pairs/` into memory as numpy arrays (plus file `attrs`)."""
    with h5py.File(path, 'r') as f:
        if f.attrs.get('format') != FORMAT:
            raise ValueError(f'{path} is not a view-pair file (format attribute '
                             f'{f.attrs.get("format")!r}, expected {FORMAT!r})')
        out = {}
        for key in keys:
            dataset = f['pairs'][key]
            out[key] = dataset.asstr()[()] if dataset.dtype == STRING_DTYPE else dataset[()]
        out['attrs'] = dict(f.attrs)
    return out
