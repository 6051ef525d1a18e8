"""`embodied-vision pipeline CONFIG.yaml`: several nodes in one process, lifecycle driven.

The config is a ROS 2 parameter file, the same one the launch files pass to the nodes:

    sim_node:
      ros__parameters: {task: PickPlace, step_mode: lockstep, max_episodes: 3, ...}
    encoder_node:
      ros__parameters: {encoder_name: r3m_resnet18, input_topic: front/image_raw, ...}

Each top-level key is a node name; its class is the executable whose name the key equals or
ends with (`sim_node`, `encoder_node`, `policy_node`; e.g. `wrist_encoder_node` is an
encoder). `/**` entries apply to every node, as with `--params-file`. The runner spins the
nodes in one `MultiThreadedExecutor`, configures them in file order and activates the
consumers before the sims (so the first observation finds its subscribers), runs until every
sim finished `max_episodes` (or `--episodes`), or `--duration` seconds passed, then prints the
success rate and the per-stage latency of every node and shuts everything down cleanly.
`--set NODE.PARAM=VALUE` (repeatable; VALUE read as YAML) overrides one parameter, e.g.
`--set policy_node.policy_path=runs/lang4sim2real/distance_0/policy`.
"""
import argparse
import json
import os
from pathlib import Path
import sys
import threading
import time

import numpy as np

__all__ = ['NODE_CLASSES', 'main', 'node_class_for', 'parse_overrides', 'read_config']

#: executable name -> 'module:Class' (imported lazily)
NODE_CLASSES = {
    'sim_node': 'embodied_vision.ros_nodes.sim_node:SimNode',
    'encoder_node': 'embodied_vision.ros_nodes.encoder_node:EncoderNode',
    'policy_node': 'embodied_vision.ros_nodes.policy_node:PolicyNode',
    'planner_node': 'embodied_vision.ros_nodes.planner_node:PlannerNode',
    'pair_node': 'embodied_vision.ros_nodes.pair_node:PairNode',
    'voxel_node': 'embodied_vision.ros_nodes.voxel_node:VoxelNode',
    'point_cloud_node': 'embodied_vision.ros_nodes.point_cloud_node:PointCloudNode',
}


def node_class_for(name: str):
    """The node class for node `name` (equal to or ending with an executable name)."""
    import importlib
    for executable, target in NODE_CLASSES.items():
        if name == executable or name.endswith('_' + executable):
            module, cls = target.split(':')
            return executable, getattr(importlib.import_module(module), cls)
    raise ValueError(f'node {name!r} does not name one of the executables '
                     f'{sorted(NODE_CLASSES)} (the name must equal or end with one)')


def config_folders() -> list[Path]:
    """Where the packaged `launch/config` files are: a pip install's
    `<prefix>/share/embodied_vision`, a colcon install's (`AMENT_PREFIX_PATH`), a checkout."""
    prefixes = [sys.prefix, *filter(None, os.environ.get('AMENT_PREFIX_PATH', '').split(':'))]
    folders = [Path(p) / 'share' / 'embodied_vision' / 'launch' / 'config' for p in prefixes]
    folders.append(Path(__file__).resolve().parents[1] / 'launch' / 'config')
    return [f for f in dict.fromkeys(folders) if f.is_dir()]


def resolve_config(path: str | Path) -> Path:
    """`path` itself when it exists, else the packaged config of that name (`demo`,
    `demo.yaml` or `launch/config/demo.yaml` from any directory)."""
    path = Path(path)
    if path.exists():
        return path
    name = path.name if path.suffix else f'{path.name}.yaml'
    for folder in config_folders():
        if (folder / name).is_file():
            return folder / name
    packaged = sorted({f.stem for folder in config_folders() for f in folder.glob('*.yaml')})
    raise FileNotFoundError(f'pipeline config {path} does not exist here, nor is it a '
                            f'packaged config (packaged: {", ".join(packaged) or "none"})')


def read_config(path: str | Path) -> dict[str, dict]:
    """`{node_name: parameters}` of a ROS 2 parameter file (without the `/**` entry);
    `path` as `resolve_config` finds it."""
    import yaml
    path = resolve_config(path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a mapping of node names, got {type(data).__name__}')
    nodes = {}
    for name, body in data.items():
        if not isinstance(body, dict) or set(body) != {'ros__parameters'}:
            raise ValueError(f'{path}: entry {name!r} must be {{ros__parameters: {{...}}}}')
        if name != '/**':
            nodes[name.lstrip('/')] = dict(body['ros__parameters'] or {})
    if not nodes:
        raise ValueError(f'{path}: no nodes configured')
    return nodes


def parse_overrides(items: list[str], nodes) -> dict[str, dict]:
    """`['policy_node.policy_path=x', ...]` -> `{'policy_node': {'policy_path': 'x'}}`."""
    import yaml
    parsed: dict[str, dict] = {}
    for item in items:
        target, sep, raw = item.partition('=')
        node, dot, name = target.partition('.')
        if not sep or not dot or not node or not name:
            raise ValueError(f'--set {item!r}: expected NODE.PARAM=VALUE, e.g. '
                             'policy_node.policy_path=runs/x/policy')
        if node not in nodes:
            raise ValueError(f'--set {item!r}: node {node!r} is not in the config '
                             f'(nodes: {sorted(nodes)})')
        parsed.setdefault(node, {})[name] = yaml.safe_load(raw) if raw else ''
    return parsed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='embodied-vision pipeline', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='ROS 2 parameter YAML (e.g. launch/config/demo.yaml)')
    parser.add_argument('--episodes', type=int, default=None,
                        help="episodes per sim (overrides sim_node's max_episodes)")
    parser.add_argument('--duration', type=float, default=0.0,
                        help='stop after this many seconds (0 = when the episodes are done)')
    parser.add_argument('--timeout', type=float, default=900.0,
                        help='give up (exit 1) when the episodes are not done by then')
    parser.add_argument('--json', default=None, help='also write the summary as JSON')
    parser.add_argument('--set', action='append', default=[], metavar='NODE.PARAM=VALUE',
                        dest='overrides', help='override a parameter (repeatable; YAML value)')
    parser.add_argument('--video', default=None,
                        help='record the camera frames the sim publishes (.mp4 or .gif)')
    parser.add_argument('--video-topic', default=None,
                        help="image topic to record (default: the first sim's first camera)")
    parser.add_argument('--log-level', default='warn',
                        choices=['debug', 'info', 'warn', 'error', 'fatal'])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline; returns 0 on success, 1 when configure failed or time ran out."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter

    config_path = resolve_config(args.config)
    config = read_config(config_path)
    kinds = {name: node_class_for(name) for name in config}
    overridden = parse_overrides(args.overrides, config)
    if args.episodes is not None and args.episodes < 1:
        raise ValueError(f'--episodes must be >= 1, got {args.episodes}')
    context = rclpy.Context()
    rclpy.init(context=context, args=['embodied-vision-pipeline', '--ros-args', '--params-file',
                                      str(config_path), '--log-level', args.log_level])
    nodes, executor, spin_thread, recorder = [], None, None, None
    try:
        for name, (executable, cls) in kinds.items():
            overrides = [Parameter(key, value=value)
                         for key, value in overridden.get(name, {}).items()]
            if executable == 'sim_node' and args.episodes is not None:
                overrides.append(Parameter('max_episodes', value=args.episodes))
            nodes.append(cls(name, context=context, parameter_overrides=overrides))
        recorder = _FrameRecorder(context, args.video_topic or _camera_topic(nodes)) \
            if args.video else None
        executor = MultiThreadedExecutor(num_threads=max(4, 2 * len(nodes)), context=context)
        for node in nodes + ([recorder.node] if recorder else []):
            executor.add_node(node)
        spin_thread = threading.Thread(target=executor.spin, daemon=True)
        spin_thread.start()
        started = _bring_up(nodes)
        if started is None:
            return 1
        done = _run(nodes, args)
        summary = _summary(nodes, time.monotonic() - started)
        _print_summary(summary)
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2) + '\n')
        if recorder is not None:
            print(f'[pipeline] video: {recorder.write(args.video, _rate(nodes))}')
        return 0 if done else 1
    except KeyboardInterrupt:
        return 130
    finally:
        _shut_down(nodes)
        if executor is not None:
            executor.shutdown(timeout_sec=5.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
        if spin_thread is not None:
            spin_thread.join(timeout=5.0)
        if recorder is not None:  # its subscription stays in the wait set until spin ends
            recorder.node.destroy_node()


def _is_sim(node) -> bool:
    return hasattr(node, 'finished')


def _camera_topic(nodes) -> str:
    sims = [n for n in nodes if _is_sim(n)]
    if not sims:
        raise ValueError('--video needs a sim_node (or --video-topic)')
    namespace = sims[0].get_namespace().rstrip('/')
    return f'{namespace}/{sims[0].param("cameras")[0]}/image_raw'


def _rate(nodes) -> float:
    sims = [n for n in nodes if _is_sim(n)]
    return float(sims[0].param('control_rate')) if sims else 20.0


class _FrameRecorder:
    """Keeps the colour frames of one image topic (at most `limit`) for a video."""

    def __init__(self, context, topic: str, limit: int = 3000):
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        self.node = Node('pipeline_video_recorder', context=context)
        self.frames, self.limit, self.topic = [], limit, topic
        self.node.create_subscription(Image, topic, self._on_image, qos_profile_sensor_data)

    def _on_image(self, msg) -> None:
        from embodied_vision.ros_nodes.conversions import image_to_numpy
        if len(self.frames) < self.limit:
            try:
                self.frames.append(np.array(image_to_numpy(msg, to_rgb=True)))
            except ValueError:  # not a colour image: nothing to show
                pass

    def write(self, path: str, fps: float) -> str:
        from embodied_vision.data.video import write_video
        if not self.frames:
            return f'no frames arrived on {self.topic}'
        write_video(np.stack(self.frames), path, fps=min(fps, 30.0))
        return f'{len(self.frames)} frames of {self.topic} -> {path}'


def _bring_up(nodes) -> float | None:
    from rclpy.lifecycle import TransitionCallbackReturn as Ret
    for node in nodes:
        if node.trigger_configure() != Ret.SUCCESS:
            print(f'[pipeline] {node.get_name()}: configure failed (see the error above)',
                  file=sys.stderr)
            return None
    for node in sorted(nodes, key=_is_sim):  # consumers first, sims last
        if node.trigger_activate() != Ret.SUCCESS:
            print(f'[pipeline] {node.get_name()}: activate failed', file=sys.stderr)
            return None
    print(f'[pipeline] active: {", ".join(n.get_name() for n in nodes)}')
    return time.monotonic()


def _run(nodes, args) -> bool:
    sims = [n for n in nodes if _is_sim(n)]
    bounded = [s for s in sims if s.param('max_episodes')]
    limit = args.duration or args.timeout
    end = time.monotonic() + limit
    while time.monotonic() < end:
        failed = [s for s in sims if s.failure]
        if failed:
            print(f'[pipeline] {failed[0].get_name()} failed: {failed[0].failure}',
                  file=sys.stderr)
            return False
        if bounded and all(s.finished.is_set() for s in bounded):
            return True
        time.sleep(0.05)
    if args.duration:
        return True
    print(f'[pipeline] timed out after {limit:.0f} s before the episodes were done',
          file=sys.stderr)
    return False


def _shut_down(nodes) -> None:
    for node in sorted(nodes, key=_is_sim, reverse=True):  # sims stop first
        try:
            state = node.state_label()
            if state == 'active':
                node.trigger_deactivate()
                state = 'inactive'
            if state == 'inactive':
                node.trigger_cleanup()
        except Exception as err:  # keep shutting the others down
            print(f'[pipeline] {node.get_name()}: shutdown error: {err}', file=sys.stderr)
        node.release()


def _summary(nodes, seconds: float) -> dict:
    out = {'seconds': seconds, 'nodes': {}}
    for node in nodes:
        entry = {'counts': node.accounting.counts(), 'latency_ms': node.timer.summary()}
        if _is_sim(node):
            results = list(node.results)
            entry['episodes'] = results
            entry['success_rate'] = (sum(r['success'] for r in results) / len(results)
                                     if results else None)
        out['nodes'][node.get_name()] = entry
    return out


def _print_summary(summary: dict) -> None:
    print(f'[pipeline] ran {summary["seconds"]:.1f} s')
    for name, entry in summary['nodes'].items():
        counts = entry['counts']
        print(f'[pipeline] {name}: published {counts["published"]}, received '
              f'{counts["received"]}, dropped {counts["dropped"]}, rejected '
              f'{counts["rejected"]}')
        if 'episodes' in entry:
            results = entry['episodes']
            rate = entry['success_rate']
            rate_text = f'{100 * rate:.0f}%' if rate is not None else 'n/a'
            steps = [r['steps'] for r in results]
            print(f'[pipeline]   episodes {len(results)}, success rate {rate_text}'
                  + (f', steps mean {sum(steps) / len(steps):.1f}' if steps else ''))
        for stage, stats in entry['latency_ms'].items():
            print(f'[pipeline]   {stage:<15} median {stats["median"]:8.2f} ms   p90 '
                  f'{stats["p90"]:8.2f} ms   max {stats["max"]:8.2f} ms   (n={stats["count"]})')


if __name__ == '__main__':
    sys.exit(main())
