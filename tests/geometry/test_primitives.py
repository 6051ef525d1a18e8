"""Containment and extents of MuJoCo-style primitives, against sampled surfaces."""
import numpy as np
import pytest

from embodied_vision.geometry.primitives import (
    primitive_contains,
    primitive_half_extent,
    primitives_extent,
)
from embodied_vision.geometry.rotations import quat_to_matrix
from embodied_vision.geometry.sampling import sample_primitive_surface

SIZES = {'box': [0.03, 0.02, 0.01], 'sphere': [0.02], 'cylinder': [0.02, 0.03],
         'capsule': [0.01, 0.03], 'ellipsoid': [0.03, 0.02, 0.01]}


def _pose(seed):
    rng = np.random.default_rng(seed)
    quat = rng.normal(size=4)
    pose = np.eye(4)
    pose[:3, :3] = quat_to_matrix(quat / np.linalg.norm(quat))
    pose[:3, 3] = rng.uniform(-0.2, 0.2, 3)
    return pose


@pytest.mark.parametrize('kind', sorted(SIZES))
def test_surface_is_the_boundary_of_containment(kind):
    pose = _pose(1)
    local = sample_primitive_surface(kind, SIZES[kind], n=400, rng=0)
    centre = pose[:3, 3]
    world = local @ pose[:3, :3].T + centre
    shrunk = centre + 0.98 * (world - centre)  # primitives are star-shaped about the centre
    grown = centre + 1.02 * (world - centre)
    assert primitive_contains(kind, SIZES[kind], pose, shrunk).all()
    assert not primitive_contains(kind, SIZES[kind], pose, grown).any()


@pytest.mark.parametrize('kind', sorted(SIZES))
def test_half_extent_is_the_support_of_the_surface(kind):
    pose = _pose(2)
    world = sample_primitive_surface(kind, SIZES[kind], n=20000, rng=1) @ pose[:3, :3].T
    directions = np.random.default_rng(3).normal(size=(6, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    half = primitive_half_extent(kind, SIZES[kind], pose, directions)
    reached = (world @ directions.T).max(axis=0)
    assert np.all(reached <= half + 1e-12)
    np.testing.assert_allclose(reached, half, rtol=0.03)


def test_union_extent_and_known_box():
    box = ('box', [0.1, 0.2, 0.3], np.eye(4))
    moved = np.eye(4)
    moved[:3, 3] = (1.0, 0.0, 0.0)
    sphere = ('sphere', [0.5], moved)
    extent = primitives_extent([box, sphere], np.eye(3))
    np.testing.assert_allclose(extent, [[-0.1, 1.5], [-0.5, 0.5], [-0.5, 0.5]])
    diagonal = np.array([[1.0, 1.0, 0.0]]) / np.sqrt(2)
    np.testing.assert_allclose(primitives_extent([box], diagonal), [[-0.3 / np.sqrt(2),
                                                                     0.3 / np.sqrt(2)]])
    with pytest.raises(ValueError, match='empty'):
        primitives_extent([], np.eye(3))
    with pytest.raises(ValueError, match='4x4'):
        primitive_contains('box', [1, 1, 1], np.eye(3), np.zeros((1, 3)))
