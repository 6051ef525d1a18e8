"""sensor_msgs <-> numpy without Python loops: Image, CompressedImage, CameraInfo; plus
PoseStamped from a rotation and translation, and DisparityImage from depth.

Pure functions, no ROS graph. Readers are duck-typed: they take rclpy messages and
rosbags-deserialised ones alike (same field names; rosbags gives numpy arrays for `data`).
Readers return zero-copy views of `msg.data` where the layout allows (copy before writing if
the message is reused). Writers import `sensor_msgs.msg` lazily and hand rclpy the payload as
an `array.array('B')` filled with one memcpy: rclpy stores such an array as is, also with
ROS_PYTHON_CHECK_FIELDS=1, whereas bytes are copied again (and checked byte by byte with that
flag, ~175 ms at 640x480 rgb8) and numpy arrays are converted element by element (~100 ms).
Serialized (CDR) images are read in `cdr.py`, PointCloud2 in `pointcloud.py`.
"""
import array
import dataclasses
import io
import sys

import numpy as np

__all__ = [
    'COLOUR_ENCODINGS', 'IMAGE_ENCODINGS', 'camera_info_to_intrinsics',
    'compressed_image_to_numpy', 'depth_to_disparity_image', 'depth_to_metres',
    'image_to_numpy', 'intrinsics_to_camera_info', 'numpy_to_image', 'pose_stamped_from_rt',
    'rotation_to_quaternion',
]

#: Image encodings that become an RGB frame (mono8 is repeated over 3 channels).
COLOUR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8')

# encoding -> (dtype, channels)
IMAGE_ENCODINGS = {
    'rgb8': (np.uint8, 3), 'bgr8': (np.uint8, 3), 'rgba8': (np.uint8, 4),
    'bgra8': (np.uint8, 4), 'mono8': (np.uint8, 1), 'mono16': (np.uint16, 1),
    '16UC1': (np.uint16, 1), '32FC1': (np.float32, 1),
}
_DISTORTION_SIZES = {'plumb_bob': 5, 'rational_polynomial': 8, 'equidistant': 4}
_NATIVE_BIG = sys.byteorder == 'big'


def _payload(data, what):
    """`data` as a flat uint8 array, zero-copy for bytes, array.array, memoryview, ndarray."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else \
            np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, np.uint8)
    except (TypeError, ValueError, BufferError):
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError) as err:
            raise ValueError(f'{what}.data must be bytes or a uint8 sequence, got '
                             f'{type(data).__name__}') from err


def _to_wire(msg, flat_uint8):
    """Store a contiguous uint8 array in `msg.data` in the form the message class keeps."""
    if dataclasses.is_dataclass(msg):  # rosbags messages hold numpy arrays
        msg.data = np.array(flat_uint8, dtype=np.uint8, copy=True)
        return
    buf = array.array('B')
    buf.frombytes(flat_uint8)
    msg.data = buf


def _encoding_info(encoding):
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f'unsupported image encoding {encoding!r}; supported: '
                         f'{", ".join(IMAGE_ENCODINGS)}')
    base, channels = IMAGE_ENCODINGS[encoding]
    return np.dtype(base), channels


def image_to_numpy(msg, to_rgb=False):
    """sensor_msgs/Image -> (H, W) or (H, W, C) array in the encoding's dtype.

    Honours `step` padding (strided view) and `is_bigendian` (converted to native order,
    which copies). With `to_rgb=True`, bgr8/bgra8/rgba8 become contiguous (H, W, 3) RGB;
    mono and depth encodings are returned unchanged.
    """
    dtype, channels = _encoding_info(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    pixel = dtype.itemsize * channels
    if height <= 0 or width <= 0:
        raise ValueError(f'Image is empty: height={height}, width={width}; expected both > 0')
    if step < width * pixel:
        raise ValueError(f'Image step {step} is smaller than width * pixel size = {width} * '
                         f'{pixel} = {width * pixel} for {msg.encoding}')
    buf = _payload(msg.data, 'Image')
    if buf.size != height * step:
        raise ValueError(f'Image data has {buf.size} bytes, expected height * step = '
                         f'{height} * {step} = {height * step}')
    big = bool(msg.is_bigendian) and dtype.itemsize > 1
    wire = dtype.newbyteorder('>' if big else '<') if dtype.itemsize > 1 else dtype
    shape, strides = (height, width, channels), (step, pixel, dtype.itemsize)
    image = np.ndarray(shape, wire, buffer=buf, strides=strides)
    if not wire.isnative:
        image = image.astype(dtype)
    if channels == 1:
        image = image[..., 0]
    if to_rgb and msg.encoding != 'rgb8' and channels > 1:
        order = {'bgr8': [2, 1, 0], 'bgra8': [2, 1, 0], 'rgba8': [0, 1, 2]}[msg.encoding]
        image = image[..., order]  # fancy indexing gives a contiguous copy
    return image


def depth_to_metres(array_, encoding):
    """Depth image -> float32 metres: 16UC1/mono16 millimetres (0 -> NaN); 32FC1 as is."""
    if encoding in ('16UC1', 'mono16'):
        depth = np.asarray(array_, dtype=np.float32) * np.float32(1e-3)
        depth[np.asarray(array_) == 0] = np.nan
        return depth
    if encoding == '32FC1':
        return np.asarray(array_, dtype=np.float32)
    raise ValueError(f'depth encoding must be one of 16UC1, mono16, 32FC1, got {encoding!r}')


def numpy_to_image(array_, encoding, header=None, msg=None):
    """(H, W[, C]) array -> sensor_msgs/Image (native byte order, no row padding).

    The dtype must be the encoding's (uint8, uint16 for mono16/16UC1, float32 for 32FC1).
    Pass `msg` to fill an existing message instead of creating one.
    """
    dtype, channels = _encoding_info(encoding)
    array_ = np.asarray(array_)
    if array_.dtype != dtype:
        raise ValueError(f'{encoding} needs dtype {dtype}, got {array_.dtype}')
    if array_.ndim == 3 and channels == 1 and array_.shape[2] == 1:
        array_ = array_[..., 0]
    expected = 2 if channels == 1 else 3
    if array_.ndim != expected or (channels > 1 and array_.shape[2] != channels):
        want = '(H, W)' if channels == 1 else f'(H, W, {channels})'
        raise ValueError(f'{encoding} needs an array of shape {want}, got {array_.shape}')
    if msg is None:
        from sensor_msgs.msg import Image
        msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array_.shape[0]), int(array_.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(_NATIVE_BIG and dtype.itemsize > 1)
    msg.step = msg.width * channels * dtype.itemsize
    _to_wire(msg, np.ascontiguousarray(array_).reshape(-1).view(np.uint8))
    return msg


def compressed_image_to_numpy(msg):
    """sensor_msgs/CompressedImage (jpeg/png) -> RGB (H, W, 3) uint8, or (H, W) for grey
    (uint8) and 16-bit PNG (uint16). The `format` field must name jpeg or png and agree with
    the data; `compressedDepth` (a header in front of the PNG) is not supported."""
    from PIL import Image as PILImage

    fmt = str(msg.format).lower()
    if 'compresseddepth' in fmt:
        raise ValueError(f'CompressedImage format {msg.format!r} (compressedDepth) is not '
                         f'supported; expected jpeg or png')
    declared = 'png' if 'png' in fmt else 'jpeg' if ('jpeg' in fmt or 'jpg' in fmt) else None
    buf = _payload(msg.data, 'CompressedImage')
    head = buf[:8].tobytes()
    actual = 'png' if head.startswith(b'\x89PNG') else \
        'jpeg' if head.startswith(b'\xff\xd8') else None
    if declared is None and fmt:
        raise ValueError(f'CompressedImage format {msg.format!r} is not supported; expected '
                         f'one naming jpeg or png')
    if actual is None:
        raise ValueError(f'CompressedImage data ({buf.size} bytes) is neither JPEG nor PNG')
    if declared is not None and declared != actual:
        raise ValueError(f'CompressedImage format says {declared} but the data is {actual}')
    try:
        with PILImage.open(io.BytesIO(buf)) as image:
            image.load()
            if image.mode in ('L', 'RGB'):
                return np.asarray(image)
            if image.mode.startswith('I;16') or image.mode == 'I':
                return np.asarray(image).astype(np.uint16)
            return np.asarray(image.convert('RGB'))
    except OSError as err:
        raise ValueError(f'CompressedImage {actual} data could not be decoded: {err}') from err


def _field(msg, *names):
    for name in names:
        if hasattr(msg, name):
            return getattr(msg, name)
    raise ValueError(f'CameraInfo has no field {names[0]!r}')


def camera_info_to_intrinsics(msg):
    """sensor_msgs/CameraInfo -> dict(K (3, 3), D (n,), width, height, distortion_model,
    R (3, 3), P (3, 4)), all float64 arrays."""
    k = np.asarray(_field(msg, 'k', 'K'), np.float64).reshape(-1)
    if k.size != 9:
        raise ValueError(f'CameraInfo k must have 9 values, got {k.size}')
    if not np.any(k):
        raise ValueError('CameraInfo k is all zeros: the camera is uncalibrated')
    return {
        'K': k.reshape(3, 3),
        'D': np.asarray(_field(msg, 'd', 'D'), np.float64).reshape(-1),
        'width': int(msg.width), 'height': int(msg.height),
        'distortion_model': str(msg.distortion_model),
        'R': np.asarray(_field(msg, 'r', 'R'), np.float64).reshape(3, 3),
        'P': np.asarray(_field(msg, 'p', 'P'), np.float64).reshape(3, 4),
    }


def intrinsics_to_camera_info(K, width, height, header=None, D=None,  # noqa: N803
                              distortion_model='plumb_bob'):
    """Intrinsics -> sensor_msgs/CameraInfo of a monocular camera: R = I, P = [K | 0].

    `D` defaults to zeros of the model's length (plumb_bob 5, rational_polynomial 8,
    equidistant 4).
    """
    from sensor_msgs.msg import CameraInfo

    k = np.asarray(K, np.float64)
    if k.shape != (3, 3) or not np.all(np.isfinite(k)):
        raise ValueError(f'K must be a finite 3x3 matrix, got shape {k.shape}')
    if int(width) != width or int(height) != height or width <= 0 or height <= 0:
        raise ValueError(f'width and height must be positive integers, got {width}, {height}')
    if distortion_model not in _DISTORTION_SIZES:
        raise ValueError(f'distortion_model must be one of {", ".join(_DISTORTION_SIZES)}, '
                         f'got {distortion_model!r}')
    n = _DISTORTION_SIZES[distortion_model]
    d = np.zeros(n) if D is None else np.asarray(D, np.float64).reshape(-1)
    if d.size != n:
        raise ValueError(f'{distortion_model} needs {n} distortion coefficients, got {d.size}')
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = distortion_model
    msg.d = array.array('d', d.tolist())
    msg.k = k.reshape(-1).copy()
    msg.r = np.eye(3).reshape(-1)
    msg.p = np.concatenate([k, np.zeros((3, 1))], axis=1).reshape(-1)
    return msg



def rotation_to_quaternion(rotation):
    """(3, 3) rotation matrix -> unit quaternion (x, y, z, w), the geometry_msgs order, w >= 0.

    Shepperd's method (the largest of w, x, y, z is computed from the trace, the others from
    off-diagonal sums), accurate near 180-degree turns. Raises ValueError for a matrix that is
    not finite, orthonormal within 1e-3 and of determinant +1.
    """
    r = np.asarray(rotation, np.float64)
    if r.shape != (3, 3) or not np.all(np.isfinite(r)):
        raise ValueError(f'rotation must be a finite 3x3 matrix, got shape {r.shape}')
    if np.abs(r @ r.T - np.eye(3)).max() > 1e-3 or np.linalg.det(r) < 0:
        raise ValueError(f'rotation is not a proper rotation (orthonormal, det +1): '
                         f'{r.round(4).tolist()}')
    diagonal = np.array([np.trace(r), r[0, 0], r[1, 1], r[2, 2]])
    k = int(np.argmax(diagonal))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + diagonal[0])
        w, x, y, z = s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, \
            (r[1, 0] - r[0, 1]) / s
    elif k == 1:
        s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        w, x, y, z = (r[2, 1] - r[1, 2]) / s, s / 4, (r[0, 1] + r[1, 0]) / s, \
            (r[0, 2] + r[2, 0]) / s
    elif k == 2:
        s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        w, x, y, z = (r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, s / 4, \
            (r[1, 2] + r[2, 1]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        w, x, y, z = (r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, \
            (r[1, 2] + r[2, 1]) / s, s / 4
    quat = np.array([x, y, z, w])
    quat /= np.linalg.norm(quat)
    return -quat if quat[3] < 0 else quat


def pose_stamped_from_rt(rotation, translation, header=None, frame_id=''):
    """Rotation (3, 3) + translation (3,) -> geometry_msgs/PoseStamped.

    The pose of a frame B in frame A when `x_A = rotation @ x_B + translation`: position =
    translation, orientation = `rotation_to_quaternion(rotation)`. `frame_id` is used when
    `header` is None.
    """
    from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion
    from std_msgs.msg import Header

    t = np.asarray(translation, np.float64).reshape(-1)
    if t.size != 3 or not np.all(np.isfinite(t)):
        raise ValueError(f'translation must be 3 finite values, got {t.tolist()}')
    x, y, z, w = rotation_to_quaternion(rotation).tolist()
    return PoseStamped(
        header=header if header is not None else Header(frame_id=frame_id),
        pose=Pose(position=Point(x=float(t[0]), y=float(t[1]), z=float(t[2])),
                  orientation=Quaternion(x=x, y=y, z=z, w=w)))


def depth_to_disparity_image(depth, focal_length, baseline, header=None):
    """Depth (H, W) metres -> stereo_msgs/DisparityImage, `disparity = f * baseline / depth`.

    Args:
        depth: metric depth of the reference (left) view; values <= 0 or not finite give a
            NaN disparity (invalid).
        focal_length: `f` in pixels of `depth`'s resolution.
        baseline: `t`, the distance between the two cameras, metres.
        header: stamped on the message and on its `image`.

    The image is 32FC1; `valid_window` covers the image; `min_disparity` / `max_disparity`
    are the range of the finite disparities (0, 0 when there are none); `delta_d` is 0: the
    disparity is regressed, not searched in steps.
    """
    from stereo_msgs.msg import DisparityImage

    depth = np.asarray(depth, np.float32)
    if depth.ndim != 2:
        raise ValueError(f'depth must have shape (H, W), got {depth.shape}')
    if not (np.isfinite(focal_length) and focal_length > 0):
        raise ValueError(f'focal_length must be > 0 pixels, got {focal_length!r}')
    if not (np.isfinite(baseline) and baseline > 0):
        raise ValueError(f'baseline must be > 0 metres, got {baseline!r}')
    valid = np.isfinite(depth) & (depth > 0)
    disparity = np.full(depth.shape, np.nan, np.float32)
    np.divide(np.float32(focal_length * baseline), depth, out=disparity, where=valid)
    msg = DisparityImage()
    if header is not None:
        msg.header = header
    numpy_to_image(disparity, '32FC1', header=msg.header, msg=msg.image)
    msg.f, msg.t = float(focal_length), float(baseline)
    msg.valid_window.width, msg.valid_window.height = int(depth.shape[1]), int(depth.shape[0])
    finite = disparity[np.isfinite(disparity)]
    if finite.size:
        msg.min_disparity, msg.max_disparity = float(finite.min()), float(finite.max())
    msg.delta_d = 0.0
    return msg
