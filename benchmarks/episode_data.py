"""Benchmark training-data loading: `EpisodeDataset` samples/s read from HDF5 vs held in RAM.

    python benchmarks/episode_data.py                          # synthetic episodes, 64 and 128 px
    python benchmarks/episode_data.py --files sim.hdf5 real.hdf5 --obs-keys front/rgb proprio

Batches are drawn as a trainer draws them (random `DataLoader`, default collate, no
workers). The baseline is the file-backed dataset measured in the same run; the table also
gives the time of one Lang4Sim2Real pretraining step (narrow FiLM-ResNet-18, forward +
backward over both domains' frames) at the same batch, to show what share of a step loading
takes. A benchmark prints measurements; it never asserts a time.
"""
import argparse
from pathlib import Path
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from embodied_vision.data.episodes import EpisodeBuffer, EpisodeDataset, EpisodeWriter
from embodied_vision.encoders import create_encoder


def write_synthetic(path: Path, episodes: int, steps: int, size: int) -> None:
    """Episodes of random RGB frames and proprio, in our episode format."""
    rng = np.random.default_rng(0)
    with EpisodeWriter(path) as writer:
        for _ in range(episodes):
            buffer = EpisodeBuffer({'stage': 0, 'stage_text': 'reaching'})
            for t in range(steps):
                obs = {'front/rgb': rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
                       'proprio': rng.normal(size=8).astype(np.float32)}
                buffer.add(obs, rng.uniform(-1, 1, 7), 0.0, t == steps - 1,
                           {'stage': 1, 'stage_text': 'reaching', 'success': False})
            writer.add_episode(buffer)


def samples_per_second(dataset: EpisodeDataset, batch: int, batches: int) -> float:
    sampler = RandomSampler(dataset, replacement=True, num_samples=batch * (batches + 1))
    loader = iter(DataLoader(dataset, batch_size=batch, sampler=sampler))
    next(loader)  # warm-up (opens the files)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batch * batches / (time.perf_counter() - start)


def training_step_seconds(size: int, batch: int, repeats: int = 3) -> float:
    """One forward + backward of the narrow ResNet-18 over 2 x `batch` frames (two domains)."""
    encoder = create_encoder('lang4sim2real_resnet18')
    frames = torch.rand(2 * batch, 3, size, size)
    encoder(frames).sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        encoder(frames).sum().backward()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--files', nargs='*', help='episode files (default: synthetic)')
    parser.add_argument('--obs-keys', nargs='+', default=['front/rgb', 'proprio'])
    parser.add_argument('--sizes', type=int, nargs='+', default=[64, 128])
    parser.add_argument('--episodes', type=int, default=40)
    parser.add_argument('--steps', type=int, default=50)
    parser.add_argument('--batch', type=int, default=256)
    parser.add_argument('--batches', type=int, default=5)
    args = parser.parse_args()
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}')
    print(f'{"data":<28}{"from file":>12}{"in RAM":>12}{"ratio":>8}{"load s":>9}'
          f'{"step s":>9}')
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(', '.join(Path(f).name for f in args.files), args.files, None)] if args.files \
            else []
        for size in ([] if args.files else args.sizes):
            path = Path(tmp) / f'synthetic_{size}.hdf5'
            write_synthetic(path, args.episodes, args.steps, size)
            cases.append((f'synthetic {size}px x{args.episodes * args.steps}', [path], size))
        for name, files, size in cases:
            on_disk = EpisodeDataset(files, obs_keys=args.obs_keys)
            start = time.perf_counter()
            in_memory = EpisodeDataset(files, obs_keys=args.obs_keys, in_memory=True)
            load = time.perf_counter() - start
            disk_rate = samples_per_second(on_disk, args.batch, args.batches)
            memory_rate = samples_per_second(in_memory, args.batch, args.batches)
            size = size or int(in_memory[0]['obs'][args.obs_keys[0]].shape[-1])
            step = training_step_seconds(size, args.batch)
            print(f'{name[:27]:<28}{disk_rate:>10.0f}/s{memory_rate:>10.0f}/s'
                  f'{memory_rate / disk_rate:>7.1f}x{load:>9.2f}{step:>9.2f}')


if __name__ == '__main__':
    main()
