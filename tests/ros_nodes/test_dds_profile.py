"""The shipped Fast DDS shared-memory profile: accepted by Fast DDS, carries camera frames."""
import os
from pathlib import Path
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip('rclpy')
PROFILE = Path(__file__).resolve().parents[2] / 'launch' / 'config' / 'fastdds_shm.xml'

# Two contexts = two DDS participants, so the frame crosses the transport of the profile.
SCRIPT = textwrap.dedent("""
    import time
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image
    from embodied_vision.ros_nodes.conversions import image_to_numpy, numpy_to_image

    contexts = [rclpy.Context(), rclpy.Context()]
    for context in contexts:
        rclpy.init(context=context)
    sender = rclpy.create_node('profile_sender', context=contexts[0])
    receiver = rclpy.create_node('profile_receiver', context=contexts[1])
    got = []
    receiver.create_subscription(Image, 'frames', got.append, QoSProfile(depth=5))
    pub = sender.create_publisher(Image, 'frames', QoSProfile(depth=5))
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    deadline = time.monotonic() + 120  # returns as soon as the frame is there
    while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    pub.publish(numpy_to_image(frame, 'rgb8'))
    executor = SingleThreadedExecutor(context=contexts[1])
    executor.add_node(receiver)
    while not got and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    assert got, 'no frame arrived'
    assert np.array_equal(image_to_numpy(got[0]), frame)
    print('frame ok')
""")


def test_shm_profile_carries_a_camera_frame_between_participants():
    env = {**os.environ, 'FASTRTPS_DEFAULT_PROFILES_FILE': str(PROFILE),
           'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
           'ROS_DOMAIN_ID': str(101 + os.getpid() % 100)}
    result = subprocess.run([sys.executable, '-c', SCRIPT], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'frame ok' in result.stdout
    log = result.stdout + result.stderr
    assert 'XMLPARSER' not in log, log[-2000:]  # Fast DDS logs a rejected profile, goes on
