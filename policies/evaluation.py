"""Closed-loop evaluation of any policy in a gymnasium env of the tabletop suite.

The env is created by a caller-supplied factory (this module never imports the simulator),
so the same code evaluates in the `sim` or the `real` domain. The loop plays the sim's side:
it turns each env observation into the processors' vocabulary (`observation_from_env`), adds
what the policy's processor reads and only the sim knows (the expert's privileged action;
per episode a goal image, rendered by running the scripted expert to success from the same
seed), and the policy's processor (`policy.processor_class`) makes the policy's input.

    >>> results = evaluate(policy, lambda: gym.make('embodied_vision/PickPlace-v0', ...),
    ...                    episodes=50, seed=0, domain='real')
    >>> results['success_rate']
"""
from collections.abc import Callable
import logging

import numpy as np

from embodied_vision.policies.base import (
    DOMAIN,
    OBS_EXPERT_ACTION,
    OBS_GOAL_IMAGE,
    OBS_IMAGE,
    OBS_INSTRUCTION,
    OBS_STATE,
)
from embodied_vision.policies.processor import (
    PolicyProcessor,
    make_processor,
    observation_from_env,
)

__all__ = ['EPISODE_FEATURES', 'STEP_FEATURES', 'evaluate', 'expert_goal_frame']

_logger = logging.getLogger(__name__)

#: What the evaluation gives a processor at every step.
STEP_FEATURES = (OBS_IMAGE, OBS_STATE, OBS_INSTRUCTION, DOMAIN, OBS_EXPERT_ACTION)
#: What it gives once per episode.
EPISODE_FEATURES = (OBS_GOAL_IMAGE,)


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


def _check_features(processor: PolicyProcessor) -> None:
    for read, given in ((processor.features, STEP_FEATURES),
                        (processor.episode_features, EPISODE_FEATURES)):
        unknown = sorted(set(read) - set(given))
        if unknown:
            raise ValueError(f'{type(processor).__name__} reads {unknown}, which the '
                             f'evaluation does not provide; it provides {list(STEP_FEATURES)} '
                             f'per step and {list(EPISODE_FEATURES)} per episode')


def _episode_inputs(processor: PolicyProcessor, make_env: Callable, seed: int,
                    camera: str) -> dict:
    episode = {}
    if OBS_GOAL_IMAGE in processor.episode_features:
        episode[OBS_GOAL_IMAGE] = expert_goal_frame(make_env, seed, camera)
    return episode


def _step_inputs(processor: PolicyProcessor, env, obs: dict, camera: str, domain: str) -> dict:
    observation = observation_from_env(obs, camera, domain)
    if OBS_EXPERT_ACTION in processor.features:  # privileged: asked for only when read
        observation[OBS_EXPERT_ACTION] = env.unwrapped.expert_action()
    return observation


def evaluate(policy, make_env: Callable, episodes: int = 50, seed: int = 0,
             camera: str = 'front', domain: str = 'sim', encoder=None,
             record: int = 0) -> dict:
    """Run `episodes` episodes (seeds `seed`, `seed + 1`, ...) and report success.

    `camera` is the camera the policy reads, `domain` the visual domain it is told (the env's
    is set by `make_env`), `encoder` the frozen encoder of processors that embed frames
    (`policy.processor_class.frozen_encoder(policy)` builds it; others ignore it).
    Returns `success_rate`, `successes`, `episodes`, `mean_steps`, `per_episode` (seed,
    success, steps, final stage) and, when `record` > 0, the camera frames of the first
    `record` episodes under `videos`.
    """
    if episodes < 1:
        raise ValueError(f'episodes must be >= 1, got {episodes}')
    processor = make_processor(policy, encoder=encoder)
    _check_features(processor)
    env = make_env()
    per_episode, videos = [], []
    from tqdm import tqdm
    name = getattr(policy, 'name', type(policy).__name__)
    try:
        for k in tqdm(range(episodes), desc=f'evaluate {name} (seed {seed})', unit='episode',
                      disable=None, leave=False):
            obs, info = env.reset(seed=seed + k)
            processor.start_episode(_episode_inputs(processor, make_env, seed + k, camera))
            frames, steps, done = [obs.get(f'{camera}/rgb')], 0, False
            while not done:
                batch = processor(_step_inputs(processor, env, obs, camera, domain))
                action = processor.postprocess(policy.select_action(batch))
                obs, _, terminated, truncated, info = env.step(action)
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
