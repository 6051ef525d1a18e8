"""Benchmark sensor_msgs <-> numpy conversion against the naive paths, in the same run.

    .venv/bin/python benchmarks/ros_conversions.py [--reps 200] [--points 300000]

Prints median and p90 per path and the naive/ours ratio of the medians; asserts nothing.
Target: a 640x480 rgb8 frame well under 1 ms each way.
"""
import argparse
import platform
import struct
import time

import numpy as np

from embodied_vision.ros_nodes.conversions import image_to_numpy, numpy_to_image
from embodied_vision.ros_nodes.pointcloud import (
    numpy_to_pointcloud2,
    pointcloud2_to_numpy,
    unpack_rgb,
)


def measure(fn, reps):
    fn()  # warm up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times = np.array(times) * 1e3
    return float(np.median(times)), float(np.percentile(times, 90))


def report(title, ours, naive, reps, slow_reps):
    print(f'\n{title}')
    print(f'  {"path":58s} {"median ms":>10s} {"p90 ms":>9s} {"naive/ours":>11s}')
    base = None
    for label, fn, is_ours in [(label, fn, True) for label, fn in ours] + \
            [(label, fn, False) for label, fn in naive]:
        median, p90 = measure(fn, reps if is_ours else slow_reps)
        base = median if base is None else base
        ratio = '' if is_ours else f'{median / base:10.1f}x'
        print(f'  {label:58s} {median:10.3f} {p90:9.3f} {ratio:>11s}')


def naive_read_points(msg):
    """ROS 1 era read_points: struct per point (what sensor_msgs_py replaced)."""
    fmt = '<fff'
    data = bytes(msg.data)
    step = msg.point_step
    return np.array([struct.unpack_from(fmt, data, i * step) for i in range(msg.width)],
                    np.float32)


def naive_create_cloud(points):
    buf = bytearray()
    for x, y, z in points.tolist():
        buf += struct.pack('<fff', x, y, z)
    return buf


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--reps', type=int, default=200)
    parser.add_argument('--slow-reps', type=int, default=5, help='for the list-based paths')
    parser.add_argument('--points', type=int, default=300_000)
    args = parser.parse_args()
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    print(f'python {platform.python_version()}, numpy {np.__version__}, '
          f'{platform.machine()}, reps {args.reps} (list-based paths {args.slow_reps})')
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    reused = Image()
    bytes_msg, array_msg, list_msg = Image(), Image(), Image()

    report('numpy -> sensor_msgs/Image, 640x480 rgb8', [
        ('numpy_to_image (new message)', lambda: numpy_to_image(frame, 'rgb8')),
        ('numpy_to_image (reused message)', lambda: numpy_to_image(frame, 'rgb8', msg=reused)),
    ], [
        ('msg.data = frame.tobytes()', lambda: setattr(bytes_msg, 'data', frame.tobytes())),
        ('msg.data = frame (ndarray)', lambda: setattr(array_msg, 'data', frame.reshape(-1))),
        ('msg.data = frame.flatten().tolist()',
         lambda: setattr(list_msg, 'data', frame.flatten().tolist())),
    ], args.reps, args.slow_reps)

    msg = numpy_to_image(frame, 'rgb8')
    report('sensor_msgs/Image -> numpy, 640x480 rgb8', [
        ('image_to_numpy (zero-copy view)', lambda: image_to_numpy(msg)),
        ('image_to_numpy(...).copy() (owned array)', lambda: image_to_numpy(msg).copy()),
    ], [
        ('np.array(msg.data, np.uint8).reshape(480, 640, 3)',
         lambda: np.array(msg.data, np.uint8).reshape(480, 640, 3)),
        ('np.array(list(msg.data), np.uint8).reshape(480, 640, 3)',
         lambda: np.array(list(msg.data), np.uint8).reshape(480, 640, 3)),
    ], args.reps, args.slow_reps)

    report('rclpy serialize_message of the Image (context: what publish pays)', [
        ('data set by numpy_to_image', lambda: serialize_message(msg)),
    ], [], args.reps, args.slow_reps)

    points = rng.normal(size=(args.points, 3)).astype(np.float32)
    colours = rng.integers(0, 256, (args.points, 3), dtype=np.uint8)
    cloud = numpy_to_pointcloud2(points, colors=colours)
    xyz_cloud = numpy_to_pointcloud2(points)
    naive = [('struct.pack per point (xyz only)', lambda: naive_create_cloud(points))]
    report(f'numpy -> PointCloud2, {args.points} points', [
        ('numpy_to_pointcloud2 xyz', lambda: numpy_to_pointcloud2(points)),
        ('numpy_to_pointcloud2 xyz + rgb', lambda: numpy_to_pointcloud2(points, colours)),
    ], naive, max(args.reps // 10, 5), max(args.slow_reps // 2, 2))

    naive = [('struct.unpack_from per point (xyz)', lambda: naive_read_points(xyz_cloud))]
    try:
        from sensor_msgs_py import point_cloud2
        naive.insert(0, ('sensor_msgs_py read_points_numpy (xyz)',
                         lambda: point_cloud2.read_points_numpy(xyz_cloud, ('x', 'y', 'z'))))
    except ImportError:
        print('\n(sensor_msgs_py not installed: its read_points is not compared)')
    report(f'PointCloud2 -> numpy, {args.points} points', [
        ('pointcloud2_to_numpy xyz (skip_nans)', lambda: pointcloud2_to_numpy(xyz_cloud)),
        ('pointcloud2_to_numpy xyz + unpack_rgb',
         lambda: unpack_rgb(pointcloud2_to_numpy(cloud, ('x', 'y', 'z', 'rgb'))[:, 3])),
    ], naive, max(args.reps // 10, 5), max(args.slow_reps // 2, 2))


if __name__ == '__main__':
    main()
