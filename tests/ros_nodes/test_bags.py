"""`replay` and `record` on rosbag2 bags in both storages, written and read with rosbags."""
import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('rosbags')
from rosbags.highlevel import AnyReader  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from embodied_vision import deploy  # noqa: E402
from embodied_vision.checkpoints import save_encoder  # noqa: E402
from embodied_vision.data.images import to_batch  # noqa: E402
from embodied_vision.encoders import create_encoder, load_encoder  # noqa: E402
from embodied_vision.ros_nodes.bags import record_main, replay_main  # noqa: E402
from embodied_vision.ros_nodes.conversions import image_to_numpy  # noqa: E402
from tests.numerics import assert_fp32_close  # noqa: E402

STORE = get_typestore(Stores.ROS2_JAZZY)
T = STORE.types
SIZE = 64
RNG = np.random.default_rng(0)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    return save_encoder(create_encoder('r3m_resnet18'), tmp_path_factory.mktemp('ck') / 'enc')


def _image(frame, encoding, sec, nanosec, truncate=False):
    header = T['std_msgs/msg/Header'](
        stamp=T['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec), frame_id='cam')
    data = frame.reshape(-1).copy()
    return T['sensor_msgs/msg/Image'](
        header=header, height=frame.shape[0], width=frame.shape[1], encoding=encoding,
        is_bigendian=0, step=frame.shape[1] * 3, data=data[:50] if truncate else data)


def _write_bag(path, storage):
    frames = [RNG.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(4)]
    stamps = [(10, 5), (11, 0), (11, 999_999_999), (13, 7)]
    with Writer(path, version=9, storage_plugin=storage) as writer:
        images = writer.add_connection('/cam/image_raw', 'sensor_msgs/msg/Image',
                                       typestore=STORE)
        other = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=STORE)
        for i, (frame, (sec, ns)) in enumerate(zip(frames, stamps)):
            encoding = 'bgr8' if i == 2 else 'rgb8'
            payload = frame[..., ::-1] if i == 2 else frame
            msg = _image(np.ascontiguousarray(payload), encoding, sec, ns)
            writer.write(images, 1000 + i, STORE.serialize_cdr(msg, 'sensor_msgs/msg/Image'))
            writer.write(other, 1000 + i, STORE.serialize_cdr(
                T['std_msgs/msg/String'](data='hi'), 'std_msgs/msg/String'))
        bad = _image(frames[0], 'rgb8', 14, 0, truncate=True)
        writer.write(images, 2000, STORE.serialize_cdr(bad, 'sensor_msgs/msg/Image'))
    return frames, [s * 10**9 + n for s, n in stamps], [1000, 1001, 1002, 1003]


@pytest.mark.parametrize('storage', [StoragePlugin.MCAP, StoragePlugin.SQLITE3],
                         ids=['mcap', 'sqlite3'])
def test_replay_writes_embeddings_stamped_with_their_source(tmp_path, checkpoint, storage,
                                                            capsys):
    frames, stamps, log_times = _write_bag(tmp_path / 'in', storage)
    out_bag, out_file = tmp_path / 'out', tmp_path / 'emb.npy'
    out_storage = 'sqlite3' if storage == StoragePlugin.MCAP else 'mcap'
    assert replay_main([str(tmp_path / 'in'), '--topic', '/cam/image_raw', '--checkpoint',
                        str(checkpoint), '--backend', 'eager', '--device', 'cpu', '--size',
                        str(SIZE), '--out-bag', str(out_bag), '--out', str(out_file),
                        '--storage', out_storage, '--batch-size', '3']) == 0
    assert 'skipped 1' in capsys.readouterr().out
    encoder = load_encoder(checkpoint)
    compiled = deploy.compile(encoder, 'eager', device='cpu', input_size=(SIZE, SIZE))
    expected = np.concatenate([compiled(to_batch([f], (SIZE, SIZE))).numpy() for f in frames])
    with torch.inference_mode():
        exact = copy.deepcopy(encoder).double()(to_batch(frames, (SIZE, SIZE))).numpy()

    with AnyReader([out_bag]) as reader:
        rows = [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()]
    assert [t for t, _ in rows] == log_times
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in rows] == stamps
    assert all(m.header.frame_id == 'cam' and m.encoding == '32FC1' for _, m in rows)
    got = np.concatenate([image_to_numpy(m) for _, m in rows])
    # replay ran the frames in batches of 3, the reference one at a time: other kernels.
    assert_fp32_close(got, exact, encoder, exact=True, what='replay vs float64')
    assert_fp32_close(expected, exact, encoder, exact=True, what='per-frame vs float64')
    assert_fp32_close(got, expected, encoder, what='replay vs per-frame')

    np.testing.assert_array_equal(np.load(out_file), got)  # the same numbers in both outputs
    meta = json.loads(out_file.with_suffix('.json').read_text())
    assert meta['stamps_ns'] == stamps and meta['log_times_ns'] == log_times


def test_replay_to_safetensors_and_unknown_topic(tmp_path, checkpoint, capsys):
    from safetensors.torch import load_file
    _, stamps, _ = _write_bag(tmp_path / 'in', StoragePlugin.MCAP)
    out = tmp_path / 'emb.safetensors'
    assert replay_main([str(tmp_path / 'in'), '--topic', '/cam/image_raw', '--checkpoint',
                        str(checkpoint), '--backend', 'eager', '--size', str(SIZE),
                        '--out', str(out)]) == 0
    tensors = load_file(str(out))
    assert tensors['embeddings'].shape == (4, 512)
    assert tensors['stamps_ns'].tolist() == stamps
    assert replay_main([str(tmp_path / 'in'), '--topic', '/nope', '--backend', 'eager',
                        '--out', str(out)]) == 2
    assert "no topic '/nope'; image topics: ['/cam/image_raw']" in capsys.readouterr().err
    assert replay_main([str(tmp_path / 'missing'), '--topic', '/nope', '--out', str(out)]) == 2
    assert 'no such rosbag2 folder' in capsys.readouterr().err


def test_replay_feeds_croco_imagenet_normalised_frames(tmp_path):
    torch.manual_seed(0)
    vit = create_encoder('croco_vit_base', img_size=32, enc_embed_dim=16, enc_depth=2,
                         enc_num_heads=2)
    export = save_encoder(vit, tmp_path / 'croco')
    frames, _, _ = _write_bag(tmp_path / 'in', StoragePlugin.MCAP)
    out = tmp_path / 'emb.npy'
    assert replay_main([str(tmp_path / 'in'), '--topic', '/cam/image_raw', '--encoder',
                        'croco_vit_base', '--checkpoint', str(export), '--backend', 'eager',
                        '--size', '32', '--out', str(out)]) == 0
    pixels = to_batch(frames, (32, 32)).double() / 255
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    with torch.inference_mode():
        exact = copy.deepcopy(vit).double()((pixels - mean) / std).numpy()
    assert_fp32_close(np.load(out), exact, vit, what='replay vs normalised float64')


def test_record_writes_a_sim_episode(tmp_path, capsys):
    pytest.importorskip('mujoco')
    os.environ.setdefault('MUJOCO_GL', 'egl')
    bag = tmp_path / 'episode'
    assert record_main([str(bag), '--task', 'Reach', '--episodes', '1', '--image-size', '32',
                        '--storage', 'sqlite3']) == 0
    assert '1 successful' in capsys.readouterr().out
    with AnyReader([Path(bag)]) as reader:
        by_topic = {}
        for c, t, raw in reader.messages():
            by_topic.setdefault(c.topic, []).append((t, reader.deserialize(raw, c.msgtype)))
    steps = len(by_topic['/action'])
    assert steps >= 1 and len(by_topic['/front/image_raw']) == steps + 1
    image_stamps = [t for t, _ in by_topic['/front/image_raw']]
    assert image_stamps == sorted(image_stamps)
    assert [t for t, _ in by_topic['/action']] == image_stamps[:-1]
    assert by_topic['/success'][-1][1].data is True
    assert image_to_numpy(by_topic['/front/image_raw'][0][1]).shape == (32, 32, 3)
    assert by_topic['/front/camera_info'][0][1].k[0] > 0
    assert 'target' in by_topic['/instruction'][0][1].data
    # the camera pose at every image, as sim_node publishes it (what voxel_node needs)
    import gymnasium as gym

    from embodied_vision.ros_nodes.pose_sync import rigid_from_pose
    from embodied_vision.sim import env_id
    assert [t for t, _ in by_topic['/front/pose']] == image_stamps
    pose = by_topic['/front/pose'][0][1]
    assert pose.header.frame_id == 'world'
    env = gym.make(env_id('Reach'), cameras=('front',), image_size=32, disable_env_checker=True)
    env.reset(seed=0)
    expected = env.unwrapped.camera_params('front')['T_world_cam']
    env.close()
    np.testing.assert_allclose(rigid_from_pose(pose), expected, atol=1e-6)
