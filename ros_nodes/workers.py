"""Inference slower than the camera works on the newest item, with bounded memory and latency.

`LatestSlot` is a one-item mailbox whose `put` overwrites an unconsumed item (a drop);
`NewestItemWorker` is the one thread that processes what the slot holds.
"""
from collections.abc import Callable
import threading

__all__ = ['LatestSlot', 'NewestItemWorker']


class LatestSlot:
    """A one-item mailbox: `put` overwrites an unconsumed item (the stale frame is dropped),
    `get` blocks until an item arrives or the timeout passes."""

    def __init__(self):
        self._item = None
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item) -> bool:
        """Store `item`; True when it replaced one that was never taken (a drop)."""
        with self._cond:
            dropped = self._item is not None
            self._item = item
            self._cond.notify()
        return dropped

    def get(self, timeout: float | None = None):
        """The newest item, or None on timeout or after `close()`."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._item = None


class NewestItemWorker:
    """One thread that runs `process(*item)` on the newest item of a `LatestSlot`.

    `submit(item)` never blocks (it returns True when an unprocessed item was replaced: a
    drop); an exception in `process` goes to `reject('internal', message)` and the worker goes
    on. `start()` on activate, `stop()` on deactivate/cleanup (joins the thread).
    """

    def __init__(self, process: Callable, name: str, reject: Callable[[str, str], None]):
        self.process, self.name, self.reject = process, name, reject
        self._slot = LatestSlot()
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._slot.reopen()
        self._running.set()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def submit(self, item: tuple) -> bool:
        return self._slot.put(item)

    def stop(self) -> None:
        self._running.clear()
        self._slot.close()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None

    def _loop(self) -> None:
        while self._running.is_set():
            item = self._slot.get(timeout=0.2)
            if item is None:
                continue
            try:
                self.process(*item)
            except Exception as err:  # a bug must not kill the worker silently
                self.reject('internal', f'{type(err).__name__}: {err}')
