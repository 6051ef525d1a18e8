"""MuJoCo tabletop suite, installed as `embodied_vision.sim`.

Importing this package registers the gymnasium ids `embodied_vision/<Task>-v0` for every task
in `TASKS` (Reach, Push, PickPlace, Stack, TwoStepPickPlace):

    >>> import gymnasium as gym
    >>> import embodied_vision.sim
    >>> env = gym.make('embodied_vision/PickPlace-v0', cameras=('front', 'wrist'),
    ...                image_size=128, domain='real')
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
"""
from embodied_vision.sim.base import TabletopEnv
from embodied_vision.sim.cameras import CAMERA_NAMES, STEREO_BASELINE
from embodied_vision.sim.domains import DOMAINS, DomainConfig, DomainRandomization
from embodied_vision.sim.language import STAGE_TEMPLATES, TemplateSet
from embodied_vision.sim.registration import env_id, register_envs
from embodied_vision.sim.tasks import TASKS, make_task
from embodied_vision.sim.vector import make_vector_env

__all__ = [
    'CAMERA_NAMES',
    'DOMAINS',
    'DomainConfig',
    'DomainRandomization',
    'STAGE_TEMPLATES',
    'STEREO_BASELINE',
    'TASKS',
    'TabletopEnv',
    'TemplateSet',
    'env_id',
    'make_task',
    'make_vector_env',
    'register_envs',
]

register_envs()
