"""pair_node over real DDS: outputs equal a direct model call, pairing by stamp, bad input."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from tests.ros_nodes.conftest import diagnostics_of, wait_for, wait_matched, wait_subscribed

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.exceptions import InvalidParameterValueException  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from stereo_msgs.msg import DisparityImage  # noqa: E402

from embodied_vision.downstream import (  # noqa: E402
    create_pair_geometry_model,
    load_pair_geometry_model,
    save_pair_geometry_model,
)
from embodied_vision.geometry.rotations import quat_to_matrix  # noqa: E402
from embodied_vision.ros_nodes.conversions import (  # noqa: E402
    image_to_numpy,
    intrinsics_to_camera_info,
    numpy_to_image,
)
from embodied_vision.ros_nodes.pair_node import PairNode  # noqa: E402

TINY = {'enc_embed_dim': 32, 'enc_depth': 2, 'enc_num_heads': 2, 'img_size': (32, 48),
        'dec_embed_dim': 32, 'dec_depth': 2, 'dec_num_heads': 2}
HEAD = {'dpt_layer_dims': (8, 16, 24, 32), 'dpt_feature_dim': 16, 'dpt_last_dim': 8,
        'pose_hidden': 32}
CAMERA = (48, 64)  # (H, W) of the published frames; the model runs at 32 x 48
FX = 60.0
RNG = np.random.default_rng(0)


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = create_pair_geometry_model(head_kwargs=HEAD, **TINY)
    return save_pair_geometry_model(model, tmp_path_factory.mktemp('pair') / 'model')


@pytest.fixture(scope='module')
def reference(model_dir):
    """The model called directly on the two frames resized like the node documents."""
    model = load_pair_geometry_model(model_dir)

    def run(frame1, frame2, out_size=None):
        def resize(frame):
            x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
            return F.interpolate(x, size=(32, 48), mode='bilinear', antialias=True,
                                 align_corners=False)
        out = model.predict(resize(frame1), resize(frame2))
        depth = out['depth'][:, None]
        if out_size is not None:
            depth = F.interpolate(depth, size=out_size, mode='bilinear', align_corners=False)
        return (depth[0, 0].numpy(), out['rotation'][0].double().numpy(),
                out['translation'][0].double().numpy())
    return run


def _params(model_dir, prefix='test', **extra):
    values = dict(model_path=str(model_dir), device='cpu', view1_topic=f'{prefix}/left',
                  view2_topic=f'{prefix}/right', camera_info_topic=f'{prefix}/left_info',
                  depth_topic=f'{prefix}/depth', disparity_topic=f'{prefix}/disparity',
                  pose_topic=f'{prefix}/pose', publish_disparity=True, baseline=0.1,
                  translation_scale=0.5, slop=0.01, input_qos='reliable', input_qos_depth=10,
                  diagnostics_period=0.2, log_throttle_period=0.0)
    values.update(extra)
    return [Parameter(k, value=v) for k, v in values.items()]


class Rig:
    """The node under test with the probe's publishers and recorded outputs."""

    def __init__(self, node, probe, prefix):
        self.node, self.probe, self.prefix = node, probe, prefix
        self.left = probe.publisher(Image, f'{prefix}/left')
        self.right = probe.publisher(Image, f'{prefix}/right')
        self.info = probe.publisher(CameraInfo, f'{prefix}/left_info')
        for msg_type, name in ((Image, 'depth'), (DisparityImage, 'disparity'),
                               (PoseStamped, 'pose')):
            probe.listen(msg_type, f'{prefix}/{name}')
        wait_matched(self.left, node, f'{prefix}/left')
        wait_matched(self.right, node, f'{prefix}/right')
        for name in ('depth', 'disparity', 'pose'):
            wait_subscribed(node, f'{prefix}/{name}')

    def send(self, view, frame, sec, nanosec=500, encoding='rgb8'):
        pub, frame_id = (self.left, 'left_optical') if view == 0 else \
            (self.right, 'right_optical')
        header = Header(frame_id=frame_id)
        header.stamp.sec, header.stamp.nanosec = sec, nanosec
        pub.publish(numpy_to_image(frame, encoding, header=header))

    def outputs(self, name, sec):
        return [m for m in self.probe.messages(f'{self.prefix}/{name}')
                if m.header.stamp.sec == sec]


def _rig(ros_context, spinner, probe, name, params, prefix):
    node = PairNode(name, context=ros_context, parameter_overrides=params)
    assert node.bring_up()
    spinner.add(node)
    return Rig(node, probe, prefix)


def _close(spinner, rig):
    spinner.remove(rig.node)
    rig.node.release()
    rig.node.destroy_node()


@pytest.fixture(scope='module')
def rig(ros_context, spinner, probe, model_dir):
    probe.listen(DiagnosticArray, '/diagnostics')
    rig = _rig(ros_context, spinner, probe, 'pair_node', _params(model_dir), 'test')
    yield rig
    _close(spinner, rig)


def _frames():
    return [RNG.integers(0, 256, (*CAMERA, 3), dtype=np.uint8) for _ in range(2)]


def _check_pose(msg, rotation, translation, scale):
    o, p = msg.pose.orientation, msg.pose.position
    np.testing.assert_allclose(quat_to_matrix([o.w, o.x, o.y, o.z]), rotation, atol=1e-5)
    np.testing.assert_allclose([p.x, p.y, p.z], translation * scale, atol=1e-6)


def test_outputs_equal_the_model_and_carry_view1_header(rig, reference):
    rig.info.publish(intrinsics_to_camera_info(
        np.array([[FX, 0, 32], [0, FX, 24], [0, 0, 1]]), CAMERA[1], CAMERA[0]))
    wait_for(lambda: rig.node._camera_info is not None, what='camera info')
    frame1, frame2 = _frames()
    rig.send(0, frame1, 101)
    rig.send(1, np.ascontiguousarray(frame2[..., ::-1]), 101, encoding='bgr8')
    for name in ('depth', 'disparity', 'pose'):
        wait_for(lambda n=name: rig.outputs(n, 101), what=f'{name} of pair 101')
    depth_ref, rotation, translation = reference(frame1, frame2, CAMERA)
    (depth,), (disparity,), (pose,) = (rig.outputs(n, 101) for n in ('depth', 'disparity',
                                                                      'pose'))
    for msg in (depth, disparity, disparity.image, pose):
        assert (msg.header.frame_id, msg.header.stamp.nanosec) == ('left_optical', 500)
    assert (depth.encoding, depth.height, depth.width) == ('32FC1', *CAMERA)
    np.testing.assert_allclose(image_to_numpy(depth), depth_ref, rtol=1e-5, atol=1e-7)
    assert (disparity.f, disparity.t) == (FX, pytest.approx(0.1))
    np.testing.assert_allclose(image_to_numpy(disparity.image), FX * 0.1 / depth_ref,
                               rtol=1e-5)
    _check_pose(pose, rotation, translation, 0.5)


def test_approximate_stamps_pair_once_final(rig, reference):
    (a1, a2), (b1, b2) = _frames(), _frames()
    rig.send(0, a1, 102, 0)
    rig.send(1, a2, 102, 4_000_000)  # 4 ms later: a left frame at 102.003 could be nearer
    wait_for(lambda: rig.node._sync.pending() == (1, 1), what='both views queued')
    assert not rig.outputs('pose', 102)
    rig.send(0, b1, 103, 0)  # now no closer left frame can come: 102 is final
    wait_for(lambda: rig.outputs('pose', 102), what='pair 102')
    rig.send(1, b2, 103, 0)
    wait_for(lambda: rig.outputs('pose', 103), what='pair 103')
    _check_pose(rig.outputs('pose', 102)[0], *reference(a1, a2)[1:], 0.5)
    np.testing.assert_allclose(image_to_numpy(rig.outputs('depth', 103)[0]),
                               reference(b1, b2, CAMERA)[0], rtol=1e-5, atol=1e-7)


def test_unsynchronised_stamps_are_dropped_and_counted(rig, probe):
    before = rig.node.accounting.counts()['dropped']
    frame1, frame2 = _frames()
    rig.send(0, frame1, 300, 0)
    rig.send(1, frame2, 300, 500_000_000)  # 0.5 s apart, slop 0.01 s
    wait_for(lambda: rig.node.accounting.counts()['dropped'] >= before + 1,
             what='a dropped view')
    rig.send(0, frame1, 301)
    rig.send(1, frame2, 301)
    wait_for(lambda: rig.outputs('pose', 301), what='the synchronised pair 301')
    assert rig.node.accounting.counts()['dropped'] == before + 2
    assert not rig.outputs('pose', 300) and not rig.outputs('depth', 300)
    wait_for(lambda: int((diagnostics_of(probe, 'pair_node') or {}).get('sync_unmatched', 0))
             >= 2, what='sync drops in /diagnostics')


def test_bad_input_is_rejected_counted_and_survived(rig, probe):
    before = rig.node.accounting.counts()['rejected']
    good = _frames()[0]
    depth = numpy_to_image(np.ones(CAMERA, np.float32), '32FC1')
    short_step = numpy_to_image(good, 'rgb8')
    short_step.step -= 1
    truncated = numpy_to_image(good, 'rgb8')
    truncated.data = truncated.data[:100]
    for i, msg in enumerate((depth, short_step, truncated)):
        msg.header.stamp.sec = 400 + i
        (rig.left if i % 2 else rig.right).publish(msg)
    rig.info.publish(CameraInfo())  # all-zero K: uncalibrated
    wait_for(lambda: rig.node.accounting.counts()['rejected'] >= before + 4,
             what='4 rejections')
    frame1, frame2 = _frames()
    rig.send(0, frame1, 499)
    rig.send(1, frame2, 499)
    wait_for(lambda: rig.outputs('depth', 499), what='a good pair after bad input')
    assert not [m for m in probe.messages('test/pose') if 400 <= m.header.stamp.sec < 499]
    wait_for(lambda: int((diagnostics_of(probe, 'pair_node') or {}).get('rejected', 0))
             >= before + 4, what='rejections in /diagnostics')
    wait_for(lambda: 'total_ms_median' in diagnostics_of(probe, 'pair_node'),
             what='latency in /diagnostics')
    values = diagnostics_of(probe, 'pair_node')
    for stage in ('convert', 'sync_wait', 'preprocess', 'inference', 'publish', 'total'):
        assert float(values[f'{stage}_ms_median']) >= 0.0
    assert values['input_size'] == '32x48' and values['focal_source'] == 'camera_info'


def test_network_resolution_typed_input_and_missing_camera_info(ros_context, spinner, probe,
                                                                model_dir, reference):
    params = _params(model_dir, 'net', output_resolution='network', raw_input=False,
                     translation_scale=2.0)
    rig = _rig(ros_context, spinner, probe, 'net_pair_node', params, 'net')
    try:
        frame1, frame2 = _frames()
        rig.send(0, frame1, 10)
        rig.send(1, frame2, 10)
        wait_for(lambda: rig.outputs('pose', 10), what='pair 10')
        depth_ref, rotation, translation = reference(frame1, frame2)
        depth = rig.outputs('depth', 10)[0]
        assert (depth.height, depth.width) == (32, 48)
        np.testing.assert_allclose(image_to_numpy(depth), depth_ref, rtol=1e-5, atol=1e-7)
        _check_pose(rig.outputs('pose', 10)[0], rotation, translation, 2.0)
        assert not rig.outputs('disparity', 10)  # no CameraInfo, no focal_length
        assert rig.node.accounting.counts()['no_camera_info'] == 1
        assert rig.node.set_parameters([Parameter('focal_length', value=40.0)])[0].successful
        rig.send(0, frame1, 11)
        rig.send(1, frame2, 11)
        wait_for(lambda: rig.outputs('disparity', 11), what='disparity with focal_length')
        disparity = rig.outputs('disparity', 11)[0]
        assert disparity.f == pytest.approx(40.0 * 48 / 64)  # scaled to the network width
        np.testing.assert_allclose(image_to_numpy(disparity.image),
                                   disparity.f * 0.1 / depth_ref, rtol=1e-5)
    finally:
        _close(spinner, rig)


def test_parameters_are_validated(rig, ros_context, model_dir):
    node = rig.node
    assert not node.set_parameters([Parameter('slop', value=-0.1)])[0].successful
    assert node.set_parameters([Parameter('slop', value=0.05)])[0].successful
    assert node._sync.slop == 0.05
    assert node.set_parameters([Parameter('slop', value=0.01)])[0].successful
    result = node.set_parameters([Parameter('model_path', value='/elsewhere')])[0]
    assert not result.successful and 'read-only' in result.reason
    with pytest.raises(InvalidParameterValueException, match='camera'):
        PairNode('bad_res_node', context=ros_context,
                 parameter_overrides=_params(model_dir, output_resolution='full'))
    with pytest.raises(InvalidParameterValueException, match='cuda'):
        PairNode('bad_device_node', context=ros_context,
                 parameter_overrides=_params(model_dir, device='gpu'))


@pytest.mark.parametrize('case', ['missing', 'garbage', 'empty', 'no_baseline'])
def test_bad_configuration_fails_configure_cleanly(ros_context, model_dir, tmp_path, case):
    garbage = tmp_path / 'garbage'
    garbage.mkdir()
    (garbage / 'config.json').write_text('{not json')
    (garbage / 'model.safetensors').write_bytes(b'not safetensors')
    extra = {'missing': {'model_path': str(tmp_path / 'nope')},
             'garbage': {'model_path': str(garbage)}, 'empty': {'model_path': ''},
             'no_baseline': {'baseline': 0.0}}[case]
    node = PairNode(f'bad_{case}_node', context=ros_context,
                    parameter_overrides=_params(model_dir, **extra))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.state_label() == 'unconfigured' and node.model is None
        assert node.diagnostics.status().values  # still alive and reporting
    finally:
        node.destroy_node()
