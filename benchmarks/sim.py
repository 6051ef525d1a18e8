"""Benchmark the MuJoCo tabletop suite: env steps/s with rendering, and expert success.

    MUJOCO_GL=egl python benchmarks/sim.py                    # speed table + 100-seed experts
    MUJOCO_GL=egl python benchmarks/sim.py --episodes 20 --skip-speed

Speed: `embodied_vision/PickPlace-v0` stepped with random actions (resets included) at 128²
and 224², with 1 camera (front) and 3 cameras (front, side, wrist), RGB only and RGB-D, plus
physics only (no camera). Meta-World's pick-place-v3 with one rendered camera is measured
side by side only when `metaworld` is importable (it is a dev-only comparison; it pins
mujoco 3.3, so run it in its own venv). Reference on the 2-core dev box with EGL (llvmpipe):
Meta-World pick-place-v3 7.0 steps/s with one camera at 128² or 224², 913 without rendering;
targets: >= 2x that with one 224² camera, and 3 cameras faster than Meta-World's one.

Experts: the scripted expert of every task over `--episodes` seeds (0..N-1) in the `sim` and
`real` domains, without cameras (the expert reads privileged state, so rendering does not
change the outcome). A benchmark prints measurements; it never asserts a time.
"""
import argparse
import os
import sys
import time

os.environ.setdefault('MUJOCO_GL', 'egl')

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import embodied_vision.sim  # noqa: E402, F401
from embodied_vision.sim import TASKS  # noqa: E402

METAWORLD_REFERENCE = {'render': 7.0, 'no_render': 913.0}


def steps_per_second(make, steps: int, warmup: int = 5, seed: int = 0) -> float:
    """Steps/s of `make()`'s env under random actions, resets included."""
    env = make()
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for _ in range(warmup):
        env.step(rng.uniform(-1, 1, env.action_space.shape))
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def ours(size: int | None, cameras: tuple, depth: bool, shadows: bool = True):
    """Factory of our PickPlace env."""
    return lambda: gym.make('embodied_vision/PickPlace-v0', cameras=cameras,
                            image_size=size or 64, depth=depth, shadows=shadows)


def metaworld_factory(size: int | None):
    """Factory of Meta-World pick-place-v3 (one corner camera), or None if not installed."""
    try:
        import metaworld  # noqa: F401
    except ImportError:
        return None

    def make():
        kwargs = {'render_mode': 'rgb_array', 'width': size, 'height': size,
                  'camera_name': 'corner'} if size else {}
        env = gym.make('Meta-World/MT1', env_name='pick-place-v3', **kwargs)

        class Rendered(gym.Wrapper):
            def step(self, action):
                out = self.env.step(action)
                if size:
                    self.env.render()
                return out
        return Rendered(env)
    return make


def speed_table(steps: int) -> list[dict]:
    """Measure every configuration; returns rows."""
    rows = [{'env': 'ours PickPlace', 'size': '-', 'cameras': 0, 'depth': '-',
             'shadows': '-', 'steps/s': steps_per_second(ours(None, (), False), steps * 4)}]
    for shadows in (True, False):
        for size in (128, 224):
            for cameras in (('front',), ('front', 'side', 'wrist')):
                for depth in (False, True):
                    rate = steps_per_second(ours(size, cameras, depth, shadows), steps)
                    rows.append({'env': 'ours PickPlace', 'size': f'{size}²',
                                 'cameras': len(cameras), 'depth': 'yes' if depth else 'no',
                                 'shadows': 'yes' if shadows else 'no', 'steps/s': rate})
    for size in (None, 128, 224):
        factory = metaworld_factory(size)
        if factory is None:
            break
        rows.append({'env': 'Meta-World pick-place-v3', 'size': f'{size}²' if size else '-',
                     'cameras': 1 if size else 0, 'depth': 'no', 'shadows': '-',
                     'steps/s': steps_per_second(factory, steps if size else steps * 4)})
    return rows


def expert_table(episodes: int, domains=('sim', 'real')) -> dict:
    """Expert success rate and mean episode length per task and domain."""
    results = {}
    for task in TASKS:
        for domain in domains:
            env = gym.make(f'embodied_vision/{task}-v0', cameras=(), domain=domain)
            successes, lengths = 0, []
            start = time.perf_counter()
            for seed in range(episodes):
                env.reset(seed=seed)
                length = 0
                while True:
                    _, _, terminated, truncated, info = env.step(env.unwrapped.expert_action())
                    length += 1
                    if terminated or truncated:
                        break
                successes += bool(info['success'])
                lengths.append(length)
            results[task, domain] = {
                'success': successes / episodes, 'mean_len': float(np.mean(lengths)),
                'seconds': time.perf_counter() - start}
            env.close()
            print(f'  {task:<17} {domain:<4} {successes}/{episodes}', file=sys.stderr,
                  flush=True)
    return results


def main(argv=None) -> int:
    """Run the benchmark and print markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--episodes', type=int, default=100,
                        help='expert episodes (seeds 0..N-1) per task and domain')
    parser.add_argument('--steps', type=int, default=200, help='timed steps per config')
    parser.add_argument('--skip-speed', action='store_true')
    parser.add_argument('--skip-experts', action='store_true')
    args = parser.parse_args(argv)

    if not args.skip_speed:
        rows = speed_table(args.steps)
        print(f'## Env steps/s (PickPlace, random actions, {args.steps} steps, '
              f'MUJOCO_GL={os.environ.get("MUJOCO_GL")})\n')
        print('| env | image | cameras | depth | shadows | steps/s |')
        print('|---|---|---|---|---|---|')
        for r in rows:
            print(f"| {r['env']} | {r['size']} | {r['cameras']} | {r['depth']} | "
                  f"{r['shadows']} | {r['steps/s']:.1f} |")
        ref = METAWORLD_REFERENCE
        print(f"\nMeta-World pick-place-v3 reference on the dev box: {ref['render']} steps/s "
              f"with one camera (128² or 224²), {ref['no_render']} without rendering.")
        one_224 = next(r['steps/s'] for r in rows if r['size'] == '224²' and r['cameras'] == 1
                       and r['depth'] == 'no' and r['shadows'] == 'yes')
        three_224 = next(r['steps/s'] for r in rows if r['size'] == '224²'
                         and r['cameras'] == 3 and r['depth'] == 'yes' and r['shadows'] == 'yes')
        print(f"With shadows, one 224² camera: {one_224 / ref['render']:.1f}x the reference "
              f"(target 2x); three 224² RGB-D cameras: {three_224 / ref['render']:.1f}x "
              f"(target > 1x).\n")

    if not args.skip_experts:
        results = expert_table(args.episodes)
        print(f'## Scripted expert success over {args.episodes} seeds\n')
        print('| task | sim success | real success | sim mean steps | real mean steps |')
        print('|---|---|---|---|---|')
        for task in TASKS:
            s, r = results[task, 'sim'], results[task, 'real']
            print(f"| {task} | {s['success']:.0%} | {r['success']:.0%} | {s['mean_len']:.0f} "
                  f"| {r['mean_len']:.0f} |")
    return 0


if __name__ == '__main__':
    sys.exit(main())
