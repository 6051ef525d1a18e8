"""Frames of one scripted PickPlace episode, for demos and smoke runs."""
import gymnasium as gym
import numpy as np

import embodied_vision.sim  # noqa: F401  (registers the gymnasium ids)

__all__ = ['expert_frames']


def expert_frames(n: int = 24, size: int = 224, camera: str = 'front', seed: int = 0,
                  task: str = 'PickPlace') -> list[np.ndarray]:
    """`n` RGB frames spread evenly over one expert episode of `task` (uint8 HxWx3)."""
    env = gym.make(f'embodied_vision/{task}-v0', cameras=(camera,), image_size=size,
                   depth=False)
    try:
        obs, _ = env.reset(seed=seed)
        frames = [obs[f'{camera}/rgb']]
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(env.unwrapped.expert_action())
            frames.append(obs[f'{camera}/rgb'])
            done = terminated or truncated
    finally:
        env.close()
    picks = np.linspace(0, len(frames) - 1, num=min(n, len(frames))).round().astype(int)
    return [frames[i] for i in picks]
