"""Unit quaternions (w, x, y, z), the MuJoCo and proprioception convention, as rotations."""
import numpy as np

__all__ = ['quat_to_matrix']


def quat_to_matrix(quat) -> np.ndarray:
    """`(..., 4)` unit quaternions (w, x, y, z) -> `(..., 3, 3)` rotation matrices.

    Quaternions are normalised first, so slightly drifted inputs are accepted; a zero
    quaternion raises ValueError.
    """
    q = np.asarray(quat, dtype=np.float64)
    if q.shape[-1] != 4:
        raise ValueError(f'quaternions must have 4 components (w, x, y, z), got {q.shape}')
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise ValueError('zero-norm quaternion')
    w, x, y, z = np.moveaxis(q / norm, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)
