"""Approximate-time pairing of two stamped streams, in pure Python (no rclpy).

`message_filters` is not part of the PyPI rclpy wheels, so `pair_node` pairs its two views
with this class. Each stream has a bounded deque of `(stamp_ns, item)`; `add` puts one
message in and returns the pairs it completed and the number of messages it dropped.

Policy (mutual nearest neighbours, decided only when final):

- stamps are integer nanoseconds (header `sec * 10**9 + nanosec`); each stream is expected
  in stamp order;
- the oldest queued message `h` (of either stream) is examined first. Its partner is the
  message of the other stream nearest in stamp. The choice is *final* once no future
  message of that stream can come closer: every future stamp is at least the newest stamp
  seen on it plus `inter_message_lower_bound` (0 by default, message_filters' name). Until
  then the policy waits (an equal stamp is always final, so hardware-synchronised cameras
  pair at once; otherwise a pair can wait up to one frame of the later stream);
- if the partner is more than `slop` away, or none can ever come within `slop`, `h` is
  dropped (`unmatched`). If the partner's own final nearest message is not `h` but a closer
  one, `h` is dropped (`superseded`); ties go to the older message. Otherwise `(h, partner)`
  is emitted, view order kept, and both leave the queues. Pairs come out in stamp order,
  each message is used at most once, and a message is only dropped when no pair can ever
  include it;
- a full deque drops its oldest message (`overflow`): `queue_size` bounds memory and the
  wait for a stalled stream;
- a stamp equal to the stream's previous one is dropped (`duplicate`); an older one means
  time jumped back (a bag loop, a sim reset): that stream's queue is flushed (`time_jump`).
  Until the other stream jumps too, the new messages find no partner within slop, so a
  frame or two around the jump may be dropped (`unmatched`).

`dropped` holds the counts per reason. The class is thread-safe.
"""
from collections import Counter, deque
import threading

__all__ = ['ApproximateTimeSync', 'DROP_REASONS', 'stamp_ns']

DROP_REASONS = ('unmatched', 'superseded', 'overflow', 'duplicate', 'time_jump')
_NEVER = float('inf')


def stamp_ns(stamp) -> int:
    """A `builtin_interfaces/Time` (anything with `sec`, `nanosec`) as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class ApproximateTimeSync:
    """Pairs messages of stream 0 and stream 1 whose stamps are at most `slop` apart.

    Args:
        queue_size: messages kept per stream while waiting for a partner (>= 1).
        slop: largest stamp difference of a pair, seconds (>= 0).
        inter_message_lower_bound: smallest stamp step within a stream, seconds (>= 0);
            lets a pair be final without waiting for the next message.
    """

    def __init__(self, queue_size: int = 10, slop: float = 0.02,
                 inter_message_lower_bound: float = 0.0):
        if int(queue_size) != queue_size or queue_size < 1:
            raise ValueError(f'queue_size must be an integer >= 1, got {queue_size!r}')
        self.queue_size = int(queue_size)
        self.slop = slop
        self.inter_message_lower_bound = inter_message_lower_bound
        self._queues = (deque(), deque())
        self._last: list[int | None] = [None, None]
        self._lock = threading.Lock()
        self.dropped = Counter({reason: 0 for reason in DROP_REASONS})

    @property
    def slop(self) -> float:
        return self._slop_ns / 1e9

    @slop.setter
    def slop(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f'slop must be >= 0 seconds, got {seconds!r}')
        self._slop_ns = round(seconds * 1e9)

    @property
    def inter_message_lower_bound(self) -> float:
        return self._bound_ns / 1e9

    @inter_message_lower_bound.setter
    def inter_message_lower_bound(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f'inter_message_lower_bound must be >= 0 seconds, got {seconds!r}')
        self._bound_ns = round(seconds * 1e9)

    def pending(self) -> tuple[int, int]:
        """Messages waiting in each stream."""
        with self._lock:
            return len(self._queues[0]), len(self._queues[1])

    def reset(self) -> None:
        """Forget queued messages and stamps (not counted as drops)."""
        with self._lock:
            for queue in self._queues:
                queue.clear()
            self._last = [None, None]

    def add(self, stream: int, stamp: int, item) -> tuple[list[tuple], int]:
        """Queue `item` stamped `stamp` (ns) on `stream` (0 or 1).

        Returns `(pairs, dropped)`: the `(item0, item1)` pairs completed, oldest first, and
        how many messages were dropped by this call (the new one included).
        """
        if stream not in (0, 1):
            raise ValueError(f'stream must be 0 or 1, got {stream!r}')
        stamp = int(stamp)
        with self._lock:
            before = sum(self.dropped.values())
            last = self._last[stream]
            if last is not None and stamp == last:
                self.dropped['duplicate'] += 1
                return [], 1
            queue = self._queues[stream]
            if last is not None and stamp < last:
                self.dropped['time_jump'] += len(queue)
                queue.clear()
            if len(queue) >= self.queue_size:
                queue.popleft()
                self.dropped['overflow'] += 1
            queue.append((stamp, item))
            self._last[stream] = stamp
            pairs = self._match()
            return pairs, sum(self.dropped.values()) - before

    # ----------------------------------------------------------------------- policy
    def _nearest(self, stream: int, stamp: int) -> tuple[int, float]:
        """Index and distance of the queued message of `stream` nearest to `stamp` (the
        older one on ties); (-1, inf) when the queue is empty."""
        best, distance = -1, _NEVER
        for index, (other, _) in enumerate(self._queues[stream]):
            gap = abs(other - stamp)
            if gap < distance:
                best, distance = index, gap
            elif other > stamp:
                break  # stamps only grow from here
        return best, distance

    def _future_gap(self, stream: int, stamp: int) -> float:
        """The smallest distance to `stamp` a message not yet received on `stream` can have."""
        last = self._last[stream]
        if last is None:
            return 0
        return max(0, last + self._bound_ns - stamp)

    def _final_nearest(self, stream: int, stamp: int) -> tuple[int, float] | None:
        """`_nearest`, or None while a future message could still come closer; distance
        inf when no message (queued or future) can come within slop."""
        index, distance = self._nearest(stream, stamp)
        future = self._future_gap(stream, stamp)
        if min(distance, future) > self._slop_ns:
            return -1, _NEVER
        return None if future < distance else (index, distance)

    def _match(self) -> list[tuple]:
        pairs = []
        while True:
            heads = [q[0][0] if q else None for q in self._queues]
            if heads[0] is None and heads[1] is None:
                return pairs
            x = 0 if heads[1] is None or (heads[0] is not None and heads[0] <= heads[1]) else 1
            y = 1 - x
            head = heads[x]
            found = self._final_nearest(y, head)
            if found is None:
                return pairs
            partner, distance = found
            if distance > self._slop_ns:
                self._queues[x].popleft()
                self.dropped['unmatched'] += 1
                continue
            partner_stamp = self._queues[y][partner][0]
            back = self._final_nearest(x, partner_stamp)
            if back is None:
                return pairs
            if back[0] != 0:  # the partner is nearer to a newer message of stream x
                self._queues[x].popleft()
                self.dropped['superseded'] += 1
                continue
            # head is the oldest queued message, so the partner is the head of its queue
            first = self._queues[x].popleft()[1]
            second = self._queues[y].popleft()[1]
            pairs.append((first, second) if x == 0 else (second, first))
