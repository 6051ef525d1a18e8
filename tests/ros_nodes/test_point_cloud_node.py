"""point_cloud_node over real DDS: the embedding is the encoder's on the sampled, y-up, unit-sphere
cloud; classes, depth input, the crop box, and bad input counted and survived."""
import array

import numpy as np
import pytest
import torch

from tests.numerics import assert_fp32_close
from tests.ros_nodes.conftest import diagnostics_of, wait_for, wait_matched, wait_subscribed

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.exceptions import InvalidParameterValueException  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from embodied_vision.checkpoints import save_encoder  # noqa: E402
from embodied_vision.downstream.point_classification import (  # noqa: E402
    create_point_classifier,
    load_point_classifier,
    save_point_classifier,
)
from embodied_vision.encoders import create_encoder, load_encoder  # noqa: E402
from embodied_vision.geometry.pointcloud import depth_to_points  # noqa: E402
from embodied_vision.layers.point_ops import farthest_point_sample  # noqa: E402
from embodied_vision.ros_nodes.conversions import (  # noqa: E402
    depth_to_metres,
    image_to_numpy,
    intrinsics_to_camera_info,
    numpy_to_image,
)
from embodied_vision.ros_nodes.point_cloud_node import (  # noqa: E402
    UP_AXES,
    PointCloudNode,
    model_rotation,
)
from embodied_vision.ros_nodes.pointcloud import (  # noqa: E402
    numpy_to_pointcloud2,
    pointcloud2_to_numpy,
)

N = 256  # i2p_mae_tiny's points; its first scale has 64 groups
RNG = np.random.default_rng(0)
H, W = 32, 40
K = np.array([[30.0, 0.0, 19.5], [0.0, 30.0, 15.5], [0.0, 0.0, 1.0]])
# a layout unlike numpy_to_pointcloud2's: padding, intensity first, uint32 rgb, float64 z
LAYOUT = np.dtype({'names': ['intensity', 'x', 'y', 'z', 'rgb'],
                   'formats': ['<f4', '<f4', '<f4', '<f8', '<u4'],
                   'offsets': [0, 8, 12, 16, 24], 'itemsize': 32})
DATATYPES = {np.dtype('<f4'): PointField.FLOAT32, np.dtype('<f8'): PointField.FLOAT64,
             np.dtype('<u4'): PointField.UINT32}


def _object(n, centre=(0.1, -0.05, 0.9)):
    """`n` points on the surface of a 20 x 30 x 10 cm box in a camera optical frame."""
    points = RNG.uniform(-0.5, 0.5, (n, 3))
    face = RNG.integers(0, 3, n)
    points[np.arange(n), face] = 0.5 * np.sign(points[np.arange(n), face])  # onto a face
    return (points * [0.2, 0.3, 0.1] + centre).astype(np.float32)


def _header(sec, frame='camera_optical_frame'):
    header = Header(frame_id=frame)
    header.stamp.sec, header.stamp.nanosec = int(sec), 250
    return header


def _cloud(points, sec, height=1):
    """A PointCloud2 in `LAYOUT` (organised with `height` rows) holding `points`."""
    data = np.zeros(len(points), LAYOUT)
    for i, axis in enumerate('xyz'):
        data[axis] = points[:, i]
    data['intensity'], data['rgb'] = 7.0, 0x00FF8000
    msg = PointCloud2(header=_header(sec), height=height, width=len(points) // height,
                      point_step=LAYOUT.itemsize, is_bigendian=False, is_dense=False)
    msg.row_step = msg.width * msg.point_step
    msg.fields = [PointField(name=name, offset=LAYOUT.fields[name][1], count=1,
                             datatype=DATATYPES[LAYOUT.fields[name][0]])
                  for name in LAYOUT.names]
    msg.data = array.array('B', data.tobytes())
    return msg


def _model_input(points, crop=None):
    """What the node documents, written out again: finite (and cropped) points, FPS to N or
    cyclic repeat, camera optical -> y-up (y and z negated), centred, unit sphere."""
    points = points[np.isfinite(points).all(axis=1)]
    if crop is not None:
        points = points[((points >= crop[0]) & (points <= crop[1])).all(axis=1)]
    x = torch.from_numpy(points.astype(np.float32))[None]
    if len(points) > N:
        x = x[:, farthest_point_sample(x, N)[0]]
    x = x[0].double().numpy()[np.arange(N) % len(x[0])] * [1.0, -1.0, -1.0]
    x -= x.mean(axis=0)
    return torch.from_numpy(x / np.linalg.norm(x, axis=1).max()).float()[None]


def _params(checkpoint, prefix, **extra):
    values = dict(encoder_name='i2p_mae_tiny', checkpoint_path=str(checkpoint),
                  backend='eager', device='cpu', cloud_topic=f'{prefix}/cloud',
                  depth_topic=f'{prefix}/depth', camera_info_topic=f'{prefix}/camera_info',
                  embedding_topic=f'{prefix}/embedding', class_topic=f'{prefix}/class',
                  model_cloud_topic=f'{prefix}/model_cloud', input_qos='reliable',
                  input_qos_depth=10, diagnostics_period=0.2, log_throttle_period=0.0)
    values.update(extra)
    return [Parameter(k, value=v) for k, v in values.items()]


class _Rig:
    """A running point_cloud_node, the probe's publishers of its inputs and its outputs."""

    def __init__(self, ros_context, spinner, probe, name, prefix, params,
                 outputs=('embedding',)):
        self.probe, self.prefix = probe, prefix
        self.node = PointCloudNode(name, context=ros_context, parameter_overrides=params)
        assert self.node.bring_up(), self.node.configure_error
        spinner.add(self.node)
        self.spinner = spinner
        kinds = {'embedding': Image, 'class': JointState, 'model_cloud': PointCloud2}
        for what in outputs:
            probe.listen(kinds[what], f'{self.prefix}/{what}')
            wait_subscribed(self.node, f'{self.prefix}/{what}')
        inputs = {'cloud': (PointCloud2,)} if self.node.param('input') == 'cloud' else \
            {'depth': (Image,), 'camera_info': (CameraInfo,)}
        self.pubs = {}
        for topic, (kind,) in inputs.items():
            self.pubs[topic] = probe.publisher(kind, f'{self.prefix}/{topic}')
            wait_matched(self.pubs[topic], self.node, f'{self.prefix}/{topic}')

    def outputs(self, what, sec):
        return [m for m in self.probe.messages(f'{self.prefix}/{what}')
                if m.header.stamp.sec == int(sec)]

    def wait(self, what, sec, timeout=120.0):
        wait_for(lambda: self.outputs(what, sec), timeout,
                 what=f'{what} of the input stamped {sec}', state=self.node.diagnostic_values)
        return self.outputs(what, sec)[0]

    def rejected(self, key):
        return self.node.accounting.rejections().get(key, 0)

    def close(self):
        self.spinner.remove(self.node)
        self.node.release()
        self.node.destroy_node()


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_encoder(create_encoder('i2p_mae_tiny'), tmp_path_factory.mktemp('ckpt') / 'pc')


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    torch.manual_seed(1)
    model = create_point_classifier(['a', 'b'], 'i2p_mae_tiny', group_sizes=(8, 4, 4))
    torch.nn.init.normal_(model.cls_head_finetune[-1].weight, std=1.0)  # scores away from 1/2
    return save_point_classifier(model, tmp_path_factory.mktemp('cls') / 'classifier')


@pytest.fixture(scope='module')
def encoder(checkpoint):
    return load_encoder(checkpoint).eval()


@pytest.fixture(scope='module')
def rig(ros_context, spinner, probe, checkpoint, classifier):
    probe.listen(DiagnosticArray, '/diagnostics')
    params = _params(checkpoint, 'p', classifier_path=str(classifier), class_top_k=0,
                     publish_model_cloud=True)
    rig = _Rig(ros_context, spinner, probe, 'point_cloud_node', 'p', params,
               ('embedding', 'class', 'model_cloud'))
    yield rig
    rig.close()


def _embed(encoder, x):
    with torch.inference_mode():
        return encoder(x).numpy()


def test_outputs_are_the_models_on_the_sampled_y_up_cloud(rig, encoder, classifier):
    points = _object(600)
    points[::50] = np.nan  # 12 points without a return
    rig.pubs['cloud'].publish(_cloud(points, 10, height=4))  # organised, 4 x 150
    embedding = rig.wait('embedding', 10)
    assert embedding.header == _header(10)
    assert (embedding.encoding, embedding.height, embedding.width) == ('32FC1', 1, 64)
    x = _model_input(points)
    assert_fp32_close(image_to_numpy(embedding), _embed(encoder, x), module=encoder,
                      what='embedding')
    cloud = rig.wait('model_cloud', 10)
    assert (cloud.header.stamp, cloud.header.frame_id) == (_header(10).stamp,
                                                          'point_cloud_model')
    model_points = pointcloud2_to_numpy(cloud)
    np.testing.assert_allclose(model_points, x[0].numpy(), atol=1e-6)
    assert abs(np.linalg.norm(model_points, axis=1).max() - 1.0) < 1e-6
    classes = rig.wait('class', 10)
    assert classes.header == _header(10) and sorted(classes.name) == ['a', 'b']
    scores = np.asarray(classes.position)
    assert np.all((scores >= 0) & (scores <= 1)) and abs(scores.sum() - 1) < 1e-9
    assert scores[0] >= scores[1]  # best first: name[0] is the prediction
    model = load_point_classifier(classifier)
    with torch.inference_mode():
        expected = torch.softmax(model(x).double(), dim=1)[0].numpy()
    order = [model.class_names.index(name) for name in classes.name]
    np.testing.assert_allclose(scores, expected[order], atol=1e-4)
    assert rig.node.diagnostic_values()['weights'] == str(rig.node.param('checkpoint_path'))


def test_bad_input_is_rejected_counted_and_survived(rig, probe):
    node = rig.node
    good = _object(400)

    def edited(sec, **fields):
        msg = _cloud(good, sec)
        for key, value in fields.items():
            setattr(msg, key, value)
        return msg

    def without_xyz(sec):
        msg = edited(sec)
        msg.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
                      for n, o in (('a', 8), ('b', 12), ('intensity', 0))]
        return msg

    cases = [
        ('empty', lambda sec: edited(sec, width=0, row_step=0, data=array.array('B'))),
        ('malformed', lambda sec: edited(sec, point_step=16)),  # fields run past it
        ('malformed', lambda sec: edited(sec, data=_cloud(good, sec).data[:-40])),
        ('malformed', lambda sec: edited(sec, row_step=LAYOUT.itemsize * 399)),
        ('no_xyz', without_xyz),
        ('all_nan', lambda sec: _cloud(np.full((300, 3), np.nan, np.float32), sec)),
        ('too_few_points', lambda sec: _cloud(good[:63], sec)),  # below the 64 groups
    ]
    before = node.accounting.counts()['rejected']
    for sec, (key, make) in enumerate(cases, start=20):
        count = rig.rejected(key)
        rig.pubs['cloud'].publish(make(sec))
        wait_for(lambda k=key, n=count: rig.rejected(k) > n, what=f'rejection {key}',
                 state=node.diagnostic_values)
        rig.pubs['cloud'].publish(_cloud(good, sec + 100))  # and the next good cloud works
        rig.wait('embedding', sec + 100)
    assert node.accounting.counts()['rejected'] == before + len(cases)
    assert not [m for m in probe.messages('p/embedding') if 20 <= m.header.stamp.sec < 100]

    # a million points: converted and cut down on the worker, in bounded time
    big = _object(1_000_000)
    rig.pubs['cloud'].publish(numpy_to_pointcloud2(big, np.zeros((len(big), 3), np.uint8),
                                                   header=_header(50)))
    rig.wait('embedding', 50, timeout=60.0)
    assert node.diagnostic_values()['points_in'] == '1000000'
    assert node.timer.summary()['total']['max'] < 20_000.0  # ms; FPS ran on 8 x N points
    rig.pubs['cloud'].publish(_cloud(good, 51))
    rig.wait('embedding', 51)
    values = {}

    def reported():
        values.update(diagnostics_of(probe, 'point_cloud_node') or {})
        return int(values.get('rejected', 0)) >= before + len(cases) and \
            int(values.get('published', 0)) >= len(cases) + 2
    wait_for(reported, what='rejections and latency in /diagnostics')
    for stage in PointCloudNode.STAGES:
        assert float(values[f'{stage}_ms_median']) >= 0.0, stage
    assert values['rejected_malformed'] == '3' and values['rejected_no_xyz'] == '1'
    assert values['backend'] == 'eager' and values['num_points'] == str(N)


def test_depth_and_camera_info_input(ros_context, spinner, probe, checkpoint, encoder):
    rig = _Rig(ros_context, spinner, probe, 'point_cloud_depth_node', 'd',
               _params(checkpoint, 'd', input='depth'))
    try:
        v, u = np.mgrid[0:H, 0:W]
        millimetres = (800 + 5 * u + 3 * v).astype(np.uint16)  # a tilted plane ...
        millimetres[8:20, 10:25] = 600  # ... with a box in front
        millimetres[0, :7] = 0  # no reading
        depth = numpy_to_image(millimetres, '16UC1', header=_header(60))
        rig.pubs['depth'].publish(depth)  # before any CameraInfo: dropped
        wait_for(lambda: rig.rejected('camera_info_missing') == 1, what='no CameraInfo')
        rig.pubs['camera_info'].publish(intrinsics_to_camera_info(K, W, H, _header(60)))
        wait_for(lambda: rig.node._camera_info is not None, what='CameraInfo')
        rig.pubs['depth'].publish(numpy_to_image(millimetres, '16UC1', header=_header(62)))
        embedding = rig.wait('embedding', 62)
        assert embedding.header == _header(62)
        points, _ = depth_to_points(depth_to_metres(millimetres, '16UC1'), K)
        assert len(points) == H * W - 7
        assert_fp32_close(image_to_numpy(embedding), _embed(encoder, _model_input(points)),
                          module=encoder, what='depth embedding')
        rig.pubs['depth'].publish(numpy_to_image(np.zeros((H, W, 3), np.uint8), 'rgb8',
                                                 header=_header(63)))
        rig.pubs['depth'].publish(numpy_to_image(np.zeros((H, W), np.uint16), '16UC1',
                                                 header=_header(64)))
        wait_for(lambda: rig.rejected('depth_encoding') == 1 and
                 rig.rejected('depth_invalid') == 1, what='depth rejections')
    finally:
        rig.close()


def test_crop_box_keeps_only_the_object(ros_context, spinner, probe, checkpoint, encoder):
    crop = (np.array([-0.2, -0.3, 0.7]), np.array([0.3, 0.2, 1.1]))
    rig = _Rig(ros_context, spinner, probe, 'point_cloud_crop_node', 'c', _params(
        checkpoint, 'c', crop_min=crop[0].tolist(), crop_max=crop[1].tolist()))
    try:
        target = _object(500)
        clutter = RNG.uniform(-2.0, 2.0, (3000, 3)).astype(np.float32)
        clutter = clutter[~((clutter >= crop[0]) & (clutter <= crop[1])).all(axis=1)]
        scene = RNG.permutation(np.concatenate([clutter, target]))
        rig.pubs['cloud'].publish(_cloud(scene, 70))
        embedding = rig.wait('embedding', 70)
        assert rig.node.diagnostic_values()['points_kept'] == '500'
        assert_fp32_close(image_to_numpy(embedding),
                          _embed(encoder, _model_input(scene, crop)), module=encoder,
                          what='cropped embedding')
        rig.pubs['cloud'].publish(_cloud(np.concatenate([clutter, target[:30]]), 71))
        wait_for(lambda: rig.rejected('too_few_points') == 1, what='too few in the box')
    finally:
        rig.close()


def test_up_axes_are_rotations_that_point_up_to_plus_y():
    up = {'y': [0, 1, 0], '-y': [0, -1, 0], 'z': [0, 0, 1]}
    for axis, matrix in UP_AXES.items():
        rotation = model_rotation(axis, [0.0] * 9)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3))
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        np.testing.assert_array_equal(rotation @ up[axis], [0, 1, 0])
        assert np.array_equal(rotation, np.array(matrix))
    quarter = [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    np.testing.assert_array_equal(model_rotation('-y', quarter), np.reshape(quarter, (3, 3)))
    with pytest.raises(ValueError, match='not a rotation'):
        model_rotation('y', [1.0, 0, 0, 0, 1.0, 0, 0, 0, -1.0])  # a reflection


def test_parameters_are_validated(ros_context, checkpoint):
    for bad, match in (({'cloud_up_axis': 'x'}, 'allowed values: y, -y, z'),
                       ({'cloud_to_model': [2.0] + [0.0] * 8}, 'not a rotation'),
                       ({'cloud_to_model': [1.0, 0.0]}, '9 finite floats'),
                       ({'crop_min': [0.0, 0.0]}, 'three floats'),
                       ({'input': 'lidar'}, 'cloud, depth'),
                       ({'encoder_name': 'i2p_mae_huge'}, 'i2p_mae_tiny')):
        with pytest.raises(InvalidParameterValueException, match=match):
            PointCloudNode('invalid_point_cloud_node', context=ros_context,
                           parameter_overrides=_params(checkpoint, 'i', **bad))


def test_configure_fails_cleanly_and_random_weights_are_reported(ros_context, checkpoint,
                                                                 tmp_path):
    torch.manual_seed(2)
    wide = save_point_classifier(create_point_classifier(
        ['a', 'b'], 'i2p_mae_tiny', backbone_kwargs={'num_points': 512},
        group_sizes=(8, 4, 4)), tmp_path / 'wide')
    for overrides, error in (
            ({'encoder_name': 'r3m_resnet18', 'checkpoint_path': ''}, 'I2P-MAE point encoder'),
            ({'crop_min': [0.0, 0.0, 1.0], 'crop_max': [1.0, 1.0, 1.0]}, 'must exceed'),
            ({'checkpoint_path': str(tmp_path / 'missing.pth')}, 'missing.pth'),
            ({'classifier_path': str(wide)}, 'takes 512 points but i2p_mae_tiny takes 256')):
        node = PointCloudNode('bad_point_cloud_node', context=ros_context,
                              parameter_overrides=_params(checkpoint, 'b', **overrides))
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
            assert node.state_label() == 'unconfigured' and node.model is None
            assert error in node.diagnostic_values()['configure_error']
        finally:
            node.destroy_node()
    node = PointCloudNode('random_point_cloud_node', context=ros_context,
                          parameter_overrides=_params('', 'r'))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.diagnostic_values()['weights'] == 'random'
    finally:
        node.release()
        node.destroy_node()
