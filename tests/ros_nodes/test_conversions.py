"""sensor_msgs <-> numpy conversions against byte layouts built by hand."""
import io
from types import SimpleNamespace

import numpy as np
import pytest

from embodied_vision.geometry.rotations import quat_to_matrix
from embodied_vision.ros_nodes.conversions import (
    IMAGE_ENCODINGS,
    camera_info_to_intrinsics,
    compressed_image_to_numpy,
    depth_to_disparity_image,
    depth_to_metres,
    image_to_numpy,
    intrinsics_to_camera_info,
    numpy_to_image,
    pose_stamped_from_rt,
    rotation_to_quaternion,
)
from embodied_vision.ros_nodes.pointcloud import (
    numpy_to_pointcloud2,
    pack_rgb,
    pointcloud2_to_numpy,
    unpack_rgb,
)

RNG = np.random.default_rng(0)


@pytest.fixture
def msgs():
    return pytest.importorskip('sensor_msgs.msg')


def _random_image(encoding, height=5, width=7):
    dtype, channels = IMAGE_ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype == np.float32:
        return RNG.uniform(0.1, 9.0, shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def _image_ns(array, encoding, step=None, big=False, data=None):
    """A duck-typed Image (rosbags-like) with a hand-built payload."""
    height, width = array.shape[:2]
    row = array.reshape(height, -1).astype(array.dtype.newbyteorder('>' if big else '<'))
    row_bytes = row.view(np.uint8).reshape(height, -1)
    step = row_bytes.shape[1] if step is None else step
    padded = np.full((height, step), 0xAB, np.uint8)
    padded[:, :row_bytes.shape[1]] = row_bytes
    return SimpleNamespace(height=height, width=width, encoding=encoding, step=step,
                           is_bigendian=int(big),
                           data=padded.reshape(-1) if data is None else data)


@pytest.mark.parametrize('encoding', list(IMAGE_ENCODINGS))
def test_image_round_trip_every_encoding(msgs, encoding):
    array = _random_image(encoding)
    msg = numpy_to_image(array, encoding)
    assert isinstance(msg, msgs.Image)
    dtype, channels = IMAGE_ENCODINGS[encoding]
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step == 7 * channels * np.dtype(dtype).itemsize and msg.is_bigendian == 0
    assert bytes(msg.data) == array.astype(np.dtype(dtype).newbyteorder('<')).tobytes()
    back = image_to_numpy(msg)
    assert back.dtype == dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize('encoding', list(IMAGE_ENCODINGS))
@pytest.mark.parametrize('big', [False, True])
def test_image_step_padding_and_endianness(encoding, big):
    array = _random_image(encoding, 4, 6)
    pixel = array.dtype.itemsize * IMAGE_ENCODINGS[encoding][1]
    msg = _image_ns(array, encoding, step=6 * pixel + 10, big=big)
    out = image_to_numpy(msg)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)
    assert not np.shares_memory(out, msg.data) if big and array.dtype.itemsize > 1 else \
        np.shares_memory(out, msg.data)  # zero-copy strided view unless byte-swapped


def test_image_bytes_payload_and_to_rgb():
    rgb = _random_image('rgb8')
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    cases = {'bgr8': bgr, 'bgra8': np.concatenate([bgr, alpha], -1),
             'rgba8': np.concatenate([rgb, alpha], -1), 'rgb8': rgb}
    for encoding, array in cases.items():
        msg = _image_ns(array, encoding, data=array.tobytes())
        np.testing.assert_array_equal(image_to_numpy(msg), array)
        out = image_to_numpy(msg, to_rgb=True)
        assert out.shape == rgb.shape
        np.testing.assert_array_equal(out, rgb)
    mono = _random_image('mono8')
    np.testing.assert_array_equal(image_to_numpy(_image_ns(mono, 'mono8'), to_rgb=True), mono)


def test_image_errors(msgs):
    array = _random_image('rgb8')
    with pytest.raises(ValueError, match='unsupported image encoding .yuv422.; supported: '
                                         'rgb8, bgr8, rgba8, bgra8, mono8, mono16, 16UC1, 32FC1'):
        image_to_numpy(_image_ns(array, 'yuv422'))
    msg = _image_ns(array, 'rgb8')
    msg.data = msg.data[:-3]
    with pytest.raises(ValueError, match=r'data has 102 bytes, expected height \* step = 5 \* '
                                         r'21 = 105'):
        image_to_numpy(msg)
    with pytest.raises(ValueError, match='step 20 is smaller than width'):
        image_to_numpy(SimpleNamespace(height=5, width=7, encoding='rgb8', step=20,
                                       is_bigendian=0, data=np.zeros(100, np.uint8)))
    with pytest.raises(ValueError, match='Image is empty'):
        image_to_numpy(SimpleNamespace(height=0, width=7, encoding='rgb8', step=21,
                                       is_bigendian=0, data=b''))
    with pytest.raises(ValueError, match='16UC1 needs dtype uint16, got float32'):
        numpy_to_image(np.zeros((2, 2), np.float32), '16UC1')
    with pytest.raises(ValueError, match=r'rgb8 needs an array of shape \(H, W, 3\)'):
        numpy_to_image(np.zeros((2, 2, 4), np.uint8), 'rgb8')
    with pytest.raises(ValueError, match='unsupported image encoding'):
        numpy_to_image(np.zeros((2, 2), np.uint8), 'jpeg')


def test_image_zero_copy_and_reuse(msgs):
    array = _random_image('rgb8', 48, 64)
    msg = numpy_to_image(array, 'rgb8')
    out = image_to_numpy(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    header = msgs.Image().header
    header.frame_id = 'cam'
    again = numpy_to_image(array[::2, ::2], 'rgb8', header=header, msg=msg)
    assert again is msg and msg.header.frame_id == 'cam' and msg.width == 32
    np.testing.assert_array_equal(image_to_numpy(msg), array[::2, ::2])
    mono = numpy_to_image(_random_image('mono8')[..., None], 'mono8')
    assert image_to_numpy(mono).shape == (5, 7)


def test_serialized_round_trip_rclpy_and_rosbags(msgs):
    serialization = pytest.importorskip('rclpy.serialization')
    for encoding in ('rgb8', '16UC1', '32FC1'):
        array = _random_image(encoding, 12, 10)
        raw = serialization.serialize_message(numpy_to_image(array, encoding))
        msg = serialization.deserialize_message(raw, msgs.Image)
        np.testing.assert_array_equal(image_to_numpy(msg), array)
        typesys = pytest.importorskip('rosbags.typesys')
        store = typesys.get_typestore(typesys.Stores.ROS2_JAZZY)
        bag_msg = store.deserialize_cdr(raw, 'sensor_msgs/msg/Image')
        assert isinstance(bag_msg.data, np.ndarray)
        np.testing.assert_array_equal(image_to_numpy(bag_msg), array)
        # writing into a rosbags message keeps numpy data and serialises back
        numpy_to_image(array[::-1].copy(), encoding, msg=bag_msg)
        assert isinstance(bag_msg.data, np.ndarray)
        back = serialization.deserialize_message(
            bytes(store.serialize_cdr(bag_msg, 'sensor_msgs/msg/Image')), msgs.Image)
        np.testing.assert_array_equal(image_to_numpy(back), array[::-1])


def test_depth_to_metres():
    mm = np.array([[0, 1500], [65535, 1]], np.uint16)
    metres = depth_to_metres(mm, '16UC1')
    assert metres.dtype == np.float32 and np.isnan(metres[0, 0])
    np.testing.assert_allclose(metres[~np.isnan(metres)], [1.5, 65.535, 0.001], rtol=1e-6)
    floats = np.array([[np.nan, 0.0, 2.5]], np.float32)
    np.testing.assert_array_equal(depth_to_metres(floats, '32FC1'), floats)
    with pytest.raises(ValueError, match='16UC1, mono16, 32FC1'):
        depth_to_metres(mm, 'rgb8')


def _encode(array, fmt, **kwargs):
    from PIL import Image as PILImage
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_compressed_images():
    pytest.importorskip('PIL')
    rgb = _random_image('rgb8', 16, 24)
    msg = SimpleNamespace(format='png', data=np.frombuffer(_encode(rgb, 'PNG'), np.uint8))
    np.testing.assert_array_equal(compressed_image_to_numpy(msg), rgb)
    grey = _random_image('mono8', 16, 24)
    msg = SimpleNamespace(format='mono8; png compressed', data=_encode(grey, 'PNG'))
    np.testing.assert_array_equal(compressed_image_to_numpy(msg), grey)
    deep = _random_image('16UC1', 16, 24)
    out = compressed_image_to_numpy(SimpleNamespace(format='png', data=_encode(deep, 'PNG')))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, deep)
    smooth = np.broadcast_to(np.linspace(0, 255, 24).astype(np.uint8)[None, :, None],
                             (16, 24, 3)).copy()
    jpeg = SimpleNamespace(format='rgb8; jpeg compressed bgr8',
                           data=_encode(smooth, 'JPEG', quality=95))
    out = compressed_image_to_numpy(jpeg)
    assert out.shape == smooth.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - smooth).mean() < 3
    with pytest.raises(ValueError, match='format says png but the data is jpeg'):
        compressed_image_to_numpy(SimpleNamespace(format='png', data=jpeg.data))
    with pytest.raises(ValueError, match='compressedDepth'):
        compressed_image_to_numpy(SimpleNamespace(format='16UC1; compressedDepth',
                                                  data=jpeg.data))
    with pytest.raises(ValueError, match="'tiff' is not supported"):
        compressed_image_to_numpy(SimpleNamespace(format='tiff', data=jpeg.data))
    with pytest.raises(ValueError, match='neither JPEG nor PNG'):
        compressed_image_to_numpy(SimpleNamespace(format='jpeg', data=b'garbage!'))
    with pytest.raises(ValueError, match='could not be decoded'):
        compressed_image_to_numpy(SimpleNamespace(format='png', data=msg.data[:40]))


def test_camera_info_round_trip(msgs):
    K = np.array([[500.0, 0.0, 319.5], [0.0, 505.0, 239.5], [0.0, 0.0, 1.0]])  # noqa: N806
    header = msgs.CameraInfo().header
    header.frame_id = 'front'
    msg = intrinsics_to_camera_info(K, 640, 480, header=header, D=[0.1, -0.2, 0, 0, 0.01])
    assert isinstance(msg, msgs.CameraInfo) and msg.header.frame_id == 'front'
    np.testing.assert_array_equal(np.asarray(msg.k), K.reshape(-1))
    np.testing.assert_array_equal(np.asarray(msg.r), np.eye(3).reshape(-1))
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4)[:, :3], K)
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4)[:, 3], 0)
    serialization = pytest.importorskip('rclpy.serialization')
    msg = serialization.deserialize_message(serialization.serialize_message(msg),
                                            msgs.CameraInfo)
    info = camera_info_to_intrinsics(msg)
    np.testing.assert_array_equal(info['K'], K)
    np.testing.assert_array_equal(info['D'], [0.1, -0.2, 0, 0, 0.01])
    assert (info['width'], info['height'], info['distortion_model']) == (640, 480, 'plumb_bob')
    assert len(intrinsics_to_camera_info(K, 4, 3, distortion_model='equidistant').d) == 4
    with pytest.raises(ValueError, match='plumb_bob, rational_polynomial, equidistant'):
        intrinsics_to_camera_info(K, 640, 480, distortion_model='fisheye')
    with pytest.raises(ValueError, match='needs 5 distortion coefficients, got 4'):
        intrinsics_to_camera_info(K, 640, 480, D=[0, 0, 0, 0])
    with pytest.raises(ValueError, match='uncalibrated'):
        camera_info_to_intrinsics(msgs.CameraInfo())


# sensor_msgs/PointField datatypes
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)


def _field(name, offset, datatype, count=1):
    return SimpleNamespace(name=name, offset=offset, datatype=datatype, count=count)


def _cloud(structured, fields, height=1, row_pad=0, is_dense=False, big=False):
    """Duck-typed PointCloud2 around a hand-built structured array (rows padded by hand)."""
    width = structured.size // height
    step = structured.dtype.itemsize
    rows = structured.view(np.uint8).reshape(height, width * step)
    data = np.zeros((height, width * step + row_pad), np.uint8)
    data[:, :width * step] = rows
    return SimpleNamespace(height=height, width=width, fields=fields, is_bigendian=big,
                           point_step=step, row_step=width * step + row_pad,
                           data=data.reshape(-1), is_dense=is_dense)


def test_pointcloud_padded_layout_rgb_and_intensity():
    # PCL's PointXYZRGB layout: x y z pad(4) rgb pad(12), point_step 32
    n = 50
    dtype = np.dtype({'names': ['x', 'y', 'z', 'rgb', 'intensity'],
                      'formats': ['<f4', '<f4', '<f4', '<u4', '<f8'],
                      'offsets': [0, 4, 8, 16, 20], 'itemsize': 32})
    xyz = RNG.normal(size=(n, 3)).astype(np.float32)
    colours = RNG.integers(0, 256, (n, 3)).astype(np.uint8)
    cloud = np.zeros(n, dtype)
    cloud['x'], cloud['y'], cloud['z'] = xyz.T
    cloud['rgb'] = (colours[:, 0].astype(np.uint32) << 16) | (colours[:, 1].astype(np.uint32)
                                                               << 8) | colours[:, 2]
    cloud['intensity'] = np.arange(n)
    fields = [_field('x', 0, FLOAT32), _field('y', 4, FLOAT32), _field('z', 8, FLOAT32),
              _field('rgb', 16, UINT32), _field('intensity', 20, FLOAT64)]
    msg = _cloud(cloud, fields, height=2, row_pad=8)
    np.testing.assert_array_equal(pointcloud2_to_numpy(msg), xyz)
    out = pointcloud2_to_numpy(msg, ('z', 'intensity', 'rgb'))
    np.testing.assert_array_equal(out[:, 0], xyz[:, 2])
    np.testing.assert_array_equal(out[:, 1], np.arange(n))
    np.testing.assert_array_equal(unpack_rgb(out[:, 2]), colours)
    structured = pointcloud2_to_numpy(msg, None)
    assert structured.dtype.names == dtype.names
    np.testing.assert_array_equal(structured['rgb'], cloud['rgb'])


def test_pointcloud_nans_and_is_dense():
    xyz = RNG.normal(size=(10, 3)).astype(np.float32)
    xyz[2, 0] = np.nan
    xyz[7] = np.nan
    cloud = np.zeros(10, [('x', '<f4'), ('y', '<f4'), ('z', '<f4')])
    cloud['x'], cloud['y'], cloud['z'] = xyz.T
    fields = [_field('x', 0, FLOAT32), _field('y', 4, FLOAT32), _field('z', 8, FLOAT32)]
    msg = _cloud(cloud, fields)
    keep = ~np.isnan(xyz).any(1)
    np.testing.assert_array_equal(pointcloud2_to_numpy(msg), xyz[keep])
    assert len(pointcloud2_to_numpy(msg, skip_nans=False)) == 10
    # only the requested fields are checked
    assert len(pointcloud2_to_numpy(msg, ('y', 'z'))) == 9
    # is_dense is trusted (as sensor_msgs_py does): no scan
    msg.is_dense = True
    assert len(pointcloud2_to_numpy(msg)) == 10
    # non-adjacent fields take the per-field path
    gapped = np.zeros(10, {'names': ['x', 'y', 'z'], 'formats': ['<f4'] * 3,
                           'offsets': [0, 4, 12], 'itemsize': 16})
    gapped['x'], gapped['y'], gapped['z'] = xyz.T
    fields = [_field('x', 0, FLOAT32), _field('y', 4, FLOAT32), _field('z', 12, FLOAT32)]
    np.testing.assert_array_equal(pointcloud2_to_numpy(_cloud(gapped, fields)), xyz[keep])


def test_pointcloud_big_endian_and_integer_fields():
    dtype = np.dtype({'names': ['x', 'y', 'z', 'ring', 't'],
                      'formats': ['>f8', '>f8', '>f8', '>u2', '>i4'],
                      'offsets': [0, 8, 16, 24, 26], 'itemsize': 30})
    cloud = np.zeros(6, dtype)
    cloud['x'], cloud['ring'], cloud['t'] = np.arange(6) * 0.5, np.arange(6) * 300, -7
    fields = [_field('x', 0, FLOAT64), _field('y', 8, FLOAT64), _field('z', 16, FLOAT64),
              _field('ring', 24, UINT16), _field('t', 26, INT32)]
    msg = _cloud(cloud, fields, big=True)
    out = pointcloud2_to_numpy(msg, ('x', 'ring', 't'))
    np.testing.assert_array_equal(out, np.stack([np.arange(6) * 0.5, np.arange(6) * 300,
                                                 np.full(6, -7)], 1))
    structured = pointcloud2_to_numpy(msg, ('ring',), structured=True)
    assert structured.dtype['ring'].isnative
    np.testing.assert_array_equal(structured['ring'], np.arange(6) * 300)


def test_pointcloud_errors():
    cloud = np.zeros(4, [('x', '<f4'), ('y', '<f4'), ('z', '<f4')])
    fields = [_field('x', 0, FLOAT32), _field('y', 4, FLOAT32), _field('z', 8, FLOAT32)]
    with pytest.raises(ValueError, match=r"no field\(s\) \['rgb'\]; available: \['x', 'y', "):
        pointcloud2_to_numpy(_cloud(cloud, fields), ('x', 'rgb'))
    msg = _cloud(cloud, fields)
    msg.point_step = 10
    with pytest.raises(ValueError, match="point_step 10 is too small: field 'z' spans"):
        pointcloud2_to_numpy(msg)
    msg = _cloud(cloud, fields)
    msg.data = msg.data[:-1]
    with pytest.raises(ValueError, match=r'data has 47 bytes, expected height \* row_step'):
        pointcloud2_to_numpy(msg)
    msg = _cloud(cloud, fields)
    msg.width = 0
    with pytest.raises(ValueError, match='PointCloud2 is empty'):
        pointcloud2_to_numpy(msg)
    msg = _cloud(cloud, fields)
    msg.row_step = 40
    with pytest.raises(ValueError, match='row_step 40 is smaller than width'):
        pointcloud2_to_numpy(msg)
    with pytest.raises(ValueError, match='datatype 9'):
        pointcloud2_to_numpy(_cloud(cloud, fields[:2] + [_field('z', 8, 9)]))
    with pytest.raises(ValueError, match='no fields'):
        pointcloud2_to_numpy(_cloud(cloud, []))


def test_numpy_to_pointcloud2_layout(msgs):
    n = 20
    xyz = RNG.normal(size=(n, 3)).astype(np.float32)
    colours = RNG.integers(0, 256, (n, 3)).astype(np.uint8)
    intensity = RNG.uniform(size=n).astype(np.float32)
    msg = numpy_to_pointcloud2(xyz, colors=colours, intensity=intensity, frame_id='map')
    assert isinstance(msg, msgs.PointCloud2) and msg.header.frame_id == 'map'
    assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'intensity', 'rgb']
    assert [f.offset for f in msg.fields] == [0, 4, 8, 12, 16]
    assert msg.point_step == 20 and msg.row_step == 20 * n and msg.is_dense
    expected = np.zeros(n, [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('i', '<f4'),
                            ('rgb', '<u4')])
    expected['x'], expected['y'], expected['z'] = xyz.T
    expected['i'] = intensity
    expected['rgb'] = colours[:, 0].astype(np.uint32) * 65536 + colours[:, 1].astype(
        np.uint32) * 256 + colours[:, 2]
    assert bytes(msg.data) == expected.tobytes()
    serialization = pytest.importorskip('rclpy.serialization')
    back = serialization.deserialize_message(serialization.serialize_message(msg),
                                             msgs.PointCloud2)
    out = pointcloud2_to_numpy(back, ('x', 'y', 'z', 'rgb'))
    np.testing.assert_array_equal(out[:, :3], xyz)
    np.testing.assert_array_equal(unpack_rgb(out[:, 3]), colours)
    np.testing.assert_array_equal(unpack_rgb(pack_rgb(colours)), colours)
    xyz[3] = np.nan
    plain = numpy_to_pointcloud2(xyz)
    assert plain.point_step == 12 and not plain.is_dense
    assert len(pointcloud2_to_numpy(plain)) == n - 1
    with pytest.raises(ValueError, match=r'colors must have shape \(20, 3\)'):
        numpy_to_pointcloud2(xyz, colors=colours[:5])
    with pytest.raises(ValueError, match=r'points must have shape \(N, 3\)'):
        numpy_to_pointcloud2(xyz[:, :2])


def test_numpy_to_pointcloud2_labels_are_uint32_after_rgb(msgs):
    n = 6
    xyz = RNG.normal(size=(n, 3)).astype(np.float32)
    colours = RNG.integers(0, 256, (n, 3)).astype(np.uint8)
    labels = np.array([0, 1, 7, 70000, 3, 2])
    msg = numpy_to_pointcloud2(xyz, colors=colours, labels=labels)
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [
        ('x', 0, 7), ('y', 4, 7), ('z', 8, 7), ('rgb', 12, 7), ('label', 16, 6)]
    rows = np.frombuffer(bytes(msg.data), np.uint32).reshape(n, 5)
    np.testing.assert_array_equal(rows[:, 4], labels)
    np.testing.assert_array_equal(rows[:, 3], pack_rgb(colours).view(np.uint32))
    np.testing.assert_array_equal(pointcloud2_to_numpy(msg, ('label',))[:, 0], labels)
    only = numpy_to_pointcloud2(xyz, labels=labels)
    assert [f.name for f in only.fields] == ['x', 'y', 'z', 'label']
    for bad in (labels[:-1], labels - 1, labels.astype(np.float32)):
        with pytest.raises(ValueError, match='labels must be 6 non-negative integers'):
            numpy_to_pointcloud2(xyz, labels=bad)


def test_pointcloud_from_rosbags(msgs):
    serialization = pytest.importorskip('rclpy.serialization')
    typesys = pytest.importorskip('rosbags.typesys')
    store = typesys.get_typestore(typesys.Stores.ROS2_JAZZY)
    xyz = RNG.normal(size=(30, 3)).astype(np.float32)
    raw = serialization.serialize_message(numpy_to_pointcloud2(xyz))
    bag_msg = store.deserialize_cdr(raw, 'sensor_msgs/msg/PointCloud2')
    np.testing.assert_array_equal(pointcloud2_to_numpy(bag_msg), xyz)


def _rotation(axis, angle):
    """Rodrigues' formula, independent of the quaternion code under test."""
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def test_rotation_to_quaternion_round_trips_every_branch():
    cases = [np.eye(3), _rotation([0, 0, 1], np.pi / 2), _rotation([1, 2, 3], 0.3)]
    # near 180 degrees about each axis: w ~ 0, so x, y or z is the largest component
    cases += [_rotation(axis, np.pi - 1e-3) for axis in np.eye(3)]
    cases += [_rotation(RNG.normal(size=3), RNG.uniform(0, np.pi)) for _ in range(20)]
    for rotation in cases:
        x, y, z, w = rotation_to_quaternion(rotation)
        assert w >= 0 and np.isclose(np.linalg.norm([x, y, z, w]), 1.0)
        np.testing.assert_allclose(quat_to_matrix([w, x, y, z]), rotation, atol=1e-9)
    x, y, z, w = rotation_to_quaternion(_rotation([0, 0, 1], np.pi / 2))
    np.testing.assert_allclose([x, y, z, w], [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    with pytest.raises(ValueError, match='proper rotation'):
        rotation_to_quaternion(np.diag([1.0, 1.0, -1.0]))  # a reflection
    with pytest.raises(ValueError, match='proper rotation'):
        rotation_to_quaternion(2 * np.eye(3))
    with pytest.raises(ValueError, match='finite 3x3'):
        rotation_to_quaternion(np.full((3, 3), np.nan))


def test_pose_stamped_from_rt(msgs):
    geometry = pytest.importorskip('geometry_msgs.msg')
    rotation = _rotation([0.2, -1, 0.5], 1.1)
    header = msgs.Image().header
    header.frame_id, header.stamp.sec = 'left_optical_frame', 7
    msg = pose_stamped_from_rt(rotation, [0.1, -0.2, 0.3], header=header)
    assert isinstance(msg, geometry.PoseStamped)
    assert msg.header.frame_id == 'left_optical_frame' and msg.header.stamp.sec == 7
    p, o = msg.pose.position, msg.pose.orientation
    assert (p.x, p.y, p.z) == (0.1, -0.2, 0.3)
    np.testing.assert_allclose(quat_to_matrix([o.w, o.x, o.y, o.z]), rotation, atol=1e-9)
    assert pose_stamped_from_rt(np.eye(3), [0, 0, 0], frame_id='cam').header.frame_id == 'cam'
    with pytest.raises(ValueError, match='3 finite values'):
        pose_stamped_from_rt(np.eye(3), [0, np.inf, 0])


def test_depth_to_disparity_image(msgs):
    stereo = pytest.importorskip('stereo_msgs.msg')
    depth = np.array([[1.0, 2.0, 4.0], [0.0, np.nan, 0.5]], np.float32)
    header = msgs.Image().header
    header.frame_id = 'left'
    msg = depth_to_disparity_image(depth, 100.0, 0.06, header=header)
    assert isinstance(msg, stereo.DisparityImage)
    assert msg.header.frame_id == 'left' and msg.image.header.frame_id == 'left'
    assert (msg.image.encoding, msg.image.height, msg.image.width) == ('32FC1', 2, 3)
    disparity = image_to_numpy(msg.image)
    np.testing.assert_allclose(disparity[0], [6.0, 3.0, 1.5], rtol=1e-6)
    assert np.isnan(disparity[1, :2]).all() and np.isclose(disparity[1, 2], 12.0)
    assert (msg.f, msg.t, msg.delta_d) == (100.0, pytest.approx(0.06), 0.0)
    assert (msg.min_disparity, msg.max_disparity) == (1.5, 12.0)
    assert (msg.valid_window.width, msg.valid_window.height) == (3, 2)
    for f, baseline in ((0.0, 0.1), (100.0, -0.1), (np.nan, 0.1)):
        with pytest.raises(ValueError, match='must be > 0'):
            depth_to_disparity_image(depth, f, baseline)
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        depth_to_disparity_image(depth[None], 100.0, 0.1)
