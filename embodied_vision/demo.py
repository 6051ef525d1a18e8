"""The `make demo` job: encode frames the repo generates, report embedding statistics and a
latency table of the compiled runtimes against eager.

Frames come from a scripted pick-and-place episode of the MuJoCo suite when the `sim` extra
is installed, otherwise from a drawn tabletop sequence (a block sliding across a table).
No robot, ROS install, GPU or download is needed. Without `--checkpoint`, the encoder has
random weights (official weights are never downloaded): the numbers show the pipeline and
its speed, not representation quality.
"""
import logging
from pathlib import Path
import time

import numpy as np
from PIL import Image, ImageDraw
import torch

from embodied_vision import deploy
from embodied_vision.data.images import to_batch
from embodied_vision.deploy.bench import benchmark_encoder, format_table
from embodied_vision.encoders import encoder_for_inference
from embodied_vision.utils import is_available

__all__ = ['run_demo', 'demo_frames']

_logger = logging.getLogger(__name__)


def _drawn_frames(n: int, size: int) -> list[np.ndarray]:
    frames = []
    for t in range(n):
        image = Image.new('RGB', (size, size), (200, 190, 170))
        draw = ImageDraw.Draw(image)
        draw.rectangle([0, int(size * 0.55), size, size], fill=(120, 90, 60))  # table
        x = int(size * (0.15 + 0.6 * t / max(1, n - 1)))
        y = int(size * 0.55) - size // 8
        draw.rectangle([x, y, x + size // 8, y + size // 8], fill=(200, 30, 30))  # block
        draw.ellipse([int(size * 0.7), int(size * 0.6), int(size * 0.9), int(size * 0.7)],
                     fill=(40, 60, 180))  # bowl
        frames.append(np.asarray(image))
    return frames


def _sim_frames(n: int, size: int) -> list[np.ndarray]:
    from embodied_vision.sim.demo_frames import expert_frames
    return expert_frames(n=n, size=size)


def demo_frames(n: int = 24, size: int = 224) -> tuple[str, list[np.ndarray]]:
    """`(source, frames)`: sim expert frames when MuJoCo is installed, else drawn frames."""
    if is_available('mujoco') and is_available('embodied_vision.sim.demo_frames'):
        return 'MuJoCo PickPlace expert episode (front camera)', _sim_frames(n, size)
    return 'drawn tabletop sequence', _drawn_frames(n, size)


def run_demo(out: Path, encoder: str = 'r3m_resnet18', checkpoint: str | None = None) -> int:
    """Encode the demo frames, print statistics and a latency table; returns an exit code."""
    out.mkdir(parents=True, exist_ok=True)
    source, frames = demo_frames()
    frames_dir = out / 'frames'
    frames_dir.mkdir(exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(frames_dir / f'{i:03d}.png')
    model = encoder_for_inference(encoder, checkpoint=checkpoint)
    contract = model.input_contract
    weights = checkpoint or 'random init (pass --checkpoint for official weights)'
    print(f'[demo] {len(frames)} frames from {source} -> {frames_dir}')
    print(f'[demo] encoder {model.name} ({model.embed_dim}-d), weights: {weights}')
    runtime = deploy.compile(model, 'auto', device='cpu', input_dtype=torch.uint8
                             if contract.takes_pixels else torch.float32)
    print(f'[demo] runtime {runtime.backend}: built in {runtime.build_seconds:.1f} s, '
          f'parity vs eager: {runtime.parity}')
    batch = contract.from_pixels(to_batch(frames, contract.default_size))
    start = time.perf_counter()
    embeddings = torch.cat([runtime(chunk) for chunk in batch.split(8)])
    elapsed = time.perf_counter() - start
    np.save(out / 'embeddings.npy', embeddings.numpy())
    norms = embeddings.norm(dim=1)
    unit = torch.nn.functional.normalize(embeddings, dim=1)
    adjacent = (unit[1:] * unit[:-1]).sum(1)
    print(f'[demo] embeddings {tuple(embeddings.shape)} -> {out / "embeddings.npy"} '
          f'({len(frames) / elapsed:.1f} frames/s)')
    print(f'[demo] L2 norm mean {norms.mean():.3f} std {norms.std():.3f}; cosine of '
          f'neighbouring frames {adjacent.mean():.4f}, first vs last '
          f'{float(unit[0] @ unit[-1]):.4f}')
    print('[demo] latency (eager vs compiled, same run):')
    print(format_table(benchmark_encoder(model, [runtime.backend], (1, 8), iterations=10)))
    return 0
