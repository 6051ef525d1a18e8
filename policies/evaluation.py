"""Closed-loop evaluation of any policy in a gymnasium env of the tabletop suite.

The env is created by a caller-supplied factory (this module never imports the simulator),
so the same code evaluates in the `sim` or the `real` domain. An adapter turns the env's
observation dict into what each policy reads:

- `bc_mlp`: embedding of `<camera>/rgb` by a frozen (compiled) encoder + proprio;
- `l4s_bc`: the frame, proprio, the episode instruction and the domain name;
- `mbs`: the tool-camera frame and the tool orientation, with a goal image per episode
  rendered by running the scripted expert to success from the same seed;
- `scripted_expert`: the env's privileged expert.

    >>> results = evaluate(policy, lambda: gym.make('embodied_vision/PickPlace-v0', ...),
    ...                    episodes=50, seed=0, domain='real')
    >>> results['success_rate']
"""
from collections.abc import Callable
import logging

import numpy as np
import torch

from embodied_vision.data.images import to_batch
from embodied_vision.policies.base import OBS_EMBEDDING, OBS_STATE

__all__ = ['evaluate', 'expert_goal_frame', 'make_adapter']

_logger = logging.getLogger(__name__)


def expert_goal_frame(make_env: Callable, seed: int, camera: str,
                      max_steps: int = 1000) -> np.ndarray:
    """The `camera` frame at the end of a successful expert episode from `seed`.

    Steps the unwrapped env, so an evaluation time limit does not cut the expert short.
    """
    env = make_env()
    try:
        obs, info = env.reset(seed=seed)
        raw = env.unwrapped
        for _ in range(max_steps):
            obs, _, terminated, _, info = raw.step(raw.expert_action())
            if terminated or info.get('success'):
                break
        if not info.get('success'):
            raise RuntimeError(f'the expert failed from seed {seed}: no goal image')
        return obs[f'{camera}/rgb']
    finally:
        env.close()


class _Adapter:
    def __init__(self, policy, camera: str, domain: str, encoder=None, make_env=None):
        self.policy, self.camera, self.domain = policy, camera, domain
        self.encoder, self.make_env = encoder, make_env
        self.kind = getattr(policy, 'name', type(policy).__name__)
        if self.kind == 'bc_mlp' and encoder is None:
            raise ValueError('a bc_mlp policy needs the frozen encoder that embedded its '
                             'training frames (encoder=...)')
        if self.kind == 'mbs' and make_env is None:
            raise ValueError('an mbs policy needs make_env to render goal images')

    def reset(self, env, obs: dict, seed: int) -> None:
        self.policy.reset()
        self.env = env
        if self.kind == 'mbs':
            self.policy.set_goal(expert_goal_frame(self.make_env, seed, self.camera))

    def act(self, obs: dict) -> np.ndarray:
        frame = obs.get(f'{self.camera}/rgb')
        if self.kind == 'scripted_expert':
            return np.asarray(self.env.unwrapped.expert_action(), np.float32)
        if self.kind == 'mbs':
            return self.policy.select_action({'image': frame, 'tool_quat': obs['proprio'][3:7]})
        if self.kind == 'l4s_bc':
            return self.policy.select_action({'image': frame, 'proprio': obs['proprio'],
                                              'instruction': str(obs['instruction']),
                                              'domain': self.domain})
        if self.kind == 'bc_mlp':
            size = (self.policy.config.image_size,) * 2
            with torch.inference_mode():
                embedding = self.encoder(to_batch([frame], size))[0].float().cpu()
            action = self.policy.select_action({OBS_EMBEDDING: embedding,
                                                OBS_STATE: torch.as_tensor(obs['proprio'])})
            return np.asarray(action, np.float32)
        raise ValueError(f'no evaluation adapter for policy {self.kind!r}; known: bc_mlp, '
                         'l4s_bc, mbs, scripted_expert')


def make_adapter(policy, camera: str = 'front', domain: str = 'sim', encoder=None,
                 make_env: Callable | None = None) -> _Adapter:
    """The observation adapter for `policy` (see the module docstring)."""
    return _Adapter(policy, camera, domain, encoder, make_env)


def evaluate(policy, make_env: Callable, episodes: int = 50, seed: int = 0,
             camera: str = 'front', domain: str = 'sim', encoder=None,
             record: int = 0) -> dict:
    """Run `episodes` episodes (seeds `seed`, `seed + 1`, ...) and report success.

    Returns `success_rate`, `successes`, `episodes`, `mean_steps`, `per_episode` (seed,
    success, steps, final stage) and, when `record` > 0, the camera frames of the first
    `record` episodes under `videos`.
    """
    if episodes < 1:
        raise ValueError(f'episodes must be >= 1, got {episodes}')
    adapter = make_adapter(policy, camera, domain, encoder, make_env)
    env = make_env()
    per_episode, videos = [], []
    try:
        for k in range(episodes):
            obs, info = env.reset(seed=seed + k)
            adapter.reset(env, obs, seed + k)
            frames, steps, done = [obs.get(f'{camera}/rgb')], 0, False
            while not done:
                obs, _, terminated, truncated, info = env.step(adapter.act(obs))
                steps += 1
                done = terminated or truncated
                if k < record:
                    frames.append(obs.get(f'{camera}/rgb'))
            per_episode.append({'seed': seed + k, 'success': bool(info.get('success')),
                                'steps': steps, 'stage': int(info.get('stage', -1))})
            if k < record:
                videos.append(np.stack(frames))
            _logger.info('episode %d (seed %d): success=%s steps=%d', k, seed + k,
                         per_episode[-1]['success'], steps)
    finally:
        env.close()
    successes = sum(e['success'] for e in per_episode)
    return {'success_rate': successes / episodes, 'successes': successes,
            'episodes': episodes, 'mean_steps': float(np.mean([e['steps'] for e in per_episode])),
            'per_episode': per_episode, 'videos': videos}
