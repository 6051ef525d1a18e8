"""Serialized (CDR) sensor_msgs/Image -> header fields and a numpy view, without rclpy.

A `raw=True` subscription delivers the message as bytes; decoding them here skips rclpy's
message conversion (the `uint8[]` copy into Python) and leaves the pixels a zero-copy view of
the buffer. `image_fields_from_cdr` checks the CDR and returns the fields and the payload;
`image_to_numpy(ImageFields(fields, data))` checks the image layout; `image_from_cdr` does
both. `header_from_fields` gives the std_msgs/Header that outputs are stamped with.
"""
import numpy as np

from embodied_vision.ros_nodes.conversions import image_to_numpy

__all__ = ['ImageFields', 'header_from_fields', 'image_fields_from_cdr', 'image_from_cdr']


class _CdrReader:
    """Sequential reader of XCDR1 primitives; alignment is relative to the byte after the
    4-byte encapsulation header, as CDR requires."""

    def __init__(self, view, little):
        self.view, self.pos, self.order = view, 4, 'little' if little else 'big'

    def _take(self, size, what):
        start = 4 + (self.pos - 4 + size - 1) // size * size if size > 1 else self.pos
        end = start + size
        if end > len(self.view):
            raise ValueError(f'CDR Image is truncated: {what} needs bytes {start}..{end}, '
                             f'the buffer has {len(self.view)}')
        self.pos = end
        return start

    def uint(self, size, what, signed=False):
        start = self._take(size, what)
        return int.from_bytes(self.view[start:self.pos], self.order, signed=signed)

    def string(self, what):
        length = self.uint(4, f'{what} length')
        end = self.pos + length
        if length == 0 or end > len(self.view):
            raise ValueError(f'CDR Image is truncated or corrupt: {what} of {length} bytes at '
                             f'{self.pos}, the buffer has {len(self.view)}')
        raw = bytes(self.view[self.pos:end])
        self.pos = end
        if raw[-1] != 0:
            raise ValueError(f'CDR Image {what} is not NUL-terminated')
        try:
            return raw[:-1].decode('utf-8')
        except UnicodeDecodeError as err:
            raise ValueError(f'CDR Image {what} is not UTF-8: {err}') from err


def image_from_cdr(buffer, to_rgb=False):
    """Serialized (CDR) sensor_msgs/Image -> (fields, array), without rclpy.

    `buffer` is what a `raw=True` subscription delivers (bytes, or any buffer): the 4-byte
    encapsulation header (CDR_LE or CDR_BE), then header.stamp (sec, nanosec),
    header.frame_id, height, width, encoding, is_bigendian, step and the uint8[] data, each
    aligned to its size relative to the byte after the encapsulation header. `fields` is a
    dict with `stamp_sec`, `stamp_nanosec`, `frame_id`, `height`, `width`, `encoding`,
    `is_bigendian`, `step`; `array` is `image_to_numpy` of the payload: a zero-copy view of
    `buffer` where the layout allows (read-only when `buffer` is bytes). Truncated or corrupt
    buffers, and everything `image_to_numpy` rejects, raise ValueError.
    """
    fields, data = image_fields_from_cdr(buffer)
    return fields, image_to_numpy(ImageFields(fields, data), to_rgb=to_rgb)


def image_fields_from_cdr(buffer):
    """The first half of `image_from_cdr`: (fields dict, flat uint8 payload view), with the
    CDR checked but the image layout (encoding, step, size) not yet; `image_to_numpy(
    ImageFields(fields, data))` finishes the job."""
    view = memoryview(buffer).cast('B')
    if len(view) < 4:
        raise ValueError(f'CDR Image is truncated: {len(view)} bytes, no encapsulation header')
    kind = bytes(view[:2])
    if kind not in (b'\x00\x00', b'\x00\x01'):
        raise ValueError(f'CDR Image has encapsulation {kind.hex()}; expected plain CDR '
                         f'(0000 big-endian or 0001 little-endian)')
    reader = _CdrReader(view, kind == b'\x00\x01')
    fields = {'stamp_sec': reader.uint(4, 'header.stamp.sec', signed=True),
              'stamp_nanosec': reader.uint(4, 'header.stamp.nanosec'),
              'frame_id': reader.string('header.frame_id'),
              'height': reader.uint(4, 'height'), 'width': reader.uint(4, 'width'),
              'encoding': reader.string('encoding'),
              'is_bigendian': reader.uint(1, 'is_bigendian'), 'step': reader.uint(4, 'step')}
    size = reader.uint(4, 'data length')
    left = len(view) - reader.pos
    if not 0 <= left - size < 4:  # at most CDR end padding may follow the data
        raise ValueError(f'CDR Image data length {size} does not match the {left} bytes '
                         f'left in the buffer')
    return fields, np.frombuffer(view, np.uint8, count=size, offset=reader.pos)


class ImageFields:
    """Duck-typed Image over decoded CDR fields (what `image_to_numpy` reads)."""

    def __init__(self, fields, data):
        self.__dict__.update(fields)
        self.data = data


def header_from_fields(fields):
    """The std_msgs/Header (stamp and frame_id) of decoded CDR `fields`, to stamp outputs."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    return Header(stamp=Time(sec=fields['stamp_sec'], nanosec=fields['stamp_nanosec']),
                  frame_id=fields['frame_id'])
