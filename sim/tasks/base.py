"""Task base class: the hooks a tabletop task implements, plus shared helpers.

A task owns the randomised episode layout, the language (instruction and stage templates),
the stage labelling, success and reward, and names its scripted expert. The env
(`embodied_vision.sim.base.TabletopEnv`) owns the physics, the gripper and the cameras and calls
the hooks in this order (dm_control-style):

1. `initialize_episode(env, rng)` after `mj_resetData`, before objects settle;
2. `after_step(env)` once per control step, after the physics step;
3. `stage(env)`, `success(env)`, `reward(env)` to build `info` and the reward.

All randomness comes from the `rng` argument (the env's seeded `np_random`).
"""
from abc import ABC, abstractmethod
import logging

import numpy as np

from embodied_vision.sim.language import TemplateSet

__all__ = ['Task', 'sample_layout', 'xy_dist', 'OBJECT_NAMES', 'OBJECT_HALF_HEIGHT']

_logger = logging.getLogger(__name__)

#: Human-readable names used in instructions and stage templates.
OBJECT_NAMES = {
    'carrot': 'carrot',
    'can': 'yellow can',
    'red_cube': 'red cube',
    'green_cube': 'green cube',
    'blue_cube': 'blue cube',
    'bowl': 'bowl',
    'plate': 'plate',
    'target': 'red target',
    'goal': 'green goal',
}
#: Height of each object's body origin above the surface it rests on, in metres.
OBJECT_HALF_HEIGHT = {
    'carrot': 0.012,
    'can': 0.03,
    'red_cube': 0.02,
    'green_cube': 0.02,
    'blue_cube': 0.02,
    'bowl': 0.0,
    'plate': 0.005,
}


def xy_dist(a: np.ndarray, b: np.ndarray) -> float:
    """Horizontal distance between two points."""
    return float(np.linalg.norm(np.asarray(a)[:2] - np.asarray(b)[:2]))


def sample_layout(rng: np.random.Generator, radii: list[float],
                  x_range=(-0.15, 0.15), y_range=(-0.2, 0.2), gap: float = 0.03,
                  max_tries: int = 1000) -> np.ndarray:
    """Sample non-overlapping xy positions for objects with footprint radii `radii`.

    Two objects are at least `r_i + r_j + gap` apart. Returns an `(n, 2)` array.
    """
    positions: list[np.ndarray] = []
    for r in radii:
        for _ in range(max_tries):
            p = np.array([rng.uniform(*x_range), rng.uniform(*y_range)])
            if all(np.linalg.norm(p - q) >= r + rq + gap
                   for q, rq in zip(positions, radii)):
                positions.append(p)
                break
        else:
            raise RuntimeError('could not place objects without overlap; enlarge the workspace')
    return np.stack(positions)


class Task(ABC):
    """Base class of a tabletop task. Subclasses set the class attributes and hooks.

    Attributes:
        name: the task name used in gymnasium ids (`embodied_vision/<name>-v0`).
        scene: MJCF scene file under `sim/assets/`.
        max_episode_steps: default time limit at the env's control rate.
        objects: bodies that move (their colours are tinted by the `real` domain and they can be
            queried with `object_point_cloud`).
        families: language template family per task step (see `language.STAGE_TEMPLATES`).
    """

    name = ''
    scene = ''
    max_episode_steps = 100
    objects: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def __init__(self, **options):
        bad = sorted(set(options) - set(self.options))
        if bad:
            raise ValueError(f'unknown option(s) {bad} for task {self.name}; '
                             f'valid: {sorted(self.options)}')
        self.templates: TemplateSet | None = None

    # -------------------------------------------------------------- hooks
    @abstractmethod
    def initialize_episode(self, env, rng: np.random.Generator) -> None:
        """Place objects and goals for a new episode."""

    @abstractmethod
    def fill_names(self) -> list[dict[str, str]]:
        """Names filled into the templates of each task step."""

    @abstractmethod
    def instruction(self) -> str:
        """The episode's instruction sentence."""

    def after_step(self, env) -> None:
        """Update per-episode task state after a control step (default: nothing)."""
        return None

    @abstractmethod
    def stage(self, env) -> int:
        """Current stage index, computed from the simulator state."""

    @abstractmethod
    def success(self, env) -> bool:
        """Whether the task is solved in the current state."""

    def progress(self, env) -> float:
        """Dense progress inside the current stage, in [0, 1] (default 0)."""
        return 0.0

    def reward(self, env) -> float:
        """Dense reward in [0, 1]: 1 on success, else (stage + progress) / num_stages."""
        if self.success(env):
            return 1.0
        n = self.templates.num_stages
        return float((self.stage(env) + 0.9 * self.progress(env)) / n)

    @abstractmethod
    def make_expert(self, env):
        """Build the scripted expert for the current episode."""

    # -------------------------------------------------------------- helpers
    def setup_language(self) -> None:
        """Build the episode's template set; call at the end of `initialize_episode`."""
        self.templates = TemplateSet(list(self.families), self.fill_names())
