"""`planner_node`: tool-camera image + goal image in -> action out, a lifecycle node.

Runs a saved Manipulate-by-Seeing planner (`MbSPolicy`, `embodied_vision.policies.mbs`,
loaded with `load_policy(policy_path)`): every pool direction is scored against the goal
image's embedding and the tool moves `step_size` (4 cm) in the best one, split into control
steps served from the policy's queue; the gripper comes from its classifier.

Inputs, paired by exact header stamp (both derive from one sim/camera frame, as in
`policy_node`):
- `image_topic` (sensor_msgs/Image, default `wrist/image_raw`: rgb8, bgr8, rgba8, bgra8 or
  mono8): the tool (wrist) camera;
- `ee_pose_topic` (geometry_msgs/PoseStamped, default `ee_pose`): the tool pose; only its
  orientation (w, x, y, z) is used, to rotate the tool-frame direction to the world.

The goal image, set either way (the newest wins; a new goal empties the queued move):
- a **topic**, `goal_topic` (sensor_msgs/Image, default `goal_image`). The subscription is
  transient local (with `goal_transient_local`, default true), so a goal published before
  the node started or activated still arrives, provided its publisher is transient local
  too (`ros2 topic pub --qos-durability transient_local ...`; a volatile publisher does not
  match a transient-local subscription: set `goal_transient_local: false` for one);
- a **service**, `capture_goal` (std_srvs/Trigger, in the node's namespace, offered while
  active): takes the newest valid frame received on `image_topic` as the goal. It answers
  `success: false` when no frame has arrived yet, else `success: true` and the stamp of the
  captured frame. Typical use: drive (or teleoperate) the robot to the goal, call
  `ros2 service call /capture_goal std_srvs/srv/Trigger`, move it back, activate the loop.

Outputs:
- `action_topic` (sensor_msgs/Joy, default `action`): `axes = [dx, dy, dz, grip]` in
  [-1, 1], header = the observation's, the same interface as `policy_node` and what
  `sim_node` consumes;
- `distance_topic` (std_msgs/Float32, default `distance`): the predicted cosine similarity
  of the current frame to the goal in the planner's representation (1 = at the goal),
  published whenever the planner re-plans (every `ceil(step_size / max_delta)` actions);
  the latest value is also in the diagnostics (`distance`).

Without a goal, paired observations produce no action: each is counted (`no_goal` in the
diagnostics) and a warning is logged at most once per `log_throttle_period`. Bad input
(unsupported encoding, malformed image, non-finite or zero quaternion) is rejected and
counted; incomplete stamps older than `sync_queue_size` newer ones are dropped and counted.

Planner settings that can be changed at runtime:
- `stop_threshold`: once the predicted cosine to the goal reaches it the planner commands zero
  motion (gripper still from the classifier); < 0 = never stop;
- `gripper_release`: once closed, the gripper opens again only when the classifier's
  probability falls below it (hysteresis against a one-frame doubt); < 0 = the saved
  policy's value (none: open whenever not above its `gripper_threshold`, as official);
- `grip_hold_steps`: control steps to stand still when the gripper changes state, so the
  fingers close in place; < 0 = the saved policy's value (0, official).
"""
import dataclasses
import re
import sys
import threading
import time

from geometry_msgs.msg import PoseStamped
import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from sensor_msgs.msg import Image, Joy
from std_msgs.msg import Float32
from std_srvs.srv import Trigger

from embodied_vision.ros_nodes.accounting import colour_frame
from embodied_vision.ros_nodes.exact_sync import StampJoiner
from embodied_vision.ros_nodes.lifecycle_base import ManagedNode, run_node
from embodied_vision.ros_nodes.parameters import ParamSpec
from embodied_vision.ros_nodes.qos import qos_specs

__all__ = ['PlannerNode', 'main']

_DEVICE = re.compile(r'^(cpu|cuda(:\d+)?)$')


_PLANNER_SETTINGS = ('stop_threshold', 'gripper_release', 'grip_hold_steps')


class PlannerNode(ManagedNode):
    """Greedy goal-image planner behind the action interface; see the module docstring."""

    PARAMETERS = (
        ParamSpec('policy_path', '', 'saved mbs policy directory (save_pretrained output)',
                  read_only=True),
        ParamSpec('device', 'cpu', "torch device of the planner: 'cpu', 'cuda' or 'cuda:N'",
                  read_only=True),
        ParamSpec('stop_threshold', -1.0, 'command zero motion once the predicted cosine to '
                  'the goal reaches this; < 0 = never stop', low=-1.0, high=1.0),
        ParamSpec('gripper_release', -1.0, 'once closed, open only below this classifier '
                  "probability; < 0 = the saved policy's value", low=-1.0, high=1.0),
        ParamSpec('grip_hold_steps', -1, 'control steps to stand still while the gripper '
                  "changes state; < 0 = the saved policy's value", low=-1, high=1000),
        ParamSpec('sync_queue_size', 30, 'incomplete stamps kept while pairing inputs',
                  low=1, high=10000),
        ParamSpec('image_topic', 'wrist/image_raw', 'sensor_msgs/Image tool (wrist) camera',
                  read_only=True),
        ParamSpec('ee_pose_topic', 'ee_pose', 'geometry_msgs/PoseStamped tool pose (its '
                  'orientation rotates the planned direction to the world)', read_only=True),
        ParamSpec('goal_topic', 'goal_image', 'sensor_msgs/Image goal image', read_only=True),
        ParamSpec('goal_transient_local', True, 'subscribe to the goal with transient-local '
                  'durability (late joiners get the last goal; the publisher must be '
                  'transient local too)', read_only=True),
        ParamSpec('action_topic', 'action', 'sensor_msgs/Joy action output [dx, dy, dz, '
                  'grip]', read_only=True),
        ParamSpec('distance_topic', 'distance', 'std_msgs/Float32 predicted cosine to the '
                  'goal', read_only=True),
    ) + qos_specs('input', 'reliable', 10, 'image and pose subscriptions') \
        + qos_specs('goal', 'reliable', 1, 'goal image subscription') \
        + qos_specs('output', 'reliable', 10, 'action and distance publishers')
    STAGES = ('sync_wait', 'convert', 'plan', 'publish', 'total')

    def __init__(self, node_name: str = 'planner_node', **kwargs):
        self.policy = None
        self.goal_source = 'none'
        self.goal_stamp: tuple[int, int] | None = None
        self.last_distance: float | None = None
        self._action_pub = None
        self._distance_pub = None
        self._inputs = []
        self._service = None
        self._joiner = StampJoiner()
        self._latest_frame: tuple | None = None
        self._lock = threading.Lock()
        self._policy_lock = threading.Lock()
        super().__init__(node_name, **kwargs)
        self.after_parameters_set(self._after_set_parameters)

    def validate_parameter(self, name: str, value) -> str:
        if name == 'device' and not _DEVICE.match(str(value)):
            return f"device={value!r} is not allowed; allowed values: 'cpu', 'cuda', 'cuda:N'"
        policy = getattr(self, 'policy', None)
        if name == 'gripper_release' and policy is not None and value >= 0:
            try:  # the policy's config class holds the rule
                dataclasses.replace(policy.config, gripper_release=float(value))
            except ValueError as err:
                return f'{err} (loaded policy; < 0 = its saved value)'
        return ''

    def _after_set_parameters(self, params) -> None:
        if any(p.name in _PLANNER_SETTINGS for p in params):
            self._apply_planner_settings()

    def _apply_planner_settings(self) -> None:
        """Copy the runtime planner parameters into the policy's config."""
        if self.policy is None:
            return
        stop = float(self.param('stop_threshold'))
        release = float(self.param('gripper_release'))
        hold = int(self.param('grip_hold_steps'))
        saved = self._saved_settings
        with self._policy_lock:
            config = self.policy.config
            config.stop_threshold = None if stop < 0 else stop
            config.gripper_release = saved['gripper_release'] if release < 0 else release
            config.grip_hold_steps = saved['grip_hold_steps'] if hold < 0 else hold

    # ----------------------------------------------------------------------- lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.policy = self._load_policy()
        except Exception as err:  # a missing/corrupt policy: report, stay unconfigured
            self.get_logger().error(f'configure failed: {type(err).__name__}: {err}')
            self.policy = None
            return TransitionCallbackReturn.FAILURE
        self.goal_source, self.goal_stamp, self.last_distance = 'none', None, None
        self._saved_settings = {name: getattr(self.policy.config, name)
                                for name in ('gripper_release', 'grip_hold_steps')}
        self._apply_planner_settings()
        qos = self.qos('output')
        self._action_pub = self.create_lifecycle_publisher(Joy, self.param('action_topic'), qos)
        self._distance_pub = self.create_lifecycle_publisher(
            Float32, self.param('distance_topic'), qos)
        config = self.policy.config
        self.get_logger().info(
            f'mbs planner from {self.param("policy_path")}: {config.encoder} '
            f'{config.image_size}px, {len(self.policy.pool)} pool actions, step '
            f'{config.step_size} m, gripper classifier: {self.policy.gripper is not None}')
        return TransitionCallbackReturn.SUCCESS

    def _load_policy(self):
        import torch

        from embodied_vision.policies import load_policy
        path = self.param('policy_path')
        if not path:
            raise ValueError('policy_path is empty: set it to a saved mbs policy directory')
        policy = load_policy(path, device=self.param('device'))
        if getattr(policy, 'name', None) != 'mbs':
            raise ValueError(f'{path} holds a {getattr(policy, "name", "?")!r} policy; '
                             f'planner_node runs mbs policies')
        size = policy.config.image_size
        with torch.no_grad():  # warm-up: the first call allocates
            policy.model.represent(torch.zeros(1, 3, size, size, device=policy.pool.device))
        return policy

    def on_activate(self, state) -> TransitionCallbackReturn:
        qos = self.qos('input')
        sub = self.create_subscription
        self._joiner.clear()
        with self._lock:
            self._latest_frame = None
        self.policy.reset()
        self._inputs = [
            sub(Image, self.param('goal_topic'), self._on_goal,
                self.qos('goal', transient_local=self.param('goal_transient_local'))),
            sub(Image, self.param('image_topic'), self._on_image, qos),
            sub(PoseStamped, self.param('ee_pose_topic'), self._on_pose, qos)]
        self._service = self.create_service(Trigger, 'capture_goal', self._on_capture_goal)
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_inputs()
        return super().on_deactivate(state)

    def _stop_inputs(self) -> None:
        self._inputs = self.drop_subscriptions(self._inputs)
        if self._service is not None:
            self.destroy_service(self._service)
            self._service = None

    def release(self) -> None:
        self._stop_inputs()
        for name in ('_action_pub', '_distance_pub'):
            publisher = getattr(self, name)
            if publisher is not None:
                self.destroy_lifecycle_publisher(publisher)
                setattr(self, name, None)
        if self.policy is not None:
            cuda = self.policy.pool.device.type == 'cuda'
            self.policy = None
            if cuda:
                import torch
                torch.cuda.empty_cache()
        self.goal_source, self.goal_stamp = 'none', None

    # ----------------------------------------------------------------------- inputs
    def convert(self, msg: Image, key: str) -> np.ndarray | None:
        """Image -> RGB uint8 (H, W, 3); None (rejected and counted) for bad input."""
        return colour_frame(msg, self.accounting, key)

    def _set_goal(self, frame: np.ndarray, header, source: str) -> None:
        with self._policy_lock:
            self.policy.set_goal(frame)
        self.goal_source = source
        self.goal_stamp = (header.stamp.sec, header.stamp.nanosec)
        self.get_logger().info(f'goal set from the {source} (frame stamped '
                               f'{header.stamp.sec}.{header.stamp.nanosec:09d})')

    def _on_goal(self, msg: Image) -> None:
        frame = self.convert(msg, 'goal')
        if frame is not None and self.policy is not None:
            self._set_goal(frame, msg.header, 'topic')

    def _on_capture_goal(self, request, response):
        """`capture_goal`: the newest valid camera frame becomes the goal."""
        with self._lock:
            latest = self._latest_frame
        if latest is None or self.policy is None:
            response.success = False
            response.message = (f'no frame received on {self.param("image_topic")} yet'
                                if self.policy is not None else 'the node is not configured')
            return response
        header, frame = latest
        self._set_goal(frame, header, 'capture_goal service')
        response.success = True
        response.message = (f'goal captured from the frame stamped '
                            f'{header.stamp.sec}.{header.stamp.nanosec:09d}')
        return response

    def _on_image(self, msg: Image) -> None:
        arrived = time.perf_counter()
        frame = self.convert(msg, 'image')
        if frame is None:
            self.accounting.count('received')
            return
        with self._lock:
            self._latest_frame = (msg.header, frame)
        self._add(msg.header, 'image', frame, arrived, time.perf_counter() - arrived)

    def _on_pose(self, msg: PoseStamped) -> None:
        o = msg.pose.orientation
        quat = np.array([o.w, o.x, o.y, o.z], np.float64)
        if not np.all(np.isfinite(quat)) or np.linalg.norm(quat) < 1e-9:
            self.accounting.count('received')
            self.accounting.reject('pose', f'tool orientation must be a finite non-zero '
                                   f'quaternion, got {quat.tolist()}')
            return
        self._add(msg.header, 'quat', quat, time.perf_counter())

    # ----------------------------------------------------------------------- pairing
    def _add(self, header, part: str, value, arrived: float, convert_s: float = 0.0) -> None:
        self.accounting.count('received')
        entry, dropped = self._joiner.add(header, part, value, ('image', 'quat'),
                                          self.param('sync_queue_size'), arrived, convert_s)
        if dropped:
            self.accounting.count('dropped', dropped)
        if entry is not None:
            self._act(entry)

    def _warn_no_goal(self) -> None:
        """Count an observation seen without a goal; warn at most once per throttle period."""
        self.accounting.warn_throttled(
            'no_goal', f'no goal image yet: observation dropped, no action; publish one on '
            f'{self.param("goal_topic")} or call the capture_goal service')

    def _act(self, entry: dict) -> None:
        t0 = time.perf_counter()
        if self.goal_source == 'none' or self.policy is None:
            self._warn_no_goal()
            return
        with self._policy_lock:
            self.policy.last_distance = None
            try:
                action = np.asarray(self.policy.select_action(
                    {'image': entry['image'], 'tool_quat': entry['quat']}),
                    np.float32).reshape(-1)
            except (RuntimeError, ValueError) as err:
                self.accounting.reject('policy_input', f'{type(err).__name__}: {err}')
                return
            distance = self.policy.last_distance  # None unless this call re-planned
        t1 = time.perf_counter()
        if action.size != 4 or not np.all(np.isfinite(action)):
            self.accounting.reject('policy_output', f'planner returned {action.tolist()}, '
                                   f'expected 4 finite values')
            return
        self._action_pub.publish(Joy(header=entry['header'], axes=action.tolist()))
        if distance is not None:
            self.last_distance = float(distance)
            self._distance_pub.publish(Float32(data=self.last_distance))
            self.accounting.count('plans')
        t2 = time.perf_counter()
        self.accounting.count('published')
        self.timer.add('sync_wait', t0 - entry['first'] - entry['convert'])
        self.timer.add('convert', entry['convert'])
        self.timer.add('plan', t1 - t0)
        self.timer.add('publish', t2 - t1)
        self.timer.add('total', t2 - entry['first'])

    def diagnostic_values(self) -> dict[str, str]:
        values = {'goal': self.goal_source,
                  'distance': 'n/a' if self.last_distance is None
                  else f'{self.last_distance:.6f}',
                  **{name: str(self.param(name)) for name in _PLANNER_SETTINGS},
                  'pending_stamps': str(len(self._joiner))}
        counts = self.accounting.counts()
        values.setdefault('no_goal', str(counts.get('no_goal', 0)))
        policy = self.policy
        if policy is not None:
            values.update({'policy': policy.name, 'pool_size': str(len(policy.pool)),
                           'device': str(policy.pool.device),
                           'encoder': policy.config.encoder})
        return values


def main(args=None) -> int:
    """Console script `planner_node`."""
    return run_node(PlannerNode, args)


if __name__ == '__main__':
    sys.exit(main())
