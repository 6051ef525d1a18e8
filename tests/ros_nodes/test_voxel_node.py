"""voxel_node over real DDS: outputs equal the encoder on the offline-fused grid, bad input is
counted and survived, and sim_node's cameras feed it."""
import os

import numpy as np
import pytest
import torch

from tests.numerics import assert_fp32_close
from tests.ros_nodes.conftest import diagnostics_of, wait_for, wait_matched, wait_subscribed

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseStamped, TransformStamped  # noqa: E402
from rclpy.exceptions import InvalidParameterValueException  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from embodied_vision import deploy  # noqa: E402
from embodied_vision.checkpoints import save_encoder  # noqa: E402
from embodied_vision.encoders import create_encoder, load_encoder  # noqa: E402
from embodied_vision.geometry import fuse_radiance_grid  # noqa: E402
from embodied_vision.ros_nodes.conversions import (  # noqa: E402
    depth_to_metres,
    image_to_numpy,
    intrinsics_to_camera_info,
    numpy_to_image,
    pose_stamped_from_rt,
)
from embodied_vision.ros_nodes.pointcloud import pointcloud2_to_numpy, unpack_rgb  # noqa: E402
from embodied_vision.ros_nodes.pose_sync import PoseBuffer, rigid_from_pose  # noqa: E402
from embodied_vision.ros_nodes.voxel_node import (  # noqa: E402
    WORKSPACE_MAX,
    WORKSPACE_MIN,
    VoxelNode,
)

H, W = 32, 40
K = np.array([[30.0, 0.0, 19.5], [0.0, 30.0, 15.5], [0.0, 0.0, 1.0]])
BOX = (np.array(WORKSPACE_MIN), np.array(WORKSPACE_MAX))
RNG = np.random.default_rng(0)


def _look_at(eye, target):
    """OpenCV camera-to-world pose (x right, y down, z forward) at `eye` facing `target`."""
    eye = np.asarray(eye, np.float64)
    z = np.asarray(target, np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    pose[:3, 3] = eye
    return pose


def _render(pose):
    """Planar depth (H, W) of the table plane z = 0 with a 12 cm square top at z = 0.1."""
    v, u = np.mgrid[0:H, 0:W]
    rays = pose[:3, :3] @ np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(H * W)])
    origin = pose[:3, 3]
    depth = -origin[2] / rays[2]
    top = (0.1 - origin[2]) / rays[2]
    on_top = (np.abs(origin[:2, None] + top * rays[:2]) < 0.06).all(axis=0)
    return np.where(on_top, top, depth).reshape(H, W).astype(np.float32)


POSE_A = _look_at([0.0, -0.45, 0.55], [0.0, 0.0, 0.0])
POSE_B = _look_at([0.35, 0.2, 0.5], [0.0, 0.0, 0.05])
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _header(sec, frame='front_optical_frame'):
    header = Header(frame_id=frame)
    header.stamp.sec, header.stamp.nanosec = int(sec), int(round(sec % 1 * 1e9)) or 500
    return header


def _params(checkpoint, prefix='v', **extra):
    values = dict(encoder_name='nerf_mae_swin_micro', checkpoint_path=str(checkpoint),
                  backend='eager', device='cpu', window=2, image_topic=f'{prefix}/image',
                  depth_topic=f'{prefix}/depth', camera_info_topic=f'{prefix}/camera_info',
                  pose_topic=f'{prefix}/pose', embedding_topic=f'{prefix}/embedding',
                  cloud_topic=f'{prefix}/cloud', input_qos='reliable', input_qos_depth=10,
                  diagnostics_period=0.2, log_throttle_period=0.0)
    values.update(extra)
    return [Parameter(k, value=v) for k, v in values.items()]


class _Rig:
    """The probe's publishers of one voxel_node's inputs and its recorded outputs."""

    def __init__(self, probe, node, prefix, pose_type=PoseStamped):
        self.probe, self.node, self.prefix = probe, node, prefix
        kinds = {'image': Image, 'depth': Image, 'camera_info': CameraInfo, 'pose': pose_type}
        self.pubs = {name: probe.publisher(kind, f'{prefix}/{name}')
                     for name, kind in kinds.items()}
        for name, pub in self.pubs.items():
            wait_matched(pub, node, f'{prefix}/{name}')
        probe.listen(Image, f'{prefix}/embedding')
        probe.listen(PointCloud2, f'{prefix}/cloud')
        wait_subscribed(node, f'{prefix}/embedding')
        wait_subscribed(node, f'{prefix}/cloud')

    def camera_info(self, width=W, height=H, k=K):
        self.pubs['camera_info'].publish(intrinsics_to_camera_info(k, width, height,
                                                                   _header(1)))

    def pose(self, pose, sec, frame='world'):
        msg = pose_stamped_from_rt(pose[:3, :3], pose[:3, 3], header=_header(sec, frame))
        self.pubs['pose'].publish(msg)
        return msg

    def view(self, sec, image=None, depth=None):
        image = RGB if image is None else image
        depth = _render(POSE_A) if depth is None else depth
        for name, value in (('image', image), ('depth', depth)):
            if isinstance(value, np.ndarray):
                value = numpy_to_image(value, 'rgb8' if value.ndim == 3 else '32FC1',
                                       header=_header(sec))
            self.pubs[name].publish(value)

    def outputs(self, what, sec):
        return [m for m in self.probe.messages(f'{self.prefix}/{what}')
                if m.header.stamp.sec == int(sec)]

    def wait_output(self, sec):
        wait_for(lambda: self.outputs('embedding', sec) and self.outputs('cloud', sec),
                 what=f'outputs of the view stamped {sec}', state=self.node.diagnostic_values)
        return self.outputs('embedding', sec)[0], self.outputs('cloud', sec)[0]

    def rejected(self, key):
        return self.node.accounting.rejections().get(key, 0)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_encoder(create_encoder('nerf_mae_swin_micro'),
                        tmp_path_factory.mktemp('ckpt') / 'nerf_mae')


@pytest.fixture(scope='module')
def reference(checkpoint):
    encoder = load_encoder(checkpoint)
    compiled = deploy.compile(encoder, 'eager', device='cpu', check_parity=False)

    def run(views):
        grid = fuse_radiance_grid(views, *BOX, max_resolution=32)
        return grid, compiled(grid.to_tensor()[None]).float().numpy()
    return encoder, run


@pytest.fixture(scope='module')
def voxel(ros_context, spinner, probe, checkpoint):
    node = VoxelNode(context=ros_context, parameter_overrides=_params(checkpoint))
    assert node.bring_up()
    spinner.add(node)
    probe.listen(DiagnosticArray, '/diagnostics')
    rig = _Rig(probe, node, 'v')
    rig.camera_info()
    wait_for(lambda: node._camera_info is not None, what='CameraInfo')
    yield node, rig
    spinner.remove(node)
    node.release()
    node.destroy_node()


def test_outputs_equal_the_encoder_on_the_offline_fused_grid(voxel, reference):
    node, rig = voxel
    encoder, run = reference
    assert node.resolution == (27, 32, 14)  # the box's longest side gets the 32 of micro
    millimetres = np.rint(_render(POSE_A) * 1000).astype(np.uint16)
    millimetres[5, :4] = 0  # no reading
    pose_a = rig.pose(POSE_A, 10)
    rig.view(10, depth=numpy_to_image(millimetres, '16UC1', header=_header(10)))
    embedding, _ = rig.wait_output(10)
    assert (embedding.header.stamp.sec, embedding.header.stamp.nanosec) == (10, 500)
    assert embedding.header.frame_id == 'world'
    assert (embedding.encoding, embedding.height, embedding.width) == ('32FC1', 1, 192)
    view_a = {'rgb': RGB, 'depth': depth_to_metres(millimetres, '16UC1'), 'K': K,
              'T_world_cam': rigid_from_pose(pose_a)}
    _, expected = run([view_a])
    assert_fp32_close(image_to_numpy(embedding), expected, module=encoder, what='view A')

    # view B in metres with invalid pixels; its pose comes after the images (it waits)
    rgb_b = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth_b = _render(POSE_B)
    depth_b[:8], depth_b[8, :5], depth_b[9, :3], depth_b[10, :2] = np.inf, np.nan, -1.0, 0.0
    rig.view(11, rgb_b, depth_b)
    wait_for(lambda: node._poses.pending()[1] == 1, what='view B waiting for its pose')
    pose_b = rig.pose(POSE_B, 11)
    embedding, cloud = rig.wait_output(11)
    ignored = depth_b.copy()
    ignored[~(np.isfinite(ignored) & (ignored > 0))] = np.nan  # NaN, inf, <= 0: no information
    view_b = {'rgb': rgb_b, 'depth': ignored, 'K': K, 'T_world_cam': rigid_from_pose(pose_b)}
    grid, expected = run([view_a, view_b])  # window = 2: both views
    assert_fp32_close(image_to_numpy(embedding), expected, module=encoder, what='window A+B')
    assert cloud.header == embedding.header
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb']
    xyz = pointcloud2_to_numpy(cloud, ('x', 'y', 'z'))
    occupied = np.nonzero(grid.alpha > node.param('occupied_alpha'))
    assert 0 < len(xyz) == len(occupied[0])
    assert np.all(xyz >= BOX[0]) and np.all(xyz <= BOX[1])
    centres = np.stack([axis[index] for axis, index in zip(grid.axes(), occupied)], axis=1)
    np.testing.assert_allclose(xyz, centres, atol=1e-6)
    colours = unpack_rgb(pointcloud2_to_numpy(cloud, ('rgb',))[:, 0])
    np.testing.assert_array_equal(colours, np.rint(grid.rgbsigma[occupied][:, :3] * 255))


def _nan_pose(rig, sec):
    msg = pose_stamped_from_rt(POSE_A[:3, :3], POSE_A[:3, 3], header=_header(sec, 'world'))
    msg.pose.position.y = float('nan')
    rig.pubs['pose'].publish(msg)


def _scaled_pose(rig, sec):
    msg = pose_stamped_from_rt(POSE_A[:3, :3], POSE_A[:3, 3], header=_header(sec, 'world'))
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = 2 * o.x, 2 * o.y, 2 * o.z, 2 * o.w
    rig.pubs['pose'].publish(msg)


def _stale(rig, node, sec):
    rig.pose(POSE_A, sec - 0.5)
    rig.view(sec)  # waits: the poses end before it
    wait_for(lambda: node._poses.pending()[1] == 1, what='the view waiting for its pose')
    rig.pose(POSE_A, sec + 0.5)  # now the nearest pose is 0.5 s away


def _camera_info_size(rig, node, sec):
    rig.camera_info(64, 48)
    wait_for(lambda: node._camera_info[1] == 64, what='the wrong CameraInfo')
    rig.pose(POSE_A, sec)
    rig.view(sec)


def _bad_cases(rig, node):
    depth = _render(POSE_A)

    def posed(image=None, depth_image=None):
        def send(sec):
            rig.pose(POSE_A, sec)
            rig.view(sec, image, depth_image)
        return send

    return [
        ('depth_encoding', posed(depth_image=RGB)),  # rgb8 on the depth topic
        ('rgb_encoding', posed(image=depth)),  # 32FC1 on the colour topic
        ('size_mismatch', posed(depth_image=depth[::2, ::2].copy())),
        ('depth_invalid', posed(depth_image=np.full((H, W), np.nan, np.float32))),
        ('depth_invalid', posed(depth_image=np.where(depth > 0.6, -depth, np.inf))),
        ('pose_invalid', lambda sec: _nan_pose(rig, sec)),
        ('pose_invalid', lambda sec: _scaled_pose(rig, sec)),
        ('pose_frame', lambda sec: rig.pose(POSE_A, sec, frame='map')),
        ('stale_pose', lambda sec: _stale(rig, node, sec)),
        ('camera_info_size', lambda sec: _camera_info_size(rig, node, sec)),
        ('camera_info', lambda sec: rig.camera_info(k=np.zeros((3, 3)))),
    ]


def test_bad_input_is_rejected_counted_and_survived(voxel, probe):
    node, rig = voxel
    before = node.accounting.counts()['rejected']
    cases = _bad_cases(rig, node)
    for sec, (key, send) in enumerate(cases, start=20):
        count = rig.rejected(key)
        send(sec)
        wait_for(lambda k=key, n=count: rig.rejected(k) > n, what=f'rejection {key} at {sec}',
                 state=node.diagnostic_values)
    assert node.accounting.counts()['rejected'] == before + len(cases)  # one reason each
    rig.camera_info()
    wait_for(lambda: node._camera_info[1] == W, what='the right CameraInfo again')
    rig.pose(POSE_A, 40)
    rig.view(40)
    rig.wait_output(40)
    assert not [m for m in probe.messages('v/embedding') if 20 <= m.header.stamp.sec < 40]
    values = {}

    def reported():
        values.update(diagnostics_of(probe, 'voxel_node') or {})
        return int(values.get('rejected', 0)) >= before + len(cases) and \
            'total_ms_median' in values
    wait_for(reported, what='rejections and latency in /diagnostics')
    for stage in VoxelNode.STAGES:
        assert float(values[f'{stage}_ms_median']) >= 0.0, stage
    assert values['rejected_stale_pose'] == '1' and values['rejected_depth_invalid'] == '2'
    assert values['backend'] == 'eager' and values['grid'] == '27x32x14'


def test_missing_camera_info_and_pose_then_a_transform_stamped_pose(
        ros_context, spinner, probe, checkpoint):
    node = VoxelNode('voxel_fresh_node', context=ros_context, parameter_overrides=_params(
        checkpoint, prefix='f', pose_type='TransformStamped', pose_queue_size=1))
    try:
        assert node.bring_up()
        spinner.add(node)
        rig = _Rig(probe, node, 'f', TransformStamped)
        rig.view(31)  # no pose has ever arrived: it waits ...
        wait_for(lambda: node._poses.pending()[1] == 1, what='view 31 waiting')
        rig.view(32)  # ... until a newer view overflows the queue of 1
        wait_for(lambda: rig.rejected('missing_pose') == 1, what='missing pose')
        rig.pubs['pose'].publish(_transform(32))  # view 32 is posed, but no CameraInfo yet
        wait_for(lambda: rig.rejected('camera_info_missing') == 1, what='no CameraInfo')
        rig.camera_info()
        wait_for(lambda: node._camera_info is not None, what='CameraInfo')
        rig.pubs['pose'].publish(_transform(33))
        rig.view(33)
        rig.wait_output(33)
        assert not [m for m in probe.messages('f/embedding') if m.header.stamp.sec < 33]
        assert node.accounting.counts()['rejected'] == 2
    finally:
        spinner.remove(node)
        node.release()
        node.destroy_node()


def test_cloud_carries_the_labels_of_a_voxel_labelling_model(
        ros_context, spinner, probe, checkpoint, tmp_path):
    from embodied_vision.downstream import (
        create_voxel_semantics_model,
        load_voxel_semantics_model,
        save_voxel_semantics_model,
    )
    torch.manual_seed(3)
    classes = ['background', 'box', 'other']
    model = create_voxel_semantics_model(classes, 'nerf_mae_pretrain_swin_micro')
    torch.nn.init.normal_(model.head.conv.weight, std=1.0)  # several classes get predicted
    path = save_voxel_semantics_model(model, tmp_path / 'semantics')
    node = VoxelNode('voxel_label_node', context=ros_context, parameter_overrides=_params(
        checkpoint, prefix='l', window=1, semantics_path=str(path), occupied_alpha=0.3))
    try:
        assert node.bring_up()
        spinner.add(node)
        rig = _Rig(probe, node, 'l')
        rig.camera_info()
        wait_for(lambda: node._camera_info is not None, what='CameraInfo')
        pose = rig.pose(POSE_A, 41)
        rig.view(41)
        _, cloud = rig.wait_output(41)
        assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb', 'label']
        assert node.diagnostic_values()['classes'] == 'background,box,other'
        grid = fuse_radiance_grid([{'rgb': RGB, 'depth': _render(POSE_A), 'K': K,
                                    'T_world_cam': rigid_from_pose(pose)}], *BOX,
                                  max_resolution=32)
        expected = load_voxel_semantics_model(path).predict(grid.to_tensor()[None])[0]
        occupied = np.nonzero(grid.alpha > 0.3)
        labels = pointcloud2_to_numpy(cloud, ('label',))[:, 0]
        assert len(labels) == len(occupied[0]) > 0
        # float32 reductions may flip a near-tie between two classes: allow a few voxels
        agree = np.mean(labels == expected.numpy()[occupied])
        assert agree > 0.98 and len(np.unique(labels)) > 1, (agree, np.unique(labels))
    finally:
        spinner.remove(node)
        node.release()
        node.destroy_node()


def _transform(sec):
    """POSE_A as a TransformStamped world -> camera optical frame."""
    transform = TransformStamped(header=_header(sec, 'world'),
                                 child_frame_id='front_optical_frame')
    pose = pose_stamped_from_rt(POSE_A[:3, :3], POSE_A[:3, 3]).pose
    t, r = transform.transform.translation, transform.transform.rotation
    t.x, t.y, t.z = pose.position.x, pose.position.y, pose.position.z
    r.x, r.y, r.z, r.w = (pose.orientation.x, pose.orientation.y, pose.orientation.z,
                          pose.orientation.w)
    return transform


def test_pose_buffer_takes_the_nearest_pose_once_the_poses_reach_the_view():
    ms = 1_000_000
    poses = PoseBuffer(max_age=0.004, max_waiting=2)
    assert poses.add_pose(10 * ms, 'p10') == []
    assert poses.add_view(13 * ms, 'a') == []  # waits: a pose after it may be nearer
    assert poses.add_pose(14 * ms, 'p14') == [('a', 'p14', '', 0.001)]
    assert poses.add_view(11 * ms, 'b') == [('b', 'p10', '', 0.001)]  # both sides known
    assert poses.add_pose(14 * ms, 'p14b') == []  # a repeated stamp replaces the pose
    assert poses.add_view(14 * ms, 'c') == [('c', 'p14b', '', 0.0)]
    assert poses.add_pose(30 * ms, 'p30') == []
    assert poses.add_view(23 * ms, 'd') == [('d', None, 'stale_pose', 0.007)]
    poses.max_age = 0.01  # a runtime parameter change
    assert poses.add_view(23 * ms, 'e') == [('e', 'p30', '', 0.007)]
    assert poses.add_view(22 * ms, 'f') == [('f', 'p14b', '', 0.008)]  # a tie: the older
    assert poses.add_pose(5 * ms, 'p5') == [] and poses.time_jumps == 1  # a bag loop: flush
    assert poses.pending() == (1, 0)
    assert poses.add_view(40 * ms, 'g') == [] and poses.add_view(41 * ms, 'h') == []
    assert poses.add_view(42 * ms, 'i') == [('g', None, 'stale_pose', 0.035)]  # overflow
    poses.reset()
    assert poses.add_view(1 * ms, 'j') == [] and poses.add_view(2 * ms, 'k') == []
    assert poses.add_view(3 * ms, 'l') == [('j', None, 'missing_pose', None)]


def test_rigid_from_pose_refuses_what_is_not_a_rigid_transform():
    msg = pose_stamped_from_rt(POSE_B[:3, :3], POSE_B[:3, 3])
    np.testing.assert_allclose(rigid_from_pose(msg), POSE_B, atol=1e-12)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = 1.01 * o.x, 1.01 * o.y, 1.01 * o.z, 1.01 * o.w
    with pytest.raises(ValueError, match='not rigid'):
        rigid_from_pose(msg)
    msg.pose.orientation.w = float('inf')
    with pytest.raises(ValueError, match='NaN or inf'):
        rigid_from_pose(msg)


@pytest.mark.parametrize('overrides, error', [
    ({'encoder_name': 'r3m_resnet18', 'checkpoint_path': ''}, 'voxel-grid encoder'),
    ({'bbox_max': [0.3, -0.4, 0.3]}, 'must exceed bbox_min'),
    ({'max_resolution': 64}, 'exceeds the 32^3 grids'),
    ({'semantics_path': '/nonexistent/semantics'}, '/nonexistent/semantics'),
])
def test_configure_fails_cleanly(ros_context, checkpoint, overrides, error):
    node = VoxelNode('bad_voxel_node', context=ros_context,
                     parameter_overrides=_params(checkpoint, prefix='b', **overrides))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.state_label() == 'unconfigured' and node.model is None
        assert error in node.diagnostic_values()['configure_error']
    finally:
        node.destroy_node()


def test_parameters_are_validated(ros_context, checkpoint):
    for bad, match in (({'bbox_min': [0.0, 0.0]}, 'three finite floats'),
                       ({'pose_type': 'Odometry'}, 'TransformStamped'),
                       ({'encoder_name': 'nerf_mae_swin_nano'}, 'nerf_mae_swin_micro')):
        with pytest.raises(InvalidParameterValueException, match=match):
            VoxelNode('invalid_voxel_node', context=ros_context,
                      parameter_overrides=_params(checkpoint, prefix='i', **bad))


def test_sim_node_feeds_voxel_node(ros_context, spinner, probe, checkpoint):
    pytest.importorskip('mujoco')
    os.environ.setdefault('MUJOCO_GL', 'egl')
    from embodied_vision.ros_nodes.sim_node import SimNode
    from embodied_vision.sim.perception import WORKSPACE_BBOX
    sim = SimNode('voxel_sim_node', context=ros_context, parameter_overrides=[
        Parameter(k, value=v) for k, v in dict(
            task='Reach', cameras=['front'], image_width=W, image_height=H, seed=3,
            step_mode='timer', control_rate=20.0).items()])
    node = VoxelNode('voxel_loop_node', context=ros_context, parameter_overrides=_params(
        checkpoint, prefix='front', image_topic='front/image_raw',
        depth_topic='front/depth/image_raw', pose_topic='front/pose', window=3))
    spinner.add(sim, node)
    try:
        for name, corner in zip(('bbox_min', 'bbox_max'), WORKSPACE_BBOX):  # the defaults
            np.testing.assert_array_equal(np.asarray(node.param(name)), corner)
        assert node.bring_up()
        probe.listen(Image, 'front/embedding')
        probe.listen(PointCloud2, 'front/cloud')
        wait_subscribed(node, 'front/embedding')
        assert sim.trigger_configure() == TransitionCallbackReturn.SUCCESS
        for topic in ('image_raw', 'depth/image_raw', 'camera_info', 'pose'):
            wait_subscribed(sim, f'front/{topic}')
        assert sim.trigger_activate() == TransitionCallbackReturn.SUCCESS
        wait_for(lambda: len(probe.messages('front/embedding')) >= 3, what='3 embeddings',
                 state=node.diagnostic_values)
        embeddings = probe.messages('front/embedding')
        stamps = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in embeddings]
        assert stamps == sorted(set(stamps))  # newest views, each once
        assert all(np.all(np.isfinite(image_to_numpy(m))) for m in embeddings)
        cloud = pointcloud2_to_numpy(probe.messages('front/cloud')[-1])
        assert len(cloud) > 0 and np.all(cloud >= BOX[0]) and np.all(cloud <= BOX[1])
        # only the first frame may race its CameraInfo; nothing else is rejected
        assert set(node.accounting.rejections()) <= {'camera_info_missing'}
        assert node.accounting.rejections().get('camera_info_missing', 0) <= 1
    finally:
        spinner.remove(sim, node)
        for each in (sim, node):
            each.release()
            each.destroy_node()
