"""encoder_node under a camera stream: end-to-end latency, throughput, drops, node overhead.

    python benchmarks/ros_pipeline.py                       # 60 s of 640x480 rgb8 at 30 Hz
    python benchmarks/ros_pipeline.py --duration 15 --backend onnxruntime --json out.json
    python benchmarks/ros_pipeline.py --dds-profile launch/config/fastdds_shm.xml

`encoder_node` runs in its own process (`python -m embodied_vision.ros_nodes.encoder_node`,
autostart), as on a robot; this process publishes 640x480 rgb8 `sensor_msgs/Image` at
`--rate` Hz (a reliable keep-last-10 driver, REP-2003) and receives the embeddings
(the node subscribes with its default `sensor_data` keep-last-1 QoS, so stale frames are
dropped while inference is busy). Every frame's header stamp keys its send time.

Reported (after `--warmup` seconds):
- end-to-end latency: publish -> embedding received, median and p90;
- throughput (embeddings/s) and drop rate (frames without an embedding);
- node overhead = end-to-end minus the bare model time of the same run (the node's own
  `inference` stage, read from /diagnostics), median and p90; target: median < 2 ms;
- the node's per-stage medians (convert, preprocess, inference, publish).
DDS is kept on loopback with a private domain id. The script prints; it never asserts a time.

Plumbing: the frame is serialized once (`rclpy.serialization.serialize_message`) and each send
patches its stamp into those bytes and publishes them raw, like a C++ camera driver (the node
receives exactly the CDR a typed publish would produce); embeddings are received raw and only
their stamp is read. So the bench's own Python message conversion stays out of the latency.
`--typed-io` restores typed publish/receive.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--duration', type=float, default=60.0, help='seconds of streaming')
    p.add_argument('--warmup', type=float, default=3.0, help='seconds ignored at the start')
    p.add_argument('--rate', type=float, default=30.0, help='camera rate (Hz)')
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--encoder', default='r3m_resnet18')
    p.add_argument('--backend', default='auto')
    p.add_argument('--device', default='')
    p.add_argument('--size', type=int, default=224, help='encoder input side')
    p.add_argument('--input-qos', default='sensor_data',
                   help='encoder_node input_qos (sensor_data, reliable, best_effort)')
    p.add_argument('--threads', type=int, default=0,
                   help="encoder_node num_threads (0 = the runtime's default)")
    p.add_argument('--typed-io', action='store_true',
                   help='publish and receive typed messages (rclpy conversion in the bench)')
    p.add_argument('--param', action='append', default=[], metavar='NAME:=VALUE',
                   help='extra encoder_node parameter (repeatable), e.g. raw_input:=false')
    p.add_argument('--dds-profile', default=None, metavar='XML',
                   help='Fast DDS profile for the node and this process (sets '
                        'FASTRTPS_DEFAULT_PROFILES_FILE), e.g. launch/config/fastdds_shm.xml')
    p.add_argument('--startup-timeout', type=float, default=300.0)
    p.add_argument('--json', default=None, help='also write the results as JSON')
    return p.parse_args(argv)


def _percentiles(values):
    if not values:
        return {'median': float('nan'), 'p90': float('nan'), 'n': 0}
    array = np.asarray(values)
    return {'median': float(np.median(array)), 'p90': float(np.percentile(array, 90)),
            'n': int(array.size)}


class Bench:
    """Publisher + embedding/diagnostics subscriber (plain rclpy node)."""

    def __init__(self, context, args):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import Image

        from embodied_vision.ros_nodes.conversions import numpy_to_image
        self.node = Node('ros_pipeline_bench', context=context)
        frame = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3),
                                                  dtype=np.uint8)
        self.msg = numpy_to_image(frame, 'rgb8')
        self.msg.header.frame_id = 'bench_camera'
        self.pub = self.node.create_publisher(
            Image, 'bench/image', QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.raw = None if args.typed_io else bytearray(serialize_message(self.msg))
        if self.raw is not None and self.raw[:2] != b'\x00\x01':
            raise RuntimeError('expected little-endian CDR from serialize_message')
        self.node.create_subscription(Image, 'bench/embedding', self.on_embedding, 10,
                                      raw=not args.typed_io)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.on_diagnostics, 10)
        self.sent: dict[tuple[int, int], float] = {}
        self.latency: list[tuple[float, float]] = []  # (send time, seconds)
        self.diagnostics: dict[str, str] = {}
        self.lock = threading.Lock()
        self.index = 0

    def publish(self) -> None:
        self.index += 1
        stamp = self.msg.header.stamp
        stamp.sec, stamp.nanosec = self.index, 0
        if self.raw is not None:  # header.stamp is the first field after the CDR header
            self.raw[4:12] = stamp.sec.to_bytes(4, 'little') + stamp.nanosec.to_bytes(4, 'little')
            payload = bytes(self.raw)
        now = time.perf_counter()
        with self.lock:
            self.sent[(stamp.sec, stamp.nanosec)] = now
        self.pub.publish(self.msg if self.raw is None else payload)

    def on_embedding(self, msg) -> None:
        now = time.perf_counter()
        if isinstance(msg, bytes):
            key = (int.from_bytes(msg[4:8], 'little', signed=True),
                   int.from_bytes(msg[8:12], 'little'))
        else:
            key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self.lock:
            sent = self.sent.get(key)
            if sent is not None:
                self.latency.append((sent, now - sent))

    def on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.hardware_id == 'bench_encoder_node':
                self.diagnostics = {kv.key: kv.value for kv in status.values}


def _start_node(args, env) -> subprocess.Popen:
    params = {'autostart': 'true', 'encoder_name': args.encoder, 'backend': args.backend,
              'device': args.device or "''", 'network_image_width': args.size,
              'network_image_height': args.size, 'input_topic': 'bench/image',
              'output_topic': 'bench/embedding', 'diagnostics_period': 1.0,
              'num_threads': args.threads, 'input_qos': args.input_qos}
    command = [sys.executable, '-m', 'embodied_vision.ros_nodes.encoder_node', '--ros-args',
               '-r', '__node:=bench_encoder_node']
    params.update(item.split(':=', 1) for item in args.param)
    for key, value in params.items():
        command += ['-p', f'{key}:={value}']
    return subprocess.Popen(command, env=env)


def main(argv=None) -> int:
    args = _parse(argv)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('ROS_DOMAIN_ID', str(150 + os.getpid() % 50))
    if args.dds_profile:
        if not os.path.isfile(args.dds_profile):
            print(f'--dds-profile {args.dds_profile}: no such file', file=sys.stderr)
            return 2
        os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] = os.path.abspath(args.dds_profile)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    process = _start_node(args, dict(os.environ))
    context = rclpy.Context()
    rclpy.init(context=context)
    bench = Bench(context, args)
    executor = SingleThreadedExecutor(context=context)  # lower dispatch latency than MT
    executor.add_node(bench.node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + args.startup_timeout
        while bench.pub.get_subscription_count() < 1 or \
                bench.node.count_publishers('bench/embedding') < 1 or \
                bench.diagnostics.get('state') != 'active':
            if time.monotonic() > deadline or process.poll() is not None:
                print('encoder_node did not become active; see its log above', file=sys.stderr)
                return 1
            time.sleep(0.1)
        print(f'[bench] encoder_node active ({bench.diagnostics.get("encoder")} on '
              f'{bench.diagnostics.get("backend")}/{bench.diagnostics.get("device")}, input '
              f'{bench.diagnostics.get("input_size")}); streaming {args.width}x{args.height} '
              f'rgb8 at {args.rate:g} Hz for {args.duration:g} s')
        period = 1.0 / args.rate
        start = time.perf_counter()
        next_tick = start
        while time.perf_counter() - start < args.duration:
            bench.publish()
            next_tick += period
            time.sleep(max(0.0, next_tick - time.perf_counter()))
        time.sleep(1.5)  # the last embeddings and one more diagnostics message
        report = _report(bench, start + args.warmup, start + args.duration, args)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        executor.shutdown(timeout_sec=2.0)
        rclpy.try_shutdown(context=context)
    _print(report, args)
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(report, handle, indent=2)
    return 0


def _report(bench, begin, end, args) -> dict:
    with bench.lock:
        sent = [t for t in bench.sent.values() if begin <= t < end]
        latency = [seconds * 1e3 for t, seconds in bench.latency if begin <= t < end]
    stages = {stage: float(bench.diagnostics.get(f'{stage}_ms_median', 'nan'))
              for stage in ('queue', 'convert', 'preprocess', 'inference', 'publish',
                            'total')}
    inference_p90 = float(bench.diagnostics.get('inference_ms_p90', 'nan'))
    e2e = _percentiles(latency)
    window = end - begin
    return {
        'frames_sent': len(sent), 'embeddings_received': len(latency),
        'drop_rate': 1.0 - len(latency) / max(len(sent), 1),
        'throughput_hz': len(latency) / window, 'camera_rate_hz': args.rate,
        'end_to_end_ms': e2e, 'node_stage_median_ms': stages,
        'bare_model_ms': {'median': stages['inference'], 'p90': inference_p90},
        'overhead_ms': {'median': e2e['median'] - stages['inference'],
                        'p90': e2e['p90'] - inference_p90},
        'node': {k: bench.diagnostics.get(k) for k in ('encoder', 'backend', 'device',
                                                        'input_size', 'received', 'dropped',
                                                        'rejected')},
    }


def _print(r, args) -> None:
    e2e, over = r['end_to_end_ms'], r['overhead_ms']
    print(f'[bench] {r["frames_sent"]} frames sent, {r["embeddings_received"]} embeddings, '
          f'drop rate {100 * r["drop_rate"]:.1f}%, throughput {r["throughput_hz"]:.1f} Hz '
          f'(camera {args.rate:g} Hz)')
    print(f'[bench] end-to-end latency: median {e2e["median"]:.2f} ms, p90 {e2e["p90"]:.2f} ms')
    print(f'[bench] bare model time (node inference stage, same run): median '
          f'{r["bare_model_ms"]["median"]:.2f} ms, p90 {r["bare_model_ms"]["p90"]:.2f} ms')
    print(f'[bench] node overhead = end-to-end - model: median {over["median"]:.2f} ms, '
          f'p90 {over["p90"]:.2f} ms (target: median < 2 ms)')
    node = r['node']
    print(f'[bench] encoder_node counts (whole run): received {node["received"]}, dropped '
          f'(stale, replaced in the slot) {node["dropped"]}, rejected {node["rejected"]}')
    print('[bench] node stages (median ms): ' + ', '.join(
        f'{k} {v:.2f}' for k, v in r['node_stage_median_ms'].items()))


if __name__ == '__main__':
    sys.exit(main())
