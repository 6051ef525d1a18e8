"""Scripted experts: privileged-state controllers that solve each task.

Experts read the simulator state through the env's named accessors (`ee_pos`, `body_pos`,
`is_grasped`) and output actions in the env's action space. They are deterministic state
machines with per-phase timeouts and retries (a failed grasp goes back to the approach), so
they reach >= 95 % success in both visual domains (`benchmarks/sim.py --episodes 100` prints
the table). Build one per episode with `task.make_expert(env)`, or call
`env.unwrapped.expert_action()` (works through gymnasium vector envs with `envs.call`).
"""
from collections.abc import Callable
from dataclasses import dataclass
import logging

import numpy as np

__all__ = [
    'PickPlaceExpert',
    'PickPlaceStep',
    'PushExpert',
    'ReachExpert',
    'grip_for_width',
    'move_action',
]

_logger = logging.getLogger(__name__)

OPEN, CLOSE = -1.0, 1.0
HOVER_Z = 0.12


def move_action(env, goal, grip: float, gain: float = 1.0) -> np.ndarray:
    """Action moving the end-effector target towards `goal`, at most `MAX_DELTA` per axis.

    Steering the commanded (mocap) target rather than the measured end effector avoids
    overshoot from the hand's lag behind its target.
    """
    delta = (np.asarray(goal, dtype=np.float64) - env.ee_target) * gain / env.MAX_DELTA
    return np.concatenate([np.clip(delta, -1.0, 1.0), [grip]]).astype(np.float32)


def grip_for_width(env, width: float) -> float:
    """The grip command whose finger target is an opening of `width` metres."""
    q = np.clip(width / 2.0, 0.0, env.FINGER_MAX)
    return float(2.0 * (env.FINGER_MAX - q) / (env.FINGER_MAX + env.SQUEEZE) - 1.0)


class ReachExpert:
    """Moves the gripper to the target marker and holds it there."""

    def __init__(self, env, target: str = 'target'):
        self.env = env
        self.target = target

    def act(self) -> np.ndarray:
        """Next action."""
        goal = self.env.data.mocap_pos[self.env.model.body(self.target).mocapid[0]]
        return move_action(self.env, goal, OPEN)


class PushExpert:
    """Pushes `obj` onto the goal disc with the closed fingers, re-approaching if it drifts."""

    PUSH_Z = 0.016
    BEHIND = 0.045

    def __init__(self, env, obj: str = 'red_cube', goal: str = 'goal', tolerance: float = 0.012):
        self.env = env
        self.obj = obj
        self.goal = goal
        self.tolerance = tolerance
        self.phase = 'approach'
        self.steps = 0

    def _geometry(self):
        env = self.env
        p = env.body_pos(self.obj)[:2]
        g = env.data.mocap_pos[env.model.body(self.goal).mocapid[0]][:2]
        d = g - p
        dist = float(np.linalg.norm(d))
        u = d / max(dist, 1e-6)
        return p, u, dist

    def act(self) -> np.ndarray:
        """Next action."""
        env = self.env
        ee = env.ee_pos
        p, u, dist = self._geometry()
        behind = p - u * self.BEHIND
        self.steps += 1
        if dist < self.tolerance:
            self.phase = 'done'
        if self.phase == 'approach':
            if ee[2] < HOVER_Z - 0.04 and np.linalg.norm(ee[:2] - behind) > 0.02:
                return move_action(env, [ee[0], ee[1], HOVER_Z], CLOSE)
            if np.linalg.norm(ee[:2] - behind) < 0.008:
                self.phase, self.steps = 'lower', 0
            return move_action(env, [*behind, HOVER_Z], CLOSE)
        if self.phase == 'lower':
            if ee[2] < self.PUSH_Z + 0.006 or self.steps > 20:
                self.phase, self.steps = 'push', 0
            return move_action(env, [*behind, self.PUSH_Z], CLOSE)
        if self.phase == 'push':
            rel = ee[:2] - p
            lateral = abs(rel[0] * u[1] - rel[1] * u[0])
            if lateral > 0.022 or np.dot(rel, u) > 0.0:
                self.phase, self.steps = 'approach', 0
                return move_action(env, [ee[0], ee[1], HOVER_Z], CLOSE)
            # Aim at a point just behind the object's centre, advancing along the push line;
            # slow down near the goal so the object does not overshoot.
            step = min(0.02, dist + 0.004)
            goal = p - u * (self.BEHIND - 0.012) + u * step
            return move_action(env, [*goal, self.PUSH_Z], CLOSE, gain=0.8)
        # done: back off upwards
        return move_action(env, [ee[0], ee[1], HOVER_Z], CLOSE, gain=0.5)


@dataclass
class PickPlaceStep:
    """One pick-and-place sub-task.

    Args:
        obj: body to pick.
        half_height: height of the object's origin above its resting surface.
        grasp_dz: end-effector height above the object's origin at the grasp.
        place: callable `env -> (xy, surface_z)` giving where to put the object.
        margin: release height of the object's bottom above the surface.
        carry_z: end-effector height while carrying.
        min_grasp_z: lowest end-effector height at the grasp (fingertips clear the table).
        release_width: finger opening at the release and retreat, metres; None opens fully.
            Opening only a little keeps the fingers off the walls of a container.
    """

    obj: str
    half_height: float
    place: Callable
    grasp_dz: float = 0.0
    margin: float = 0.015
    carry_z: float = 0.14
    min_grasp_z: float = 0.014
    release_width: float | None = None


class PickPlaceExpert:
    """Runs `PickPlaceStep`s in sequence: approach, descend, close, lift, carry, lower,
    release, retreat. A grasp that slips sends it back to the approach (up to `max_retries`).
    """

    TIMEOUTS = {'above': 40, 'descend': 20, 'close': 8, 'lift': 25, 'carry': 50, 'lower': 25,
                'release': 4, 'retreat': 15}

    def __init__(self, env, steps: list[PickPlaceStep], max_retries: int = 3):
        self.env = env
        self.steps = list(steps)
        self.index = 0
        self.phase = 'above'
        self.t = 0
        self.retries = 0
        self.max_retries = max_retries

    @property
    def done(self) -> bool:
        """True after the last step's retreat."""
        return self.index >= len(self.steps)

    def _go(self, phase: str) -> None:
        self.phase, self.t = phase, 0

    def act(self) -> np.ndarray:
        """Next action."""
        env = self.env
        if self.done:
            return np.array([0.0, 0.0, 0.0, OPEN], dtype=np.float32)
        step = self.steps[self.index]
        ee = env.ee_pos
        p = env.body_pos(step.obj)
        self.t += 1
        timeout = self.t > self.TIMEOUTS[self.phase]
        grasp_z = max(p[2] + step.grasp_dz, step.min_grasp_z)

        if self.phase == 'above':
            hover = [p[0], p[1], max(HOVER_Z, grasp_z + 0.08)]
            far = np.linalg.norm(ee[:2] - p[:2]) > 0.02
            if far and ee[2] < hover[2] - 0.04:
                return move_action(env, [ee[0], ee[1], hover[2]], OPEN)
            if not far and np.linalg.norm(ee[:2] - p[:2]) < 0.006 or timeout:
                self._go('descend')
            return move_action(env, hover, OPEN)
        if self.phase == 'descend':
            goal = [p[0], p[1], grasp_z]
            if abs(ee[2] - grasp_z) < 0.005 or timeout:
                self._go('close')
            return move_action(env, goal, OPEN)
        if self.phase == 'close':
            if timeout:
                self._go('lift')
            return move_action(env, [p[0], p[1], grasp_z], CLOSE, gain=0.3)
        if self.phase in ('lift', 'carry', 'lower'):
            if not env.is_grasped(step.obj) and self.retries < self.max_retries:
                _logger.debug('grasp of %s slipped in %s; retrying', step.obj, self.phase)
                self.retries += 1
                self._go('above')
                return move_action(env, [ee[0], ee[1], ee[2] + 0.03], OPEN)
        if self.phase == 'lift':
            if ee[2] > step.carry_z - 0.01 or timeout:
                self._go('carry')
            return move_action(env, [ee[0], ee[1], step.carry_z], CLOSE)
        xy, surface_z = step.place(env)
        offset = ee[:2] - p[:2]
        target_xy = np.asarray(xy) + offset
        if self.phase == 'carry':
            if np.linalg.norm(ee[:2] - target_xy) < 0.005 or timeout:
                self._go('lower')
            return move_action(env, [*target_xy, step.carry_z], CLOSE)
        if self.phase == 'lower':
            place_z = surface_z + step.margin + step.half_height + (ee[2] - p[2])
            if ee[2] < place_z + 0.004 or timeout:
                self._go('release')
            return move_action(env, [*target_xy, place_z], CLOSE, gain=0.7)
        release = OPEN if step.release_width is None else grip_for_width(env, step.release_width)
        if self.phase == 'release':
            if timeout:
                self._go('retreat')
            return np.array([0.0, 0.0, 0.0, release], dtype=np.float32)
        # retreat
        if ee[2] > HOVER_Z - 0.01 or timeout:
            self.index += 1
            self.retries = 0
            self._go('above')
        return move_action(env, [ee[0], ee[1], HOVER_Z + 0.02], release)
