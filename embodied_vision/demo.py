"""The `make demo` job: the main loop closed through the ROS 2 nodes with a learned policy,
then an encoder report.

1. `closed_loop`: `sim_node` (MuJoCo Reach) -> `encoder_node` (the demo policy's encoder,
   compiled: ONNX Runtime on CPU) -> `policy_node` (its bc_mlp head on the embedding and
   proprioception) -> `sim_node`, in one process (`embodied-vision pipeline demo`). The policy
   is the one `make train-demo-policy` trains, committed under `embodied_vision/demo_policy`;
   without it (or with `--policy scripted`) the sim's scripted expert acts instead, said so.
   Prints the success rate with its 95 % interval and the per-stage latency, and writes the
   report (`demo_report`: episode video, success and latency PNGs, index.html).
2. `encoder_report`: frames of a scripted episode (or a drawn sequence without MuJoCo)
   through an encoder, embedding statistics and a latency table of the compiled runtime
   against eager. Without `--checkpoint` the encoder has (seeded) random weights.
No robot, ROS install, GPU or download is needed.
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

__all__ = ['DEMO_POLICY', 'closed_loop', 'demo_frames', 'encoder_report', 'run_demo']

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


#: The committed demo policy (`make train-demo-policy`): encoder/, policy/, eval.json.
DEMO_POLICY = Path(__file__).resolve().parent / 'demo_policy'


def closed_loop(out: Path, policy: str | None = None, episodes: int = 20) -> int:
    """Run sim_node + encoder_node + policy_node closed loop and write the report; returns
    an exit code. `policy`: a saved bc_mlp policy folder (its encoder must sit beside it, as
    `make train-demo-policy` exports it), 'scripted', or None for the committed demo policy."""
    from embodied_vision.demo_report import success_interval, write_report
    from embodied_vision.ros_nodes.pipeline import main as pipeline
    out.mkdir(parents=True, exist_ok=True)
    if policy is None:
        policy = str(DEMO_POLICY / 'policy') if (DEMO_POLICY / 'policy').is_dir() \
            else 'scripted'
    overrides = ['sim_node.task=Reach', 'sim_node.depth=false']
    if policy == 'scripted':
        title = 'Reach: the scripted expert acting on privileged state (no learned policy)'
    else:
        from embodied_vision.policies import load_policy
        config = load_policy(policy).config
        encoder = Path(policy).resolve() / config.encoder_checkpoint
        title = f'Reach: learned policy ({config.encoder_name} + bc_mlp) through the nodes'
        overrides += ['sim_node.publish_expert_action=false',
                      f'encoder_node.encoder_name={config.encoder_name}',
                      f'encoder_node.checkpoint_path={encoder}',
                      f'encoder_node.network_image_width={config.image_size}',
                      f'encoder_node.network_image_height={config.image_size}',
                      'policy_node.policy_type=checkpoint', f'policy_node.policy_path={policy}']
    print(f'[demo] {title}, {episodes} episodes')
    summary_file, video = out / 'closed_loop.json', out / 'episode.gif'
    code = pipeline(['demo', '--episodes', str(episodes), '--json', str(summary_file),
                     '--video', str(video), *[a for o in overrides for a in ('--set', o)]])
    if code != 0 or not summary_file.exists():
        return code or 1
    import json
    summary = json.loads(summary_file.read_text())
    results = summary['nodes']['sim_node']['episodes']
    wins = sum(r['success'] for r in results)
    low, high = success_interval(wins, len(results))
    print(f'[demo] success {wins}/{len(results)} = {100 * wins / len(results):.0f}% '
          f'(95 % interval {100 * low:.0f}-{100 * high:.0f}%)')
    page = write_report(summary, out, title, video=video.name if video.exists() else None,
                        notes=f'policy: {policy}')
    print(f'[demo] report: {page}')
    return 0


def run_demo(out: Path, encoder: str = 'r3m_resnet18', checkpoint: str | None = None,
             policy: str | None = None, episodes: int = 20) -> int:
    """`closed_loop`, then `encoder_report`; returns an exit code."""
    code = closed_loop(out, policy, episodes)
    return code or encoder_report(out, encoder, checkpoint)


def encoder_report(out: Path, encoder: str = 'r3m_resnet18',
                   checkpoint: str | None = None) -> int:
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
