"""PickPlace: put one object (carrot, yellow can or blue cube) into the bowl.

Also holds `pick_stage`, the state-based stage labeller shared by every pick-and-place task.
"""
import numpy as np

from embodied_vision.sim.experts import PickPlaceExpert, PickPlaceStep
from embodied_vision.sim.tasks.base import (
    OBJECT_HALF_HEIGHT,
    OBJECT_NAMES,
    Task,
    sample_layout,
    xy_dist,
)

__all__ = ['PickPlace', 'in_bowl', 'pick_stage']

_PICKABLE = ('carrot', 'can', 'blue_cube')
_RELEASE_WIDTH = {'carrot': 0.045, 'can': 0.058, 'blue_cube': 0.062}
_FOOTPRINT = {'carrot': 0.045, 'can': 0.025, 'blue_cube': 0.03, 'bowl': 0.05}


def pick_stage(env, obj: str, grasp_dz: float, over: bool, placed: bool) -> int:
    """Stage of one pick-and-place step from the state.

    0 moving to the object, 1 grasping (the gripper is at the object), 2 lifting (grasped, up
    to 3 cm off its rest height), 3 moving over the target (grasped and lifted), 4 releasing
    (grasped above the target, or the object is placed).
    """
    if placed:
        return 4
    p = env.body_pos(obj)
    if env.is_grasped(obj):
        if over:
            return 4
        lift = p[2] - OBJECT_HALF_HEIGHT[obj]
        if lift > 0.03:
            return 3
        return 2 if lift > 0.004 else 1
    grasp_point = p + np.array([0.0, 0.0, grasp_dz])
    return 1 if np.linalg.norm(env.ee_pos - grasp_point) < 0.025 else 0


def in_bowl(env, obj: str) -> bool:
    """True when `obj` lies inside the bowl."""
    p, b = env.body_pos(obj), env.body_pos('bowl')
    return xy_dist(p, b) < 0.04 and p[2] < b[2] + 0.05


def random_yaw(rng, obj: str) -> float:
    """A yaw that keeps elongated objects graspable across the fingers."""
    yaw = rng.uniform(-0.3, 0.3)
    if obj == 'carrot' and rng.random() < 0.5:
        yaw += np.pi
    return yaw


class PickPlace(Task):
    """Put `target_object` (random per episode by default) into the bowl.

    Options:
        target_object: `carrot`, `can` or `blue_cube`; None draws one per episode.
    """

    name = 'PickPlace'
    scene = 'scene_pick_place.xml'
    max_episode_steps = 150
    objects = ('carrot', 'can', 'blue_cube', 'bowl')
    families = ('pick',)
    options = ('target_object',)

    def __init__(self, target_object: str | None = None, **options):
        super().__init__(**options)
        if target_object is not None and target_object not in _PICKABLE:
            raise ValueError(f'unknown target_object {target_object!r}; valid: '
                             f'{list(_PICKABLE)} or None')
        self.target_object = target_object
        self.option_values = {'target_object': target_object}
        self.obj = target_object or 'carrot'

    def initialize_episode(self, env, rng):
        """Draw the target object and place everything without overlaps."""
        self.obj = self.target_object or _PICKABLE[rng.integers(len(_PICKABLE))]
        names = list(_PICKABLE) + ['bowl']
        xy = sample_layout(rng, [_FOOTPRINT[n] for n in names], gap=0.05)
        for name, pos in zip(names, xy):
            yaw = 0.0 if name == 'bowl' else random_yaw(rng, name)
            env.set_free_pose(name, [*pos, OBJECT_HALF_HEIGHT[name]], yaw)
        self.setup_language()

    def fill_names(self):
        """Names for the templates."""
        return [{'obj': OBJECT_NAMES[self.obj], 'target': 'bowl', 'relation': 'into'}]

    def instruction(self):
        """The instruction."""
        return f'put the {OBJECT_NAMES[self.obj]} in the bowl'

    def _grasp_dz(self):
        return 0.0

    def stage(self, env):
        """See `pick_stage`."""
        over = xy_dist(env.body_pos(self.obj), env.body_pos('bowl')) < 0.03
        return pick_stage(env, self.obj, self._grasp_dz(), over, self._placed(env))

    def _placed(self, env):
        return in_bowl(env, self.obj) and not env.is_grasped(self.obj)

    def success(self, env):
        """The object lies in the bowl and is released."""
        return self._placed(env)

    def progress(self, env):
        """Closeness of the gripper to the object, or of the object to the bowl."""
        p = env.body_pos(self.obj)
        if env.is_grasped(self.obj):
            return float(np.exp(-xy_dist(p, env.body_pos('bowl')) / 0.05))
        return float(np.exp(-np.linalg.norm(env.ee_pos - p) / 0.05))

    def make_expert(self, env):
        """Pick the object and drop it into the bowl."""
        step = PickPlaceStep(
            obj=self.obj, half_height=OBJECT_HALF_HEIGHT[self.obj], margin=0.02,
            release_width=_RELEASE_WIDTH[self.obj],
            place=lambda e: (e.body_pos('bowl')[:2], e.body_pos('bowl')[2] + 0.004))
        return PickPlaceExpert(env, [step])
