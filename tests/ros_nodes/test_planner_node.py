"""planner_node over real DDS: actions and distances equal direct MbSPolicy calls."""
import numpy as np
import pytest
import torch

from tests.ros_nodes.conftest import (
    DEADLINE,
    diagnostics_of,
    wait_for,
    wait_matched,
    wait_subscribed,
)

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.exceptions import InvalidParameterValueException  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, Joy  # noqa: E402
from std_msgs.msg import Float32, Header  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from embodied_vision.policies import load_policy  # noqa: E402
from embodied_vision.policies.mbs.configuration_mbs import MbSConfig  # noqa: E402
from embodied_vision.policies.mbs.modeling_mbs import ActionPool, MbSPolicy  # noqa: E402
from embodied_vision.ros_nodes.conversions import numpy_to_image  # noqa: E402
from embodied_vision.ros_nodes.planner_node import PlannerNode  # noqa: E402

GOAL_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
QUAT = (0.9, 0.1, -0.3, 0.2)  # w, x, y, z (not normalised: the planner normalises)


def _overrides(**values):
    return [Parameter(k, value=v) for k, v in values.items()]


@pytest.fixture(scope='module')
def policy_path(tmp_path_factory):
    torch.manual_seed(0)
    config = MbSConfig(image_size=32, resize_to=36, proj_dim=8, dynamics_hidden=())
    directions = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1],
                               [0, 0, -1]])
    policy = MbSPolicy(config, ActionPool(directions))
    return str(policy.save_pretrained(tmp_path_factory.mktemp('mbs') / 'policy'))


def _frame(seed):
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _header(sec):
    header = Header(frame_id='wrist_optical_frame')
    header.stamp.sec = sec
    return header


def _pose(sec, quat=QUAT):
    pose = PoseStamped(header=_header(sec))
    o = pose.pose.orientation
    o.w, o.x, o.y, o.z = (float(v) for v in quat)
    return pose


class _Rig:
    """A planner node on prefixed topics plus the probe's publishers matched to it."""

    def __init__(self, context, spinner, probe, prefix, policy_path, **params):
        self.prefix, self.probe, self.spinner = prefix, probe, spinner
        self.node = PlannerNode(f'{prefix}_planner_node', context=context,
                                parameter_overrides=_overrides(
            policy_path=policy_path, image_topic=f'{prefix}/image',
            ee_pose_topic=f'{prefix}/ee_pose', goal_topic=f'{prefix}/goal',
            action_topic=f'{prefix}/action', distance_topic=f'{prefix}/distance',
            log_throttle_period=0.0, diagnostics_period=0.1, **params))
        spinner.add(self.node)
        probe.listen(Joy, f'{prefix}/action')
        probe.listen(Float32, f'{prefix}/distance')
        assert self.node.bring_up()
        self.image_pub = probe.publisher(Image, f'{prefix}/image')
        self.pose_pub = probe.publisher(PoseStamped, f'{prefix}/ee_pose')
        for pub, topic in ((self.image_pub, f'{prefix}/image'),
                           (self.pose_pub, f'{prefix}/ee_pose')):
            wait_matched(pub, self.node, topic)
        for topic in ('action', 'distance'):
            wait_subscribed(self.node, f'{prefix}/{topic}')

    def send(self, sec, frame, quat=QUAT):
        self.image_pub.publish(numpy_to_image(frame, 'rgb8', header=_header(sec)))
        self.pose_pub.publish(_pose(sec, quat))

    def actions(self):
        return self.probe.messages(f'{self.prefix}/action')

    def distances(self):
        return self.probe.messages(f'{self.prefix}/distance')

    def close(self):
        self.spinner.remove(self.node)
        self.node.release()
        self.node.destroy_node()


def test_goal_topic_late_joiner_action_and_distance_equal_direct_calls(
        ros_context, spinner, probe, policy_path):
    goal, frame = _frame(1), _frame(2)
    goal_pub = probe.node.create_publisher(Image, 'a/goal', GOAL_QOS)
    goal_pub.publish(numpy_to_image(goal, 'rgb8', header=_header(1)))  # before the node
    rig = _Rig(ros_context, spinner, probe, 'a', policy_path)
    try:
        wait_for(lambda: rig.node.goal_source == 'topic', what='the transient-local goal')
        assert rig.node.goal_stamp == (1, 0)
        rig.send(5, frame)
        wait_for(lambda: rig.actions() and rig.distances(), what='action and distance')
        (action,) = rig.actions()
        assert action.header.stamp.sec == 5 and action.header.frame_id == 'wrist_optical_frame'

        direct = load_policy(policy_path)
        direct.set_goal(goal)
        _, _, cosine = direct.plan(frame)
        expected = direct.select_action({'image': frame, 'tool_quat': np.array(QUAT)})
        np.testing.assert_allclose(action.axes, expected, rtol=1e-5, atol=1e-6)
        assert len(action.axes) == 4 and np.any(np.asarray(action.axes[:3]) != 0)
        assert rig.distances()[0].data == pytest.approx(cosine, abs=1e-6)
        assert rig.node.last_distance == pytest.approx(cosine, abs=1e-6)

        # the second control step of the 4 cm move comes from the queue: no re-plan
        rig.send(6, frame)
        wait_for(lambda: len(rig.actions()) >= 2, what='second action')
        wait_for(lambda: rig.node.accounting.counts()['published'] >= 2, what='2 published')
        assert rig.node.accounting.counts()['plans'] == 1  # counted before 'published'
        np.testing.assert_allclose(rig.actions()[1].axes,
                                   direct.select_action({'image': frame,
                                                         'tool_quat': np.array(QUAT)}),
                                   rtol=1e-5, atol=1e-6)
        assert len(rig.distances()) == 1
    finally:
        rig.close()
        probe.node.destroy_publisher(goal_pub)


def test_no_goal_no_action_counted_then_capture_goal_service(
        ros_context, spinner, probe, policy_path):
    probe.listen(DiagnosticArray, '/diagnostics')
    rig = _Rig(ros_context, spinner, probe, 'b', policy_path)
    client = probe.node.create_client(Trigger, 'capture_goal')
    try:
        assert client.wait_for_service(timeout_sec=DEADLINE)
        future = client.call_async(Trigger.Request())  # no frame yet
        wait_for(future.done, what='capture_goal response')
        assert not future.result().success and 'b/image' in future.result().message

        frame = _frame(3)
        rig.send(10, frame)
        rig.send(11, _frame(4))
        wait_for(lambda: rig.node.accounting.counts().get('no_goal', 0) >= 2,
                 what='2 no-goal counts')
        wait_for(lambda: int((diagnostics_of(probe, 'b_planner_node') or {}).get(
            'no_goal', 0)) >= 2, what='no_goal in diagnostics')
        assert diagnostics_of(probe, 'b_planner_node')['goal'] == 'none'
        assert not rig.actions() and not rig.distances()

        future = client.call_async(Trigger.Request())  # the latest frame (stamp 11)
        wait_for(future.done, what='capture_goal response')
        assert future.result().success and '11.' in future.result().message
        assert rig.node.goal_source == 'capture_goal service'

        # the same frame as the goal: cosine 1; stop_threshold changed at runtime stops it
        assert rig.node.set_parameters([Parameter('stop_threshold', value=0.99)])[0].successful
        assert rig.node.policy.config.stop_threshold == pytest.approx(0.99)
        rig.send(12, _frame(4))
        wait_for(lambda: rig.actions() and rig.distances(), what='action after capture')
        assert rig.distances()[0].data == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_array_equal(rig.actions()[0].axes[:3], [0.0, 0.0, 0.0])
        assert rig.node.set_parameters([Parameter('stop_threshold', value=-1.0)])[0].successful
        assert rig.node.policy.config.stop_threshold is None
    finally:
        probe.node.destroy_client(client)
        rig.close()


def test_missing_policy_path_fails_configure_cleanly(ros_context, tmp_path):
    for path in (str(tmp_path / 'nothing'), ''):
        node = PlannerNode('bad_planner_node', context=ros_context,
                           parameter_overrides=_overrides(policy_path=path))
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
            assert node.state_label() == 'unconfigured' and node.policy is None
        finally:
            node.destroy_node()


def test_parameters_are_validated(ros_context, policy_path):
    with pytest.raises(InvalidParameterValueException, match="'cpu', 'cuda'"):
        PlannerNode('bad_device_node', context=ros_context,
                    parameter_overrides=_overrides(device='gpu'))
    with pytest.raises(InvalidParameterValueException, match='sensor_data'):
        PlannerNode('bad_qos_node', context=ros_context,
                    parameter_overrides=_overrides(goal_qos='fast'))
    node = PlannerNode('param_planner_node', context=ros_context,
                       parameter_overrides=_overrides(policy_path=policy_path))
    try:
        result = node.set_parameters([Parameter('stop_threshold', value=1.5)])[0]
        assert not result.successful and 'range' in result.reason and '1.0' in result.reason
        result = node.set_parameters([Parameter('policy_path', value='/elsewhere')])[0]
        assert not result.successful and 'read-only' in result.reason
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.policy.config.stop_threshold is None
        assert node.set_parameters([Parameter('stop_threshold', value=0.5)])[0].successful
        assert node.policy.config.stop_threshold == 0.5
        # gripper hysteresis and standing still on a grip change, at runtime
        result = node.set_parameters([Parameter('gripper_release', value=0.9)])[0]
        assert not result.successful and 'gripper_threshold=0.8' in result.reason
        assert all(r.successful for r in node.set_parameters(
            [Parameter('gripper_release', value=0.5), Parameter('grip_hold_steps', value=8)]))
        config = node.policy.config
        assert config.gripper_release == 0.5 and config.grip_hold_steps == 8
        assert all(r.successful for r in node.set_parameters(
            [Parameter('gripper_release', value=-1.0), Parameter('grip_hold_steps', value=-1)]))
        assert config.gripper_release is None and config.grip_hold_steps == 0  # as saved
    finally:
        node.release()
        node.destroy_node()


def test_closed_loop_with_sim_node_wrist_camera(ros_context, spinner, probe, policy_path):
    """sim_node (wrist camera, lockstep) + planner_node: capture the goal, the loop steps."""
    pytest.importorskip('mujoco')
    from embodied_vision.ros_nodes.sim_node import SimNode  # sim picks EGL when headless
    ns = '/plan_loop'
    planner = PlannerNode(context=ros_context, namespace=ns, parameter_overrides=_overrides(
        policy_path=policy_path, log_throttle_period=0.0))
    sim = SimNode(context=ros_context, namespace=ns, parameter_overrides=_overrides(
        task='Reach', cameras=['wrist'], image_width=32, image_height=32, depth=False,
        step_mode='lockstep', action_timeout=0.2, control_rate=200.0, auto_reset=False))
    probe.listen(Joy, f'{ns}/action')
    probe.listen(Image, f'{ns}/wrist/image_raw')
    spinner.add(planner, sim)
    client = probe.node.create_client(Trigger, f'{ns}/capture_goal')
    def stamps(topic):
        return {(m.header.stamp.sec, m.header.stamp.nanosec) for m in probe.messages(topic)}

    def state():  # what each side saw, for a failure message
        thread = sim._thread
        return (f'planner {planner.state_label()}, counts {planner.accounting.counts()}; '
                f'sim {sim.state_label()}, {sim.diagnostic_values()}, '
                f'counts {sim.accounting.counts()}, thread alive '
                f'{thread is not None and thread.is_alive()}, failure {sim.failure!r}; probe '
                f'{len(probe.messages(f"{ns}/wrist/image_raw"))} frames, '
                f'{len(probe.messages(f"{ns}/action"))} actions')

    try:
        assert planner.bring_up()
        # the sim publishes its first observation on activation: match its outputs first
        assert sim.trigger_configure() == TransitionCallbackReturn.SUCCESS
        wait_subscribed(sim, f'{ns}/wrist/image_raw', subscribers=2)  # planner and probe
        wait_subscribed(sim, f'{ns}/ee_pose')
        wait_subscribed(planner, f'{ns}/action')
        assert sim.trigger_activate() == TransitionCallbackReturn.SUCCESS
        wait_for(lambda: planner.accounting.counts().get('no_goal', 0) >= 1,
                 what='a goal-less frame', state=state)
        assert not probe.messages(f'{ns}/action')
        assert client.wait_for_service(timeout_sec=DEADLINE)
        future = client.call_async(Trigger.Request())
        wait_for(future.done, what='capture_goal response', state=state)
        assert future.result().success, future.result().message
        wait_for(lambda: len(probe.messages(f'{ns}/action')) >= 3, what='3 actions',
                 state=state)
        actions = probe.messages(f'{ns}/action')
        assert all(len(m.axes) == 4 for m in actions) and planner.last_distance is not None
        # every action answers a published frame (the probe may take the frame after it)
        answered = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in actions}
        wait_for(lambda: answered <= stamps(f'{ns}/wrist/image_raw'),
                 what=f'frames stamped {sorted(answered)}')
        wait_for(lambda: len(stamps(f'{ns}/wrist/image_raw')) >= 3,
                 what='the sim stepping on the actions')
    finally:
        probe.node.destroy_client(client)
        spinner.remove(planner, sim)
        for node in (planner, sim):
            node.release()
            node.destroy_node()
