"""Area-weighted surface sampling of MuJoCo-style primitives (object-centric point clouds).

Sizes follow MuJoCo's `geom size` (extra trailing entries are ignored):

- box: half extents (x, y, z);
- sphere: radius;
- cylinder: radius, half height (axis z), caps included;
- capsule: radius, half length of the cylindrical part (axis z), two hemispherical caps;
- ellipsoid: the three semi-axes. Points are exactly uniform (rejection sampling on the
  sphere); its area uses Thomsen's approximation (p = 1.6075, error < 1.1%), which only
  affects how many points an ellipsoid gets next to other primitives.
"""
# K, R, T (intrinsics, rotation, pose) follow camera-geometry notation
# ruff: noqa: N803, N806
import numpy as np

__all__ = ['PRIMITIVES', 'primitive_area', 'sample_primitive_surface', 'sample_object_points']

PRIMITIVES = ('box', 'sphere', 'cylinder', 'capsule', 'ellipsoid')
_SIZE_LEN = {'box': 3, 'sphere': 1, 'cylinder': 2, 'capsule': 2, 'ellipsoid': 3}
# MuJoCo mjtGeom values, so that `model.geom_type` can be passed as is
_MJ_GEOM_TYPES = {2: 'sphere', 3: 'capsule', 4: 'ellipsoid', 5: 'cylinder', 6: 'box'}
_THOMSEN_P = 1.6075


def _kind_and_size(kind, size):
    if isinstance(kind, (int, np.integer)) and not isinstance(kind, bool):
        kind = _MJ_GEOM_TYPES.get(int(kind), kind)
    if kind not in PRIMITIVES:
        raise ValueError(f'unknown primitive kind {kind!r}; valid kinds: {", ".join(PRIMITIVES)} '
                         f'(or MuJoCo geom types {sorted(_MJ_GEOM_TYPES)})')
    size = np.atleast_1d(np.asarray(size, np.float64))
    need = _SIZE_LEN[kind]
    if size.ndim != 1 or len(size) < need:
        raise ValueError(f'{kind} size needs {need} values (MuJoCo geom size), '
                         f'got {size.tolist()}')
    size = size[:need]
    if not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise ValueError(f'{kind} size must be positive and finite, got {size.tolist()}')
    return kind, size


def primitive_area(kind, size):
    """Surface area of a primitive (ellipsoid: Thomsen's approximation)."""
    kind, s = _kind_and_size(kind, size)
    if kind == 'box':
        a, b, c = s
        return float(8.0 * (a * b + b * c + a * c))
    if kind == 'sphere':
        return float(4.0 * np.pi * s[0] ** 2)
    if kind == 'cylinder':
        r, h = s
        return float(4.0 * np.pi * r * h + 2.0 * np.pi * r ** 2)
    if kind == 'capsule':
        r, h = s
        return float(4.0 * np.pi * r * h + 4.0 * np.pi * r ** 2)
    a, b, c = s ** _THOMSEN_P
    return float(4.0 * np.pi * ((a * b + a * c + b * c) / 3.0) ** (1.0 / _THOMSEN_P))


def _unit_sphere(n, rng):
    v = rng.standard_normal((n, 3))
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    bad = norm[:, 0] < 1e-12
    v[bad], norm[bad] = (0.0, 0.0, 1.0), 1.0
    return v / norm


def _disk(n, radius, rng):
    rho = radius * np.sqrt(rng.random(n))
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    return rho * np.cos(phi), rho * np.sin(phi)


def _sample_box(s, n, rng):
    a, b, c = s
    face_area = np.array([b * c, b * c, a * c, a * c, a * b, a * b])
    face = rng.choice(6, size=n, p=face_area / face_area.sum())
    points = rng.uniform(-1.0, 1.0, (n, 3)) * s
    axis = face // 2
    sign = np.where(face % 2 == 0, 1.0, -1.0)
    points[np.arange(n), axis] = sign * s[axis]
    return points


def _sample_cylinder(s, n, rng):
    r, h = s
    side, cap = 4.0 * np.pi * r * h, np.pi * r ** 2
    part = rng.choice(3, size=n, p=np.array([side, cap, cap]) / (side + 2 * cap))
    points = np.empty((n, 3))
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    points[:, 0], points[:, 1] = r * np.cos(phi), r * np.sin(phi)
    points[:, 2] = rng.uniform(-h, h, n)
    on_cap = part > 0
    x, y = _disk(int(on_cap.sum()), r, rng)
    points[on_cap, 0], points[on_cap, 1] = x, y
    points[on_cap, 2] = np.where(part[on_cap] == 1, h, -h)
    return points


def _sample_capsule(s, n, rng):
    r, h = s
    side, caps = 4.0 * np.pi * r * h, 4.0 * np.pi * r ** 2
    on_side = rng.random(n) < side / (side + caps)
    points = np.empty((n, 3))
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    points[:, 0], points[:, 1] = r * np.cos(phi), r * np.sin(phi)
    points[:, 2] = rng.uniform(-h, h, n)
    m = int((~on_side).sum())
    sphere = r * _unit_sphere(m, rng)
    sphere[:, 2] += np.where(sphere[:, 2] >= 0, h, -h)
    points[~on_side] = sphere
    return points


def _sample_ellipsoid(s, n, rng):
    # Map the unit sphere by diag(s); the area element scales with |u / s|, so accepting with
    # probability |u / s| * min(s) makes the result exactly uniform on the ellipsoid.
    out, have = [], 0
    while have < n:
        u = _unit_sphere(max(2 * (n - have), 64), rng)
        accept = rng.random(len(u)) < np.linalg.norm(u / s, axis=1) * s.min()
        out.append(u[accept] * s)
        have += int(accept.sum())
    return np.concatenate(out)[:n]


_SAMPLERS = {
    'box': _sample_box,
    'sphere': lambda s, n, rng: s[0] * _unit_sphere(n, rng),
    'cylinder': _sample_cylinder,
    'capsule': _sample_capsule,
    'ellipsoid': _sample_ellipsoid,
}


def _as_rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def sample_primitive_surface(kind, size, n, rng=None):
    """`n` points uniform over a primitive's surface, in its local frame, (n, 3) float64."""
    kind, s = _kind_and_size(kind, size)
    return _SAMPLERS[kind](s, int(n), _as_rng(rng))


def sample_object_points(primitives, n=2048, rng=None):
    """Sample `n` points uniformly over the union of primitive surfaces (world frame).

    Args:
        primitives: list of `(kind, size, T_world_geom)`: kind in `PRIMITIVES` (or a MuJoCo
            mjtGeom int), size as MuJoCo's geom size, T_world_geom the 4x4 geom-to-world pose.
        n: number of points.
        rng: `np.random.Generator`, seed, or None.

    Returns:
        (n, 3) float32, shuffled; each primitive gets a multinomial share proportional to its
        area (interior overlaps between primitives are not removed).
    """
    if len(primitives) == 0:
        raise ValueError('primitives must hold at least one (kind, size, T_world_geom)')
    if int(n) != n or n < 0:
        raise ValueError(f'n must be a non-negative integer, got {n!r}')
    rng = _as_rng(rng)
    parsed, areas = [], []
    for i, item in enumerate(primitives):
        if len(item) != 3:
            raise ValueError(f'primitives[{i}] must be (kind, size, T_world_geom), got {item!r}')
        kind, size = _kind_and_size(item[0], item[1])
        T = np.asarray(item[2], np.float64)
        if T.shape != (4, 4):
            raise ValueError(f'primitives[{i}] T_world_geom must be 4x4, got {T.shape}')
        parsed.append((kind, size, T))
        areas.append(primitive_area(kind, size))
    areas = np.asarray(areas)
    counts = rng.multinomial(int(n), areas / areas.sum())
    chunks = []
    for (kind, size, T), count in zip(parsed, counts):
        if count:
            local = _SAMPLERS[kind](size, int(count), rng)
            chunks.append(local @ T[:3, :3].T + T[:3, 3])
    points = np.concatenate(chunks) if chunks else np.zeros((0, 3))
    return points[rng.permutation(len(points))].astype(np.float32)
