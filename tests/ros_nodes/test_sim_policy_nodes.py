"""sim_node and policy_node over real DDS: outputs equal direct env / policy calls."""
import os

import numpy as np
import pytest
import torch

from tests.ros_nodes.conftest import DEADLINE, wait_for, wait_matched, wait_subscribed

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('mujoco')
os.environ.setdefault('MUJOCO_GL', 'egl')
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState, Joy, PointCloud2  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from embodied_vision.geometry.pointcloud import depth_to_points  # noqa: E402
from embodied_vision.policies import OBS_EMBEDDING, OBS_STATE, make_policy  # noqa: E402
from embodied_vision.policies.bc.training_bc_mlp import train_bc  # noqa: E402
from embodied_vision.ros_nodes.conversions import (  # noqa: E402
    camera_info_to_intrinsics,
    image_to_numpy,
    numpy_to_image,
)
from embodied_vision.ros_nodes.pointcloud import pointcloud2_to_numpy, unpack_rgb  # noqa: E402
from embodied_vision.ros_nodes.policy_node import PolicyNode  # noqa: E402
from embodied_vision.ros_nodes.pose_sync import rigid_from_pose  # noqa: E402
from embodied_vision.ros_nodes.sim_node import SimNode  # noqa: E402

SEED = 7


def _overrides(**values):
    return [Parameter(k, value=v) for k, v in values.items()]


OBSERVATION_TOPICS = (('front/image_raw', Image), ('front/depth/image_raw', Image),
                      ('front/camera_info', CameraInfo), ('front/pose', PoseStamped),
                      ('ee_pose', PoseStamped),
                      ('gripper_state', JointState), ('expert_action', Joy))


@pytest.fixture(scope='module')
def sim(ros_context, spinner, probe):
    node = SimNode(context=ros_context, parameter_overrides=_overrides(
        task='Reach', cameras=['front'], image_width=64, image_height=64, seed=SEED,
        step_mode='lockstep', action_timeout=0.3, control_rate=200.0, auto_reset=False,
        publish_expert_action=True, diagnostics_period=0.2, log_throttle_period=0.0))
    for topic, msg_type in OBSERVATION_TOPICS:
        probe.listen(msg_type, topic)
    spinner.add(node)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    for topic, _ in OBSERVATION_TOPICS:  # matched before the first observation goes out
        wait_subscribed(node, topic)
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    pub = probe.publisher(Joy, 'action')
    wait_matched(pub, node, 'action')
    yield node, pub
    spinner.remove(node)
    node.release()
    node.destroy_node()


@pytest.fixture(scope='module')
def direct_env():
    import gymnasium as gym

    import embodied_vision.sim  # noqa: F401  (registers the ids)
    env = gym.make('embodied_vision/Reach-v0', cameras=('front',), image_size=(64, 64),
                   disable_env_checker=True)
    yield env
    env.close()


def _stamps(probe, topic):
    return [(m.header.stamp.sec, m.header.stamp.nanosec) for m in probe.messages(topic)]


def test_sim_publishes_what_the_env_renders_and_applies_actions(sim, probe, direct_env):
    node, pub = sim
    wait_for(lambda: all(probe.messages(topic) for topic, _ in OBSERVATION_TOPICS),
             what='the first observation on every topic')
    first = probe.messages('front/image_raw')[0]
    obs, _ = direct_env.reset(seed=SEED)
    np.testing.assert_array_equal(image_to_numpy(first), obs['front/rgb'])
    assert first.encoding == 'rgb8' and first.header.frame_id == 'front_optical_frame'
    depth = probe.messages('front/depth/image_raw')[0]
    np.testing.assert_allclose(image_to_numpy(depth), obs['front/depth'])
    info = camera_info_to_intrinsics(probe.messages('front/camera_info')[0])
    np.testing.assert_allclose(info['K'], direct_env.unwrapped.camera_params('front')['K'])
    camera_pose = probe.messages('front/pose')[0]  # the OpenCV camera-to-world pose
    assert camera_pose.header.stamp == first.header.stamp
    assert camera_pose.header.frame_id == 'world'
    np.testing.assert_allclose(rigid_from_pose(camera_pose),
                               direct_env.unwrapped.camera_params('front')['T_world_cam'],
                               atol=1e-9)
    pose = probe.messages('ee_pose')[0].pose.position
    np.testing.assert_allclose([pose.x, pose.y, pose.z], obs['proprio'][:3], atol=1e-6)
    np.testing.assert_allclose(probe.messages('gripper_state')[0].position, obs['proprio'][7:])

    # lockstep: with no action, the same observation is published again (same stamp)
    wait_for(lambda: len(probe.messages('front/image_raw')) >= 2, what='a resend')
    assert len(set(_stamps(probe, 'front/image_raw'))) == 1

    action = np.array([0.5, -0.5, 0.25, 1.0], np.float32)
    stamp = first.header.stamp
    pub.publish(Joy(header=Header(stamp=stamp), axes=action.tolist()))
    wait_for(lambda: len(set(_stamps(probe, 'front/image_raw'))) >= 2, what='next frame')
    second = [m for m in probe.messages('front/image_raw') if m.header.stamp != stamp][0]
    obs, *_ = direct_env.step(action)
    np.testing.assert_array_equal(image_to_numpy(second), obs['front/rgb'])


def test_sim_rejects_bad_actions_and_resets_on_request(sim, probe):
    node, pub = sim
    before = node.accounting.counts()['rejected']
    pub.publish(Joy(axes=[0.1, 0.2]))
    pub.publish(Joy(axes=[float('nan'), 0.0, 0.0, 0.0]))
    wait_for(lambda: node.accounting.counts()['rejected'] >= before + 2, what='2 rejected actions')
    client = probe.node.create_client(Trigger, 'reset')
    assert client.wait_for_service(timeout_sec=DEADLINE)
    future = client.call_async(Trigger.Request())
    wait_for(future.done, what='reset response')
    assert future.result().success and 'target' in future.result().message
    assert node.diagnostics.status().values


def test_sim_publishes_its_depth_as_points_when_asked(ros_context, spinner, probe, sim,
                                                      direct_env):
    assert not [p for p in sim[0].publishers if p.topic_name.endswith('/points')]  # default
    node = SimNode('points_sim_node', namespace='pts', context=ros_context,
                   parameter_overrides=_overrides(
                       task='Reach', cameras=['front'], image_width=64, image_height=64,
                       seed=SEED, step_mode='lockstep', action_timeout=0.3,
                       control_rate=200.0, auto_reset=False, depth=False,
                       publish_points=True))
    probe.listen(PointCloud2, '/pts/front/points')
    probe.listen(Image, '/pts/front/image_raw')
    spinner.add(node)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert not [p for p in node.publishers if p.topic_name.endswith('depth/image_raw')]
        for topic in ('front/points', 'front/image_raw'):
            wait_subscribed(node, topic)
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        wait_for(lambda: probe.messages('/pts/front/points') and
                 probe.messages('/pts/front/image_raw'), what='points and an image')
        cloud = probe.messages('/pts/front/points')[0]
        image = probe.messages('/pts/front/image_raw')[0]
        assert cloud.header == image.header and cloud.header.frame_id == 'front_optical_frame'
        obs, _ = direct_env.reset(seed=SEED)
        far = direct_env.observation_space['front/depth'].high.flat[0]
        params = direct_env.unwrapped.camera_params('front')
        points, colors = depth_to_points(obs['front/depth'], params['K'], obs['front/rgb'],
                                         max_depth=np.nextafter(far, 0))
        assert 0 < len(points) < 64 * 64  # the far clip (no surface) is dropped
        np.testing.assert_allclose(pointcloud2_to_numpy(cloud), points, atol=1e-6)
        np.testing.assert_array_equal(unpack_rgb(pointcloud2_to_numpy(cloud, ('rgb',))[:, 0]),
                                      colors)
    finally:
        spinner.remove(node)
        node.release()
        node.destroy_node()


@pytest.fixture(scope='module')
def bc_checkpoint(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    data = {OBS_EMBEDDING: torch.randn(64, 8, generator=g),
            OBS_STATE: torch.randn(64, 8, generator=g),
            'action': torch.rand(64, 4, generator=g) * 2 - 1}
    policy = make_policy('bc_mlp', embed_dim=8, state_dim=8, action_dim=4, hidden_dims=(16,))
    train_bc(policy, data, steps=10, batch_size=32)
    return policy, policy.save_pretrained(tmp_path_factory.mktemp('bc') / 'policy')


def _header(sec):
    header = Header(frame_id='world')
    header.stamp.sec = sec
    return header


def test_policy_node_action_equals_select_action(ros_context, spinner, probe, bc_checkpoint):
    policy, path = bc_checkpoint
    node = PolicyNode(context=ros_context, parameter_overrides=_overrides(
        policy_type='checkpoint', policy_path=str(path), embedding_topic='p/embedding',
        ee_pose_topic='p/ee_pose', gripper_topic='p/gripper', action_topic='p/action',
        instruction_topic='p/instruction', log_throttle_period=0.0))
    spinner.add(node)
    try:
        assert node.bring_up()
        probe.listen(Joy, 'p/action')
        emb_pub = probe.publisher(Image, 'p/embedding')
        pose_pub = probe.publisher(PoseStamped, 'p/ee_pose')
        grip_pub = probe.publisher(JointState, 'p/gripper')
        for pub, topic in ((emb_pub, 'p/embedding'), (pose_pub, 'p/ee_pose'),
                           (grip_pub, 'p/gripper')):
            wait_matched(pub, node, topic)
        wait_subscribed(node, 'p/action')
        rng = np.random.default_rng(1)
        embedding = rng.normal(size=(1, 8)).astype(np.float32)
        state = rng.normal(size=8).astype(np.float32)
        pose = PoseStamped(header=_header(5))
        p, o = pose.pose.position, pose.pose.orientation
        p.x, p.y, p.z, o.w, o.x, o.y, o.z = (float(v) for v in state[:7])
        emb_pub.publish(numpy_to_image(embedding, '32FC1', header=_header(5)))
        pose_pub.publish(pose)
        grip_pub.publish(JointState(header=_header(5), name=['gripper_width'],
                                    position=[float(state[7])]))
        wait_for(lambda: probe.messages('p/action'), what='action')
        (action,) = probe.messages('p/action')
        assert action.header.stamp.sec == 5
        expected = policy.select_action({OBS_EMBEDDING: embedding[0], OBS_STATE: state})
        np.testing.assert_allclose(action.axes, expected.numpy(), rtol=1e-5, atol=1e-6)

        before = node.accounting.counts()['rejected']
        bad = embedding.copy()
        bad[0, 3] = np.nan
        emb_pub.publish(numpy_to_image(bad, '32FC1', header=_header(6)))
        emb_pub.publish(numpy_to_image(np.zeros((1, 9), np.float32), '32FC1',
                                       header=_header(7)))
        wait_for(lambda: node.accounting.counts()['rejected'] >= before + 2, what='2 rejections')
        assert len(probe.messages('p/action')) == 1
    finally:
        spinner.remove(node)
        node.release()
        node.destroy_node()


@pytest.fixture(scope='module')
def l4s_checkpoint(tmp_path_factory):
    from embodied_vision.policies.lang4sim2real import L4SBCConfig, L4SBCPolicy
    torch.manual_seed(0)
    policy = L4SBCPolicy(L4SBCConfig(image_size=32, hidden_dims=(16,), pad=0,
                                     freeze_pretrained=False)).eval()
    return policy, policy.save_pretrained(tmp_path_factory.mktemp('l4s') / 'policy')


def test_policy_node_runs_an_image_policy(ros_context, spinner, probe, l4s_checkpoint):
    """A Lang4Sim2Real policy reads the frame + instruction + state; bad frames are counted."""
    policy, path = l4s_checkpoint
    node = PolicyNode('l4s_policy_node', context=ros_context, parameter_overrides=_overrides(
        policy_type='checkpoint', policy_path=str(path), require_embedding=False,
        image_topic='q/image', ee_pose_topic='q/ee_pose', gripper_topic='q/gripper',
        action_topic='q/action', instruction_topic='q/instruction', domain='real',
        log_throttle_period=0.0))
    spinner.add(node)
    try:
        assert node.bring_up()
        assert set(node.required) == {'observation.image', 'observation.instruction',
                                      OBS_STATE}
        probe.listen(Joy, 'q/action')
        pubs = {topic: probe.publisher(kind, topic) for topic, kind in (
            ('q/image', Image), ('q/ee_pose', PoseStamped), ('q/gripper', JointState))}
        for topic, pub in pubs.items():
            wait_matched(pub, node, topic)
        wait_subscribed(node, 'q/action')
        rng = np.random.default_rng(2)
        frame = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        state = rng.normal(size=8).astype(np.float32)

        def send(sec, image_msg):
            pose = PoseStamped(header=_header(sec))
            p, o = pose.pose.position, pose.pose.orientation
            p.x, p.y, p.z, o.w, o.x, o.y, o.z = (float(v) for v in state[:7])
            pubs['q/image'].publish(image_msg)
            pubs['q/ee_pose'].publish(pose)
            pubs['q/gripper'].publish(JointState(header=_header(sec), name=['gripper_width'],
                                                 position=[float(state[7])]))

        send(3, numpy_to_image(frame, 'rgb8', header=_header(3)))  # before any instruction
        wait_for(lambda: node.accounting.counts().get('rejected', 0) >= 1,
                 what='no-instruction reject')
        instruction = 'put the carrot in the bowl'
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        instruction_pub = probe.publisher(String, 'q/instruction', latched)
        wait_matched(instruction_pub, node, 'q/instruction')
        instruction_pub.publish(String(data=instruction))
        wait_for(lambda: node._instruction == instruction, what='instruction')
        send(4, numpy_to_image(frame[..., ::-1].copy(), 'bgr8', header=_header(4)))
        wait_for(lambda: probe.messages('q/action'), what='action')
        (action,) = probe.messages('q/action')
        assert action.header.stamp.sec == 4
        expected = policy.select_action({'image': frame, 'proprio': state,
                                         'instruction': instruction, 'domain': 'real'})
        np.testing.assert_allclose(action.axes, expected, rtol=1e-5, atol=1e-6)
        sim_prefixed = policy.select_action({'image': frame, 'proprio': state,
                                             'instruction': instruction, 'domain': 'sim'})
        assert not np.allclose(sim_prefixed, expected)  # the domain prefix reaches FiLM

        before = node.accounting.counts()['rejected']
        depth = np.ones((32, 32), np.float32)
        send(5, numpy_to_image(depth, '32FC1', header=_header(5)))
        wait_for(lambda: node.accounting.counts()['rejected'] >= before + 1, what='32FC1 reject')
        assert len(probe.messages('q/action')) == 1
    finally:
        spinner.remove(node)
        node.release()
        node.destroy_node()


def test_policy_node_bad_checkpoint_fails_configure(ros_context, tmp_path):
    node = PolicyNode('bad_policy_node', context=ros_context, parameter_overrides=_overrides(
        policy_type='checkpoint', policy_path=str(tmp_path / 'nothing')))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.state_label() == 'unconfigured'
    finally:
        node.destroy_node()


def test_instruction_resets_the_policy(ros_context):
    node = PolicyNode('reset_policy_node', context=ros_context)
    calls = []
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        node.policy.reset = lambda: calls.append(1)
        node._on_instruction(String(data='reach the red target'))
        assert calls == [1]
    finally:
        node.release()
        node.destroy_node()
