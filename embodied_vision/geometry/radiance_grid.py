"""Radiance/opacity grids in NeRF-MAE's format, fused from posed RGB-D views.

NeRF-MAE (Irshad et al., ECCV 2024, arXiv 2404.01300, github.com/zubair-irshad/NeRF-MAE) and
NeRF-RPN store one `.npz` per scene with `rgbsigma` (X, Y, Z, 4) (world z up; RGB in [0, 1],
density sigma raw), `resolution` (3,), `bbox_min` and `bbox_max`. The longest box side gets
`max_resolution` samples and the other sides proportionally fewer (rounded). The model input is
channel-first (4, X, Y, Z): RGB plus alpha = 1 - exp(-act(sigma) / 100), zero-padded at the
high-index end to 160^3.

Our grids use the ReLU density convention (NeRF-MAE's ScanNet grids, `act = max(sigma, 0)`),
so empty space is exactly 0; grids exported from Instant-NGP use `act = exp`
(`density_activation='exp'`).
"""
# K, R, T (intrinsics, rotation, pose) follow camera-geometry notation
# ruff: noqa: N803, N806
from dataclasses import dataclass
import os

import numpy as np

__all__ = ['RadianceGrid', 'fuse_radiance_grid', 'grid_resolution', 'alpha_to_density',
           'density_to_alpha']

DENSITY_ACTIVATIONS = ('relu', 'exp')
STEP = 0.01  # NeRF-MAE's dummy step length: alpha = 1 - exp(-density * 0.01)
MAX_ALPHA = 0.99  # alpha of a voxel that every view observes as surface


def density_to_alpha(sigma, activation='relu'):
    """NeRF-MAE's `--normalize_density`: alpha = clip(1 - exp(-act(sigma) / 100), 0, 1)."""
    sigma = np.asarray(sigma, dtype=np.float32)
    if activation == 'relu':
        density = np.maximum(sigma, 0)
    elif activation == 'exp':
        density = np.exp(sigma)
    else:
        raise ValueError(f'density activation must be one of {DENSITY_ACTIVATIONS}, '
                         f'got {activation!r}')
    return np.clip(1.0 - np.exp(-density * STEP), 0.0, 1.0).astype(np.float32)


def alpha_to_density(alpha):
    """Inverse of `density_to_alpha` for the ReLU convention (alpha < 1)."""
    alpha = np.clip(np.asarray(alpha, dtype=np.float64), 0.0, MAX_ALPHA)
    return (-np.log1p(-alpha) / STEP).astype(np.float32)


def grid_resolution(bbox_min, bbox_max, max_resolution=160):
    """Samples per axis: the longest side gets `max_resolution`, others scale (rounded, >= 1)."""
    extent = np.asarray(bbox_max, np.float64) - np.asarray(bbox_min, np.float64)
    if extent.shape != (3,) or not np.all(np.isfinite(extent)) or np.any(extent <= 0):
        raise ValueError(f'bbox_max - bbox_min must be three positive finite sizes, '
                         f'got {extent.tolist()}')
    if int(max_resolution) != max_resolution or max_resolution < 1:
        raise ValueError(f'max_resolution must be a positive integer, got {max_resolution!r}')
    res = np.rint(extent / extent.max() * max_resolution).astype(np.int64)
    return np.clip(res, 1, int(max_resolution))


@dataclass
class RadianceGrid:
    """A dense RGB + density grid over an axis-aligned world box (NeRF-MAE's `.npz` format).

    Args:
        rgbsigma: (X, Y, Z, 4) float32; `[..., :3]` RGB in [0, 1], `[..., 3]` raw density.
            Index `[i, j, k]` is the sample at voxel centre `bbox_min + (i + 0.5, j + 0.5,
            k + 0.5) * spacing` (x, y, z order, world z up).
        bbox_min, bbox_max: (3,) world-frame corners of the box.
        resolution: (3,) int, equal to `rgbsigma.shape[:3]`.
        density_activation: 'relu' (ours, NeRF-MAE's ScanNet grids) or 'exp' (Instant-NGP).
    """

    rgbsigma: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray
    resolution: np.ndarray
    density_activation: str = 'relu'

    def __post_init__(self):
        grid = np.asarray(self.rgbsigma)
        if grid.ndim != 4 or grid.shape[-1] != 4:
            raise ValueError(f'rgbsigma must have shape (X, Y, Z, 4), got {grid.shape}')
        if grid.dtype == np.uint8:
            grid = grid.astype(np.float32) / 255.0  # NeRF-MAE divides uint8 grids by 255
        self.rgbsigma = grid.astype(np.float32, copy=False)
        self.bbox_min = np.asarray(self.bbox_min, np.float64).reshape(-1)
        self.bbox_max = np.asarray(self.bbox_max, np.float64).reshape(-1)
        self.resolution = np.asarray(self.resolution, np.int64).reshape(-1)
        if self.bbox_min.shape != (3,) or self.bbox_max.shape != (3,):
            raise ValueError(f'bbox_min and bbox_max must have shape (3,), got '
                             f'{self.bbox_min.shape} and {self.bbox_max.shape}')
        if np.any(self.bbox_max <= self.bbox_min):
            raise ValueError(f'bbox_max must exceed bbox_min on every axis, got '
                             f'{self.bbox_min.tolist()} and {self.bbox_max.tolist()}')
        if tuple(self.resolution) != grid.shape[:3]:
            raise ValueError(f'resolution {self.resolution.tolist()} must equal '
                             f'rgbsigma.shape[:3] {list(grid.shape[:3])}')
        if self.density_activation not in DENSITY_ACTIVATIONS:
            raise ValueError(f'density_activation must be one of {DENSITY_ACTIVATIONS}, '
                             f'got {self.density_activation!r}')

    @property
    def spacing(self):
        """(3,) voxel size per axis in metres."""
        return (self.bbox_max - self.bbox_min) / self.resolution

    def axes(self):
        """Voxel-centre coordinates along x, y and z (three 1D float64 arrays)."""
        return tuple(self.bbox_min[a] + (np.arange(self.resolution[a]) + 0.5) * self.spacing[a]
                     for a in range(3))

    @property
    def alpha(self):
        """(X, Y, Z) opacity in [0, 1] as NeRF-MAE's `--normalize_density` computes it."""
        return density_to_alpha(self.rgbsigma[..., 3], self.density_activation)

    def to_tensor(self, pad_to=None):
        """(4, X, Y, Z) float32 torch tensor: RGB + alpha, the model's input channels.

        Args:
            pad_to: optional int (160 for NeRF-MAE): zero-pad every axis at the high-index
                end to this size; a larger grid raises ValueError.
        """
        import torch

        data = np.concatenate([self.rgbsigma[..., :3], self.alpha[..., None]], axis=-1)
        tensor = torch.from_numpy(np.ascontiguousarray(data.transpose(3, 0, 1, 2)))
        if pad_to is None:
            return tensor
        if any(int(r) > pad_to for r in self.resolution):
            raise ValueError(f'resolution {self.resolution.tolist()} exceeds pad_to={pad_to}')
        out = tensor.new_zeros((4, pad_to, pad_to, pad_to))
        out[:, :tensor.shape[1], :tensor.shape[2], :tensor.shape[3]] = tensor
        return out

    def save_npz(self, path, compressed=True):
        """Write NeRF-MAE's keys: rgbsigma, resolution, bbox_min, bbox_max."""
        save = np.savez_compressed if compressed else np.savez
        save(os.fspath(path), rgbsigma=self.rgbsigma, resolution=self.resolution,
             bbox_min=self.bbox_min, bbox_max=self.bbox_max)

    @classmethod
    def load_npz(cls, path, density_activation='relu'):
        """Read a NeRF-MAE/NeRF-RPN `.npz`; extra keys (scale, offset, ...) are ignored."""
        with np.load(os.fspath(path)) as data:
            missing = [k for k in ('rgbsigma', 'bbox_min', 'bbox_max') if k not in data]
            if missing:
                raise ValueError(f'{path} is not a radiance grid: missing keys {missing}; '
                                 f'expected rgbsigma, resolution, bbox_min, bbox_max')
            rgbsigma = data['rgbsigma']
            resolution = data['resolution'] if 'resolution' in data else rgbsigma.shape[:3]
            return cls(rgbsigma, data['bbox_min'], data['bbox_max'], resolution,
                       density_activation)


def _accumulate_view(view, index, centres, thickness, acc):
    """Project every voxel centre into one view and update the hit/free/colour counters."""
    depth = np.asarray(view['depth'], dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f'views[{index}]["depth"] must have shape (H, W), got {depth.shape}')
    height, width = depth.shape
    K = np.asarray(view['K'], np.float64)
    T = np.asarray(view['T_world_cam'], np.float64)
    if K.shape != (3, 3) or T.shape != (4, 4):
        raise ValueError(f'views[{index}] needs K (3, 3) and T_world_cam (4, 4), got '
                         f'{K.shape} and {T.shape}')
    rgb = view.get('rgb')
    if rgb is not None:
        rgb = np.asarray(rgb).reshape(-1, 3)
        if len(rgb) != depth.size:
            raise ValueError(f'views[{index}]["rgb"] must have shape {depth.shape + (3,)}')
    R, t = T[:3, :3], T[:3, 3]
    # pixel-homogeneous coordinates q = K R^T (p - t), separable over the three grid axes
    M = K @ R.T
    c = -M @ t
    flat_depth = depth.reshape(-1)
    xs, ys, zs = centres
    chunk = max(1, (1 << 21) // (len(ys) * len(zs)))
    for start in range(0, len(xs), chunk):
        x = xs[start:start + chunk, None, None]
        q = [(M[r, 0] * x + (M[r, 1] * ys[:, None] + M[r, 2] * zs + c[r])).astype(np.float32)
             for r in range(3)]
        z = q[2]
        with np.errstate(divide='ignore', invalid='ignore'):
            u = np.rint(q[0] / z)
            v = np.rint(q[1] / z)
            inside = (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        pix = np.where(inside, v * width + u, 0).astype(np.int64)
        observed = flat_depth[pix]
        with np.errstate(invalid='ignore'):
            diff = observed - z  # > 0: the voxel lies in front of the observed surface
            hit = inside & (np.abs(diff) <= thickness)
            free = inside & (diff > thickness)
        sl = slice(start, start + chunk)
        acc['hits'][sl] += hit
        acc['free'][sl] += free
        if rgb is not None:
            idx = np.flatnonzero(hit)
            colours = acc['colour'][sl].reshape(-1, 3)
            counts = acc['colour_count'][sl].reshape(-1)
            colours[idx] += rgb[pix.reshape(-1)[idx]]  # idx is unique within a view
            counts[idx] += 1


def fuse_radiance_grid(views, bbox_min, bbox_max, max_resolution=160, surface_thickness=None):
    """Fuse posed RGB-D views into a `RadianceGrid` by projecting voxel centres into each view.

    Method (a vectorised projective TSDF-style vote, no ray marching): every voxel centre is
    projected into every view and compared with the depth at its nearest pixel. With
    `d = observed_depth - voxel_depth` and band `tau = surface_thickness`:

    - `|d| <= tau`: a *hit*; it adds the pixel's colour to the voxel's mean colour;
    - `d > tau`: the view sees *free space* through the voxel;
    - `d < -tau`, outside the image, behind the camera, or NaN/zero depth: no information.

    `alpha = 0.99 * hits / (hits + free)` (0 for voxels never hit, so free space and unseen
    voxels are exactly 0); density follows the ReLU convention `sigma = -100 ln(1 - alpha)`.
    Voxels never hit keep RGB 0. An infinite depth counts as free space along the whole ray.

    Args:
        views: list of dicts `depth` (H, W) metres, `K` (3, 3), `T_world_cam` (4, 4)
            camera-to-world (OpenCV camera frame), optional `rgb` (H, W, 3) uint8.
        bbox_min, bbox_max: (3,) world box of the grid.
        max_resolution: samples along the longest side (NeRF-MAE: 160).
        surface_thickness: half-width `tau` of the surface band in metres; default one voxel
            (the largest spacing), so that each surface is at least one voxel thick.

    Returns:
        `RadianceGrid` with density_activation 'relu'.
    """
    if len(views) == 0:
        raise ValueError('views must hold at least one view dict (depth, K, T_world_cam)')
    for i, view in enumerate(views):
        if not isinstance(view, dict) or not {'depth', 'K', 'T_world_cam'} <= set(view):
            raise ValueError(f'views[{i}] must be a dict with depth, K, T_world_cam '
                             f'(rgb optional)')
    bbox_min = np.asarray(bbox_min, np.float64).reshape(-1)
    bbox_max = np.asarray(bbox_max, np.float64).reshape(-1)
    res = grid_resolution(bbox_min, bbox_max, max_resolution)
    spacing = (bbox_max - bbox_min) / res
    thickness = float(spacing.max()) if surface_thickness is None else float(surface_thickness)
    if not thickness > 0:
        raise ValueError(f'surface_thickness must be positive, got {surface_thickness!r}')
    centres = [bbox_min[a] + (np.arange(res[a]) + 0.5) * spacing[a] for a in range(3)]
    shape = tuple(int(r) for r in res)
    acc = {
        'hits': np.zeros(shape, np.uint16),
        'free': np.zeros(shape, np.uint16),
        'colour': np.zeros(shape + (3,), np.float32),
        'colour_count': np.zeros(shape, np.uint16),
    }
    for i, view in enumerate(views):
        _accumulate_view(view, i, centres, thickness, acc)
    hits = acc['hits'].astype(np.float32)
    seen = hits + acc['free']
    alpha = np.divide(MAX_ALPHA * hits, seen, out=np.zeros_like(hits), where=hits > 0)
    rgbsigma = np.zeros(shape + (4,), np.float32)
    counts = acc['colour_count'][..., None].astype(np.float32)
    np.divide(acc['colour'], 255.0 * counts, out=rgbsigma[..., :3], where=counts > 0)
    rgbsigma[..., 3] = alpha_to_density(alpha)
    return RadianceGrid(rgbsigma, bbox_min, bbox_max, res)
