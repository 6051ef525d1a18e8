"""Camera poses matched to image stamps, in pure Python (no rclpy): `PoseBuffer`.

tf2 has no PyPI wheel, so `voxel_node` takes the camera pose on a topic (PoseStamped or
TransformStamped of the camera's optical frame in the world frame). `rigid_from_pose` turns
either message into a checked 4x4 camera-to-world matrix.

`PoseBuffer` keeps the newest poses (stamp order) and looks a view's pose up at the view's
stamp like tf2's `MessageFilter` does: a view waits until a pose stamped at or after it has
arrived (poses and images travel on different topics, so the pose of a frame may come after
the frame), then takes the nearest pose in stamp. That pose must be at most `max_age`
seconds from the view's stamp, else the view is `stale_pose`. At most `max_waiting` views
wait; beyond that the oldest is decided with the poses there are (`missing_pose` when none
ever arrived). A pose stamped before the newest one means time jumped back (a bag loop): the
buffer is flushed. The class is thread-safe.
"""
from bisect import bisect_left
from collections import deque
import threading

import numpy as np

from embodied_vision.geometry.rotations import quat_to_matrix

__all__ = ['PoseBuffer', 'rigid_from_pose']

_UNIT_TOLERANCE = 1e-3  # |q| may drift this far from 1 (float32 serialisation, relays)


def rigid_from_pose(msg) -> np.ndarray:
    """PoseStamped or TransformStamped -> (4, 4) float64 rigid transform.

    Raises ValueError for NaN/inf values or a quaternion that is not unit length within
    1e-3 (such a pose is not a rotation plus translation).
    """
    if hasattr(msg, 'transform'):
        t, q = msg.transform.translation, msg.transform.rotation
    else:
        t, q = msg.pose.position, msg.pose.orientation
    translation = np.array([t.x, t.y, t.z], np.float64)
    quat = np.array([q.w, q.x, q.y, q.z], np.float64)
    if not (np.all(np.isfinite(translation)) and np.all(np.isfinite(quat))):
        raise ValueError(f'pose has NaN or inf: position {translation.tolist()}, '
                         f'quaternion (w, x, y, z) {quat.tolist()}')
    norm = float(np.linalg.norm(quat))
    if abs(norm - 1.0) > _UNIT_TOLERANCE:
        raise ValueError(f'pose is not rigid: quaternion (w, x, y, z) {quat.tolist()} has '
                         f'norm {norm:.6f}, expected 1')
    pose = np.eye(4)
    pose[:3, :3] = quat_to_matrix(quat)
    pose[:3, 3] = translation
    return pose


class PoseBuffer:
    """Poses by stamp and the views waiting for theirs.

    Args:
        max_age: largest distance in seconds between a view's stamp and its pose's.
        max_waiting: views kept while waiting for a pose at or after their stamp (>= 1).
        history: poses kept (the lookup window).

    `add_pose` and `add_view` return the views they decided, oldest first, as
    `(item, pose, reason, gap)`: `pose` the 4x4 matrix or None, `reason` '' or
    `stale_pose` / `missing_pose`, `gap` the stamp distance in seconds (None when no pose).
    """

    def __init__(self, max_age: float = 0.05, max_waiting: int = 3, history: int = 256):
        if int(max_waiting) != max_waiting or max_waiting < 1:
            raise ValueError(f'max_waiting must be an integer >= 1, got {max_waiting!r}')
        self.max_age = max_age
        self.max_waiting = int(max_waiting)
        self._stamps: deque[int] = deque(maxlen=int(history))
        self._poses: deque[np.ndarray] = deque(maxlen=int(history))
        self._waiting: deque[tuple[int, object]] = deque()
        self._lock = threading.Lock()
        self.time_jumps = 0

    @property
    def max_age(self) -> float:
        return self._max_age_ns / 1e9

    @max_age.setter
    def max_age(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f'max_age must be >= 0 seconds, got {seconds!r}')
        self._max_age_ns = round(seconds * 1e9)

    def pending(self) -> tuple[int, int]:
        """(poses kept, views waiting)."""
        with self._lock:
            return len(self._stamps), len(self._waiting)

    def reset(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._poses.clear()
            self._waiting.clear()

    def add_pose(self, stamp: int, pose: np.ndarray) -> list[tuple]:
        """File a pose stamped `stamp` (ns); decide the views it lets through."""
        stamp = int(stamp)
        with self._lock:
            if self._stamps and stamp < self._stamps[-1]:
                self.time_jumps += 1
                self._stamps.clear()
                self._poses.clear()
            if self._stamps and stamp == self._stamps[-1]:
                self._poses[-1] = pose  # a repeated stamp: the newer message wins
            else:
                self._stamps.append(stamp)
                self._poses.append(pose)
            decided = []
            while self._waiting and self._waiting[0][0] <= stamp:
                view_stamp, item = self._waiting.popleft()
                decided.append((item, *self._lookup(view_stamp)))
            return decided

    def add_view(self, stamp: int, item) -> list[tuple]:
        """Queue a view stamped `stamp` (ns); decided now when the poses already reach it."""
        stamp = int(stamp)
        with self._lock:
            if self._stamps and self._stamps[-1] >= stamp:
                return [(item, *self._lookup(stamp))]
            self._waiting.append((stamp, item))
            decided = []
            while len(self._waiting) > self.max_waiting:
                view_stamp, old = self._waiting.popleft()
                decided.append((old, *self._lookup(view_stamp)))
            return decided

    def _lookup(self, stamp: int) -> tuple[np.ndarray | None, str, float | None]:
        """The pose nearest to `stamp` if within max_age (lock held)."""
        if not self._stamps:
            return None, 'missing_pose', None
        stamps = self._stamps
        index = bisect_left(stamps, stamp)
        candidates = [i for i in (index - 1, index) if 0 <= i < len(stamps)]
        best = min(candidates, key=lambda i: abs(stamps[i] - stamp))
        gap = abs(stamps[best] - stamp)
        if gap > self._max_age_ns:
            return None, 'stale_pose', gap / 1e9
        return self._poses[best], '', gap / 1e9
