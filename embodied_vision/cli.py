"""The `embodied-vision` command.

    embodied-vision list                          registered encoders and their weights
    embodied-vision encode FRAMES --encoder NAME  images/video -> embeddings (.npy/.safetensors)
    embodied-vision export NAME --format onnx     ONNX / torch.export / TensorRT artefacts
    embodied-vision bench                         latency per backend next to eager
    embodied-vision evaluate POLICY... --task T   closed-loop success over seeds, table + plot
    embodied-vision demo                          the `make demo` job
    embodied-vision collect task=PickPlace ...    record expert episodes (hydra overrides)
    embodied-vision view-pairs n=500 size=72 ...  CroCo view pairs from the sim (overrides)
    embodied-vision grids n=200 resolution=64 ... NeRF-MAE radiance grids + labels (overrides)
    embodied-vision shapes n_per_class=80 ...     ModelNet40/ScanObjectNN-format shapes (overrides)
    embodied-vision train experiment=NAME ...     train (hydra overrides; resumable; --help)
    embodied-vision runs RUN... [--keys K...]     final metrics of finished runs, as a table
    embodied-vision pipeline launch/config/demo.yaml   ROS 2 nodes in one process
    embodied-vision replay BAG --encoder NAME ... embeddings of a rosbag2 image topic
    embodied-vision record ...                    sim runs -> rosbag2
    embodied-vision compare-semantics --arm ...   voxel-labelling mIoU of arms, with intervals
    embodied-vision eval-svm --arm ... --data ... linear-SVM accuracy of point encoders, intervals
    embodied-vision compare-accuracy --arm ...    fine-tuned classifiers' accuracy, with intervals
    embodied-vision lerobot-export demos.hdf5 --out DIR   episodes -> LeRobotDataset v3.0
    embodied-vision lerobot-import DIR --out demos.hdf5   LeRobotDataset v3.0 -> episodes
"""
import argparse
import importlib
import itertools
import json
import logging
from pathlib import Path
import sys
import time

__all__ = ['main']

_logger = logging.getLogger('embodied_vision')

# Commands implemented next to what they drive, as `module:function` taking the remaining
# argv and returning an exit code. Imported only when used, so optional extras stay optional.
DELEGATED_COMMANDS = {
    'collect': ('embodied_vision.sim.collect:main', 'record expert episodes (key=value ...)'),
    'view-pairs': ('embodied_vision.sim.view_pairs:main',
                   'render overlapping view pairs for CroCo pretraining (key=value ...)'),
    'grids': ('embodied_vision.sim.radiance_grids:main',
              'render radiance grids + boxes/voxel classes for NeRF-MAE (key=value ...)'),
    'shapes': ('embodied_vision.sim.shapes:main',
               'procedural object point clouds, ModelNet40/ScanObjectNN h5 (key=value ...)'),
    'train': ('embodied_vision.scripts.train:main',
              'train an experiment (key=value ...; --help lists experiments and tasks)'),
    'pipeline': ('embodied_vision.ros_nodes.pipeline:main',
                 'run ROS 2 nodes in one process from a launch/config YAML'),
    'replay': ('embodied_vision.ros_nodes.bags:replay_main',
               'encode a rosbag2 image topic into stamped embeddings'),
    'record': ('embodied_vision.ros_nodes.bags:record_main', 'record sim runs to rosbag2'),
    'evaluate': ('embodied_vision.scripts.evaluate:main',
                 'closed-loop success of saved policies in the sim suite'),
    'compare-semantics': ('embodied_vision.downstream.semantics_compare:main',
                          'voxel-labelling runs side by side, differences with intervals'),
    'eval-svm': ('embodied_vision.downstream.svm_protocol:main',
                 'linear-SVM accuracy of point-cloud encoders over seeds, with intervals'),
    'lerobot-export': ('embodied_vision.data.lerobot_dataset:main',
                       'episode files -> a LeRobotDataset v3.0 folder (H.264 or PNG frames)'),
    'lerobot-import': ('embodied_vision.data.lerobot_dataset:import_main',
                       'a LeRobotDataset v3.0 folder -> an episode file every task trains on'),
    'compare-accuracy': ('embodied_vision.downstream.svm_protocol:compare_main',
                         'fine-tuned point classifiers side by side, differences with intervals'),
}


def _cmd_list(args) -> int:
    import torch

    from embodied_vision.encoders import create_encoder, get_pretrained_cfgs, list_encoders
    rows = []
    for arch in list_encoders(args.pattern):
        with torch.device('meta'):  # shapes only: no memory, no init time
            encoder = create_encoder(arch)
        contract = encoder.input_contract
        for cfg in get_pretrained_cfgs(arch) or [None]:
            rows.append({
                'name': f'{arch}.{cfg.tag}' if cfg else arch, 'embed_dim': encoder.embed_dim,
                'modality': contract.modality,
                'input': f'{contract.channels}x' + 'x'.join(map(str, contract.default_size)),
                'range': f'{contract.value_range[0]:.3g} to {contract.value_range[1]:.3g}',
                'license': cfg.license if cfg else '', 'formats': ','.join(cfg.formats) if cfg
                else '', 'params_m': sum(p.numel() for p in encoder.parameters()) / 1e6})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max([len(r['name']) for r in rows] + [4])
    print(f'{"name":<{width}} {"dim":>5} {"modality":<10} {"input":<10} {"range":<13} '
          f'{"params":>7}  {"license":<16} formats')
    for r in rows:
        print(f'{r["name"]:<{width}} {r["embed_dim"]:>5} {r["modality"]:<10} {r["input"]:<10} '
              f'{r["range"]:<13} {r["params_m"]:>6.1f}M  {r["license"]:<16} {r["formats"]}')
    return 0


def _check_image_encoder(name: str) -> None:
    """Refuse an encoder that does not embed single camera frames, before building it."""
    import torch

    from embodied_vision.encoders import create_encoder
    with torch.device('meta'):  # the contract only: no memory, no init time
        modality = create_encoder(name).input_contract.modality
    if modality != 'image':
        hint = (' (a two-view model: pair_node embeds stereo / view pairs)'
                if modality == 'image_pair' else '')
        raise ValueError(f'{name} takes {modality} input{hint}; encode embeds single frames: '
                         'pick an image encoder (see `embodied-vision list`)')


def parse_size(text: str) -> tuple[int, int]:
    """argparse type for `--size`: `224` (square) or `448x224` (height x width)."""
    try:
        sides = tuple(int(part) for part in str(text).lower().split('x'))
    except ValueError:
        sides = ()
    if len(sides) == 1:
        sides = sides * 2
    if len(sides) != 2 or min(sides) < 1:
        raise argparse.ArgumentTypeError(f'size {text!r}: expected N or HxW with positive '
                                         f'integers, e.g. 224 or 448x224')
    return sides


def _size(args, encoder) -> tuple[int, ...]:
    return args.size or tuple(encoder.input_contract.default_size)


def _cmd_encode(args) -> int:
    import numpy as np
    import torch

    from embodied_vision import deploy
    from embodied_vision.data.images import iter_frames, to_batch
    from embodied_vision.encoders import encoder_for_inference
    out = Path(args.out)
    if out.suffix not in ('.npy', '.safetensors'):
        raise ValueError(f'--out must end in .npy or .safetensors, got {out}')
    _check_image_encoder(args.encoder)
    skipped: list = []
    frames = iter_frames(args.source, stride=args.stride, skipped=skipped)
    first = next(frames, None)  # a broken first frame fails here, before the model is built
    if first is None:
        raise ValueError(f'{args.source}: no readable frames ({len(skipped)} unreadable)')
    encoder = encoder_for_inference(args.encoder, checkpoint=args.checkpoint)
    contract = encoder.input_contract
    size = _size(args, encoder)
    compiled = deploy.compile(
        encoder, args.backend, device=args.device, input_size=size,
        input_dtype=torch.uint8 if contract.takes_pixels else torch.float32,
        max_batch=args.batch_size)
    names, chunks, infer_ms = [], [], []
    batch_frames: list = []
    start = time.perf_counter()

    def flush():
        batch = to_batch([f for _, f in batch_frames], None if args.no_resize else size)
        begin = time.perf_counter()
        chunks.append(compiled(contract.from_pixels(batch)).float().cpu())
        infer_ms.append((time.perf_counter() - begin) * 1e3 / len(batch_frames))
        names.extend(n for n, _ in batch_frames)
        batch_frames.clear()

    from tqdm import tqdm
    for item in tqdm(itertools.chain([first], frames), desc='encode', unit='frame',
                     disable=None):
        batch_frames.append(item)
        if len(batch_frames) == args.batch_size:
            flush()
    if batch_frames:
        flush()
    embeddings = torch.cat(chunks)
    total = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {'encoder': encoder.name, 'checkpoint': str(args.checkpoint or ''),
            'random_weights': bool(encoder.random_weights), 'backend': compiled.backend,
            'names': names, 'input_size': list(size), 'skipped': [n for n, _ in skipped]}
    if out.suffix == '.safetensors':
        from safetensors.torch import save_file
        save_file({'embeddings': embeddings.contiguous()}, str(out),
                  metadata={k: json.dumps(v) for k, v in meta.items()})
    else:
        np.save(out, embeddings.numpy())
        out.with_suffix('.json').write_text(json.dumps(meta, indent=2) + '\n')
    for name, reason in skipped:
        _logger.warning('skipped %s: %s', name, reason)
    per_frame = sorted(infer_ms)
    print(f'encoded {len(names)} frames from {args.source} with {encoder.name} '
          f'({compiled.backend}, parity {compiled.parity}) -> {out} {tuple(embeddings.shape)}'
          + (f'; skipped {len(skipped)} unreadable' if skipped else ''))
    print(f'total {total:.2f} s, {len(names) / total:.1f} frames/s; model time per frame: '
          f'median {per_frame[len(per_frame) // 2]:.2f} ms, max {per_frame[-1]:.2f} ms')
    return 0


def _cmd_export(args) -> int:
    import torch

    from embodied_vision import deploy
    from embodied_vision.deploy import onnx_runtime, tensorrt
    from embodied_vision.encoders import encoder_for_inference
    encoder = encoder_for_inference(args.encoder, checkpoint=args.checkpoint)
    size = _size(args, encoder)
    example = tuple(x.float() for x in encoder.example_inputs(batch_size=2, size=size))
    out = Path(args.out)
    start = time.perf_counter()
    if args.format == 'onnx':
        onnx_runtime.export_onnx(encoder, out, example, max_batch=args.max_batch)
        runtime = onnx_runtime.OnnxRuntimeModule(out)
        report = deploy.measure_parity(encoder, runtime, encoder.example_inputs(3, size))
    elif args.format == 'exported_program':
        program = deploy.export_encoder(encoder, example, max_batch=args.max_batch)
        torch.export.save(program, str(out))
        report = deploy.measure_parity(encoder, program.module(), example)
    else:
        compiled = tensorrt.compile_tensorrt(encoder, example, out, precision=args.precision,
                                             max_batch=args.max_batch)
        report = deploy.measure_parity(encoder.cuda(), compiled,
                                       tuple(x.cuda() for x in example), args.precision)
    print(f'wrote {out} ({args.format}, batch 1-{args.max_batch}, size {size}) in '
          f'{time.perf_counter() - start:.1f} s; parity vs eager: {report}')
    return 0 if report.passed else 1


def _cmd_bench(args) -> int:
    from embodied_vision import create_encoder
    from embodied_vision.deploy.bench import benchmark_encoder, format_table
    rows = []
    for name in args.encoders:
        encoder = create_encoder(name, checkpoint=None)
        rows += benchmark_encoder(encoder, args.backends, args.batch, input_size=args.size,
                                  device=args.device or 'cpu', iterations=args.iterations,
                                  max_batch=max(args.batch))
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + '\n')
    return 0


def _cmd_runs(args) -> int:
    from embodied_vision.training.runs import compare_runs, format_runs_table
    try:
        rows = compare_runs(args.runs, args.keys)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None
    sys.stdout.write(format_runs_table(rows, args.keys))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + '\n')
    return 0


def _cmd_demo(args) -> int:
    from embodied_vision.demo import run_demo
    return run_demo(Path(args.out), encoder=args.encoder, checkpoint=args.checkpoint,
                    policy=args.policy, episodes=args.episodes)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='embodied-vision', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-v', '--verbose', action='store_true', help='log at INFO level')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    p = sub.add_parser('list', help='registered encoders, weights tags and contracts')
    p.add_argument('pattern', nargs='?', default='')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=_cmd_list)

    def model_args(p):
        p.add_argument('--encoder', required=True, help='arch or arch.tag (see `list`)')
        p.add_argument('--checkpoint', default=None, help='official or embodied_vision file')
        p.add_argument('--size', type=parse_size, default=None, help='input N or HxW')
        p.add_argument('--device', default=None, help='cpu or cuda (default: cuda if any)')

    p = sub.add_parser('encode', help='embed images from a folder or a video file')
    p.add_argument('source', help='image folder, image file or video file')
    model_args(p)
    p.add_argument('--backend', default='auto', help='auto|eager|inductor|onnxruntime|tensorrt')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--stride', type=int, default=1, help='keep every k-th frame')
    p.add_argument('--no-resize', action='store_true', help='feed frames at native size')
    p.add_argument('--out', required=True, help='.npy (+ .json names) or .safetensors')
    p.set_defaults(func=_cmd_encode)

    p = sub.add_parser('export', help='write an ONNX, torch.export or TensorRT artefact')
    p.add_argument('encoder', help='arch or arch.tag')
    p.add_argument('--checkpoint', default=None)
    p.add_argument('--format', choices=['onnx', 'exported_program', 'tensorrt'],
                   default='onnx')
    p.add_argument('--size', type=parse_size, default=None, help='input N or HxW')
    p.add_argument('--max-batch', type=int, default=32)
    p.add_argument('--precision', choices=['fp32', 'fp16', 'bf16'], default='fp32')
    p.add_argument('--out', required=True)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser('bench', help='latency per backend, side by side with eager')
    p.add_argument('--encoders', nargs='+', default=['r3m_resnet18', 'r3m_resnet34',
                                                     'r3m_resnet50'])
    p.add_argument('--backends', nargs='+', default=['onnxruntime'])
    p.add_argument('--batch', nargs='+', type=int, default=[1, 8])
    p.add_argument('--size', type=parse_size, default=None, help='input N or HxW')
    p.add_argument('--iterations', type=int, default=20)
    p.add_argument('--device', default=None)
    p.add_argument('--json', default=None, help='also write the rows as JSON')
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser('runs', help='table of the final metrics of finished training runs')
    p.add_argument('runs', nargs='+', help='training run folders (with summary.json)')
    p.add_argument('--keys', nargs='+', default=None,
                   help='metrics to show, in order (default: every final metric)')
    p.add_argument('--json', default=None, help='also write the rows as JSON')
    p.set_defaults(func=_cmd_runs)

    p = sub.add_parser('demo', help='the `make demo` job')
    p.add_argument('--out', default='demo_output')
    p.add_argument('--policy', default=None,
                   help="saved bc_mlp policy folder, or 'scripted' (default: the committed "
                        'demo policy, else the scripted expert)')
    p.add_argument('--episodes', type=int, default=20, help='closed-loop episodes')
    p.add_argument('--encoder', default='r3m_resnet18', help='encoder of the encoder report')
    p.add_argument('--checkpoint', default=None, help="that encoder's weights")
    p.set_defaults(func=_cmd_demo)

    for name, (_, help_text) in DELEGATED_COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO if '-v' in argv or '--verbose' in argv
                        else logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    if argv and argv[0] in DELEGATED_COMMANDS:
        module, function = DELEGATED_COMMANDS[argv[0]][0].split(':')
        return _reported(argv[0], lambda: getattr(importlib.import_module(module),
                                                  function)(argv[1:]), (ValueError, OSError))
    args = _parser().parse_args(argv)
    return _reported(args.command, lambda: args.func(args),
                     (ValueError, ImportError, RuntimeError, OSError))


def _reported(command: str, run, errors: tuple) -> int:
    """`run()`'s exit code; a user error (`errors`, or a missing extra) is one line on
    stderr and exit code 2 (`-v` logs the traceback too)."""
    from embodied_vision.utils import missing_extra_message
    try:
        return run()
    except ModuleNotFoundError as err:
        message = missing_extra_message(err, f'embodied-vision {command}')
    except errors as err:
        message = str(err)
    _logger.debug('failed', exc_info=True)
    print(f'embodied-vision {command}: error: {message}', file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main())
