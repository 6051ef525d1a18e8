"""Gymnasium vector envs (sync or async) of a tabletop task, for parallel collection.

    >>> envs = make_vector_env('PickPlace', num_envs=4, asynchronous=True, cameras=('front',))
    >>> obs, infos = envs.reset(seed=0)            # sub-env i is seeded with seed + i
    >>> actions = np.stack(envs.call('expert_action'))
    >>> obs, rewards, terminated, truncated, infos = envs.step(actions)

Sub-envs reset automatically on the step after they finish (gymnasium's `NEXT_STEP`
autoreset mode). Async workers start with the `spawn` method by default, so no OpenGL context
is inherited from the parent process.
"""
import gymnasium as gym
from gymnasium.vector import AutoresetMode

from embodied_vision.sim.registration import env_id

__all__ = ['make_vector_env']


def make_vector_env(task: str, num_envs: int = 2, asynchronous: bool = False,
                    context: str | None = 'spawn', max_episode_steps: int | None = None,
                    autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP,
                    **env_kwargs) -> gym.vector.VectorEnv:
    """Make `num_envs` copies of `embodied_vision/<task>-v0` in a vector env.

    Args:
        task: task name.
        num_envs: number of sub-envs (>= 1).
        asynchronous: one worker process per sub-env (`AsyncVectorEnv`) instead of stepping
            them in turn in this process (`SyncVectorEnv`).
        context: multiprocessing start method for async workers.
        max_episode_steps: override the task's time limit.
        autoreset_mode: gymnasium's autoreset mode (`DISABLED`: the caller resets).
        **env_kwargs: forwarded to `TabletopEnv`.
    """
    if int(num_envs) < 1:
        raise ValueError(f'num_envs must be >= 1, got {num_envs}')
    eid = env_id(task)
    extra = {} if max_episode_steps is None else {'max_episode_steps': int(max_episode_steps)}

    def make():
        from embodied_vision.sim.registration import register_envs
        register_envs()  # spawned workers start without the ids
        return gym.make(eid, **extra, **env_kwargs)

    fns = [make for _ in range(int(num_envs))]
    if asynchronous:
        return gym.vector.AsyncVectorEnv(fns, context=context, shared_memory=False,
                                         autoreset_mode=autoreset_mode)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=autoreset_mode)
