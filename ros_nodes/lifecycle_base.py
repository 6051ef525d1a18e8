"""`ManagedNode`, the lifecycle-node base our nodes share, and `run_node`, their `main()`.

The base wires the concerns, each in its own module, to one `rclpy.lifecycle.LifecycleNode`:
- parameters (`parameters.py`): `COMMON_PARAMETERS` + the subclass's `PARAMETERS` table,
  declared with descriptors and checked on set; `param(name)` reads one;
- QoS (`qos.py`): `qos(prefix)` from the `<prefix>_qos` / `<prefix>_qos_depth` pair;
- accounting (`accounting.py`): `self.accounting` counts what flows, rejects bad input with a
  throttled log;
- diagnostics (`diagnostics.py`): `self.timer` holds per-stage latency, `self.diagnostics`
  publishes `/diagnostics` every `diagnostics_period` seconds;
- lifecycle (here): `release()` on cleanup, shutdown and error; `bring_up()`; `autostart`.
Threads that work on the newest frame are in `workers.py`, exact-stamp pairing in
`exact_sync.py`, approximate pairing in `approximate_sync.py`.
"""
import sys

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import QoSProfile

from embodied_vision.ros_nodes.accounting import ACCOUNTING_PARAMETERS, Accounting
from embodied_vision.ros_nodes.diagnostics import (
    DIAGNOSTICS_PARAMETERS,
    NodeDiagnostics,
    StageTimer,
)
from embodied_vision.ros_nodes.parameters import ParamSpec, declare_parameters
from embodied_vision.ros_nodes.qos import make_qos

__all__ = ['LIFECYCLE_PARAMETERS', 'ManagedNode', 'run_node']

LIFECYCLE_PARAMETERS = (
    ParamSpec('autostart', False, 'configure and activate on start-up (standalone runs '
              'and launch files without a lifecycle manager)', read_only=True),
)


class ManagedNode(LifecycleNode):
    """LifecycleNode base: the parameter table, accounting, diagnostics and clean release.

    Subclasses set `PARAMETERS` (tuple of `ParamSpec`) and `STAGES` (latency stage names),
    may override `validate_parameter(name, value) -> str` for cross-field checks,
    `diagnostic_values()` for their own diagnostics and `release()` to free resources, and
    call `self.accounting.reject(reason_key, message)` for bad input,
    `self.accounting.count('received'|'published'|'dropped')` and
    `self.timer.add(stage, seconds)` as data flows.
    """

    PARAMETERS: tuple[ParamSpec, ...] = ()
    STAGES: tuple[str, ...] = ()
    # Executor threads for `run_node`: 1 = SingleThreadedExecutor, the lowest dispatch latency
    # (benchmarks/ros_pipeline.py: node overhead median 5.3 ms vs 8.6 ms with the
    # MultiThreadedExecutor); fine where callbacks only hand work to a worker thread. A node
    # with a callback that blocks on another one (sim_node's reset service) sets more.
    SPIN_THREADS: int = 1
    COMMON_PARAMETERS: tuple[ParamSpec, ...] = \
        DIAGNOSTICS_PARAMETERS + ACCOUNTING_PARAMETERS + LIFECYCLE_PARAMETERS

    @classmethod
    def parameter_table(cls) -> dict[str, ParamSpec]:
        """Every parameter the node declares, by name (no ROS graph needed)."""
        return {spec.name: spec for spec in cls.COMMON_PARAMETERS + cls.PARAMETERS}

    def __init__(self, node_name: str, **kwargs):
        super().__init__(node_name, **kwargs)
        self.timer = StageTimer(self.STAGES)
        self.accounting = Accounting(self.get_logger(),
                                     lambda: self.param('log_throttle_period'))
        self._after_set: list = []  # post-set callbacks where rclpy has none (Humble)
        declare_parameters(self, self.parameter_table(), self.validate_parameter,
                           self._after_set)
        self.diagnostics = NodeDiagnostics(self, self.accounting, self.timer,
                                           self.state_label, self.diagnostic_values,
                                           self.param('diagnostics_period'))
        self.after_parameters_set(self._after_set_common)

    def after_parameters_set(self, callback) -> None:
        """Call `callback(params)` once new values are accepted: rclpy's post-set callback
        (Iron and later), else (Humble, whose rclpy lacks it) from the on-set check right
        after it accepts them; our callbacks read the values from `params`, so both agree."""
        if hasattr(self, 'add_post_set_parameters_callback'):
            self.add_post_set_parameters_callback(callback)
        else:
            self._after_set.append(callback)

    def param(self, name: str):
        """The current value of a declared parameter."""
        return self.get_parameter(name).value

    def validate_parameter(self, name: str, value) -> str:
        """Subclass hook for checks beyond the table; return '' or the reason."""
        return ''

    def _after_set_common(self, params) -> None:
        for p in params:
            if p.name == 'diagnostics_period':
                self.diagnostics.set_period(p.value)

    def qos(self, prefix: str, transient_local: bool = False) -> QoSProfile:
        """QoS from the `<prefix>_qos` and `<prefix>_qos_depth` parameters."""
        return make_qos(self.param(f'{prefix}_qos'), self.param(f'{prefix}_qos_depth'),
                        transient_local)

    def diagnostic_values(self) -> dict[str, str]:
        """Subclass hook: extra diagnostics key/values (engine info, episode counts...)."""
        return {}

    # ----------------------------------------------------------------------- lifecycle
    def state_label(self) -> str:
        """The lifecycle state: 'unconfigured', 'inactive', 'active', ..."""
        try:
            return self._state_machine.current_state[1]
        except (AttributeError, TypeError, IndexError):
            return 'unknown'

    def release(self) -> None:
        """Subclass hook: free threads, models and envs (on cleanup, shutdown, error)."""

    def drop_subscriptions(self, subscriptions: list) -> list:
        """Destroy `subscriptions`; returns the empty list to store back."""
        for subscription in subscriptions:
            self.destroy_subscription(subscription)
        return []

    def drop_publishers(self, publishers: dict) -> dict:
        """Destroy the lifecycle publishers in `publishers`; returns the empty dict."""
        for publisher in publishers.values():
            self.destroy_lifecycle_publisher(publisher)
        return {}

    def drop_model(self, on_cuda: bool) -> None:
        """Forget `self.model`; return the CUDA allocator's cached memory if it was there."""
        self.model = None
        if on_cuda:
            import torch
            torch.cuda.empty_cache()

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
        self.get_logger().info('configuring')
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS


def run_node(node_class, args=None) -> int:
    """`main()` body shared by the nodes: init, optional autostart, spin, clean exit."""
    import rclpy
    from rclpy.exceptions import ParameterException
    from rclpy.executors import (
        ExternalShutdownException,
        MultiThreadedExecutor,
        SingleThreadedExecutor,
    )

    rclpy.init(args=args)
    node, code = None, 0
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
    except ParameterException as err:  # a bad start-up value: one line, not a traceback
        print(f'{node_class.__name__}: {err}', file=sys.stderr)
        code = 1
    except Exception:
        # A signal (SIGTERM / SIGINT) shuts the context down at any moment, e.g. while a
        # configure transition is compiling: the transition then fails to publish its
        # event, and a timer may fail to publish diagnostics. That is a shutdown, not an
        # error; anything raised while the context is still valid is one.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            _quietly(node.release)
            _quietly(node.destroy_node)
        rclpy.try_shutdown()
    return code


def _quietly(step) -> None:
    """Run a shutdown step; a context already shut down makes some rcl calls raise."""
    import rclpy
    try:
        step()
    except Exception:
        if rclpy.ok():
            raise
