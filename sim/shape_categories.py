"""Procedural object categories built from MuJoCo primitives (box, cylinder, capsule, ...).

Each category is a generator `fn(rng) -> [(kind, size, T_object_part), ...]` that draws
proportions and part counts from a seeded `np.random.Generator` (legs 3 or 4, slats, lids,
handles of two styles, ...), so two instances differ and a seed reproduces one exactly.
Sizes are MuJoCo `geom size`s (see `embodied_vision.geometry.sampling`); the object frame is
MuJoCo's: z up, front along +x, resting on z = 0 (`make_shape` shifts it there). Absolute
sizes are only plausible, not meaningful: the datasets normalise every cloud.

Categories: mug, bowl, bottle, can, box, table, chair, lamp, carrot, plate, shelf, airplane
(bowl, can, box/cube, carrot and plate are the objects of the tabletop suite).
"""
# R, T (rotations, poses) follow geometry notation
# ruff: noqa: N806
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embodied_vision.geometry.primitives import primitives_extent

__all__ = ['CATEGORIES', 'Part', 'Shape', 'category_names', 'make_shape', 'place_parts']

#: `(kind, size, T)`: a primitive, its MuJoCo size and its 4x4 pose.
Part = tuple[str, np.ndarray, np.ndarray]
_AXES = np.eye(3)


# ------------------------------------------------------------------------- building blocks
def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _part(kind: str, size, position=(0.0, 0.0, 0.0), rotation=None) -> Part:
    T = np.eye(4)
    if rotation is not None:
        T[:3, :3] = rotation
    T[:3, 3] = position
    return kind, np.asarray(size, np.float64), T


def _segment(kind: str, start, end, radius: float) -> Part:
    """A cylinder or capsule whose axis runs from `start` to `end`."""
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    z = end - start
    length = float(np.linalg.norm(z))
    z /= length
    x = np.cross(_AXES[0] if abs(z[0]) < 0.9 else _AXES[1], z)
    x /= np.linalg.norm(x)
    rotation = np.stack([x, np.cross(z, x), z], axis=1)
    return _part(kind, (radius, length / 2), (start + end) / 2, rotation)


def _wall(n: int, profile, thickness: float, centre=(0.0, 0.0)) -> list[Part]:
    """An open surface of revolution about z from `n` boxes per profile stage.

    `profile` is `[(radius, z), ...]` along the wall's mid-surface; each stage between two
    profile points is a ring of flat boxes, tilted to follow it, that overlap slightly.
    """
    parts = []
    for (r0, z0), (r1, z1) in zip(profile[:-1], profile[1:]):
        length, tilt = np.hypot(r1 - r0, z1 - z0), np.arctan2(r1 - r0, z1 - z0)
        half_width = (max(r0, r1) + thickness / 2) * np.tan(np.pi / n) * 1.02
        for k in range(n):
            phi = 2 * np.pi * k / n
            mid = (r0 + r1) / 2
            position = (centre[0] + mid * np.cos(phi), centre[1] + mid * np.sin(phi),
                        (z0 + z1) / 2)
            parts.append(_part('box', (thickness / 2, half_width, length / 2), position,
                               _rot_z(phi) @ _rot_y(tilt)))
    return parts


def _legs(rng, corners, top_z: float, radius: float, splay: float = 0.0) -> list[Part]:
    """Legs from the floor to `top_z` under `corners` (x, y), boxes or cylinders."""
    kind = 'box' if rng.random() < 0.5 else 'cylinder'
    parts = []
    for x, y in corners:
        out = np.array([x, y]) / max(np.hypot(x, y), 1e-9) * splay * top_z
        foot, head = (x + out[0], y + out[1], 0.0), (x, y, top_z)
        if kind == 'cylinder':
            parts.append(_segment('cylinder', foot, head, radius))
        else:
            parts.append(_part('box', (radius, radius, top_z / 2), (x, y, top_z / 2)))
    return parts


def _rectangle(a: float, b: float) -> list[tuple[float, float]]:
    return [(sx * a, sy * b) for sx in (1, -1) for sy in (1, -1)]


def _circle(n: int, radius: float, phase: float) -> list[tuple[float, float]]:
    angles = phase + 2 * np.pi * np.arange(n) / n
    return [(radius * np.cos(a), radius * np.sin(a)) for a in angles]


# ------------------------------------------------------------------------- categories
def _mug(rng) -> list[Part]:
    R, t = rng.uniform(0.035, 0.05), rng.uniform(0.003, 0.006)
    H, top = R * rng.uniform(1.6, 2.6), R * rng.uniform(1.0, 1.12)
    parts = [_part('cylinder', (R + t / 2, t / 2), (0, 0, t / 2))]
    parts += _wall(int(rng.choice([12, 16])), [(R, t), (top, H)], t)
    z_lo, z_hi = H * rng.uniform(0.15, 0.35), H * rng.uniform(0.65, 0.85)
    x_lo, x_hi = (R + (top - R) * z / H + t / 2 for z in (z_lo, z_hi))
    reach, r = R * rng.uniform(0.45, 0.8), rng.uniform(0.004, 0.008)
    if rng.random() < 0.5:  # squared handle
        corners = [(x_lo, 0, z_lo), (x_lo + reach, 0, z_lo), (x_hi + reach, 0, z_hi),
                   (x_hi, 0, z_hi)]
    else:  # rounded handle: half an ellipse
        angles = np.linspace(-np.pi / 2, np.pi / 2, 6)
        x0, z0, dz = (x_lo + x_hi) / 2, (z_lo + z_hi) / 2, (z_hi - z_lo) / 2
        corners = [(x0 + reach * np.cos(a), 0, z0 + dz * np.sin(a)) for a in angles]
    return parts + [_segment('capsule', p, q, r) for p, q in zip(corners[:-1], corners[1:])]


def _bowl(rng) -> list[Part]:
    R, t = rng.uniform(0.06, 0.1), rng.uniform(0.003, 0.006)
    H, rb = R * rng.uniform(0.35, 0.6), R * rng.uniform(0.35, 0.6)
    n = int(rng.choice([12, 16, 20]))
    mid = (rb + (R - rb) * rng.uniform(0.55, 0.8), H * rng.uniform(0.3, 0.5))
    parts = [_part('cylinder', (rb + t / 2, t / 2), (0, 0, t / 2))]
    parts += _wall(n, [(rb, t), mid, (R, H)], t)
    if rng.random() < 0.5:  # foot ring
        parts += _wall(n, [(rb * 0.75, -0.1 * H), (rb * 0.8, t / 2)], t)
    return parts


def _bottle(rng) -> list[Part]:
    R, square = rng.uniform(0.028, 0.045), rng.random() < 0.25
    Hb, hs = R * rng.uniform(2.8, 5.0), R * rng.uniform(0.3, 0.8)
    depth = R * rng.uniform(0.6, 1.0) if square else R
    body = (_part('box', (R, depth, Hb / 2), (0, 0, Hb / 2)) if square
            else _part('cylinder', (R, Hb / 2), (0, 0, Hb / 2)))
    rn, Ln = R * rng.uniform(0.28, 0.45), R * rng.uniform(0.8, 2.0)
    neck_top = Hb + hs + Ln
    rc, hc = rn * rng.uniform(1.08, 1.3), R * rng.uniform(0.25, 0.5)
    return [body, _part('ellipsoid', (R, depth, hs), (0, 0, Hb)),
            _segment('cylinder', (0, 0, Hb + 0.7 * hs), (0, 0, neck_top), rn),
            _part('cylinder', (rc, hc / 2), (0, 0, neck_top + hc / 2))]


def _can(rng) -> list[Part]:
    R = rng.uniform(0.025, 0.05)
    h, lip = R * rng.uniform(0.6, 2.2), R * rng.uniform(0.04, 0.08)
    parts = [_part('cylinder', (R, h), (0, 0, h)),
             _part('cylinder', (R * rng.uniform(0.9, 0.97), lip), (0, 0, 2 * h + lip))]
    if rng.random() < 0.5:
        parts.append(_part('cylinder', (R * rng.uniform(0.85, 0.95), lip), (0, 0, -lip)))
    return parts


def _box(rng) -> list[Part]:
    a, b, c = 0.05 * rng.uniform(0.5, 1.5, 3)
    parts = [_part('box', (a, b, c), (0, 0, c))]
    if rng.random() < 0.5:  # a lid, slightly larger than the box
        lid, rim = c * rng.uniform(0.08, 0.2), min(a, b) * rng.uniform(0.03, 0.1)
        parts.append(_part('box', (a + rim, b + rim, lid), (0, 0, 2 * c + 0.5 * lid)))
    return parts


def _table(rng) -> list[Part]:
    H, t = rng.uniform(0.55, 0.8), rng.uniform(0.02, 0.05)
    under, leg = H - t, rng.uniform(0.02, 0.045)
    splay = rng.uniform(0.0, 0.12)
    if rng.random() < 0.65:  # rectangular top, four legs, maybe an apron
        a = rng.uniform(0.35, 0.8)
        b = a * rng.uniform(0.45, 1.0)
        parts = [_part('box', (a, b, t / 2), (0, 0, H - t / 2))]
        inset = rng.uniform(1.2, 3.0) * leg
        parts += _legs(rng, _rectangle(a - inset, b - inset), under, leg, splay)
        if rng.random() < 0.5:
            depth = rng.uniform(0.04, 0.1)
            for x, y, sx, sy in ((a - inset, 0, leg / 2, b - inset), (inset - a, 0, leg / 2,
                                 b - inset), (0, b - inset, a - inset, leg / 2),
                                 (0, inset - b, a - inset, leg / 2)):
                parts.append(_part('box', (sx, sy, depth / 2), (x, y, under - depth / 2)))
        return parts
    R = rng.uniform(0.3, 0.6)
    parts = [_part('cylinder', (R, t / 2), (0, 0, H - t / 2))]
    style = rng.choice(['three', 'four', 'pedestal'])
    if style == 'pedestal':
        base = R * rng.uniform(0.35, 0.6)
        return parts + [_part('cylinder', (rng.uniform(0.04, 0.08), under / 2), (0, 0, under / 2)),
                        _part('cylinder', (base, 0.012), (0, 0, 0.012))]
    count = 3 if style == 'three' else 4
    corners = _circle(count, R * rng.uniform(0.55, 0.8), rng.uniform(0, np.pi))
    return parts + _legs(rng, corners, under, leg, splay)


def _chair(rng) -> list[Part]:
    hs, w = rng.uniform(0.4, 0.5), rng.uniform(0.2, 0.3)
    d, ts, leg = w * rng.uniform(0.85, 1.2), rng.uniform(0.02, 0.05), rng.uniform(0.015, 0.03)
    parts = [_part('box', (d, w, ts / 2), (0, 0, hs))]
    if rng.random() < 0.2:  # swivel chair: column and star base
        parts.append(_part('cylinder', (0.03, (hs - ts / 2) / 2), (0, 0, (hs - ts / 2) / 2)))
        reach = rng.uniform(0.8, 1.1) * w
        parts += [_segment('capsule', (0, 0, 0.03), (x, y, 0.02), 0.018)
                  for x, y in _circle(5, reach, rng.uniform(0, np.pi))]
    else:
        inset = 1.5 * leg
        parts += _legs(rng, _rectangle(d - inset, w - inset), hs - ts / 2, leg,
                       rng.uniform(0.0, 0.06))
    hb, tilt, tb = rng.uniform(0.3, 0.55), np.deg2rad(rng.uniform(0, 15)), rng.uniform(0.02, 0.04)
    R, foot = _rot_y(-tilt), np.array([-d + tb / 2, 0.0, hs + ts / 2])
    if rng.random() < 0.5:  # solid back
        parts.append(_part('box', (tb / 2, w, hb / 2), foot + R @ (0, 0, hb / 2), R))
    else:  # slats under a top rail
        rail = rng.uniform(0.04, 0.08)
        parts.append(_part('box', (tb / 2, w, rail / 2), foot + R @ (0, 0, hb - rail / 2), R))
        count = int(rng.integers(2, 6))
        slat = min(rng.uniform(0.015, 0.04), w / count)
        for y in np.linspace(-w + slat, w - slat, count):
            parts.append(_part('box', (tb / 2, slat, (hb - rail) / 2),
                               foot + R @ (0, y, (hb - rail) / 2), R))
    if rng.random() < 0.35:  # armrests
        height = hs + rng.uniform(0.18, 0.25)
        for y in (w - 0.02, 0.02 - w):
            parts.append(_part('box', (d * 0.9, 0.02, 0.015), (0, y, height)))
            parts.append(_part('box', (0.015, 0.015, (height - hs) / 2),
                               (d * 0.75, y, (hs + height) / 2)))
    return parts


def _lamp(rng) -> list[Part]:
    rb, hb = rng.uniform(0.06, 0.12), rng.uniform(0.01, 0.03)
    parts = [_part('box', (rb, rb, hb / 2), (0, 0, hb / 2)) if rng.random() < 0.3
             else _part('cylinder', (rb, hb / 2), (0, 0, hb / 2))]
    top = np.array([0.0, 0.0, hb + rng.uniform(0.3, 0.6)])
    pole = rng.uniform(0.008, 0.015)
    parts.append(_segment('capsule', (0, 0, hb), top, pole))
    if rng.random() < 0.4:  # bent arm; the shade hangs from its end
        angle, length = np.deg2rad(rng.uniform(-20, 30)), rng.uniform(0.15, 0.3)
        end = top + length * np.array([np.cos(angle), 0.0, np.sin(angle)])
        parts.append(_segment('capsule', top, end, pole))
        top = end
    style = rng.choice(['cone', 'cone', 'dome', 'globe'])
    r_top = rng.uniform(0.04, 0.08)
    if style == 'globe':
        return parts + [_part('sphere', (r_top * 1.3,), top + (0, 0, 0.8 * r_top))]
    if style == 'dome':
        return parts + [_part('ellipsoid', (r_top * 1.6, r_top * 1.6, r_top), top)]
    height = rng.uniform(0.1, 0.2)
    r_bottom = r_top * rng.uniform(1.4, 2.2)
    z_top = top[2] + rng.uniform(0.0, 0.4) * height
    return parts + _wall(12, [(r_bottom, z_top - height), (r_top, z_top)],
                         rng.uniform(0.003, 0.006), centre=top[:2])


def _carrot(rng) -> list[Part]:
    L, count = rng.uniform(0.08, 0.16), int(rng.integers(2, 5))
    r0 = L * rng.uniform(0.09, 0.15)
    radii = np.linspace(r0, r0 * rng.uniform(0.15, 0.3), count)
    heading, point, parts = 0.0, np.zeros(3), []
    for r in radii:
        heading += np.deg2rad(rng.uniform(-8, 8))
        nxt = point + L / count * np.array([np.cos(heading), np.sin(heading), 0.0])
        parts.append(_segment('capsule', point, nxt, r))
        point = nxt
    for angle in np.deg2rad(rng.uniform(-40, 40, int(rng.integers(2, 5)))):
        length = L * rng.uniform(0.2, 0.4)
        tip = length * np.array([-np.cos(angle), np.sin(angle), rng.uniform(0.1, 0.5)])
        base = np.array([-r0, 0.0, 0.0])
        parts.append(_segment('capsule', base, base + tip, rng.uniform(0.002, 0.004)))
    return parts


def _plate(rng) -> list[Part]:
    R, t = rng.uniform(0.08, 0.14), rng.uniform(0.004, 0.009)
    flat, rim = R * rng.uniform(0.55, 0.8), R * rng.uniform(0.06, 0.15)
    parts = [_part('cylinder', (flat + t / 2, t / 2), (0, 0, t / 2))]
    parts += _wall(int(rng.choice([16, 20, 24])), [(flat, t), (R, t + rim)], t)
    if rng.random() < 0.5:  # foot ring
        parts.append(_part('cylinder', (flat * rng.uniform(0.5, 0.7), t / 2), (0, 0, -t / 2)))
    return parts


def _shelf(rng) -> list[Part]:
    W, D, H = rng.uniform(0.25, 0.5), rng.uniform(0.12, 0.2), rng.uniform(0.8, 1.8)
    tb = rng.uniform(0.015, 0.03)
    parts = [_part('box', (D, tb / 2, H / 2), (0, y, H / 2)) for y in (W - tb / 2, tb / 2 - W)]
    lift = rng.uniform(0.0, 0.08)
    for z in np.linspace(lift + tb / 2, H - tb / 2, int(rng.integers(3, 7))):
        parts.append(_part('box', (D, W - tb, tb / 2), (0, 0, z)))
    if rng.random() < 0.6:  # back panel
        parts.append(_part('box', (tb / 4, W - tb, H / 2 - lift / 2), (-D + tb / 4, 0,
                                                                        (H + lift) / 2)))
    return parts


def _airplane(rng) -> list[Part]:
    L = rng.uniform(0.5, 0.7)
    r = L * rng.uniform(0.06, 0.1)
    x_axis = _rot_y(np.pi / 2)
    parts = [_part('capsule', (r, L - r), (0, 0, 0), x_axis)]
    span, chord = L * rng.uniform(0.8, 1.3), L * rng.uniform(0.15, 0.3)
    sweep, x_wing = np.deg2rad(rng.uniform(0, 35)), L * rng.uniform(-0.15, 0.15)
    z_wing, th = r * rng.choice([-0.6, 0.0, 0.6]), r * 0.3
    engines = int(rng.choice([0, 1, 2]))  # per wing
    for side in (1, -1):
        R = _rot_z(side * sweep)
        centre = np.array([x_wing, 0.0, z_wing]) + R @ (0, side * span / 2, 0)
        parts.append(_part('box', (chord / 2, span / 2, th / 2), centre, R))
        for k in range(engines):
            at = np.array([x_wing, 0.0, z_wing]) + R @ (0, side * span * (0.3 + 0.3 * k), 0)
            parts.append(_part('capsule', (r * 0.4, chord * 0.4), at + (0.2 * chord, 0,
                                                                      -r * 0.6), x_axis))
        tail = np.array([-0.85 * L, side * 0.2 * span, 0.3 * r])
        parts.append(_part('box', (chord / 4, 0.2 * span, th / 2), tail, R))
    fin = rng.uniform(0.15, 0.3) * L
    parts.append(_part('box', (chord / 3, th / 2, fin / 2), (-0.85 * L, 0, r + fin / 2 - 0.2 * r),
                       _rot_y(-sweep)))
    return parts


#: Category name -> generator, in label order of the full suite.
CATEGORIES: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    'mug': _mug, 'bowl': _bowl, 'bottle': _bottle, 'can': _can, 'box': _box,
    'table': _table, 'chair': _chair, 'lamp': _lamp, 'carrot': _carrot, 'plate': _plate,
    'shelf': _shelf, 'airplane': _airplane,
}


def category_names() -> list[str]:
    """Every category, in `CATEGORIES` order."""
    return list(CATEGORIES)


@dataclass(frozen=True)
class Shape:
    """One object instance.

    Args:
        category: its `CATEGORIES` name.
        parts: `(kind, size, T_object_part)` primitives; object frame z-up, front +x, resting
            on z = 0.
    """

    category: str
    parts: tuple

    def extent(self) -> np.ndarray:
        """(3, 2) exact min/max of the object along x, y, z."""
        return primitives_extent(self.parts, _AXES)


def place_parts(parts, scale: float = 1.0, yaw: float = 0.0, offset=(0.0, 0.0, 0.0)) -> tuple:
    """Parts scaled by `scale`, rotated by `yaw` about z, then moved by `offset`."""
    T = np.eye(4)
    T[:3, :3] = _rot_z(yaw)
    T[:3, 3] = offset
    placed = []
    for kind, size, pose in parts:
        local = pose.copy()
        local[:3, 3] *= scale
        placed.append((kind, size * scale, T @ local))
    return tuple(placed)


def make_shape(category: str, rng: np.random.Generator) -> Shape:
    """A random instance of `category`, resting on z = 0 and centred on z's axis."""
    if category not in CATEGORIES:
        raise ValueError(f'unknown category {category!r}; valid categories: {list(CATEGORIES)}')
    parts = CATEGORIES[category](rng)
    lo, hi = primitives_extent(parts, _AXES).T
    centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return Shape(category, place_parts(parts, offset=-centre))
