"""rosbag2 in and out without a ROS install (`rosbags`, sqlite3 and MCAP storage).

    embodied-vision replay BAG --topic /camera/image_raw --encoder r3m_resnet18 \\
        [--out-bag OUT_BAG] [--out embeddings.npy|.safetensors]
    embodied-vision record OUT_BAG --task PickPlace --episodes 2 [--cameras front wrist]

`replay` reads a bag (storage detected), embeds every Image on `--topic` exactly as
`encoder_node` does (`to_batch` resize + centre crop, the compiled encoder) and writes the
embeddings stamped with their source: in a bag as sensor_msgs/Image 32FC1 (1 x D) carrying
the source header and written at the source log time, and/or in a file with the header
stamps and log times (`.npy` + `.json`, or `.safetensors` with `embeddings`, `stamps_ns`,
`log_times_ns`). Frames that cannot be decoded are skipped and counted.

`record` runs tabletop episodes in-process with the scripted expert and writes what
`sim_node` would publish (colour/depth images, camera info, `<camera>/pose` (optical frame in
`world`), end-effector pose, gripper state, success, stage, instruction) plus the actions
(sensor_msgs/Joy, stamped with the observation they answer), on sim time: one step =
`CONTROL_DT` after the recording start.
"""
import argparse
import json
import logging
from pathlib import Path
import sys
import time

import numpy as np

from embodied_vision.ros_nodes.conversions import image_to_numpy, rotation_to_quaternion

__all__ = ['record', 'record_main', 'replay', 'replay_main']

_logger = logging.getLogger(__name__)
COLOUR = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8')


def _typestore():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_JAZZY)


def _storage(name: str):
    from rosbags.rosbag2 import StoragePlugin
    plugins = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
    if name not in plugins:
        raise ValueError(f'storage {name!r} is not one of {sorted(plugins)}')
    return plugins[name]


class _Messages:
    """Builders of rosbags message objects (Jazzy definitions)."""

    def __init__(self):
        self.store = _typestore()
        self.t = self.store.types

    def header(self, stamp_ns: int, frame_id: str = ''):
        time_ = self.t['builtin_interfaces/msg/Time'](sec=int(stamp_ns // 10**9),
                                                      nanosec=int(stamp_ns % 10**9))
        return self.t['std_msgs/msg/Header'](stamp=time_, frame_id=frame_id)

    def copy_header(self, header):
        return self.header(header.stamp.sec * 10**9 + header.stamp.nanosec, header.frame_id)

    def image(self, array: np.ndarray, encoding: str, header):
        array = np.ascontiguousarray(array)
        height, width = array.shape[:2]
        return self.t['sensor_msgs/msg/Image'](
            header=header, height=height, width=width, encoding=encoding,
            is_bigendian=int(sys.byteorder == 'big' and array.itemsize > 1),
            step=array.strides[0], data=array.reshape(-1).view(np.uint8).copy())

    def camera_info(self, K, width, height, header):  # noqa: N803
        roi = self.t['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0,
                                                         width=0, do_rectify=False)
        k = np.asarray(K, np.float64)
        return self.t['sensor_msgs/msg/CameraInfo'](
            header=header, height=int(height), width=int(width),
            distortion_model='plumb_bob', d=np.zeros(5), k=k.reshape(-1),
            r=np.eye(3).reshape(-1), p=np.concatenate([k, np.zeros((3, 1))], 1).reshape(-1),
            binning_x=0, binning_y=0, roi=roi)

    def serialize(self, msg, msgtype: str) -> bytes:
        return self.store.serialize_cdr(msg, msgtype)


# ================================================================================= replay
def replay(bag: str | Path, topic: str, encoder: str = 'r3m_resnet18',
           checkpoint: str | None = None, backend: str = 'auto', device: str | None = None,
           size: tuple[int, int] | None = None, out_bag: str | Path | None = None,
           out: str | Path | None = None, output_topic: str = '/embedding',
           storage: str = 'mcap', batch_size: int = 8) -> dict:
    """Embed every image of `topic`; returns counts and the output paths."""
    from rosbags.highlevel import AnyReader
    import torch

    from embodied_vision import deploy
    from embodied_vision.data.images import to_batch
    from embodied_vision.encoders import encoder_for_inference
    if out_bag is None and out is None:
        raise ValueError('give --out-bag and/or --out: nothing would be written')
    if out is not None and Path(out).suffix not in ('.npy', '.safetensors'):
        raise ValueError(f'--out must end in .npy or .safetensors, got {out}')
    if not Path(bag).exists():
        raise FileNotFoundError(f'{bag}: no such rosbag2 folder')
    msgs = _Messages()
    writer = connection = model = compiled = None
    embeddings, stamps, log_times, skipped = [], [], [], []
    pending: list = []

    def flush():
        batch = to_batch([frame for frame, _, _ in pending], size)
        values = compiled(model.input_contract.from_pixels(batch)).float().cpu().numpy()
        for value, (_, header, log_time) in zip(values, pending):
            embeddings.append(value)
            stamps.append(header.stamp.sec * 10**9 + header.stamp.nanosec)
            log_times.append(log_time)
            if writer is not None:
                msg = msgs.image(value[None].astype(np.float32), '32FC1',
                                 msgs.copy_header(header))
                writer.write(connection, log_time,
                             msgs.serialize(msg, 'sensor_msgs/msg/Image'))
        pending.clear()

    with AnyReader([Path(bag)]) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            images = sorted({c.topic for c in reader.connections
                             if c.msgtype == 'sensor_msgs/msg/Image'})
            raise ValueError(f'{bag} has no topic {topic!r}; image topics: {images}')
        model = encoder_for_inference(encoder, checkpoint=checkpoint)
        contract = model.input_contract
        if contract.modality != 'image':
            raise ValueError(f'{encoder} takes {contract.modality} input; replay embeds '
                             'single frames: pick an image encoder')
        size = tuple(size or contract.default_size)
        compiled = deploy.compile(
            model, backend, device=device or 'cpu', input_size=size,
            input_dtype=torch.uint8 if contract.takes_pixels else torch.float32,
            max_batch=max(batch_size, 4))
        if out_bag is not None:
            from rosbags.rosbag2 import Writer
            writer = Writer(Path(out_bag), version=9, storage_plugin=_storage(storage))
            writer.open()
            connection = writer.add_connection(output_topic, 'sensor_msgs/msg/Image',
                                               typestore=msgs.store)
        try:
            for conn, log_time, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, conn.msgtype)
                try:
                    if msg.encoding not in COLOUR:
                        raise ValueError(f'encoding {msg.encoding!r} is not one of {COLOUR}')
                    frame = image_to_numpy(msg, to_rgb=True)
                except ValueError as err:
                    skipped.append(f'{log_time}: {err}')
                    continue
                if frame.ndim == 2:
                    frame = np.repeat(frame[..., None], 3, axis=2)
                pending.append((frame, msg.header, log_time))
                if len(pending) == batch_size:
                    flush()
            if pending:
                flush()
        finally:
            if writer is not None:
                writer.close()
    values = np.stack(embeddings) if embeddings else np.zeros((0, model.embed_dim),
                                                              np.float32)
    meta = {'source': str(bag), 'topic': topic, 'encoder': model.name,
            'checkpoint': str(checkpoint or ''), 'random_weights': model.random_weights,
            'backend': compiled.backend,
            'input_size': list(size)}
    if out is not None:
        _save(Path(out), values, np.asarray(stamps, np.int64),
              np.asarray(log_times, np.int64), meta)
    return {'embedded': len(embeddings), 'skipped': skipped, 'out_bag': out_bag, 'out': out,
            **meta}


def _save(out: Path, values, stamps, log_times, meta) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == '.safetensors':
        from safetensors.torch import save_file
        import torch
        save_file({'embeddings': torch.from_numpy(values).contiguous(),
                   'stamps_ns': torch.from_numpy(stamps),
                   'log_times_ns': torch.from_numpy(log_times)}, str(out),
                  metadata={k: json.dumps(v) for k, v in meta.items()})
        return
    np.save(out, values)
    meta = dict(meta, stamps_ns=stamps.tolist(), log_times_ns=log_times.tolist())
    out.with_suffix('.json').write_text(json.dumps(meta, indent=2) + '\n')


def replay_main(argv: list[str] | None = None) -> int:
    """`embodied-vision replay`; returns an exit code."""
    p = argparse.ArgumentParser(prog='embodied-vision replay',
                                description='embed the images of a rosbag2 topic')
    p.add_argument('bag', help='rosbag2 directory (sqlite3 or mcap)')
    p.add_argument('--topic', required=True, help='sensor_msgs/Image topic to embed')
    p.add_argument('--encoder', default='r3m_resnet18', help='arch or arch.tag')
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--backend', default='auto',
                   choices=['auto', 'eager', 'inductor', 'onnxruntime', 'tensorrt'])
    p.add_argument('--device', default=None)
    p.add_argument('--size', type=int, default=None, help='square encoder input side')
    p.add_argument('--out-bag', default=None, help='new bag with the embeddings')
    p.add_argument('--output-topic', default='/embedding')
    p.add_argument('--storage', default='mcap', choices=['mcap', 'sqlite3'])
    p.add_argument('--out', default=None, help='.npy (+ .json stamps) or .safetensors')
    p.add_argument('--batch-size', type=int, default=8)
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        result = replay(args.bag, args.topic, args.encoder, args.checkpoint, args.backend,
                        args.device, (args.size, args.size) if args.size else None,
                        args.out_bag, args.out, args.output_topic, args.storage,
                        args.batch_size)
    except (ValueError, OSError, ImportError) as err:
        print(f'embodied-vision replay: error: {err}', file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(f'embedded {result["embedded"]} images of {args.topic} with {result["encoder"]} '
          f'({result["backend"]}) in {seconds:.1f} s; skipped {len(result["skipped"])}')
    for line in result['skipped'][:5]:
        print(f'  skipped {line}')
    for target in (args.out_bag, args.out):
        if target:
            print(f'  -> {target}')
    return 0


# ================================================================================= record
def record(out_bag: str | Path, task: str = 'PickPlace', episodes: int = 1,
           cameras: tuple[str, ...] = ('front',), image_size: int = 64, depth: bool = True,
           seed: int = 0, storage: str = 'mcap', domain: str = 'sim') -> list[dict]:
    """Run scripted-expert episodes and write them to a new bag; returns per-episode results."""
    import gymnasium as gym

    from embodied_vision.sim import env_id
    msgs, t = _Messages(), _Messages().t
    env = gym.make(env_id(task), cameras=tuple(cameras), image_size=image_size, depth=depth,
                   domain=domain, disable_env_checker=True)
    dt_ns = int(round(env.unwrapped.CONTROL_DT * 1e9))
    clock = time.time_ns()
    topics = {'/action': 'sensor_msgs/msg/Joy', '/ee_pose': 'geometry_msgs/msg/PoseStamped',
              '/gripper_state': 'sensor_msgs/msg/JointState', '/success': 'std_msgs/msg/Bool',
              '/stage': 'std_msgs/msg/Int32', '/instruction': 'std_msgs/msg/String'}
    for cam in cameras:
        topics[f'/{cam}/image_raw'] = 'sensor_msgs/msg/Image'
        topics[f'/{cam}/camera_info'] = 'sensor_msgs/msg/CameraInfo'
        topics[f'/{cam}/pose'] = 'geometry_msgs/msg/PoseStamped'
        if depth:
            topics[f'/{cam}/depth/image_raw'] = 'sensor_msgs/msg/Image'
    from rosbags.rosbag2 import Writer
    writer = Writer(Path(out_bag), version=9, storage_plugin=_storage(storage))
    results = []
    with writer:
        conns = {name: writer.add_connection(name, kind, typestore=msgs.store)
                 for name, kind in topics.items()}

        def write(topic, msg, stamp):
            writer.write(conns[topic], stamp, msgs.serialize(msg, topics[topic]))

        def pose_msg(position, quaternion):  # quaternion (x, y, z, w)
            x, y, z, w = (float(v) for v in quaternion)
            return t['geometry_msgs/msg/Pose'](
                position=t['geometry_msgs/msg/Point'](x=float(position[0]),
                                                      y=float(position[1]),
                                                      z=float(position[2])),
                orientation=t['geometry_msgs/msg/Quaternion'](x=x, y=y, z=z, w=w))

        def observe(obs, info, stamp):
            world = msgs.header(stamp, 'world')
            for cam in cameras:
                header = msgs.header(stamp, f'{cam}_optical_frame')
                write(f'/{cam}/image_raw', msgs.image(obs[f'{cam}/rgb'], 'rgb8', header), stamp)
                if depth:
                    write(f'/{cam}/depth/image_raw',
                          msgs.image(obs[f'{cam}/depth'], '32FC1', header), stamp)
                params = env.unwrapped.camera_params(cam)
                write(f'/{cam}/camera_info', msgs.camera_info(
                    params['K'], params['width'], params['height'], header), stamp)
                camera = np.asarray(params['T_world_cam'], np.float64)  # OpenCV optical frame
                write(f'/{cam}/pose', t['geometry_msgs/msg/PoseStamped'](
                    header=world, pose=pose_msg(camera[:3, 3],
                                                rotation_to_quaternion(camera[:3, :3]))),
                      stamp)
            p = np.asarray(obs['proprio'], np.float64)
            pose = pose_msg(p[:3], (p[4], p[5], p[6], p[3]))
            write('/ee_pose', t['geometry_msgs/msg/PoseStamped'](header=world, pose=pose), stamp)
            write('/gripper_state', t['sensor_msgs/msg/JointState'](
                header=world, name=['gripper_width'], position=p[7:8].copy(),
                velocity=np.zeros(0), effort=np.zeros(0)), stamp)
            write('/success', t['std_msgs/msg/Bool'](data=bool(info['success'])), stamp)
            write('/stage', t['std_msgs/msg/Int32'](data=int(info['stage'])), stamp)

        for index in range(episodes):
            obs, info = env.reset(seed=seed + index)
            write('/instruction', t['std_msgs/msg/String'](data=str(obs['instruction'])),
                  clock)
            steps, done = 0, False
            while not done:
                observe(obs, info, clock)
                action = np.asarray(env.unwrapped.expert_action(), np.float32)
                write('/action', t['sensor_msgs/msg/Joy'](
                    header=msgs.header(clock), axes=action,
                    buttons=np.zeros(0, np.int32)), clock)
                obs, _, terminated, truncated, info = env.step(action)
                clock += dt_ns
                steps += 1
                done = terminated or truncated
            observe(obs, info, clock)
            clock += dt_ns
            results.append({'episode': index, 'success': bool(info['success']),
                            'steps': steps})
    env.close()
    return results


def record_main(argv: list[str] | None = None) -> int:
    """`embodied-vision record`; returns an exit code."""
    p = argparse.ArgumentParser(prog='embodied-vision record',
                                description='record scripted-expert sim episodes to a bag')
    p.add_argument('out_bag', help='new rosbag2 directory')
    p.add_argument('--task', default='PickPlace')
    p.add_argument('--episodes', type=int, default=1)
    p.add_argument('--cameras', nargs='+', default=['front'])
    p.add_argument('--image-size', type=int, default=64)
    p.add_argument('--no-depth', action='store_true')
    p.add_argument('--domain', default='sim')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--storage', default='mcap', choices=['mcap', 'sqlite3'])
    args = p.parse_args(argv)
    results = record(args.out_bag, args.task, args.episodes, tuple(args.cameras),
                     args.image_size, not args.no_depth, args.seed, args.storage, args.domain)
    wins = sum(r['success'] for r in results)
    print(f'recorded {len(results)} {args.task} episodes ({wins} successful, '
          f'{sum(r["steps"] for r in results)} steps) -> {args.out_bag}')
    return 0
