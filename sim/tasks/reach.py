"""Reach: move the gripper to a floating target marker (a red cube is scenery)."""
import numpy as np

from embodied_vision.sim.experts import ReachExpert
from embodied_vision.sim.tasks.base import Task, sample_layout

__all__ = ['Reach']


class Reach(Task):
    """Reach a randomly placed target within `tolerance` metres."""

    name = 'Reach'
    scene = 'scene_reach.xml'
    max_episode_steps = 50
    objects = ('red_cube',)
    families = ('reach',)
    tolerance = 0.02

    def initialize_episode(self, env, rng):
        """Place the cube and the target marker."""
        xy = sample_layout(rng, [0.03, 0.03])
        env.set_free_pose('red_cube', [*xy[0], 0.02], rng.uniform(-0.5, 0.5))
        self.goal = np.array([*xy[1], rng.uniform(0.06, 0.25)])
        env.set_mocap_pos('target', self.goal)
        self.setup_language()

    def fill_names(self):
        """Names for the templates."""
        return [{'target': 'red target'}]

    def instruction(self):
        """The instruction."""
        return 'reach the red target'

    def _dist(self, env):
        return float(np.linalg.norm(env.ee_pos - self.goal))

    def stage(self, env):
        """0 moving to the target, 1 at the target."""
        return int(self._dist(env) < self.tolerance)

    def success(self, env):
        """The gripper is within `tolerance` of the target."""
        return self._dist(env) < self.tolerance

    def progress(self, env):
        """Closeness to the target."""
        return float(np.exp(-self._dist(env) / 0.1))

    def make_expert(self, env):
        """A `ReachExpert`."""
        return ReachExpert(env)
