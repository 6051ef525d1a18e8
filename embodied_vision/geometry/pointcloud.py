"""Depth images to point clouds, projection, and multi-view fusion (numpy, vectorised).

Conventions: the camera frame is OpenCV's (x right, y down, z forward); `K` is the 3x3
intrinsic matrix; `T_world_cam` is the 4x4 camera-to-world pose. Pixel `(row v, column u)`
sits at image coordinate `(u, v)`: integer coordinates are pixel centres, as in OpenCV.
"""
# K, R, T (intrinsics, rotation, pose) follow camera-geometry notation
# ruff: noqa: N803, N806
import numpy as np

__all__ = ['depth_to_points', 'project_points', 'fuse_views', 'transform_points',
           'voxel_downsample']


def _check_matrix(name, value, shape, allow_inf=False):
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f'{name} must have shape {shape}, got {array.shape}')
    if np.any(np.isnan(array)) or (not allow_inf and not np.all(np.isfinite(array))):
        raise ValueError(f'{name} must not contain NaN{"" if allow_inf else " or inf"}, '
                         f'got {array.tolist()}')
    return array


def _check_points(points, name='points'):
    array = np.asarray(points)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f'{name} must have shape (N, 3), got {array.shape}')
    return array


def transform_points(points, T):
    """Apply the rigid (or any affine) 4x4 transform `T` to `(N, 3)` points.

    Returns an array of the input's floating dtype (float64 for integer input).
    """
    points = _check_points(points)
    T = _check_matrix('T', T, (4, 4))
    dtype = points.dtype if np.issubdtype(points.dtype, np.floating) else np.float64
    out = points.astype(np.float64, copy=False) @ T[:3, :3].T + T[:3, 3]
    return out.astype(dtype, copy=False)


def depth_to_points(depth, K, rgb=None, T_world_cam=None, stride=1, min_depth=0.0,
                    max_depth=np.inf):
    """Back-project a metric depth image into 3D points.

    Args:
        depth: (H, W) depth in metres along the optical axis (z, not ray length).
        K: (3, 3) intrinsics.
        rgb: optional (H, W, 3) uint8 image aligned with `depth`.
        T_world_cam: optional (4, 4) camera-to-world pose; points are returned in the world
            frame when given, in the camera frame otherwise.
        stride: keep every `stride`-th row and column.
        min_depth, max_depth: pixels outside `[min_depth, max_depth]` are dropped, as are
            NaN, infinite, zero and negative depths.

    Returns:
        `(points (N, 3) float32, colors (N, 3) uint8 or None)`, in row-major pixel order.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f'depth must have shape (H, W), got {depth.shape}')
    K = _check_matrix('K', K, (3, 3))
    if int(stride) != stride or stride < 1:
        raise ValueError(f'stride must be a positive integer, got {stride!r}')
    stride = int(stride)
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != depth.shape + (3,):
            raise ValueError(f'rgb must have shape {depth.shape + (3,)} to match depth, '
                             f'got {rgb.shape}')
    if K[0, 0] == 0 or K[1, 1] == 0:
        raise ValueError(f'K must have non-zero focal lengths, got {K.tolist()}')

    sub = depth[::stride, ::stride].astype(np.float32, copy=False)
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(sub) & (sub > 0) & (sub >= min_depth) & (sub <= max_depth)
    rows, cols = np.nonzero(valid)
    z = sub[rows, cols].astype(np.float64)
    v = rows.astype(np.float64) * stride
    u = cols.astype(np.float64) * stride
    fx, skew, cx = K[0]
    fy, cy = K[1, 1], K[1, 2]
    y = (v - cy) / fy
    x = (u - cx - skew * y) / fx
    points = np.stack([x * z, y * z, z], axis=1)
    if T_world_cam is not None:
        T = _check_matrix('T_world_cam', T_world_cam, (4, 4))
        points = points @ T[:3, :3].T + T[:3, 3]
    colors = None
    if rgb is not None:
        colors = np.ascontiguousarray(rgb[::stride, ::stride][rows, cols], dtype=np.uint8)
    return points.astype(np.float32), colors


def project_points(points_world, K, T_world_cam):
    """Project world points into a camera.

    Returns `(uv (N, 2), depth (N,))` as float64: pixel coordinates (OpenCV convention) and
    the camera-frame z. Points at or behind the camera (depth <= 0) get non-finite or
    meaningless `uv`; filter them with `depth > 0`.
    """
    points = _check_points(points_world, 'points_world').astype(np.float64, copy=False)
    K = _check_matrix('K', K, (3, 3))
    T = _check_matrix('T_world_cam', T_world_cam, (4, 4))
    R, t = T[:3, :3], T[:3, 3]
    cam = (points - t) @ R  # R^T (p - t), row-wise
    pix = cam @ K.T
    depth = cam[:, 2]
    with np.errstate(divide='ignore', invalid='ignore'):
        uv = pix[:, :2] / pix[:, 2:3]
    return uv, depth


def _check_bbox(bbox_min, bbox_max):
    if bbox_min is None and bbox_max is None:
        return None, None
    lo, hi = np.full(3, -np.inf), np.full(3, np.inf)
    if bbox_min is not None:
        lo = _check_matrix('bbox_min', bbox_min, (3,), allow_inf=True)
    if bbox_max is not None:
        hi = _check_matrix('bbox_max', bbox_max, (3,), allow_inf=True)
    if np.any(lo > hi):
        raise ValueError(f'bbox_min must be <= bbox_max, got {lo.tolist()} > {hi.tolist()}')
    return lo, hi


def _view_field(view, index, key):
    if not isinstance(view, dict):
        raise ValueError(f'views[{index}] must be a dict with depth, K, T_world_cam '
                         f'(rgb optional), got {type(view).__name__}')
    if key not in view:
        raise ValueError(f'views[{index}] is missing {key!r}; expected keys depth, K, '
                         f'T_world_cam (rgb optional), got {sorted(view)}')
    return view[key]


def voxel_downsample(points, voxel_size, colors=None, origin=None):
    """Average points (and colours) that fall into the same cubic voxel.

    Returns `(points (M, 3) float32, colors (M, 3) uint8 or None)`, one point per occupied
    voxel, ordered by voxel index.
    """
    points = _check_points(points)
    if not np.isfinite(voxel_size) or voxel_size <= 0:
        raise ValueError(f'voxel_size must be a positive finite number, got {voxel_size!r}')
    if len(points) == 0:
        return points.astype(np.float32), None if colors is None else np.zeros((0, 3), np.uint8)
    pts = points.astype(np.float64, copy=False)
    origin = pts.min(axis=0) if origin is None else np.asarray(origin, np.float64)
    keys = np.floor((pts - origin) / voxel_size).astype(np.int64)
    keys -= keys.min(axis=0)
    dims = keys.max(axis=0) + 1
    flat = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    out = np.empty((len(counts), 3), np.float64)
    for axis in range(3):
        out[:, axis] = np.bincount(inverse, weights=pts[:, axis]) / counts
    out_colors = None
    if colors is not None:
        colors = np.asarray(colors)
        summed = np.stack([np.bincount(inverse, weights=colors[:, c]) for c in range(3)], 1)
        out_colors = np.clip(np.rint(summed / counts[:, None]), 0, 255).astype(np.uint8)
    return out.astype(np.float32), out_colors


def fuse_views(views, bbox_min=None, bbox_max=None, voxel_size=None, *, stride=1,
               max_depth=np.inf):
    """Fuse posed RGB-D views into one world-frame point cloud.

    Args:
        views: list of dicts with `depth` (H, W) metres, `K` (3, 3), `T_world_cam` (4, 4) and
            optionally `rgb` (H, W, 3) uint8. Colours are returned only when every view has
            `rgb`.
        bbox_min, bbox_max: optional (3,) world-frame crop box (inclusive); either may be None
            for an open side.
        voxel_size: if given, average points (and colours) per cubic voxel of this size, the
            grid anchored at `bbox_min` when given.
        stride, max_depth: passed to `depth_to_points`.

    Returns:
        `(points (N, 3) float32, colors (N, 3) uint8 or None)`.
    """
    if len(views) == 0:
        raise ValueError('views must hold at least one view dict (depth, K, T_world_cam)')
    lo, hi = _check_bbox(bbox_min, bbox_max)
    all_points, all_colors = [], []
    for i, view in enumerate(views):
        points, colors = depth_to_points(
            _view_field(view, i, 'depth'), _view_field(view, i, 'K'), rgb=view.get('rgb'),
            T_world_cam=_view_field(view, i, 'T_world_cam'), stride=stride,
            max_depth=max_depth)
        all_points.append(points)
        all_colors.append(colors)
    points = np.concatenate(all_points, axis=0)
    with_rgb = all(c is not None for c in all_colors)
    colors = np.concatenate(all_colors, axis=0) if with_rgb else None
    if lo is not None:
        keep = np.all((points >= lo) & (points <= hi), axis=1)
        points = points[keep]
        colors = None if colors is None else colors[keep]
    if voxel_size is not None:
        origin = None if lo is None or not np.all(np.isfinite(lo)) else lo
        points, colors = voxel_downsample(points, voxel_size, colors, origin=origin)
    return points, colors
