"""Serialized (CDR) Image reading against rclpy's serializer and hand-built buffers."""
import numpy as np
import pytest

from embodied_vision.ros_nodes.cdr import header_from_fields, image_from_cdr
from embodied_vision.ros_nodes.conversions import (
    IMAGE_ENCODINGS,
    image_to_numpy,
    numpy_to_image,
)

RNG = np.random.default_rng(0)


@pytest.fixture
def msgs():
    return pytest.importorskip('sensor_msgs.msg')


def _random_image(encoding, height, width):
    dtype, channels = IMAGE_ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype == np.float32:
        return RNG.uniform(0.1, 9.0, shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def _padded_rows(msg, step):
    """`msg.data` with every row padded with 0xAB bytes to `step`."""
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    padded = np.full((msg.height, step), 0xAB, np.uint8)
    padded[:, :msg.step] = rows
    return padded.tobytes()


def _serialized(msgs, array, encoding, step=None, frame_id='cam', stamp=(12, 345)):
    """rclpy-serialised Image of `array`, rows padded to `step` bytes when given."""
    serialization = pytest.importorskip('rclpy.serialization')
    msg = numpy_to_image(array, encoding)
    if step is not None:
        msg.data, msg.step = _padded_rows(msg, step), step
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    return serialization.serialize_message(msg), msg


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'mono8', 'mono16', '16UC1',
                                      '32FC1'])
@pytest.mark.parametrize('width', [1, 7, 640])
@pytest.mark.parametrize('pad', [0, 3])
def test_image_from_cdr_matches_rclpy(msgs, encoding, width, pad):
    serialization = pytest.importorskip('rclpy.serialization')
    array = _random_image(encoding, 5, width)
    pixel = array.dtype.itemsize * IMAGE_ENCODINGS[encoding][1]
    for frame_id in ('', 'c', 'camera_optical_frame', 'kamera_ü'):
        raw, msg = _serialized(msgs, array, encoding, step=width * pixel + pad or None,
                               frame_id=frame_id, stamp=(-3, 999_999_999))
        fields, out = image_from_cdr(raw)
        assert fields == {'stamp_sec': -3, 'stamp_nanosec': 999_999_999, 'frame_id': frame_id,
                          'height': 5, 'width': width, 'encoding': encoding,
                          'is_bigendian': 0, 'step': msg.step}
        np.testing.assert_array_equal(out, array)
        typed = serialization.deserialize_message(raw, msgs.Image)
        np.testing.assert_array_equal(out, image_to_numpy(typed))
        np.testing.assert_array_equal(image_from_cdr(raw, to_rgb=True)[1],
                                      image_to_numpy(typed, to_rgb=True))
        if array.dtype.itemsize == 1:  # a view of the buffer, no copy
            assert np.shares_memory(out, np.frombuffer(raw, np.uint8))


def test_image_from_cdr_big_endian_encapsulation():
    """A CDR_BE buffer written by hand: header fields big-endian, 16-bit pixels too."""
    array = _random_image('16UC1', 3, 5)

    def u32(value):
        return int(value).to_bytes(4, 'big')
    body = u32(7) + u32(8) + u32(2) + b'c\0' + b'\0\0' + u32(3) + u32(5) + u32(6) + \
        b'16UC1\0' + b'\1' + b'\0' + u32(10) + u32(30) + array.astype('>u2').tobytes()
    fields, out = image_from_cdr(b'\0\0\0\0' + body)
    assert (fields['stamp_sec'], fields['frame_id'], fields['is_bigendian']) == (7, 'c', 1)
    np.testing.assert_array_equal(out, array)
    assert out.dtype.isnative


def test_image_from_cdr_bad_buffers(msgs):
    array = _random_image('rgb8', 4, 3)
    raw, _ = _serialized(msgs, array, 'rgb8', frame_id='frame')
    for cut in list(range(0, 60)) + [len(raw) - 1]:  # every header cut, then short data
        with pytest.raises(ValueError):
            image_from_cdr(raw[:cut])
    with pytest.raises(ValueError, match='encapsulation'):
        image_from_cdr(b'\0\x07' + raw[2:])
    with pytest.raises(ValueError, match='does not match'):
        image_from_cdr(raw + b'\0' * 8)
    corrupt = bytearray(raw)
    corrupt[12:16] = (10**6).to_bytes(4, 'little')  # frame_id length past the end
    with pytest.raises(ValueError, match='truncated or corrupt'):
        image_from_cdr(bytes(corrupt))
    corrupt = bytearray(raw)
    corrupt[16 + 5] = ord('x')  # frame_id loses its NUL
    with pytest.raises(ValueError, match='NUL'):
        image_from_cdr(bytes(corrupt))
    for encoding, step in (('yuv422', None), ('rgb8', 5)):  # image_to_numpy's own checks
        msg = numpy_to_image(array, 'rgb8')
        msg.encoding = encoding
        msg.step = step or msg.step
        with pytest.raises(ValueError):
            image_from_cdr(pytest.importorskip('rclpy.serialization').serialize_message(msg))
    with pytest.raises(ValueError):
        image_from_cdr(b'')


def test_header_from_fields_stamps_like_the_source(msgs):
    raw, msg = _serialized(msgs, _random_image('rgb8', 2, 3), 'rgb8', frame_id='cam_optical',
                           stamp=(41, 7))
    fields, _ = image_from_cdr(raw)
    assert header_from_fields(fields) == msg.header
