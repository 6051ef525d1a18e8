"""Push: push the red cube onto the green goal disc."""
import numpy as np

from embodied_vision.sim.experts import PushExpert
from embodied_vision.sim.tasks.base import OBJECT_NAMES, Task, xy_dist

__all__ = ['Push']


class Push(Task):
    """Push the cube to a goal 10-18 cm away in a random direction."""

    name = 'Push'
    scene = 'scene_push.xml'
    max_episode_steps = 120
    objects = ('red_cube',)
    families = ('push',)
    tolerance = 0.025

    def initialize_episode(self, env, rng):
        """Place the cube and the goal disc inside the workspace."""
        while True:
            cube = np.array([rng.uniform(-0.12, 0.12), rng.uniform(-0.15, 0.15)])
            angle = rng.uniform(-np.pi, np.pi)
            goal = cube + rng.uniform(0.1, 0.18) * np.array([np.cos(angle), np.sin(angle)])
            if abs(goal[0]) < 0.18 and abs(goal[1]) < 0.22:
                break
        env.set_free_pose('red_cube', [*cube, 0.02], rng.uniform(-0.3, 0.3))
        self.goal = goal
        env.set_mocap_pos('goal', [*goal, 0.0005])
        self.setup_language()

    def fill_names(self):
        """Names for the templates."""
        return [{'obj': OBJECT_NAMES['red_cube'], 'target': 'green goal'}]

    def instruction(self):
        """The instruction."""
        return 'push the red cube onto the green goal'

    def stage(self, env):
        """0 moving behind the cube, 1 pushing, 2 the cube is on the goal."""
        p = env.body_pos('red_cube')
        if xy_dist(p, self.goal) < self.tolerance:
            return 2
        ee = env.ee_pos
        u = self.goal - p[:2]
        u /= np.linalg.norm(u) + 1e-9
        rel = ee[:2] - p[:2]
        if ee[2] < 0.04 and np.linalg.norm(rel) < 0.06 and np.dot(rel, u) < 0:
            return 1
        return 0

    def success(self, env):
        """The cube's centre is within `tolerance` of the goal centre."""
        return xy_dist(env.body_pos('red_cube'), self.goal) < self.tolerance

    def progress(self, env):
        """Closeness of the cube to the goal."""
        return float(np.exp(-xy_dist(env.body_pos('red_cube'), self.goal) / 0.05))

    def make_expert(self, env):
        """A `PushExpert`."""
        return PushExpert(env)
