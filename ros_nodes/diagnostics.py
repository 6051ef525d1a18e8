"""A node's `diagnostic_msgs/DiagnosticArray` on `/diagnostics`, with per-stage latency.

`StageTimer` keeps rolling latency samples per named stage (median, p90, max in ms);
`NodeDiagnostics` publishes, every `diagnostics_period` seconds, the node's lifecycle state,
output rate, counts and latency, the latest rejection (level WARN for one period after a bad
input, else OK) and the node's own values.
"""
from collections import deque
from collections.abc import Callable
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from embodied_vision.ros_nodes.accounting import Accounting
from embodied_vision.ros_nodes.parameters import ParamSpec

__all__ = ['DIAGNOSTICS_PARAMETERS', 'NodeDiagnostics', 'StageTimer']

DIAGNOSTICS_PARAMETERS = (
    ParamSpec('diagnostics_period', 1.0, 'seconds between /diagnostics messages',
              low=0.05, high=60.0),
)


class StageTimer:
    """Rolling latency samples (ms) per named stage; thread-safe."""

    def __init__(self, stages: tuple[str, ...], window: int = 1000):
        self.stages = tuple(stages)
        self._samples = {s: deque(maxlen=window) for s in self.stages}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples[stage].append(seconds * 1e3)

    def summary(self) -> dict[str, dict[str, float]]:
        """`{stage: {count, median, p90, max}}` in milliseconds (stages with samples)."""
        out = {}
        with self._lock:
            copies = {s: sorted(v) for s, v in self._samples.items() if v}
        for stage, values in copies.items():
            n = len(values)
            out[stage] = {'count': n, 'median': values[n // 2],
                          'p90': values[min(n - 1, int(0.9 * n))], 'max': values[-1]}
        return out


class NodeDiagnostics:
    """Publishes `node`'s status on `/diagnostics` every `period` seconds.

    Args:
        node: the rclpy node (publisher, timer, names).
        accounting: its counts and latest rejection.
        timer: its per-stage latency.
        state: returns the lifecycle state label.
        values: returns the node's own key/values (engine info, episode counts...).
        period: seconds between messages (`set_period` changes it).
    """

    def __init__(self, node, accounting: Accounting, timer: StageTimer,
                 state: Callable[[], str], values: Callable[[], dict], period: float):
        self._node, self._accounting, self._timer = node, accounting, timer
        self._state, self._values = state, values
        self._rate_mark = (time.monotonic(), 0)
        self._publisher = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._wall_timer = node.create_timer(period, self.publish)

    def set_period(self, seconds: float) -> None:
        self._wall_timer.timer_period_ns = int(seconds * 1e9)

    def status(self) -> DiagnosticStatus:
        """The node's status: state, rate since the last call, counts, per-stage latency."""
        counts = self._accounting.counts()
        now = time.monotonic()
        mark_time, mark_published = self._rate_mark
        rate = (counts['published'] - mark_published) / max(now - mark_time, 1e-9)
        self._rate_mark = (now, counts['published'])
        values = {'state': self._state(), 'rate_hz': f'{rate:.2f}'}
        values.update({k: str(v) for k, v in counts.items()})
        for stage, stats in self._timer.summary().items():
            for stat in ('median', 'p90', 'max'):
                values[f'{stage}_ms_{stat}'] = f'{stats[stat]:.3f}'
        last_rejection = self._accounting.last_rejection
        values['last_rejection'] = last_rejection
        values.update(self._values())
        level = DiagnosticStatus.WARN if last_rejection else DiagnosticStatus.OK
        message = (f'{counts["published"]} published, {counts["dropped"]} dropped, '
                   f'{counts["rejected"]} rejected')
        return DiagnosticStatus(level=level, name=self._node.get_fully_qualified_name(),
                                message=message, hardware_id=self._node.get_name(),
                                values=[KeyValue(key=k, value=str(v))
                                        for k, v in values.items()])

    def publish(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [self.status()]
        self._publisher.publish(msg)
        self._accounting.last_rejection = ''  # WARN lasts one period after the last bad input
