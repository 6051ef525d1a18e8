"""MuJoCo tabletop suite, installed as `embodied_vision.sim`.

Importing this package registers the gymnasium ids `embodied_vision/<Task>-v0` for every task
in `TASKS` (Reach, Push, PickPlace, Stack, TwoStepPickPlace):

    >>> import gymnasium as gym
    >>> import embodied_vision.sim
    >>> env = gym.make('embodied_vision/PickPlace-v0', cameras=('front', 'wrist'),
    ...                image_size=128, domain='real')
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())

Rendering is headless by default: without a display, `MUJOCO_GL` defaults to `egl` (set it
to `osmesa` or `glfw` yourself to choose another backend). It must be set before mujoco is
imported, hence here.
"""
import os

if not os.environ.get('DISPLAY'):
    os.environ.setdefault('MUJOCO_GL', 'egl')
    os.environ.setdefault('PYOPENGL_PLATFORM', 'egl')

from embodied_vision.sim.base import EVALUATION_SEED_BASE, TabletopEnv  # noqa: E402
from embodied_vision.sim.cameras import CAMERA_NAMES, STEREO_BASELINE  # noqa: E402
from embodied_vision.sim.domains import DOMAINS, DomainConfig, DomainRandomization  # noqa: E402
from embodied_vision.sim.language import STAGE_TEMPLATES, TemplateSet  # noqa: E402
from embodied_vision.sim.registration import env_id, register_envs  # noqa: E402
from embodied_vision.sim.tasks import TASKS, make_task  # noqa: E402
from embodied_vision.sim.vector import make_vector_env  # noqa: E402

__all__ = [
    'CAMERA_NAMES',
    'DOMAINS',
    'DomainConfig',
    'DomainRandomization',
    'EVALUATION_SEED_BASE',
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
