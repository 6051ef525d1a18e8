"""Encoder latency per backend, side by side with eager timm in the same run.

    python benchmarks/encoders.py                       # R3M 18/34/50, batch 1 and 8, 224²
    python benchmarks/encoders.py --backends onnxruntime inductor --device cuda
    python benchmarks/encoders.py --encoders croco_v2_vit_base --batch 1 4 --size 448x224

Prints one table (median / p90 ms, speed-up over eager, parity error) and optionally writes
the rows and the environment to JSON. It measures; it never asserts a time.
"""
import argparse
import json
import os
from pathlib import Path
import platform

import torch

from embodied_vision import create_encoder
from embodied_vision.cli import parse_size
from embodied_vision.deploy.bench import benchmark_encoder, format_table, matmul_peak_gflops


def environment() -> dict:
    import onnxruntime
    return {'host': platform.node(), 'cpu': platform.processor() or platform.machine(),
            'cores': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
            'torch': torch.__version__, 'onnxruntime': onnxruntime.__version__,
            'cuda': torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--encoders', nargs='+',
                        default=['r3m_resnet18', 'r3m_resnet34', 'r3m_resnet50'])
    parser.add_argument('--backends', nargs='+', default=['onnxruntime'])
    parser.add_argument('--batch', nargs='+', type=int, default=[1, 8])
    parser.add_argument('--size', type=parse_size, default=(224, 224), help='N or HxW')
    parser.add_argument('--iterations', type=int, default=20)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    rows = []
    for name in args.encoders:
        encoder = create_encoder(name)
        rows += benchmark_encoder(encoder, args.backends, args.batch, args.size,
                                  device=args.device, iterations=args.iterations,
                                  max_batch=max(args.batch))
    env = environment()
    env['matmul_peak_gflops'] = matmul_peak_gflops(device=args.device)
    print(f'# {env}')
    print(format_table(rows))
    peak = env['matmul_peak_gflops']
    print(f'# fastest fp32 matrix product measured here: {peak:.0f} GFLOP/s; a runtime that ran '
          f'a model at that rate would beat eager by peak / eager GFLOP/s:')
    for r in rows:
        if r['backend'] == 'eager' and r['gflops_per_s'] > 0:
            print(f'#   {r["encoder"]} batch {r["batch"]}: eager {r["gflops_per_s"]:.0f} GFLOP/s '
                  f'-> at most about {peak / r["gflops_per_s"]:.2f}x')
    for backend in args.backends:
        speedups = [r['speedup'] for r in rows if r['backend'] == backend]
        print(f'# {backend}: speed-up over eager min {min(speedups):.2f}x, '
              f'max {max(speedups):.2f}x')
    if args.json:
        Path(args.json).write_text(json.dumps({'environment': env, 'rows': rows}, indent=2))


if __name__ == '__main__':
    main()
