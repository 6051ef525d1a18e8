"""Shared machinery of our lifecycle nodes: parameters, QoS, diagnostics, bad-input accounting.

- `ParamSpec`: one row of a node's parameter table (`PARAMETERS`). The node declares each with
  a `ParameterDescriptor` (type, description, range, `read_only` for engine-affecting ones:
  they can be set at start-up from a params file or `--ros-args -p`, never afterwards) and an
  on-set callback rejects invalid values with a reason that names the allowed values. The
  table is plain data, so launch-file tests can read the declared names without a ROS graph.
- `make_qos(name, depth)`: QoS from the Isaac ROS-style string parameters (`input_qos`,
  `output_qos`): `sensor_data`, `reliable`, `best_effort`, `system_default`; depth 0 = keep all.
- `StageTimer`: rolling per-stage latency statistics (median, p90, max) in milliseconds.
- `ManagedNode`: `rclpy.lifecycle.LifecycleNode` base that declares the table, publishes a
  `diagnostic_msgs/DiagnosticArray` on `/diagnostics` every `diagnostics_period` seconds
  (rate, per-stage latency, received/published/dropped/rejected counts), and logs rejected
  input through a per-reason throttle so a bad stream cannot flood the log.
"""
from collections import deque
from dataclasses import dataclass
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)

from embodied_vision.ros_nodes.conversions import COLOUR_ENCODINGS, image_to_numpy

__all__ = ['LatestSlot', 'ManagedNode', 'NewestItemWorker', 'ParamSpec', 'QOS_CHOICES',
           'StageTimer', 'StampJoiner', 'make_qos', 'run_node', 'TransitionCallbackReturn']

QOS_CHOICES = ('sensor_data', 'reliable', 'best_effort', 'system_default')


def make_qos(name: str, depth: int = 1, transient_local: bool = False) -> QoSProfile:
    """A QoS profile from its string name and a history depth (0 = keep all)."""
    key = str(name).strip().lower()
    if key not in QOS_CHOICES:
        raise ValueError(f'unknown QoS {name!r}; allowed: {", ".join(QOS_CHOICES)}')
    if depth < 0:
        raise ValueError(f'QoS depth must be >= 0 (0 = keep all), got {depth}')
    if key == 'sensor_data':
        reliability = qos_profile_sensor_data.reliability
    elif key == 'system_default':
        reliability = qos_profile_system_default.reliability
    elif key == 'best_effort':
        reliability = ReliabilityPolicy.BEST_EFFORT
    else:
        reliability = ReliabilityPolicy.RELIABLE
    history = HistoryPolicy.KEEP_ALL if depth == 0 else HistoryPolicy.KEEP_LAST
    return QoSProfile(history=history, depth=max(depth, 1), reliability=reliability,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local
                      else DurabilityPolicy.VOLATILE)


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter.

    Args:
        name: parameter name.
        default: typed default (bool, int, float, str or a non-empty list of str/float).
        description: shown by `ros2 param describe`.
        choices: allowed values (strings), checked by the on-set callback.
        low, high: inclusive numeric range (descriptor range + on-set check).
        read_only: settable only at start-up (engine-affecting parameters).
        constraints: free-text `additional_constraints`.
    """

    name: str
    default: object
    description: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    read_only: bool = False
    constraints: str = ''

    def descriptor(self) -> ParameterDescriptor:
        text = self.constraints
        if self.choices:
            text = (text + '; ' if text else '') + 'one of: ' + ', '.join(map(str, self.choices))
        desc = ParameterDescriptor(name=self.name, description=self.description,
                                   additional_constraints=text, read_only=self.read_only)
        if self.low is not None and self.high is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                desc.integer_range = [IntegerRange(from_value=int(self.low),
                                                   to_value=int(self.high), step=0)]
            elif isinstance(self.default, float):
                desc.floating_point_range = [FloatingPointRange(
                    from_value=float(self.low), to_value=float(self.high), step=0.0)]
        return desc

    def check(self, value) -> str:
        """'' when `value` is allowed, else the reason (naming the allowed values)."""
        if self.choices:
            values = value if isinstance(value, (list, tuple)) else [value]
            bad = [v for v in values if v not in self.choices]
            if bad:
                return (f'{self.name}={value!r} is not allowed; allowed values: '
                        f'{", ".join(map(str, self.choices))}')
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (self.low is not None and value < self.low) or \
                    (self.high is not None and value > self.high):
                return f'{self.name}={value!r} is outside the range [{self.low}, {self.high}]'
        return ''


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


class LatestSlot:
    """A one-item mailbox: `put` overwrites an unconsumed item (the stale frame is dropped),
    `get` blocks until an item arrives or the timeout passes. Inference slower than the camera
    then always works on the newest frame, with bounded memory and latency."""

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


class NewestItemWorker:
    """One thread that runs `process(*item)` on the newest item of a `LatestSlot`.

    `submit(item)` never blocks (it returns True when an unprocessed item was replaced: a
    drop); an exception in `process` is rejected on `node` as `internal` and the worker goes
    on. `start()` on activate, `stop()` on deactivate/cleanup (joins the thread).
    """

    def __init__(self, node: 'ManagedNode', process, name: str):
        self.node, self.process, self.name = node, process, name
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
                self.node.reject('internal', f'{type(err).__name__}: {err}')


class ManagedNode(LifecycleNode):
    """LifecycleNode base: the parameter table, diagnostics and bad-input accounting.

    Subclasses set `PARAMETERS` (tuple of `ParamSpec`) and `STAGES` (latency stage names),
    may override `validate_parameter(name, value) -> str` for cross-field checks, and call
    `reject(reason_key, message)` for bad input, `count('received'|'published'|'dropped')`
    and `self.timer.add(stage, seconds)` as data flows.
    """

    PARAMETERS: tuple[ParamSpec, ...] = ()
    STAGES: tuple[str, ...] = ()
    # Executor threads for `run_node`: 1 = SingleThreadedExecutor, the lowest dispatch latency
    # (benchmarks/ros_pipeline.py: node overhead median 5.3 ms vs 8.6 ms with the
    # MultiThreadedExecutor); fine where callbacks only hand work to a worker thread. A node
    # with a callback that blocks on another one (sim_node's reset service) sets more.
    SPIN_THREADS: int = 1
    COMMON_PARAMETERS: tuple[ParamSpec, ...] = (
        ParamSpec('diagnostics_period', 1.0, 'seconds between /diagnostics messages',
                  low=0.05, high=60.0),
        ParamSpec('log_throttle_period', 2.0,
                  'seconds between two error logs of the same kind of bad input',
                  low=0.0, high=3600.0),
        ParamSpec('autostart', False, 'configure and activate on start-up (standalone runs '
                  'and launch files without a lifecycle manager)', read_only=True),
    )

    @classmethod
    def parameter_table(cls) -> dict[str, ParamSpec]:
        """Every parameter the node declares, by name (no ROS graph needed)."""
        return {spec.name: spec for spec in cls.COMMON_PARAMETERS + cls.PARAMETERS}

    def __init__(self, node_name: str, **kwargs):
        self._specs = self.parameter_table()
        self._counts_lock = threading.Lock()
        self._counts = {'received': 0, 'published': 0, 'dropped': 0, 'rejected': 0}
        self._last_rejection = ''
        self._throttle: dict[str, list] = {}
        self._rate_mark = (time.monotonic(), 0)
        self.timer = StageTimer(self.STAGES)
        super().__init__(node_name, **kwargs)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for spec in self._specs.values():
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diagnostics_timer = self.create_timer(self.param('diagnostics_period'),
                                                    self.publish_diagnostics)

    # ----------------------------------------------------------------------- parameters
    def param(self, name: str):
        """The current value of a declared parameter."""
        return self.get_parameter(name).value

    def validate_parameter(self, name: str, value) -> str:
        """Subclass hook for checks beyond the table; return '' or the reason."""
        return ''

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            spec = self._specs.get(p.name)
            reason = spec.check(p.value) if spec else ''
            reason = reason or self.validate_parameter(p.name, p.value)
            if reason:
                self.get_logger().warning(f'rejected parameter: {reason}')
                return SetParametersResult(successful=False, reason=reason)
        for p in params:
            if p.name == 'diagnostics_period' and getattr(self, '_diagnostics_timer', None):
                self._diagnostics_timer.timer_period_ns = int(p.value * 1e9)
        return SetParametersResult(successful=True)

    def qos(self, prefix: str, transient_local: bool = False) -> QoSProfile:
        """QoS from the `<prefix>_qos` and `<prefix>_qos_depth` parameters."""
        return make_qos(self.param(f'{prefix}_qos'), self.param(f'{prefix}_qos_depth'),
                        transient_local)

    @staticmethod
    def qos_specs(prefix: str, default: str, depth: int, what: str) -> tuple[ParamSpec, ...]:
        """The `<prefix>_qos` / `<prefix>_qos_depth` pair (Isaac ROS style)."""
        return (ParamSpec(f'{prefix}_qos', default, f'QoS of the {what}', choices=QOS_CHOICES,
                          read_only=True),
                ParamSpec(f'{prefix}_qos_depth', depth,
                          f'history depth of the {what} (0 = keep all)', low=0, high=10000,
                          read_only=True))

    # ----------------------------------------------------------------------- accounting
    def count(self, what: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[what] = self._counts.get(what, 0) + n

    def counts(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(self._counts)

    def reject(self, key: str, message: str) -> None:
        """Count a bad input and log it, at most once per `log_throttle_period` per key."""
        self.count('rejected')
        self._last_rejection = f'{key}: {message}'
        now = time.monotonic()
        with self._counts_lock:
            last, suppressed = self._throttle.get(key, (float('-inf'), 0))
            if now - last < self.param('log_throttle_period'):
                self._throttle[key] = (last, suppressed + 1)
                return
            self._throttle[key] = (now, 0)
        more = f' ({suppressed} similar since the last report)' if suppressed else ''
        self.get_logger().error(f'dropped bad input [{key}]: {message}{more}')

    def colour_frame(self, msg, key: str = '') -> np.ndarray | None:
        """Image -> RGB uint8 (H, W, 3), mono8 repeated; None for bad input, rejected as
        `<key>_encoding` / `<key>_malformed` (`encoding` / `malformed` without a key)."""
        prefix, name = (f'{key}_', f'{key} ') if key else ('', '')
        if msg.encoding not in COLOUR_ENCODINGS:
            self.reject(f'{prefix}encoding', f'{name}encoding {msg.encoding!r} is not a colour '
                        f'image; allowed: {", ".join(COLOUR_ENCODINGS)}')
            return None
        try:
            frame = image_to_numpy(msg, to_rgb=True)
        except ValueError as err:
            self.reject(f'{prefix}malformed', str(err))
            return None
        return np.repeat(frame[..., None], 3, axis=2) if frame.ndim == 2 else frame

    def warn_throttled(self, key: str, message: str) -> None:
        """Count `key` and log `message` as a warning at most once per
        `log_throttle_period` (for expected gaps, e.g. no goal or CameraInfo yet)."""
        self.count(key)
        now = time.monotonic()
        with self._counts_lock:
            last, suppressed = self._throttle.get(('warning', key), (float('-inf'), 0))
            if now - last < self.param('log_throttle_period'):
                self._throttle[('warning', key)] = (last, suppressed + 1)
                return
            self._throttle[('warning', key)] = (now, 0)
        more = f' ({suppressed} more since the last warning)' if suppressed else ''
        self.get_logger().warning(f'{message}{more}')

    # ----------------------------------------------------------------------- diagnostics
    def diagnostic_values(self) -> dict[str, str]:
        """Subclass hook: extra key/values (engine info, episode counts...)."""
        return {}

    def diagnostic_status(self) -> DiagnosticStatus:
        """The node's status: state, rate, counts and per-stage latency."""
        counts = self.counts()
        now = time.monotonic()
        mark_time, mark_published = self._rate_mark
        rate = (counts['published'] - mark_published) / max(now - mark_time, 1e-9)
        self._rate_mark = (now, counts['published'])
        values = {'state': self._state_label(), 'rate_hz': f'{rate:.2f}'}
        values.update({k: str(v) for k, v in counts.items()})
        for stage, stats in self.timer.summary().items():
            for stat in ('median', 'p90', 'max'):
                values[f'{stage}_ms_{stat}'] = f'{stats[stat]:.3f}'
        values['last_rejection'] = self._last_rejection
        values.update(self.diagnostic_values())
        level = DiagnosticStatus.WARN if self._last_rejection else DiagnosticStatus.OK
        message = (f'{counts["published"]} published, {counts["dropped"]} dropped, '
                   f'{counts["rejected"]} rejected')
        return DiagnosticStatus(level=level, name=self.get_fully_qualified_name(),
                                message=message, hardware_id=self.get_name(),
                                values=[KeyValue(key=k, value=str(v))
                                        for k, v in values.items()])

    def publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.diagnostic_status()]
        self._diagnostics_pub.publish(msg)
        self._last_rejection = ''  # WARN lasts one period after the last bad input

    def _state_label(self) -> str:
        try:
            return self._state_machine.current_state[1]
        except (AttributeError, TypeError, IndexError):
            return 'unknown'

    # ----------------------------------------------------------------------- lifecycle
    def release(self) -> None:
        """Subclass hook: free threads, models and envs (on cleanup, shutdown, error)."""

    def drop_subscriptions(self, subscriptions: list) -> list:
        """Destroy `subscriptions`; returns the empty list to store back."""
        for subscription in subscriptions:
            self.destroy_subscription(subscription)
        return []

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def bring_up(self) -> bool:
        """configure + activate; True when the node ends up active."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS


def run_node(node_class, args=None) -> int:
    """`main()` body shared by the nodes: init, optional autostart, spin, clean exit."""
    import rclpy
    from rclpy.executors import (
        ExternalShutdownException,
        MultiThreadedExecutor,
        SingleThreadedExecutor,
    )

    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        if node.param('autostart') and not node.bring_up():
            node.get_logger().error('autostart failed: the node stays unconfigured/inactive; '
                                    'see the errors above')
        threads = node_class.SPIN_THREADS
        executor = SingleThreadedExecutor() if threads == 1 else \
            MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
