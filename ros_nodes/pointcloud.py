"""sensor_msgs/PointCloud2 <-> numpy without Python loops.

Readers are duck-typed like those in `conversions.py` (rclpy and rosbags messages alike) and
return views of `msg.data` where the layout allows; `numpy_to_pointcloud2` writes packed
float32 x, y, z (+ packed rgb, intensity) in one memcpy.
"""
import numpy as np

from embodied_vision.ros_nodes.conversions import _NATIVE_BIG, _payload, _to_wire

__all__ = ['POINTFIELD_DTYPES', 'numpy_to_pointcloud2', 'pack_rgb', 'pointcloud2_to_numpy',
           'pointfields_to_dtype', 'unpack_rgb']

# sensor_msgs/PointField datatype -> numpy dtype
POINTFIELD_DTYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.uint16, 5: np.int32,
                     6: np.uint32, 7: np.float32, 8: np.float64}
_FLOAT32 = 7
_UINT32 = 6
_PACKED_COLOUR = ('rgb', 'rgba')


def pointfields_to_dtype(fields, point_step, is_bigendian=False):
    """PointField list -> numpy structured dtype with the given offsets and itemsize."""
    names, formats, offsets = [], [], []
    order = '>' if is_bigendian else '<'
    for field in fields:
        name, datatype = str(field.name), int(field.datatype)
        count, offset = int(field.count), int(field.offset)
        if datatype not in POINTFIELD_DTYPES:
            raise ValueError(f'PointField {name!r} has datatype {datatype}; expected one of '
                             f'{sorted(POINTFIELD_DTYPES)} (INT8..FLOAT64)')
        if name in names:
            raise ValueError(f'PointField {name!r} appears twice')
        base = np.dtype(POINTFIELD_DTYPES[datatype]).newbyteorder(order)
        count = max(count, 1)
        end = offset + base.itemsize * count
        if offset < 0 or end > point_step:
            raise ValueError(f'point_step {point_step} is too small: field {name!r} spans '
                             f'bytes {offset}..{end}')
        names.append(name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(offset)
    if not names:
        raise ValueError('PointCloud2 has no fields')
    return np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                     'itemsize': point_step})


def _cloud_points(msg):
    """Zero-copy structured (N,) view (copied only if rows are padded)."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if height * width == 0:
        raise ValueError(f'PointCloud2 is empty (height={height}, width={width})')
    if point_step <= 0:
        raise ValueError(f'PointCloud2 point_step must be positive, got {point_step}')
    dtype = pointfields_to_dtype(msg.fields, point_step, bool(msg.is_bigendian))
    if row_step < width * point_step:
        raise ValueError(f'PointCloud2 row_step {row_step} is smaller than width * point_step'
                         f' = {width * point_step}')
    buf = _payload(msg.data, 'PointCloud2')
    if buf.size != height * row_step:
        raise ValueError(f'PointCloud2 data has {buf.size} bytes, expected height * row_step '
                         f'= {height} * {row_step} = {height * row_step}')
    grid = np.ndarray((height, width), dtype, buffer=buf, strides=(row_step, point_step))
    return grid.reshape(-1)


def _float32_block(points, names):
    """(N, k) float32 strided view when `names` are adjacent native float32 fields."""
    fields = points.dtype.fields
    first = fields[names[0]][1]
    for i, name in enumerate(names):
        dtype, offset = fields[name][:2]
        if dtype != np.float32 or offset != first + 4 * i:  # float32 copies keep rgb bits
            return None
    return np.ndarray((len(points), len(names)), np.float32, buffer=points, offset=first,
                      strides=(points.strides[0], 4))


def pointcloud2_to_numpy(msg, fields=('x', 'y', 'z'), skip_nans=True, structured=False):
    """sensor_msgs/PointCloud2 -> (N, k) float32 (or a structured array), any field layout.

    Args:
        fields: names to read, in order; None reads all fields (structured output).
            Packed `rgb`/`rgba` keep their bits in the float32 column: decode them with
            `unpack_rgb`.
        skip_nans: drop points with NaN in any requested floating field, unless the cloud
            says `is_dense` (then it is trusted and not scanned, as sensor_msgs_py does).
        structured: return a native-order structured array of the fields instead.
    """
    points = _cloud_points(msg)
    available = points.dtype.names
    names = list(available) if fields is None else list(fields)
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(f'PointCloud2 has no field(s) {missing}; available: {list(available)}')
    if skip_nans and not msg.is_dense:
        floats = [n for n in names if points.dtype[n].kind == 'f' and n not in _PACKED_COLOUR]
        block = _float32_block(points, floats) if floats else None
        if block is not None:
            bad = np.isnan(block).any(axis=1)
            if bad.any():
                points = points[~bad]
        elif floats:
            bad = np.zeros(len(points), bool)
            for name in floats:
                column = points[name]
                bad |= np.isnan(column).reshape(len(points), -1).any(axis=1)
            if bad.any():
                points = points[~bad]
    if structured or fields is None:
        native = [(n, points.dtype[n].newbyteorder('=')) for n in names]
        out = np.empty(len(points), native)
        for name in names:
            out[name] = points[name]
        return out
    view = _float32_block(points, names)
    if view is not None:  # consecutive native float32 fields: one strided copy
        return np.array(view, dtype=np.float32, order='C')
    out = np.empty((len(points), len(names)), np.float32)
    for i, name in enumerate(names):
        column = points[name]
        if column.ndim != 1:
            raise ValueError(f'field {name!r} has count > 1; read it with structured=True')
        if name in _PACKED_COLOUR and column.dtype.itemsize == 4:
            out[:, i] = column.astype(column.dtype.newbyteorder('=')).view(np.float32)
        else:
            out[:, i] = column
    return out


def unpack_rgb(packed):
    """Packed PCL colour (float32 or uint32, 0x00RRGGBB) -> (N, 3) uint8 RGB."""
    packed = np.ascontiguousarray(packed)
    if packed.dtype.itemsize != 4:
        raise ValueError(f'packed rgb must be float32 or uint32, got {packed.dtype}')
    bits = packed.astype(packed.dtype.newbyteorder('='), copy=False).reshape(-1)
    channels = bits.view(np.uint8).reshape(-1, 4)  # bytes of 0x00RRGGBB in memory order
    return channels[:, [1, 2, 3] if _NATIVE_BIG else [2, 1, 0]]  # fancy index: a new array


def pack_rgb(colors):
    """(N, 3) uint8 RGB -> (N,) float32 carrying 0x00RRGGBB bits (PCL's packed rgb)."""
    colors = np.asarray(colors)
    if colors.ndim != 2 or colors.shape[1] != 3 or colors.dtype != np.uint8:
        raise ValueError(f'colors must be (N, 3) uint8, got {colors.shape} {colors.dtype}')
    packed = np.zeros(len(colors), np.uint32)
    channels = packed.view(np.uint8).reshape(-1, 4)  # memory order of native 0x00RRGGBB
    for i, byte in enumerate((1, 2, 3) if _NATIVE_BIG else (2, 1, 0)):
        channels[:, byte] = colors[:, i]  # a loop over 3 channels, not over points
    return packed.view(np.float32)


def numpy_to_pointcloud2(points, colors=None, intensity=None, header=None, frame_id='',
                         labels=None):
    """(N, 3) points (+ (N, 3) uint8 colours, + (N,) intensity, + (N,) integer labels) ->
    unorganised PointCloud2.

    Fields: x, y, z float32, then `intensity` float32, packed `rgb` float32 and `label`
    uint32 (PCL's PointXYZRGBL) when given; 4 bytes each, native byte order. `frame_id` is
    used when `header` is None. `is_dense` is set when every xyz is finite.
    """
    from sensor_msgs.msg import PointCloud2, PointField
    from std_msgs.msg import Header

    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must have shape (N, 3), got {points.shape}')
    n = len(points)
    names = ['x', 'y', 'z']
    if intensity is not None:
        intensity = np.asarray(intensity).reshape(-1)
        if intensity.size != n:
            raise ValueError(f'intensity must have {n} values, got {intensity.size}')
        names.append('intensity')
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (n, 3):
            raise ValueError(f'colors must have shape ({n}, 3), got {colors.shape}')
        names.append('rgb')
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.size != n or not np.issubdtype(labels.dtype, np.integer) or \
                (n and int(labels.min()) < 0):
            raise ValueError(f'labels must be {n} non-negative integers, got {labels.size} '
                             f'of {labels.dtype}')
        names.append('label')
    # every field is 4 bytes, so one (N, k) float32 block is the whole payload
    cloud = points.astype(np.float32, order='C', copy=False)
    if len(names) > 3:
        cloud = np.empty((n, len(names)), np.float32)
        for axis in range(3):  # column by column: faster than one strided (N, 3) copy
            cloud[:, axis] = points[:, axis]
        if intensity is not None:
            cloud[:, 3] = intensity
        if colors is not None:
            column = names.index('rgb')
            cloud[:, column] = pack_rgb(colors.astype(np.uint8, copy=False))  # bits as is
        if labels is not None:
            cloud[:, -1] = labels.astype(np.uint32).view(np.float32)  # bits kept as is
    msg = PointCloud2()
    msg.header = header if header is not None else Header(frame_id=frame_id)
    msg.height, msg.width = 1, n
    msg.fields = [PointField(name=name, offset=4 * i,
                             datatype=_UINT32 if name == 'label' else _FLOAT32, count=1)
                  for i, name in enumerate(names)]
    msg.is_bigendian = _NATIVE_BIG
    msg.point_step = 4 * len(names)
    msg.row_step = msg.point_step * n
    msg.is_dense = bool(np.all(np.isfinite(points)))
    _to_wire(msg, cloud.view(np.uint8).reshape(-1))
    return msg
