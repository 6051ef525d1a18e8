"""Stack: put the red cube on top of the green cube."""
import numpy as np

from embodied_vision.sim.experts import PickPlaceExpert, PickPlaceStep
from embodied_vision.sim.tasks.base import OBJECT_NAMES, Task, sample_layout, xy_dist
from embodied_vision.sim.tasks.pick_place import pick_stage

__all__ = ['Stack']


class Stack(Task):
    """Stack the red cube on the green cube."""

    name = 'Stack'
    scene = 'scene_stack.xml'
    max_episode_steps = 150
    objects = ('red_cube', 'green_cube')
    families = ('pick',)

    def initialize_episode(self, env, rng):
        """Place both cubes apart."""
        xy = sample_layout(rng, [0.03, 0.03], gap=0.06)
        for name, pos in zip(self.objects, xy):
            env.set_free_pose(name, [*pos, 0.02], rng.uniform(-0.3, 0.3))
        self.setup_language()

    def fill_names(self):
        """Names for the templates."""
        return [{'obj': OBJECT_NAMES['red_cube'], 'target': OBJECT_NAMES['green_cube'],
                 'relation': 'on'}]

    def instruction(self):
        """The instruction."""
        return 'stack the red cube on the green cube'

    def _stacked(self, env):
        red, green = env.body_pos('red_cube'), env.body_pos('green_cube')
        return (xy_dist(red, green) < 0.02 and 0.03 < red[2] - green[2] < 0.05
                and green[2] < 0.03)

    def stage(self, env):
        """See `pick_stage`."""
        over = xy_dist(env.body_pos('red_cube'), env.body_pos('green_cube')) < 0.015
        placed = self._stacked(env) and not env.is_grasped('red_cube')
        return pick_stage(env, 'red_cube', 0.0, over, placed)

    def success(self, env):
        """The red cube rests on the green cube and is released."""
        return self._stacked(env) and not env.is_grasped('red_cube')

    def progress(self, env):
        """Closeness of the gripper to the red cube, or of the cubes to each other."""
        red = env.body_pos('red_cube')
        if env.is_grasped('red_cube'):
            return float(np.exp(-xy_dist(red, env.body_pos('green_cube')) / 0.05))
        return float(np.exp(-np.linalg.norm(env.ee_pos - red) / 0.05))

    def make_expert(self, env):
        """Pick the red cube and put it down on the green one."""
        step = PickPlaceStep(
            obj='red_cube', half_height=0.02, margin=0.006,
            place=lambda e: (e.body_pos('green_cube')[:2], e.body_pos('green_cube')[2] + 0.02))
        return PickPlaceExpert(env, [step])
