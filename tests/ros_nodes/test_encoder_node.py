"""encoder_node over real DDS: outputs equal a direct library call, bad input is survived."""
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
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from embodied_vision import deploy  # noqa: E402
from embodied_vision.checkpoints import save_encoder  # noqa: E402
from embodied_vision.data.images import to_batch  # noqa: E402
from embodied_vision.encoders import create_encoder, load_encoder  # noqa: E402
from embodied_vision.ros_nodes.conversions import image_to_numpy, numpy_to_image  # noqa: E402
from embodied_vision.ros_nodes.encoder_node import EncoderNode  # noqa: E402

SIZE = 64
RNG = np.random.default_rng(0)


def _params(checkpoint, **extra):
    values = dict(encoder_name='r3m_resnet18', checkpoint_path=str(checkpoint), backend='eager',
                  device='cpu', network_image_width=SIZE, network_image_height=SIZE,
                  input_topic='test/image', output_topic='test/embedding',
                  input_qos='reliable', input_qos_depth=10, diagnostics_period=0.2,
                  log_throttle_period=0.0)
    values.update(extra)
    return [Parameter(k, value=v) for k, v in values.items()]


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_encoder(create_encoder('r3m_resnet18'), tmp_path_factory.mktemp('ckpt') / 'r3m')


@pytest.fixture(scope='module')
def encoder_node(ros_context, spinner, probe, checkpoint):
    node = EncoderNode(context=ros_context, parameter_overrides=_params(checkpoint))
    assert node.bring_up()
    spinner.add(node)
    probe.listen(Image, 'test/embedding')
    probe.listen(DiagnosticArray, '/diagnostics')
    pub = probe.publisher(Image, 'test/image')
    wait_matched(pub, node, 'test/image')
    wait_subscribed(node, 'test/embedding')
    yield node, pub
    spinner.remove(node)
    node.release()
    node.destroy_node()


@pytest.fixture(scope='module')
def reference(checkpoint):
    compiled = deploy.compile(load_encoder(checkpoint), 'eager', device='cpu',
                              input_size=(SIZE, SIZE))
    return lambda frame: compiled(to_batch([frame], (SIZE, SIZE))).float().numpy()


def _stamped(array, encoding, sec, frame='camera'):
    return numpy_to_image(array, encoding, header=Header(frame_id=frame)) if sec is None else \
        numpy_to_image(array, encoding, header=_header(sec, frame))


def _header(sec, frame='camera'):
    header = Header(frame_id=frame)
    header.stamp.sec, header.stamp.nanosec = sec, 500
    return header


def _outputs_for(probe, sec):
    return [m for m in probe.messages('test/embedding') if m.header.stamp.sec == sec]


def test_embedding_equals_library_call_and_keeps_header(encoder_node, probe, reference):
    node, pub = encoder_node
    frame = RNG.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    pub.publish(_stamped(frame, 'rgb8', 101, 'front_camera'))
    wait_for(lambda: _outputs_for(probe, 101), what='embedding of frame 101')
    (out,) = _outputs_for(probe, 101)
    assert out.header.frame_id == 'front_camera' and out.header.stamp.nanosec == 500
    assert (out.encoding, out.height, out.width) == ('32FC1', 1, 512)
    np.testing.assert_allclose(image_to_numpy(out), reference(frame), rtol=1e-5, atol=1e-5)

    pub.publish(_stamped(np.ascontiguousarray(frame[..., ::-1]), 'bgr8', 102))
    wait_for(lambda: _outputs_for(probe, 102), what='embedding of bgr frame')
    np.testing.assert_allclose(image_to_numpy(_outputs_for(probe, 102)[0]), reference(frame),
                               rtol=1e-5, atol=1e-5)


def _bad_images():
    good = RNG.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    depth = numpy_to_image(np.ones((SIZE, SIZE), np.float32), '32FC1', header=_header(201))
    short_step = _stamped(good, 'rgb8', 202)
    short_step.step = SIZE * 3 - 1
    truncated = _stamped(good, 'rgb8', 203)
    truncated.data = truncated.data[:100]
    unknown = _stamped(good, 'rgb8', 204)
    unknown.encoding = 'yuv422'
    return [depth, short_step, truncated, unknown]


def test_bad_input_is_rejected_counted_and_survived(encoder_node, probe, reference):
    node, pub = encoder_node
    before = node.accounting.counts()['rejected']
    for msg in _bad_images():
        pub.publish(msg)
    wait_for(lambda: node.accounting.counts()['rejected'] >= before + 4, what='4 rejections')
    wait_for(lambda: int((diagnostics_of(probe, 'encoder_node') or {}).get('rejected', 0))
             >= before + 4, what='rejections in /diagnostics')
    frame = RNG.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    pub.publish(_stamped(frame, 'rgb8', 299))
    wait_for(lambda: _outputs_for(probe, 299), what='a good frame after bad ones')
    assert not [m for m in probe.messages('test/embedding') if 200 <= m.header.stamp.sec < 299]
    wait_for(lambda: 'publish_ms_median' in (diagnostics_of(probe, 'encoder_node') or {}),
             what='latency in /diagnostics')
    values = diagnostics_of(probe, 'encoder_node')
    for stage in ('convert', 'preprocess', 'inference', 'publish'):
        assert float(values[f'{stage}_ms_median']) >= 0.0
    assert values['backend'] == 'eager' and values['embed_dim'] == '512'


def test_parameters_are_validated(encoder_node, ros_context, checkpoint):
    node, _ = encoder_node
    result = node.set_parameters([Parameter('diagnostics_period', value=-1.0)])[0]
    assert not result.successful
    result = node.set_parameters([Parameter('backend', value='onnxruntime')])[0]
    assert not result.successful and 'read-only' in result.reason
    assert node.set_parameters([Parameter('log_throttle_period', value=1.5)])[0].successful
    with pytest.raises(InvalidParameterValueException, match='eager'):
        EncoderNode('bad_backend_node', context=ros_context,
                    parameter_overrides=_params(checkpoint, backend='bogus'))
    with pytest.raises(InvalidParameterValueException, match='r3m_resnet18'):
        EncoderNode('bad_name_node', context=ros_context,
                    parameter_overrides=_params(checkpoint, encoder_name='r3m_resnet17'))
    with pytest.raises(InvalidParameterValueException, match='sensor_data'):
        EncoderNode('bad_qos_node', context=ros_context,
                    parameter_overrides=_params(checkpoint, input_qos='fast'))


def test_bad_checkpoint_fails_configure_cleanly(ros_context, tmp_path):
    garbage = tmp_path / 'model.pt'
    garbage.write_bytes(b'not a checkpoint')
    node = EncoderNode('bad_ckpt_node', context=ros_context,
                       parameter_overrides=_params(garbage))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.state_label() == 'unconfigured'
        assert node.model is None
        assert node.diagnostics.status().values  # still alive and reporting
    finally:
        node.destroy_node()


def test_a_croco_node_feeds_imagenet_normalised_frames(ros_context, tmp_path):
    # CroCo takes ImageNet-normalised floats, normalised by the caller as upstream: the node
    # does it (InputContract.from_pixels) after the same resize + crop as for R3M.
    import copy
    torch.manual_seed(0)
    vit = create_encoder('croco_vit_base', img_size=32, enc_embed_dim=16, enc_depth=2,
                         enc_num_heads=2)
    export = save_encoder(vit, tmp_path / 'croco')
    node = EncoderNode('croco_node', context=ros_context, parameter_overrides=_params(
        export, encoder_name='croco_vit_base', network_image_width=32,
        network_image_height=32))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        frame = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        got = node.model(node.preprocess(frame)).numpy()
        pixels = to_batch([frame], (32, 32)).double() / 255
        mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
        with torch.inference_mode():
            exact = copy.deepcopy(vit).double()((pixels - mean) / std).numpy()
        assert_fp32_close(got, exact, vit, what='croco node vs normalised float64')
    finally:
        node.destroy_node()


def test_two_view_models_are_refused_as_a_parameter(ros_context, checkpoint):
    with pytest.raises(InvalidParameterValueException, match='not an encoder of image input'):
        EncoderNode('pair_as_encoder', context=ros_context, parameter_overrides=_params(
            checkpoint, encoder_name='croco_v2_pair_vit_base_smalldec'))


@pytest.mark.parametrize('shape', [(480, 640, 3), (37, 91, 3)])
def test_preprocess_is_bit_identical_to_to_batch(encoder_node, shape):
    node, _ = encoder_node
    frame = RNG.integers(0, 256, shape, dtype=np.uint8)
    assert torch.equal(node.preprocess(frame), to_batch([frame], (SIZE, SIZE)))


def test_a_frame_in_flight_when_the_node_is_released_is_dropped(ros_context, checkpoint):
    # Shutdown releases the model and publisher while the worker may hold a frame: the
    # frame is dropped, it does not raise ('NoneType' object has no attribute 'publish').
    node = EncoderNode('released_node', context=ros_context,
                       parameter_overrides=_params(checkpoint))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        frame = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        node.release()
        assert node.process(Header(), frame, 0.0) is None
    finally:
        node.destroy_node()
