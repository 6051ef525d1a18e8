"""Radiance grids fused from synthetic RGB-D views of a box, and NeRF-MAE's file format."""
import time

import numpy as np
import pytest

from embodied_vision.geometry import (
    RadianceGrid,
    density_to_alpha,
    fuse_radiance_grid,
    grid_resolution,
)

BBOX_MIN, BBOX_MAX = np.array([-0.5, -0.5, 0.0]), np.array([0.5, 0.5, 1.0])




def _centres(grid):
    return np.stack(np.meshgrid(*grid.axes(), indexing='ij'), -1)


def test_resolution_follows_longest_side():
    np.testing.assert_array_equal(grid_resolution([0, 0, 0], [2.0, 1.0, 0.5]), [160, 80, 40])
    np.testing.assert_array_equal(grid_resolution([0, 0, 0], [1.0, 1 / 3, 3.0], 100),
                                  [33, 11, 100])
    np.testing.assert_array_equal(grid_resolution([0, 0, 0], [1.0, 1e-6, 1.0], 10), [10, 1, 10])
    with pytest.raises(ValueError, match='three positive finite sizes'):
        grid_resolution([0, 0, 0], [1.0, 0.0, 1.0])


def test_box_grid(synth):
    views = synth.make_views(n_views=6, size=96, background=np.inf)
    grid = fuse_radiance_grid(views, BBOX_MIN, [0.5, 0.5, 0.8], max_resolution=64)
    np.testing.assert_array_equal(grid.resolution, [64, 64, 51])
    assert grid.rgbsigma.shape == (64, 64, 51, 4) and grid.rgbsigma.dtype == np.float32
    centres = _centres(grid)
    distance = synth.box_surface_distance(centres)
    occupied = grid.alpha > 0
    tau = grid.spacing.max()
    # occupied voxels lie on the box surface (band tau plus the nearest-pixel footprint)
    assert occupied.sum() > 1000
    assert distance[occupied].max() < tau + grid.spacing.max()
    # the visible surface is covered: most voxels right at the top face are occupied
    top = (np.abs(centres[..., 2] - synth.BOX_MAX[2]) < grid.spacing[2] / 2) & np.all(
        np.abs(centres[..., :2]) < synth.BOX_MAX[:2] - 0.02, axis=-1)
    assert occupied[top].mean() > 0.95
    # colour of the top face (+z is FACE_COLOURS[5]) in [0, 1]
    np.testing.assert_allclose(np.median(grid.rgbsigma[top][:, :3], axis=0),
                               synth.FACE_COLOURS[5] / 255, atol=1e-6)
    # free space between each camera and the box has zero density
    for view in views:
        eye = view['T_world_cam'][:3, 3]
        for s in np.linspace(0.1, 0.9, 9):
            p = eye + s * ((synth.BOX_MIN + synth.BOX_MAX) / 2 - eye)
            if np.all((p > BBOX_MIN) & (p < grid.bbox_max)) and \
                    synth.box_surface_distance(p[None])[0] > 3 * tau and \
                    not np.all((p > synth.BOX_MIN) & (p < synth.BOX_MAX)):
                i, j, k = np.floor((p - grid.bbox_min) / grid.spacing).astype(int)
                assert grid.rgbsigma[i, j, k, 3] == 0 and grid.alpha[i, j, k] == 0
    far_outside = (distance > 3 * tau) & ~np.all(
        (centres > synth.BOX_MIN) & (centres < synth.BOX_MAX), axis=-1)
    assert np.all(grid.rgbsigma[far_outside][:, 3] == 0)
    # the unseen inside of the box stays empty
    deep_inside = np.all((centres > synth.BOX_MIN + 0.05) & (centres < synth.BOX_MAX - 0.05),
                         axis=-1)
    assert deep_inside.any() and np.all(grid.alpha[deep_inside] == 0)


def test_160_grid_from_six_views_is_fast(synth):
    views = synth.make_views(n_views=6, size=128, background=np.inf)
    start = time.perf_counter()
    grid = fuse_radiance_grid(views, BBOX_MIN, BBOX_MAX)
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(grid.resolution, [160, 160, 160])
    assert (grid.alpha > 0).sum() > 10000
    assert elapsed < 15.0, f'fusing 160^3 from 6 views took {elapsed:.1f} s'


def test_npz_round_trip_and_tensor(tmp_path, synth):
    views = synth.make_views(n_views=2, size=48)
    grid = fuse_radiance_grid(views, BBOX_MIN, [0.5, 0.5, 0.8], max_resolution=32)
    path = tmp_path / 'scene.npz'
    grid.save_npz(path)
    with np.load(path) as data:
        assert sorted(data.files) == ['bbox_max', 'bbox_min', 'resolution', 'rgbsigma']
    loaded = RadianceGrid.load_npz(path)
    np.testing.assert_array_equal(loaded.rgbsigma, grid.rgbsigma)
    np.testing.assert_array_equal(loaded.resolution, grid.resolution)
    np.testing.assert_array_equal(loaded.bbox_min, grid.bbox_min)
    np.testing.assert_array_equal(loaded.bbox_max, grid.bbox_max)
    tensor = loaded.to_tensor()
    assert tuple(tensor.shape) == (4, 32, 32, 26)
    np.testing.assert_allclose(tensor[3].numpy(), grid.alpha)
    np.testing.assert_allclose(tensor[:3].numpy(), grid.rgbsigma[..., :3].transpose(3, 0, 1, 2))
    padded = loaded.to_tensor(pad_to=40)
    assert tuple(padded.shape) == (4, 40, 40, 40)
    assert padded[:, :32, :32, :26].equal(tensor) and padded[:, :, :, 26:].abs().sum() == 0
    with pytest.raises(ValueError, match='exceeds pad_to'):
        loaded.to_tensor(pad_to=16)


def test_density_conventions_and_uint8(tmp_path):
    np.testing.assert_allclose(density_to_alpha([0.0, 100.0, -5.0]),
                               [0.0, 1 - np.exp(-1), 0.0], rtol=1e-6)
    np.testing.assert_allclose(density_to_alpha([np.log(100.0)], 'exp'), [1 - np.exp(-1)],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="one of \\('relu', 'exp'\\)"):
        density_to_alpha([0.0], 'softplus')
    data = np.full((2, 3, 4, 4), 255, np.uint8)
    np.savez(tmp_path / 'u8.npz', rgbsigma=data, resolution=np.array([2, 3, 4]),
             bbox_min=np.zeros(3), bbox_max=np.ones(3), scale=1.0)
    grid = RadianceGrid.load_npz(tmp_path / 'u8.npz', density_activation='exp')
    assert grid.rgbsigma.dtype == np.float32 and np.all(grid.rgbsigma == 1.0)
    with pytest.raises(ValueError, match='must equal rgbsigma.shape'):
        RadianceGrid(np.zeros((2, 2, 2, 4)), np.zeros(3), np.ones(3), [2, 2, 3])
    with pytest.raises(ValueError, match='missing keys'):
        np.savez(tmp_path / 'bad.npz', grid=np.zeros(3))
        RadianceGrid.load_npz(tmp_path / 'bad.npz')
