"""`TabletopEnv`: the gymnasium env shared by every tabletop task.

Control: an action is `[dx, dy, dz, grip]` in [-1, 1]. The end-effector (mocap) target moves
by `action[:3] * MAX_DELTA` metres (2 cm) per control step; the target is clipped to the
workspace box and kept within `MAX_LAG` of the actual hand so contacts cannot wind it up.
`grip` sets the finger position target linearly: -1 fully open (11 cm), +1 fully closed.
Values outside [-1, 1] are clipped; a wrong shape or a NaN/inf raises `ValueError`.
The control rate is 20 Hz (`CONTROL_DT` = 0.05 s = 25 physics steps of 2 ms).

Observations (a dict):

- `'<camera>/rgb'`: uint8 `(H, W, 3)` per enabled camera;
- `'<camera>/depth'`: float32 `(H, W)` metric depth per enabled camera (when `depth=True`);
- `'proprio'`: float32 `(8,)` end-effector xyz (m), orientation quaternion (w, x, y, z) and
  gripper opening width (m);
- `'instruction'`: the episode's instruction (gymnasium `Text`).

`info` has `success` (bool), `stage` (int), `stage_text` (canonical stage sentence) and
`num_stages`. Camera intrinsics/extrinsics come from `camera_params(name)`.
"""
from dataclasses import asdict
import logging
import os
import string

import gymnasium as gym
from gymnasium import spaces
import mujoco
import numpy as np

from embodied_vision.sim.cameras import CAMERA_NAMES, STEREO_BASELINE, CameraRig
from embodied_vision.sim.domains import (
    ModelAppearance,
    add_sensor_noise,
    make_domain,
    make_randomization,
)
from embodied_vision.sim.perception import PerceptionMixin
from embodied_vision.sim.tasks import TASKS, make_task

__all__ = ['ASSETS_DIR', 'EVALUATION_SEED_BASE', 'TabletopEnv', 'INSTRUCTION_CHARSET']

_logger = logging.getLogger(__name__)

ASSETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'assets')
#: Episode seeds from here up are held out for evaluation: `collect` refuses them and
#: `embodied-vision evaluate` starts there, so no policy is scored on the initial states
#: (object layout, domain jitter) of the demos it was trained on.
EVALUATION_SEED_BASE = 1_000_000
#: Characters allowed in instructions (the charset of the `instruction` Text space).
INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " ,.;:'-"
_HOME = np.array([0.0, 0.0, 0.25])


class TabletopEnv(PerceptionMixin, gym.Env):
    """A tabletop manipulation task with a mocap-driven parallel-jaw gripper.

    Args:
        task: one of `TASKS` (`Reach`, `Push`, `PickPlace`, `Stack`, `TwoStepPickPlace`).
        cameras: cameras rendered into observations, from `CAMERA_NAMES`; `()` for none.
        image_size: image resolution, an int (square) or `(height, width)`.
        depth: also render metric depth for each enabled camera.
        stereo: add the stereo pair (`stereo_left`, `stereo_right`, baseline
            `STEREO_BASELINE` metres) to the enabled cameras.
        domain: visual domain, `sim` or `real` (see `embodied_vision.sim.domains`).
        domain_kwargs: overrides of the domain's `DomainConfig` fields, e.g.
            `{'seed': 3, 'friction_scale': 0.5}`.
        domain_randomization: `False`, `True` or a dict of `DomainRandomization` fields;
            re-draws the look every episode, on top of the domain.
        shadows: render shadows (the main rendering cost with software OpenGL; turn off for
            faster data collection).
        render_mode: `None` or `rgb_array` (the front camera at `image_size`).
        terminate_on_success: end the episode (terminated=True) once the task is solved.
        task_kwargs: task options (e.g. `{'target_object': 'carrot'}` for PickPlace).
    """

    metadata = {'render_modes': ['rgb_array'], 'render_fps': 20}

    CONTROL_DT = 0.05
    PHYSICS_DT = 0.002
    MAX_DELTA = 0.02
    MAX_LAG = 0.05
    FINGER_MAX = 0.055
    SQUEEZE = 0.015
    RAMP_CHUNKS = 5
    WORKSPACE_LOW = np.array([-0.3, -0.35, 0.005])
    WORKSPACE_HIGH = np.array([0.3, 0.35, 0.4])

    def __init__(self, task: str = 'PickPlace', cameras=('front',), image_size=64,
                 depth: bool = True, stereo: bool = False, domain: str = 'sim',
                 domain_kwargs: dict | None = None, domain_randomization=False,
                 shadows: bool = True, render_mode: str | None = None,
                 terminate_on_success: bool = True, task_kwargs: dict | None = None):
        self.task = make_task(task, **(task_kwargs or {}))
        cameras = CameraRig.check_names(cameras)
        if stereo:
            cameras += tuple(c for c in ('stereo_left', 'stereo_right') if c not in cameras)
        self.cameras = cameras
        if isinstance(image_size, (int, np.integer)):
            image_size = (int(image_size), int(image_size))
        height, width = (int(v) for v in image_size)
        if height < 1 or width < 1:
            raise ValueError(f'image_size must be positive, got {image_size}')
        self.image_size = (height, width)
        self.depth = bool(depth)
        if render_mode not in (None, 'rgb_array'):
            raise ValueError(f'unknown render_mode {render_mode!r}; valid: [None, '
                             f"'rgb_array']")
        self.render_mode = render_mode
        self.terminate_on_success = bool(terminate_on_success)
        self.domain = make_domain(domain, **(domain_kwargs or {}))
        self.randomization = make_randomization(domain_randomization)

        self.model = mujoco.MjModel.from_xml_path(os.path.join(ASSETS_DIR, self.task.scene))
        self.data = mujoco.MjData(self.model)
        self.n_substeps = round(self.CONTROL_DT / self.model.opt.timestep)
        self._mocap = self.model.body('ee_mocap').mocapid[0]
        self._hand_qpos = self.model.joint('hand').qposadr[0]
        self._hand_qvel = self.model.joint('hand').dofadr[0]
        self._ee_site = self.model.site('ee').id
        self._hand_body = self.model.body('hand').id
        self._fingers = [self.model.joint(f'finger_{s}').qposadr[0] for s in ('left', 'right')]
        self._finger_geoms = [self.model.geom(f'finger_{s}').id for s in ('left', 'right')]
        object_geoms = [g for g in range(self.model.ngeom)
                        if self.model.body(self.model.geom_bodyid[g]).name in self.task.objects]
        self._appearance = ModelAppearance(self.model, object_geoms)
        self.rig = CameraRig(self.model, self.data, height, width, shadows=shadows)
        self._expert = None
        self._stage = 0

        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        far = float(np.float32(self.model.vis.map.zfar * self.model.stat.extent))
        self._far = np.float32(far)
        obs_spaces = {}
        for cam in self.cameras:
            obs_spaces[f'{cam}/rgb'] = spaces.Box(0, 255, (height, width, 3), np.uint8)
            if self.depth:
                obs_spaces[f'{cam}/depth'] = spaces.Box(0.0, far, (height, width), np.float32)
        # ee xyz (inside the workspace), unit quaternion, opening width
        obs_spaces['proprio'] = spaces.Box(
            np.array([-1.0] * 7 + [0.0], np.float32), np.array([1.0] * 7 + [0.2], np.float32),
            dtype=np.float32)
        obs_spaces['instruction'] = spaces.Text(max_length=128, min_length=1,
                                                charset=INSTRUCTION_CHARSET)
        self.observation_space = spaces.Dict(obs_spaces)

    # ================================================================== gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a new episode; the same seed gives the same episode."""
        super().reset(seed=seed)
        model, data, rng = self.model, self.data, self.np_random
        mujoco.mj_resetData(model, data)
        self._appearance.apply(self.domain, self.randomization, rng)
        home = _HOME + rng.uniform([-0.03, -0.03, -0.02], [0.03, 0.03, 0.02])
        data.mocap_pos[self._mocap] = home
        data.mocap_quat[self._mocap] = (1.0, 0.0, 0.0, 0.0)
        data.qpos[self._hand_qpos:self._hand_qpos + 3] = home
        data.qpos[self._hand_qpos + 3:self._hand_qpos + 7] = (1.0, 0.0, 0.0, 0.0)
        data.qpos[self._fingers] = self.FINGER_MAX
        data.ctrl[:] = self.FINGER_MAX
        self.task.initialize_episode(self, rng)
        mujoco.mj_forward(model, data)
        mujoco.mj_step(model, data, nstep=2 * self.n_substeps)  # let objects settle
        self._expert = None
        self._stage = self.task.stage(self)
        return self._observation(), self._info()

    def step(self, action):
        """Apply one control step; see the module docstring for the action semantics."""
        a = self._check_action(action)
        data = self.data
        ee = self.ee_pos
        target = data.mocap_pos[self._mocap] + a[:3] * self.MAX_DELTA
        target = np.clip(target, self.WORKSPACE_LOW, self.WORKSPACE_HIGH)
        lag = target - ee
        norm = np.linalg.norm(lag)
        if norm > self.MAX_LAG:
            target = ee + lag * (self.MAX_LAG / norm)
        data.ctrl[:] = self.FINGER_MAX - (a[3] + 1.0) / 2.0 * (self.FINGER_MAX + self.SQUEEZE)
        # Ramp the mocap target over the physics steps: a jump would jerk the welded hand and
        # shake grasped objects loose.
        start = data.mocap_pos[self._mocap].copy()
        chunk = self.n_substeps // self.RAMP_CHUNKS
        for k in range(1, self.RAMP_CHUNKS + 1):
            data.mocap_pos[self._mocap] = start + (target - start) * (k / self.RAMP_CHUNKS)
            n = chunk if k < self.RAMP_CHUNKS else self.n_substeps - chunk * (k - 1)
            mujoco.mj_step(self.model, data, nstep=n)
        self.task.after_step(self)
        self._stage = self.task.stage(self)
        success = self.task.success(self)
        reward = self.task.reward(self)
        terminated = bool(success and self.terminate_on_success)
        return self._observation(), float(reward), terminated, False, self._info(success)

    def render(self):
        """The front camera image at `image_size` (for `render_mode='rgb_array'`)."""
        if self.render_mode != 'rgb_array':
            return None
        rgb, _ = self.rig.render('front', depth=False)
        return rgb

    def close(self):
        """Free the renderers."""
        self.rig.close()
        super().close()

    # ================================================================== helpers
    def _check_action(self, action) -> np.ndarray:
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f'action must be a numeric array of shape (4,), got {action!r}'
                             ) from err
        if a.shape != (4,):
            raise ValueError(f'action must have shape (4,) = [dx, dy, dz, grip], got shape '
                             f'{a.shape}')
        if not np.all(np.isfinite(a)):
            raise ValueError(f'action contains NaN or inf: {a.tolist()}')
        return np.clip(a, -1.0, 1.0)

    def _observation(self) -> dict:
        obs = {}
        for cam in self.cameras:
            rgb, depth = self.rig.render(cam, depth=self.depth)
            obs[f'{cam}/rgb'] = rgb
            if self.depth:
                # Background pixels read the far plane; clip float32 rounding above it.
                obs[f'{cam}/depth'] = np.minimum(depth, self._far)
        add_sensor_noise(obs, self.domain, self.np_random)
        obs['proprio'] = np.concatenate([
            self.ee_pos, self.data.xquat[self._hand_body], [self.gripper_width]
        ]).astype(np.float32)
        obs['instruction'] = self.task.instruction()
        return obs

    def _info(self, success: bool | None = None) -> dict:
        if success is None:
            success = self.task.success(self)
        return {
            'success': bool(success),
            'stage': int(self._stage),
            'stage_text': self.task.templates.text(self._stage),
            'num_stages': self.task.templates.num_stages,
        }

    # ================================================================== accessors
    @property
    def ee_pos(self) -> np.ndarray:
        """End-effector (grasp point) position in the world, metres."""
        return self.data.site_xpos[self._ee_site].copy()

    @property
    def ee_target(self) -> np.ndarray:
        """The commanded end-effector position (the mocap target), metres."""
        return self.data.mocap_pos[self._mocap].copy()

    @property
    def gripper_width(self) -> float:
        """Current opening between the finger pads, metres. Fingers squeezed together
        press past their joint limits (soft constraints: up to ~6 mm); the width then reads
        0, as a real gripper's would."""
        return max(0.0, float(self.data.qpos[self._fingers].sum()))

    @property
    def instruction(self) -> str:
        """The current episode's instruction."""
        return self.task.instruction()

    @property
    def stage(self) -> int:
        """The current stage index."""
        return self._stage

    def body_pos(self, name: str) -> np.ndarray:
        """World position of body `name`."""
        return self.data.body(name).xpos.copy()

    def body_vel(self, name: str) -> np.ndarray:
        """Linear velocity of free body `name` (from its free joint)."""
        return self.data.joint(name).qvel[:3].copy()

    def set_free_pose(self, name: str, pos, yaw: float = 0.0) -> None:
        """Place free body `name` (its free joint has the same name) at `pos` with `yaw`."""
        joint = self.data.joint(name)
        joint.qpos[:3] = pos
        joint.qpos[3:] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        joint.qvel[:] = 0.0

    def set_mocap_pos(self, body: str, pos) -> None:
        """Move mocap body `body` (goal markers)."""
        self.data.mocap_pos[self.model.body(body).mocapid[0]] = pos

    def is_grasped(self, name: str) -> bool:
        """True when both fingers touch body `name`."""
        body = self.model.body(name).id
        ncon = self.data.ncon
        if ncon == 0:
            return False
        g1 = self.data.contact.geom1[:ncon]
        g2 = self.data.contact.geom2[:ncon]
        b1 = self.model.geom_bodyid[g1]
        b2 = self.model.geom_bodyid[g2]
        touching = []
        for finger in self._finger_geoms:
            touching.append(bool(np.any(((g1 == finger) & (b2 == body))
                                        | ((g2 == finger) & (b1 == body)))))
        return all(touching)

    def object_positions(self) -> dict[str, np.ndarray]:
        """Privileged state: world position of every task object."""
        return {name: self.body_pos(name) for name in self.task.objects}

    def camera_params(self, name: str) -> dict:
        """`K` (3x3), `T_world_cam` (4x4 camera-to-world, OpenCV axes), `height`, `width`,
        `fovy` of camera `name` at the current step (see `embodied_vision.sim.cameras`)."""
        return self.rig.params(name)

    @property
    def ee_pose(self) -> np.ndarray:
        """4x4 end-effector-to-world transform (the grasp point, hand orientation)."""
        pose = np.eye(4)
        pose[:3, :3] = self.data.xmat[self._hand_body].reshape(3, 3)
        pose[:3, 3] = self.ee_pos
        return pose

    def wrist_mount(self) -> np.ndarray:
        """Constant 4x4 pose of the wrist camera (OpenCV axes) in the end-effector frame.

        `T_world_wrist = ee_pose @ wrist_mount()`; with the proprio pose recorded at every step
        this gives the moving wrist camera's extrinsics (hand-eye transform).
        """
        def local(pos, quat):
            pose = np.eye(4)
            rot = np.zeros(9)
            mujoco.mju_quat2Mat(rot, quat)
            pose[:3, :3] = rot.reshape(3, 3)
            pose[:3, 3] = pos
            return pose

        cam = self.model.camera('wrist')
        site = self.model.site('ee')
        hand_cam = local(cam.pos, cam.quat) @ np.diag([1.0, -1.0, -1.0, 1.0])
        return np.linalg.inv(local(site.pos, site.quat)) @ hand_cam

    @property
    def stereo_baseline(self) -> float:
        """Baseline of the stereo pair, metres."""
        return STEREO_BASELINE

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state (built lazily per episode)."""
        if self._expert is None:
            self._expert = self.task.make_expert(self)
        return np.asarray(self._expert.act(), dtype=np.float32)

    def get_state(self) -> np.ndarray:
        """The physics state as a flat float64 vector (`mj_getState` with
        `mjSTATE_INTEGRATION`: time, qpos, qvel, actuators, mocap, ...), what robomimic
        datasets store under `states`."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, state, spec)
        return state

    def describe(self) -> dict:
        """JSON-serialisable metadata: task, domain, control, cameras and their parameters."""
        return {
            # robomimic's env metadata (EnvUtils: env_name, type 2 = gym, env_kwargs)
            'env_name': f'embodied_vision/{self.task.name}-v0', 'type': 2,
            'env_kwargs': {'task_options': dict(getattr(self.task, 'option_values', {})),
                           'cameras': list(self.cameras), 'image_size': list(self.image_size),
                           'depth': self.depth},
            'task': self.task.name,
            'task_options': dict(getattr(self.task, 'option_values', {})),
            'domain': asdict(self.domain),
            'domain_randomization': asdict(self.randomization),
            'control_dt': self.CONTROL_DT,
            'max_delta_m': self.MAX_DELTA,
            'finger_max_m': self.FINGER_MAX,
            'image_size': list(self.image_size),
            'depth': self.depth,
            'shadows': self.rig.shadows,
            'cameras': list(self.cameras),
            'camera_params': {c: _jsonable(self.camera_params(c)) for c in self.cameras},
            'T_ee_wrist': self.wrist_mount().tolist(),
            'stereo_baseline_m': STEREO_BASELINE,
            'valid_tasks': sorted(TASKS),
            'valid_cameras': list(CAMERA_NAMES),
        }


def _jsonable(params: dict) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in params.items()}
