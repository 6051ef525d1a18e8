"""A node as a robot runs it: its own process (`run_node`), autostart, Ctrl-C to stop."""
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.ros_nodes.conftest import DEADLINE, wait_for

rclpy = pytest.importorskip('rclpy')
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from embodied_vision.checkpoints import save_encoder  # noqa: E402
from embodied_vision.data.images import to_batch  # noqa: E402
from embodied_vision.encoders import create_encoder, load_encoder  # noqa: E402
from embodied_vision.ros_nodes.conversions import image_to_numpy, numpy_to_image  # noqa: E402
from embodied_vision.ros_nodes.encoder_node import EncoderNode  # noqa: E402
from embodied_vision.ros_nodes.sim_node import SimNode  # noqa: E402

SIZE = 48


def test_nodes_spin_single_threaded_unless_a_callback_blocks():
    assert EncoderNode.SPIN_THREADS == 1
    assert SimNode.SPIN_THREADS > 1  # its reset service waits for the sim thread


def test_encoder_node_process_embeds_frames_and_exits_on_sigint(tmp_path, probe):
    torch.manual_seed(0)
    checkpoint = save_encoder(create_encoder('r3m_resnet18'), tmp_path / 'r3m')
    params = {'autostart': 'true', 'encoder_name': 'r3m_resnet18',
              'checkpoint_path': str(checkpoint), 'backend': 'eager', 'device': 'cpu',
              'network_image_width': SIZE, 'network_image_height': SIZE,
              'input_topic': 'proc/image', 'output_topic': 'proc/embedding',
              'input_qos': 'reliable'}
    command = [sys.executable, '-m', 'embodied_vision.ros_nodes.encoder_node', '--ros-args',
               '-r', '__node:=proc_encoder_node']
    for key, value in params.items():
        command += ['-p', f'{key}:={value}']
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        probe.listen(Image, 'proc/embedding')
        publisher = probe.publisher(Image, 'proc/image')
        frame = np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8)
        header = Header(frame_id='camera')
        header.stamp.sec = 7

        def embedded():  # the node may still be loading: send until an embedding returns
            assert process.poll() is None, process.stdout.read().decode()
            if not probe.messages('proc/embedding'):
                publisher.publish(numpy_to_image(frame, 'rgb8', header=header))
            return bool(probe.messages('proc/embedding'))

        # the process imports torch and builds the encoder first: twice the usual deadline
        wait_for(embedded, timeout=2 * DEADLINE, period=0.5,
                 what='an embedding from the process')
        out = probe.messages('proc/embedding')[0]
        assert (out.header.stamp.sec, out.header.frame_id) == (7, 'camera')
        with torch.inference_mode():
            expected = load_encoder(checkpoint).eval()(to_batch([frame], (SIZE, SIZE))).numpy()
        np.testing.assert_allclose(image_to_numpy(out), expected, rtol=1e-4, atol=1e-5)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0, process.stdout.read().decode()[-2000:]


def _node_process(params: dict, name: str):
    command = [sys.executable, '-m', 'embodied_vision.ros_nodes.encoder_node', '--ros-args',
               '-r', f'__node:={name}']
    for key, value in params.items():
        command += ['-p', f'{key}:={value}']
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_a_bad_start_up_parameter_is_one_line_and_exit_1():
    cases = {'encoder_name': 'bogus', 'backend': 'foo', 'device': 'gpu', 'input_qos': 'fast',
             'network_image_width': -5}
    processes = {key: _node_process({key: value}, f'bad_{key}')
                 for key, value in cases.items()}  # in parallel: each imports torch
    for key, process in processes.items():
        out, _ = process.communicate(timeout=2 * DEADLINE)
        errors = [line for line in out.splitlines() if 'Traceback' in line or 'File "' in line]
        assert process.returncode == 1 and not errors, out
        assert f'invalid parameter {key}: {key}={cases[key]!r}' in out, out


def test_sigterm_while_configuring_exits_0(tmp_path):
    # autostart compiles an ONNX Runtime engine (seconds); SIGTERM lands in the middle of it.
    process = _node_process({'autostart': 'true', 'encoder_name': 'r3m_resnet18',
                             'backend': 'onnxruntime', 'device': 'cpu',
                             'engine_cache_dir': str(tmp_path)}, 'term_while_configuring')
    lines = []
    for line in process.stdout:
        lines.append(line)
        if 'configuring' in line:
            break
    process.send_signal(signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=2 * DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, ''.join(lines) + out
    assert 'Traceback' not in out, out
