"""What flowed through a node: counts, bad input rejected with a throttled log, expected gaps.

`Accounting.count` keeps the counts diagnostics report (`received`, `published`, `dropped`,
`rejected`, plus node-specific keys such as `no_goal`); `reject` counts a bad input and logs
it at most once per `log_throttle_period` per kind, so a bad stream cannot flood the log, and
the node keeps running; `warn_throttled` does the same as a warning for expected gaps.
`colour_frame` decodes a camera frame or rejects it through an `Accounting`.
"""
from collections.abc import Callable
import threading
import time

import numpy as np

from embodied_vision.ros_nodes.conversions import COLOUR_ENCODINGS, image_to_numpy
from embodied_vision.ros_nodes.parameters import ParamSpec

__all__ = ['ACCOUNTING_PARAMETERS', 'Accounting', 'colour_frame']

ACCOUNTING_PARAMETERS = (
    ParamSpec('log_throttle_period', 2.0,
              'seconds between two error logs of the same kind of bad input',
              low=0.0, high=3600.0),
)


class Accounting:
    """Thread-safe counts and throttled logs of one node.

    Args:
        logger: the node's logger (`error` for rejections, `warning` for gaps).
        throttle_period: returns the current `log_throttle_period` in seconds.
    """

    def __init__(self, logger, throttle_period: Callable[[], float]):
        self._logger, self._period = logger, throttle_period
        self._lock = threading.Lock()
        self._counts = {'received': 0, 'published': 0, 'dropped': 0, 'rejected': 0}
        self._throttle: dict = {}
        self._reasons: dict[str, int] = {}
        self.last_rejection = ''  # '<key>: <message>' of the latest bad input; '' = none

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[what] = self._counts.get(what, 0) + n

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def rejections(self) -> dict[str, int]:
        """Rejections so far per reason (`reject`'s key)."""
        with self._lock:
            return dict(self._reasons)

    def reject(self, key: str, message: str) -> None:
        """Count a bad input and log it, at most once per `log_throttle_period` per key."""
        self.count('rejected')
        with self._lock:
            self._reasons[key] = self._reasons.get(key, 0) + 1
        self.last_rejection = f'{key}: {message}'
        suppressed = self._due(key)
        if suppressed is None:
            return
        more = f' ({suppressed} similar since the last report)' if suppressed else ''
        self._logger.error(f'dropped bad input [{key}]: {message}{more}')

    def warn_throttled(self, key: str, message: str) -> None:
        """Count `key` and log `message` as a warning at most once per
        `log_throttle_period` (for expected gaps, e.g. no goal or CameraInfo yet)."""
        self.count(key)
        suppressed = self._due(('warning', key))
        if suppressed is None:
            return
        more = f' ({suppressed} more since the last warning)' if suppressed else ''
        self._logger.warning(f'{message}{more}')

    def _due(self, key) -> int | None:
        """None while `key` was logged within the throttle period (this one is suppressed),
        else how many were suppressed since its last log (and the log is due now)."""
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._throttle.get(key, (float('-inf'), 0))
            if now - last < self._period():
                self._throttle[key] = (last, suppressed + 1)
                return None
            self._throttle[key] = (now, 0)
        return suppressed


def colour_frame(msg, accounting: Accounting, key: str = '') -> np.ndarray | None:
    """Image -> RGB uint8 (H, W, 3), mono8 repeated; None for bad input, rejected on
    `accounting` as `<key>_encoding` / `<key>_malformed` (`encoding` / `malformed` without a
    key)."""
    prefix, name = (f'{key}_', f'{key} ') if key else ('', '')
    if msg.encoding not in COLOUR_ENCODINGS:
        accounting.reject(f'{prefix}encoding', f'{name}encoding {msg.encoding!r} is not a '
                          f'colour image; allowed: {", ".join(COLOUR_ENCODINGS)}')
        return None
    try:
        frame = image_to_numpy(msg, to_rgb=True)
    except ValueError as err:
        accounting.reject(f'{prefix}malformed', str(err))
        return None
    return np.repeat(frame[..., None], 3, axis=2) if frame.ndim == 2 else frame
