"""Visual domains (`sim`, `real`) and composable domain randomisation.

The `sim` domain is the canonical look of the MJCF assets. The `real` domain is a fixed
target domain that differs from `sim` the way a real camera does; it is a stand-in for the
real robot in sim2real experiments (Lang4Sim2Real) and is drawn once from `domain_seed`:

- textures of the table and floor swapped from the texture bank in `common/materials.xml`,
  surface colours tinted, object colours shifted in brightness/saturation (a red cube stays
  red, so the language labels remain true);
- key and fill lights moved, tinted and rescaled;
- every fixed camera offset by up to `camera_pos` metres and `camera_rot` radians, plus a
  small per-episode jitter (`episode_camera_pos`, `episode_camera_rot`);
- sensor noise: Gaussian RGB noise, per-image gain, Gaussian depth noise growing with depth
  squared and random depth drop-outs (0 m = invalid), all drawn from the env's seeded RNG;
- optionally changed dynamics: `friction_scale` multiplies the sliding friction of every
  geom, `damping_scale` multiplies (and `damping_add` adds to) every joint damping.

`DomainRandomization` is independent of the domain and composes with either: when enabled it
re-draws textures, colours, lights and camera poses at every reset from the episode RNG
(training-time randomisation in `sim`).

Everything is applied to the compiled `MjModel` in place from stored nominal values, so a
reset never accumulates changes and the same seed gives the same look.
"""
from dataclasses import dataclass, fields, replace
import logging

import mujoco
import numpy as np

__all__ = [
    'DOMAINS',
    'DomainConfig',
    'DomainRandomization',
    'ModelAppearance',
    'make_domain',
    'add_sensor_noise',
    'make_randomization',
]

_logger = logging.getLogger(__name__)

_SURFACE_MATERIALS = ('table', 'floor')
_TEXTURE_BANK = tuple(f'tex_var{i}' for i in range(6))
_JITTERED_CAMERAS = ('front', 'side', 'stereo_left', 'stereo_right')


@dataclass(frozen=True)
class DomainConfig:
    """Settings of one visual domain.

    Args:
        name: `sim` or `real`.
        seed: seed of the fixed look of the domain (textures, colours, lights, camera offsets).
        textures: swap surface textures from the bank.
        surface_tint: max per-channel tint of table/floor colours (0 = none).
        object_tint: max brightness/saturation change of object colours (0 = none).
        light_jitter: max relative change of light intensity and position (metres).
        camera_pos: max fixed offset of each fixed camera position in metres.
        camera_rot: max fixed rotation of each fixed camera in radians.
        episode_camera_pos: max per-episode extra camera offset in metres.
        episode_camera_rot: max per-episode extra camera rotation in radians.
        rgb_noise: std of additive Gaussian RGB noise in 0-255 units.
        rgb_gain: max per-image multiplicative gain change (0.05 = +-5 %).
        depth_noise: std of depth noise in metres at 1 m (scales with depth squared).
        depth_dropout: fraction of depth pixels set to 0 (invalid).
        friction_scale: multiplies the sliding friction of every geom.
        damping_scale: multiplies every joint damping.
        damping_add: added to the damping of object (free) joints, in N s/m.
    """

    name: str = 'sim'
    seed: int = 0
    # appearance
    textures: bool = False
    surface_tint: float = 0.0
    object_tint: float = 0.0
    light_jitter: float = 0.0
    # cameras
    camera_pos: float = 0.0
    camera_rot: float = 0.0
    episode_camera_pos: float = 0.0
    episode_camera_rot: float = 0.0
    # sensor
    rgb_noise: float = 0.0
    rgb_gain: float = 0.0
    depth_noise: float = 0.0
    depth_dropout: float = 0.0
    # dynamics
    friction_scale: float = 1.0
    damping_scale: float = 1.0
    damping_add: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and (not np.isfinite(value) or value < 0):
                raise ValueError(f'DomainConfig.{f.name} must be finite and >= 0, got {value}')
        if not 0.0 <= self.depth_dropout < 1.0:
            raise ValueError(f'DomainConfig.depth_dropout must be in [0, 1), got '
                             f'{self.depth_dropout}')

    @property
    def has_sensor_noise(self) -> bool:
        """True when observations get noise added."""
        return bool(self.rgb_noise or self.rgb_gain or self.depth_noise or self.depth_dropout)


DOMAINS: dict[str, DomainConfig] = {
    'sim': DomainConfig(name='sim'),
    'real': DomainConfig(
        name='real', textures=True, surface_tint=0.15, object_tint=0.15, light_jitter=0.3,
        camera_pos=0.015, camera_rot=0.02, episode_camera_pos=0.004, episode_camera_rot=0.006,
        rgb_noise=3.0, rgb_gain=0.06, depth_noise=0.002, depth_dropout=0.005),
}


def make_domain(domain: 'str | DomainConfig', **overrides) -> DomainConfig:
    """Return the `DomainConfig` named `domain`, with `overrides` applied."""
    if isinstance(domain, DomainConfig):
        return replace(domain, **overrides) if overrides else domain
    if domain not in DOMAINS:
        raise ValueError(f'unknown domain {domain!r}; valid domains: {sorted(DOMAINS)}')
    valid = {f.name for f in fields(DomainConfig)} - {'name'}
    bad = sorted(set(overrides) - valid)
    if bad:
        raise ValueError(f'unknown domain option(s) {bad}; valid: {sorted(valid)}')
    return replace(DOMAINS[domain], **overrides)


@dataclass(frozen=True)
class DomainRandomization:
    """Per-episode domain randomisation, composable with any domain.

    Args:
        enabled: master switch.
        textures: re-draw surface textures from the bank every episode.
        surface_tint: max per-channel tint of surface colours.
        object_tint: max brightness/saturation change of object colours.
        light_jitter: max relative light intensity / position change.
        camera_pos: max per-episode camera offset in metres.
        camera_rot: max per-episode camera rotation in radians.
    """

    enabled: bool = False
    textures: bool = True
    surface_tint: float = 0.3
    object_tint: float = 0.25
    light_jitter: float = 0.5
    camera_pos: float = 0.02
    camera_rot: float = 0.03


def make_randomization(option: 'bool | dict | DomainRandomization | None') -> DomainRandomization:
    """Build a `DomainRandomization` from `True/False`, a dict of fields or an instance."""
    if option is None or option is False:
        return DomainRandomization(enabled=False)
    if option is True:
        return DomainRandomization(enabled=True)
    if isinstance(option, DomainRandomization):
        return option
    if isinstance(option, dict):
        valid = {f.name for f in fields(DomainRandomization)}
        bad = sorted(set(option) - valid)
        if bad:
            raise ValueError(f'unknown domain_randomization option(s) {bad}; '
                             f'valid: {sorted(valid)}')
        return DomainRandomization(**{'enabled': True, **option})
    raise TypeError(f'domain_randomization must be bool, dict or DomainRandomization, '
                    f'got {type(option).__name__}')


def small_rotation(rng: np.random.Generator, max_angle: float) -> np.ndarray:
    """A random unit quaternion (w, x, y, z) rotating by at most `max_angle` radians."""
    if max_angle <= 0:
        return np.array([1.0, 0.0, 0.0, 0.0])
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis) + 1e-12
    angle = rng.uniform(-max_angle, max_angle)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(4)
    mujoco.mju_mulQuat(out, a, b)
    return out


def _tint_object(rgba: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Change brightness and saturation of a colour without changing its hue."""
    rgb = rgba[:3]
    grey = rgb.mean()
    saturation = 1.0 + rng.uniform(-amount, amount)
    brightness = 1.0 + rng.uniform(-amount, amount)
    out = np.clip((grey + (rgb - grey) * saturation) * brightness, 0.0, 1.0)
    return np.concatenate([out, rgba[3:]])


class ModelAppearance:
    """Applies domains and randomisation to an `MjModel` from stored nominal values.

    Args:
        model: the compiled model; modified in place.
        object_geoms: ids of geoms whose colours count as object colours.
    """

    def __init__(self, model: mujoco.MjModel, object_geoms: list[int]):
        self.model = model
        self.object_geoms = np.asarray(object_geoms, dtype=int)
        self._nominal = {
            'geom_rgba': model.geom_rgba.copy(),
            'mat_rgba': model.mat_rgba.copy(),
            'mat_texid': model.mat_texid.copy(),
            'light_pos': model.light_pos.copy(),
            'light_dir': model.light_dir.copy(),
            'light_diffuse': model.light_diffuse.copy(),
            'cam_pos': model.cam_pos.copy(),
            'cam_quat': model.cam_quat.copy(),
            'geom_friction': model.geom_friction.copy(),
            'dof_damping': model.dof_damping.copy(),
        }
        self._materials = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, m)
                           for m in _SURFACE_MATERIALS]
        self._bank = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_TEXTURE, t)
                      for t in _TEXTURE_BANK]
        self._cameras = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, c)
                         for c in _JITTERED_CAMERAS]
        self._free_dofs = [model.jnt_dofadr[j] + k for j in range(model.njnt)
                           if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE
                           and model.body(model.jnt_bodyid[j]).name != 'hand'
                           for k in range(6)]

    def restore(self) -> None:
        """Reset every managed model field to its nominal value."""
        for key, value in self._nominal.items():
            getattr(self.model, key)[:] = value

    def apply(self, domain: DomainConfig, randomization: DomainRandomization,
              episode_rng: np.random.Generator) -> None:
        """Restore nominal values, then apply the domain's fixed look and per-episode changes."""
        self.restore()
        fixed_rng = np.random.default_rng([domain.seed, 7919])
        self._apply_look(fixed_rng, domain.textures, domain.surface_tint, domain.object_tint,
                         domain.light_jitter, domain.camera_pos, domain.camera_rot)
        self._jitter_cameras(episode_rng, domain.episode_camera_pos, domain.episode_camera_rot)
        if randomization.enabled:
            self._apply_look(episode_rng, randomization.textures, randomization.surface_tint,
                             randomization.object_tint, randomization.light_jitter,
                             randomization.camera_pos, randomization.camera_rot)
        self._apply_dynamics(domain)

    def _apply_look(self, rng, textures, surface_tint, object_tint, light_jitter, cam_pos,
                    cam_rot) -> None:
        model = self.model
        bank = [t for t in self._bank if t >= 0]
        for mat in self._materials:
            if mat < 0:
                continue
            if textures and bank:
                model.mat_texid[mat, mujoco.mjtTextureRole.mjTEXROLE_RGB] = bank[
                    rng.integers(len(bank))]
            if surface_tint:
                tint = 1.0 + rng.uniform(-surface_tint, surface_tint, size=3)
                model.mat_rgba[mat, :3] = np.clip(model.mat_rgba[mat, :3] * tint, 0.0, 1.0)
        if object_tint:
            for g in self.object_geoms:
                model.geom_rgba[g] = _tint_object(model.geom_rgba[g], rng, object_tint)
        if light_jitter:
            for i in range(model.nlight):
                scale = 1.0 + rng.uniform(-light_jitter, light_jitter)
                tint = 1.0 + rng.uniform(-0.3 * light_jitter, 0.3 * light_jitter, size=3)
                model.light_diffuse[i] = np.clip(model.light_diffuse[i] * scale * tint, 0, 1)
                model.light_pos[i] += rng.uniform(-light_jitter, light_jitter, size=3)
                direction = model.light_dir[i] + rng.uniform(-0.3, 0.3, size=3) * light_jitter
                model.light_dir[i] = direction / np.linalg.norm(direction)
        self._jitter_cameras(rng, cam_pos, cam_rot)

    def _jitter_cameras(self, rng, max_pos: float, max_rot: float) -> None:
        if not max_pos and not max_rot:
            return
        # The stereo pair moves rigidly, so its baseline stays known.
        stereo_offset = rng.uniform(-max_pos, max_pos, size=3)
        stereo_rot = small_rotation(rng, max_rot)
        for name, cam in zip(_JITTERED_CAMERAS, self._cameras):
            if cam < 0:
                continue
            if name.startswith('stereo'):
                offset, rot = stereo_offset, stereo_rot
            else:
                offset, rot = rng.uniform(-max_pos, max_pos, size=3), small_rotation(rng,
                                                                                     max_rot)
            self.model.cam_pos[cam] += offset
            self.model.cam_quat[cam] = _quat_mul(rot, self.model.cam_quat[cam])

    def _apply_dynamics(self, domain: DomainConfig) -> None:
        if domain.friction_scale != 1.0:
            self.model.geom_friction[:, 0] *= domain.friction_scale
        if domain.damping_scale != 1.0:
            self.model.dof_damping[:] *= domain.damping_scale
        if domain.damping_add:
            self.model.dof_damping[self._free_dofs] += domain.damping_add


def add_sensor_noise(obs: dict, domain: DomainConfig, rng: np.random.Generator) -> None:
    """Add the domain's sensor noise to the rgb/depth entries of `obs`, in place."""
    if not domain.has_sensor_noise:
        return
    for key, value in obs.items():
        if key.endswith('/rgb'):
            img = value.astype(np.float32)
            if domain.rgb_gain:
                img *= 1.0 + rng.uniform(-domain.rgb_gain, domain.rgb_gain, size=3)
            if domain.rgb_noise:
                img += rng.normal(0.0, domain.rgb_noise, size=img.shape).astype(np.float32)
            obs[key] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        elif key.endswith('/depth'):
            depth = value
            if domain.depth_noise:
                depth = depth + (rng.normal(0.0, domain.depth_noise, size=depth.shape)
                                 * depth * depth).astype(np.float32)
            if domain.depth_dropout:
                depth = np.where(rng.random(depth.shape) < domain.depth_dropout, 0.0, depth)
            obs[key] = np.clip(depth, 0.0, value.max()).astype(np.float32)
