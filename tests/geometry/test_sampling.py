"""Surface sampling of primitives: points on the analytic surface, proportions by area."""
# K, R, T (intrinsics, rotation, pose) follow camera-geometry notation
# ruff: noqa: N803, N806
import numpy as np
import pytest

from embodied_vision.geometry import (
    primitive_area,
    sample_object_points,
    sample_primitive_surface,
)


def _pose(seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    T = np.eye(4)
    T[:3, :3] = q * np.sign(np.linalg.det(q))
    T[:3, 3] = rng.uniform(-0.5, 0.5, 3)
    return T


def _surface_distance(kind, size, p):
    """Distance of local-frame points to the analytic surface."""
    x, y, z = p.T
    rho = np.hypot(x, y)
    if kind == 'box':
        q = np.abs(p) - size
        return np.abs(np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0))
    if kind == 'sphere':
        return np.abs(np.linalg.norm(p, axis=1) - size[0])
    if kind == 'cylinder':
        r, h = size
        side = np.where(np.abs(z) <= h, np.abs(rho - r), np.inf)
        cap = np.where(rho <= r, np.abs(np.abs(z) - h), np.inf)
        return np.minimum(side, cap)
    if kind == 'capsule':
        r, h = size
        axis = np.stack([np.zeros_like(z), np.zeros_like(z), np.clip(z, -h, h)], 1)
        return np.abs(np.linalg.norm(p - axis, axis=1) - r)
    # ellipsoid: algebraic residual scaled to a length
    return np.abs(np.sqrt(((p / size) ** 2).sum(1)) - 1) * size.min()


CASES = [
    ('box', np.array([0.05, 0.1, 0.02])),
    ('sphere', np.array([0.04, 0, 0])),
    ('cylinder', np.array([0.03, 0.08, 0])),
    ('capsule', np.array([0.02, 0.05, 0])),
    ('ellipsoid', np.array([0.03, 0.06, 0.1])),
]


@pytest.mark.parametrize('kind,size', CASES, ids=[c[0] for c in CASES])
def test_points_lie_on_surface(kind, size):
    T = _pose(1)
    points = sample_object_points([(kind, size, T)], n=4000, rng=0)
    assert points.shape == (4000, 3) and points.dtype == np.float32
    local = (points.astype(np.float64) - T[:3, 3]) @ T[:3, :3]
    need = {'box': 3, 'sphere': 1, 'cylinder': 2, 'capsule': 2, 'ellipsoid': 3}[kind]
    assert _surface_distance(kind, size[:need], local).max() < 1e-5


def test_box_faces_by_area():
    size = np.array([0.1, 0.2, 0.4])
    p = sample_primitive_surface('box', size, 60000, rng=0)
    on_face = np.isclose(np.abs(p), size).argmax(1)
    fractions = np.bincount(on_face, minlength=3) / len(p)
    areas = np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]])
    np.testing.assert_allclose(fractions, areas / areas.sum(), atol=0.01)
    np.testing.assert_allclose(primitive_area('box', size), 8 * areas.sum())


def test_cylinder_and_capsule_parts_by_area():
    r, h = 0.05, 0.1
    p = sample_primitive_surface('cylinder', [r, h], 60000, rng=1)
    cap = np.isclose(np.abs(p[:, 2]), h) & (np.hypot(p[:, 0], p[:, 1]) < r - 1e-9)
    np.testing.assert_allclose(cap.mean(), 2 * np.pi * r ** 2 / (4 * np.pi * r * h +
                                                                   2 * np.pi * r ** 2), atol=0.01)
    # caps uniform in area: half the cap points within radius r / sqrt(2)
    inner = np.hypot(p[cap, 0], p[cap, 1]) < r / np.sqrt(2)
    np.testing.assert_allclose(inner.mean(), 0.5, atol=0.02)
    p = sample_primitive_surface('capsule', [r, h], 60000, rng=2)
    on_caps = np.abs(p[:, 2]) > h
    np.testing.assert_allclose(on_caps.mean(), 4 * np.pi * r ** 2 / (4 * np.pi * r * h +
                                                                       4 * np.pi * r ** 2),
                               atol=0.01)


def test_primitives_chosen_by_area():
    box, sphere = np.array([0.1, 0.1, 0.1]), np.array([0.05, 0, 0])
    far = np.eye(4)
    far[:3, 3] = [10.0, 0, 0]
    points = sample_object_points([('box', box, np.eye(4)), ('sphere', sphere, far)], n=40000,
                                  rng=np.random.default_rng(3))
    expected = primitive_area('sphere', sphere) / (primitive_area('box', box) +
                                                   primitive_area('sphere', sphere))
    np.testing.assert_allclose((points[:, 0] > 5).mean(), expected, atol=0.01)
    # shuffled: both primitives appear among the first points
    assert 0 < (points[:200, 0] > 5).sum() < 200


def test_ellipsoid_area_and_uniformity():
    s = np.array([0.02, 0.05, 0.12])
    rng = np.random.default_rng(0)
    u = rng.standard_normal((400000, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    # area = integral over the unit sphere of prod(s) |u / s| dOmega
    area_mc = 4 * np.pi * np.prod(s) * np.linalg.norm(u / s, axis=1).mean()
    np.testing.assert_allclose(primitive_area('ellipsoid', s), area_mc, rtol=0.012)
    np.testing.assert_allclose(primitive_area('ellipsoid', [0.1, 0.1, 0.1]),
                               primitive_area('sphere', [0.1]), rtol=1e-9)
    # uniform: fraction of points with z > 0.06 matches the Monte-Carlo area fraction
    points = sample_primitive_surface('ellipsoid', s, 100000, rng=1)
    weight = np.linalg.norm(u / s, axis=1)
    cap_fraction = (weight * ((u * s)[:, 2] > 0.06)).sum() / weight.sum()
    np.testing.assert_allclose((points[:, 2] > 0.06).mean(), cap_fraction, atol=0.01)


def test_mujoco_geom_type_ints_and_errors():
    points = sample_object_points([(6, [0.1, 0.1, 0.1], np.eye(4))], n=10, rng=0)
    assert np.all(np.isclose(np.abs(points), 0.1).any(1))
    with pytest.raises(ValueError, match='valid kinds: box, sphere, cylinder, capsule, '
                                         'ellipsoid'):
        sample_object_points([('mesh', [0.1], np.eye(4))])
    with pytest.raises(ValueError, match='cylinder size needs 2 values'):
        sample_object_points([('cylinder', [0.1], np.eye(4))])
    with pytest.raises(ValueError, match='positive'):
        sample_object_points([('sphere', [-0.1], np.eye(4))])
    with pytest.raises(ValueError, match='4x4'):
        sample_object_points([('sphere', [0.1], np.eye(3))])
    with pytest.raises(ValueError, match='at least one'):
        sample_object_points([])
