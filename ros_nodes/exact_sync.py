"""Exact-stamp pairing of the parts of one observation (image, pose, ...): `StampJoiner`.

All parts derive from one sim/camera frame and carry its header stamp, so they are joined on
equal stamps (for streams whose stamps only come close, see `approximate_sync.py`).
"""
import threading
import time

__all__ = ['StampJoiner']


class StampJoiner:
    """Joins the parts of one observation (image, pose, ...) that share a header stamp.

    `add` files a part under its stamp; once an entry holds every needed part it is returned
    (and removed) together with how many stale entries were dropped: incomplete entries older
    than a complete one, and the oldest ones beyond `max_pending`. Each entry starts as
    `{'first': arrival time, 'header': header, 'convert': 0.0}`; `convert_s` accumulates.
    """

    def __init__(self):
        self._pending: dict[tuple[int, int], dict] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pending)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def add(self, header, part: str, value, needed, max_pending: int,
            arrived: float | None = None, convert_s: float = 0.0) -> tuple[dict | None, int]:
        key = (header.stamp.sec, header.stamp.nanosec)
        first = time.perf_counter() if arrived is None else arrived
        dropped = 0
        with self._lock:
            entry = self._pending.setdefault(key, {'first': first, 'header': header,
                                                   'convert': 0.0})
            entry[part] = value
            entry['convert'] += convert_s
            if not set(needed) <= entry.keys():
                while len(self._pending) > max_pending:
                    del self._pending[min(self._pending)]
                    dropped += 1
                return None, dropped
            del self._pending[key]
            for older in [k for k in self._pending if k < key]:
                del self._pending[older]  # stale: this stamp is newer and complete
                dropped += 1
        return entry, dropped
