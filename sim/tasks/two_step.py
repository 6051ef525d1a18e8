"""TwoStepPickPlace: put the carrot into the bowl, then the bowl onto the plate.

The real-robot two-step task of Lang4Sim2Real (carrot into bowl, then bowl onto plate). The
bowl is grasped across its outer diameter (9.2 cm; the gripper opens to 11 cm).
"""
import numpy as np

from embodied_vision.sim.experts import PickPlaceExpert, PickPlaceStep
from embodied_vision.sim.tasks.base import OBJECT_HALF_HEIGHT, Task, sample_layout, xy_dist
from embodied_vision.sim.tasks.pick_place import in_bowl, pick_stage, random_yaw

__all__ = ['TwoStepPickPlace']

_BOWL_GRASP_DZ = 0.025


class TwoStepPickPlace(Task):
    """Carrot into the bowl (stages 0-4), then bowl onto the plate (stages 5-9)."""

    name = 'TwoStepPickPlace'
    scene = 'scene_two_step.xml'
    max_episode_steps = 300
    objects = ('carrot', 'bowl', 'plate')
    families = ('pick', 'pick')

    def initialize_episode(self, env, rng):
        """Place carrot, bowl and plate apart."""
        xy = sample_layout(rng, [0.045, 0.05, 0.075], gap=0.05)
        env.set_free_pose('carrot', [*xy[0], OBJECT_HALF_HEIGHT['carrot']],
                          random_yaw(rng, 'carrot'))
        env.set_free_pose('bowl', [*xy[1], 0.0])
        env.set_free_pose('plate', [*xy[2], OBJECT_HALF_HEIGHT['plate']])
        self.first_done = False
        self.setup_language()

    def fill_names(self):
        """Names for the templates of both steps."""
        return [{'obj': 'carrot', 'target': 'bowl', 'relation': 'into'},
                {'obj': 'bowl', 'target': 'plate', 'relation': 'onto'}]

    def instruction(self):
        """The instruction."""
        return 'put the carrot in the bowl, then put the bowl on the plate'

    def _bowl_on_plate(self, env):
        bowl, plate = env.body_pos('bowl'), env.body_pos('plate')
        return xy_dist(bowl, plate) < 0.045 and 0.0 < bowl[2] - plate[2] < 0.03

    def after_step(self, env):
        """Latch the first step once the carrot is in the bowl and the gripper has left."""
        if not in_bowl(env, 'carrot'):
            self.first_done = False
        elif not env.is_grasped('carrot') and env.ee_pos[2] > env.body_pos('bowl')[2] + 0.09:
            self.first_done = True

    def stage(self, env):
        """Stages 0-4 for the carrot, 5-9 for the bowl (see `pick_stage`)."""
        if not self.first_done:
            over = xy_dist(env.body_pos('carrot'), env.body_pos('bowl')) < 0.03
            placed = in_bowl(env, 'carrot') and not env.is_grasped('carrot')
            return pick_stage(env, 'carrot', 0.0, over, placed)
        over = xy_dist(env.body_pos('bowl'), env.body_pos('plate')) < 0.03
        placed = self._bowl_on_plate(env) and not env.is_grasped('bowl')
        return 5 + pick_stage(env, 'bowl', _BOWL_GRASP_DZ, over, placed)

    def success(self, env):
        """The carrot is in the bowl, the bowl is on the plate, and the bowl is released."""
        return (in_bowl(env, 'carrot') and self._bowl_on_plate(env)
                and not env.is_grasped('bowl'))

    def progress(self, env):
        """Closeness of the current object to its target."""
        if not self.first_done:
            return float(np.exp(-xy_dist(env.body_pos('carrot'), env.body_pos('bowl')) / 0.1))
        return float(np.exp(-xy_dist(env.body_pos('bowl'), env.body_pos('plate')) / 0.1))

    def make_expert(self, env):
        """Carrot into bowl, then bowl onto plate."""
        carrot = PickPlaceStep(
            obj='carrot', half_height=OBJECT_HALF_HEIGHT['carrot'], margin=0.02,
            release_width=0.045,
            place=lambda e: (e.body_pos('bowl')[:2], e.body_pos('bowl')[2] + 0.004))
        bowl = PickPlaceStep(
            obj='bowl', half_height=0.0, grasp_dz=_BOWL_GRASP_DZ, margin=0.008, carry_z=0.13,
            place=lambda e: (e.body_pos('plate')[:2], e.body_pos('plate')[2] + 0.005))
        return PickPlaceExpert(env, [carrot, bowl])
