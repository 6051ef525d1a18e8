"""Gymnasium registration of every tabletop task as `embodied_vision/<Task>-v0`."""
import gymnasium as gym

from embodied_vision.sim.tasks import TASKS

__all__ = ['ENTRY_POINT', 'env_id', 'register_envs']

ENTRY_POINT = 'embodied_vision.sim.base:TabletopEnv'


def env_id(task: str) -> str:
    """The gymnasium id of `task`; unknown names list the valid ones."""
    if task not in TASKS:
        raise ValueError(f'unknown task {task!r}; valid tasks: {sorted(TASKS)}')
    return f'embodied_vision/{task}-v0'


def register_envs() -> None:
    """Register every task (idempotent)."""
    for name, cls in TASKS.items():
        eid = env_id(name)
        if eid in gym.registry:
            continue
        gym.register(id=eid, entry_point=ENTRY_POINT, kwargs={'task': name},
                     max_episode_steps=cls.max_episode_steps)
