"""`embodied-vision view-pairs`: render overlapping view pairs for CroCo pretraining.

CroCo (Weinzaepfel et al., NeurIPS 2022, https://arxiv.org/abs/2210.10716) and CroCo v2
(https://arxiv.org/abs/2211.10408) pretrain on pairs of views of one static scene that
overlap enough for view 2 to help complete a 90 %-masked view 1. Here the scenes come from the
tabletop suite:

- scenes: `reset(seed)` of the task (object layout, hand pose), in the `sim` and/or `real`
  domain, optionally with per-episode domain randomisation, optionally after a random number
  of scripted-expert steps (the arm and objects move);
- cameras: each pair draws two cameras from `camera_pairs` (e.g. front/side, or the same
  camera twice) and perturbs each one independently around its current pose: a position offset
  uniform in a ball of radius `camera_pos` metres and a rotation by up to `camera_rot` radians
  about a random axis through the camera centre. The perturbation is written to the compiled
  model's `cam_pos`/`cam_quat` for the render and restored right after, so the env behaves
  exactly as before (the next reset restores nominal values anyway);
- overlap filter (`covisibility`): the fraction of valid view-1 pixels whose back-projected 3D
  point (depth + intrinsics + extrinsics, `embodied_vision.geometry`) projects inside view 2
  in front of it with a depth consistent with view 2's depth there (not occluded), and the
  same from view 2 to view 1; the pair's overlap is the smaller of the two, as upstream's
  symmetric covisibility. A pair is kept when it lies in `[min_overlap, max_overlap]` (the
  upper bound drops near-identical views).

Sensor noise of the `real` domain is added to the RGB; the stored depth is the clean metric
depth used by the filter (ground truth for downstream depth heads).

    embodied-vision view-pairs n=500 size=64 out=pairs.hdf5 domains=[sim,real] seed=0

The file layout and its reader (`read_pairs`) are in `embodied_vision.data.view_pairs`.
"""
# ruff: noqa: N803
from __future__ import annotations

from collections.abc import Sequence
import json
import logging
import sys

import h5py
import mujoco
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from embodied_vision.configs import compose_config as compose_package_config
from embodied_vision.data.view_pairs import FORMAT, STRING_DTYPE, VERSION
from embodied_vision.geometry import depth_to_points, project_points
from embodied_vision.sim.domains import small_rotation

__all__ = ['PairWriter', 'compose_config', 'covisibility', 'main', 'perturbed_camera',
           'render_view', 'render_pairs', 'view_overlap']

_logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------- overlap
def view_overlap(depth1: np.ndarray, K1: np.ndarray, T1: np.ndarray, depth2: np.ndarray,
                 K2: np.ndarray, T2: np.ndarray, *, stride: int = 1, rel_tol: float = 0.03,
                 abs_tol: float = 0.01, max_depth: float = np.inf) -> float:
    """Fraction of valid view-1 pixels that are visible in view 2.

    A view-1 pixel counts when its 3D point (from `depth1`) projects inside view 2, in front
    of the camera, and its depth there agrees with `depth2` at the nearest pixel within
    `abs_tol + rel_tol * depth` metres (so points hidden behind something else do not count).
    Depths that are 0, non-finite or above `max_depth` (background) are invalid in both views.
    Returns 0 when view 1 has no valid pixel.
    """
    points, _ = depth_to_points(depth1, K1, T_world_cam=T1, stride=stride, max_depth=max_depth)
    total = points.shape[0]
    if total == 0:
        return 0.0
    uv, z = project_points(points, K2, T2)
    h, w = depth2.shape
    with np.errstate(invalid='ignore'):
        u = np.rint(uv[:, 0])
        v = np.rint(uv[:, 1])
        inside = (z > 0) & np.isfinite(u) & np.isfinite(v) & (u >= 0) & (u <= w - 1) \
            & (v >= 0) & (v <= h - 1)
    observed = depth2[v[inside].astype(int), u[inside].astype(int)].astype(np.float64)
    expected = z[inside]
    valid = np.isfinite(observed) & (observed > 0) & (observed <= max_depth)
    agree = valid & (np.abs(observed - expected) <= abs_tol + rel_tol * expected)
    return float(agree.sum()) / total


def covisibility(view1: dict, view2: dict, **kwargs) -> float:
    """Symmetric overlap of two views (dicts with `depth`, `K`, `T_world_cam`): the minimum
    of `view_overlap` in both directions. `kwargs` go to `view_overlap`."""
    a = view_overlap(view1['depth'], view1['K'], view1['T_world_cam'], view2['depth'],
                     view2['K'], view2['T_world_cam'], **kwargs)
    if a == 0.0:
        return 0.0
    b = view_overlap(view2['depth'], view2['K'], view2['T_world_cam'], view1['depth'],
                     view1['K'], view1['T_world_cam'], **kwargs)
    return min(a, b)


# ------------------------------------------------------------------------- cameras
def _random_offset(rng: np.random.Generator, radius: float) -> np.ndarray:
    """A point uniform in the ball of `radius`."""
    if radius <= 0:
        return np.zeros(3)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) + 1e-12
    return direction * radius * rng.uniform() ** (1.0 / 3.0)


class perturbed_camera:  # noqa: N801  (used as a context manager, like a function)
    """Context manager: camera `name` of `env` moved by `offset` (metres, in its parent body's
    frame) and rotated by quaternion `rotation` (about its own centre, in its own frame);
    restored on exit.

    Only `model.cam_pos`/`cam_quat` of that camera change, and the derived camera poses in
    `data` are recomputed with `mj_kinematics` + `mj_camlight` (no physics step).
    """

    def __init__(self, env, name: str, offset=(0.0, 0.0, 0.0), rotation=(1.0, 0.0, 0.0, 0.0)):
        self.env = env
        self.cam = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if self.cam < 0:
            raise ValueError(f'no camera {name!r} in the scene')
        self.offset = np.asarray(offset, dtype=np.float64)
        self.rotation = np.asarray(rotation, dtype=np.float64)

    def _refresh(self) -> None:
        mujoco.mj_kinematics(self.env.model, self.env.data)
        mujoco.mj_camlight(self.env.model, self.env.data)

    def __enter__(self):
        model = self.env.model
        self._pos = model.cam_pos[self.cam].copy()
        self._quat = model.cam_quat[self.cam].copy()
        quat = np.empty(4)
        mujoco.mju_mulQuat(quat, self._quat, self.rotation)
        model.cam_pos[self.cam] = self._pos + self.offset
        model.cam_quat[self.cam] = quat / np.linalg.norm(quat)
        self._refresh()
        return self

    def __exit__(self, *exc):
        self.env.model.cam_pos[self.cam] = self._pos
        self.env.model.cam_quat[self.cam] = self._quat
        self._refresh()
        return False


def render_view(env, name: str, offset=(0.0, 0.0, 0.0), rotation=(1.0, 0.0, 0.0, 0.0)
                ) -> dict:
    """Render camera `name` of the (unwrapped) env with a pose perturbation.

    Returns `{'rgb', 'depth', 'K', 'T_world_cam', 'camera'}` (clean depth, no sensor noise).
    """
    with perturbed_camera(env, name, offset, rotation):
        rgb, depth = env.rig.render(name, depth=True)
        params = env.camera_params(name)
    return {'rgb': rgb, 'depth': depth, 'K': params['K'], 'T_world_cam': params['T_world_cam'],
            'camera': name}


# ------------------------------------------------------------------------- writing
class PairWriter:
    """Append view pairs to an HDF5 file (layout: `embodied_vision.data.view_pairs`)."""

    def __init__(self, path: str, size: tuple[int, int], save_depth: bool = True,
                 compression: str | None = 'lzf', attrs: dict | None = None):
        self.file = h5py.File(path, 'w')
        self.file.attrs['format'] = FORMAT
        self.file.attrs['version'] = VERSION
        for key, value in (attrs or {}).items():
            self.file.attrs[key] = value
        h, w = size
        group = self.file.create_group('pairs')
        image_kw = {'compression': compression} if compression else {}
        self.sets = {}

        def make(key, shape, dtype, image=False):
            extra = {'chunks': (1, *shape), **image_kw} if image else {'chunks': True}
            self.sets[key] = group.create_dataset(key, (0, *shape), dtype,
                                                  maxshape=(None, *shape), **extra)

        for i in (1, 2):
            make(f'rgb{i}', (h, w, 3), np.uint8, image=True)
            if save_depth:
                make(f'depth{i}', (h, w), np.float32, image=True)
            make(f'K{i}', (3, 3), np.float64)
            make(f'T{i}', (4, 4), np.float64)
            make(f'camera{i}', (), STRING_DTYPE)
        for key, dtype in (('overlap', np.float32), ('seed', np.int64), ('domain', np.int8)):
            make(key, (), dtype)
        self.count = 0

    def add(self, view1: dict, view2: dict, overlap: float, seed: int, domain: int) -> None:
        values = {'overlap': overlap, 'seed': seed, 'domain': domain}
        for i, view in ((1, view1), (2, view2)):
            values.update({f'rgb{i}': view['rgb'], f'depth{i}': view['depth'],
                           f'K{i}': view['K'], f'T{i}': view['T_world_cam'],
                           f'camera{i}': view['camera']})
        for key, dataset in self.sets.items():
            dataset.resize(self.count + 1, axis=0)
            dataset[self.count] = values[key]
        self.count += 1

    def close(self) -> None:
        self.file.attrs['accepted'] = self.count
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ------------------------------------------------------------------------- driver
def compose_config(overrides: Sequence[str]) -> DictConfig:
    """Compose `view_pairs.yaml` with hydra-style `overrides` (`key=value`)."""
    return compose_package_config('view_pairs', overrides)


def _validate(cfg: DictConfig) -> None:
    from embodied_vision.sim.cameras import CAMERA_NAMES
    from embodied_vision.sim.domains import DOMAINS
    from embodied_vision.sim.tasks import TASKS
    if cfg.task not in TASKS:
        raise ValueError(f'unknown task {cfg.task!r}; valid tasks: {sorted(TASKS)}')
    bad = [d for d in cfg.domains if d not in DOMAINS]
    if bad or not len(cfg.domains):
        raise ValueError(f'domains={list(cfg.domains)} must be a non-empty subset of '
                         f'{sorted(DOMAINS)}')
    if not len(cfg.camera_pairs):
        raise ValueError('camera_pairs is empty')
    for pair in cfg.camera_pairs:
        if len(pair) != 2 or any(c not in CAMERA_NAMES for c in pair):
            raise ValueError(f'camera pair {list(pair)} must name two of {list(CAMERA_NAMES)}')
    if not 0.0 <= float(cfg.min_overlap) <= float(cfg.max_overlap) <= 1.0:
        raise ValueError(f'need 0 <= min_overlap <= max_overlap <= 1, got '
                         f'{cfg.min_overlap}, {cfg.max_overlap}')
    if int(cfg.n) < 1:
        raise ValueError(f'n must be >= 1, got {cfg.n}')
    if int(cfg.pairs_per_scene) < 1:
        raise ValueError(f'pairs_per_scene must be >= 1, got {cfg.pairs_per_scene}')


def _make_env(cfg: DictConfig, domain: str):
    import gymnasium as gym

    import embodied_vision.sim  # noqa: F401  (registers the ids)
    from embodied_vision.sim.registration import env_id
    size = cfg.size
    size = tuple(size) if OmegaConf.is_list(size) else int(size)
    randomization = cfg.domain_randomization
    if OmegaConf.is_config(randomization):
        randomization = OmegaConf.to_container(randomization)
    # No observation cameras: views are rendered directly with the perturbed poses.
    return gym.make(env_id(cfg.task), cameras=(), image_size=size, depth=False,
                    shadows=bool(cfg.shadows), domain=domain,
                    domain_randomization=randomization,
                    task_kwargs=OmegaConf.to_container(cfg.task_kwargs))


def render_pairs(cfg: DictConfig) -> dict:
    """Render and write `cfg.n` accepted pairs; returns a summary (pairs, attempts, out)."""
    from embodied_vision.sim.domains import add_sensor_noise
    _validate(cfg)
    n, seed = int(cfg.n), int(cfg.seed)
    max_attempts = int(cfg.max_attempts) if cfg.max_attempts is not None else 20 * n
    domains = list(cfg.domains)
    envs = {d: _make_env(cfg, d) for d in domains}
    pairs = [tuple(p) for p in cfg.camera_pairs]
    rng = np.random.default_rng([seed, 2210])
    overlap_kw = {'stride': int(cfg.overlap_stride), 'rel_tol': float(cfg.depth_rel_tol),
                  'abs_tol': float(cfg.depth_abs_tol)}
    attempts = scene = 0
    rejected_low = rejected_high = 0
    size = None
    bar = tqdm(total=n, desc=f'view pairs {cfg.task}', unit='pair', disable=not cfg.progress)
    writer = None
    try:
        while (writer is None or writer.count < n) and attempts < max_attempts:
            domain_index = scene % len(domains)
            env = envs[domains[domain_index]].unwrapped
            scene_seed = seed + scene
            scene += 1
            env.reset(seed=scene_seed)
            for _ in range(int(rng.integers(0, int(cfg.max_expert_steps) + 1))):
                _, _, terminated, truncated, _ = env.step(env.expert_action())
                if terminated or truncated:
                    break
            far = 0.99 * float(env._far) if cfg.background_invalid else np.inf
            for _ in range(int(cfg.pairs_per_scene)):
                if writer is not None and writer.count >= n or attempts >= max_attempts:
                    break
                attempts += 1
                names = pairs[int(rng.integers(len(pairs)))]
                views = [render_view(env, name, _random_offset(rng, float(cfg.camera_pos)),
                                     small_rotation(rng, float(cfg.camera_rot)))
                         for name in names]
                overlap = covisibility(*views, max_depth=far, **overlap_kw)
                if overlap < float(cfg.min_overlap):
                    rejected_low += 1
                    continue
                if overlap > float(cfg.max_overlap):
                    rejected_high += 1
                    continue
                for view in views:
                    view['depth'] = np.where(view['depth'] < far, view['depth'], 0.0
                                             ).astype(np.float32)
                    noisy = {'x/rgb': view['rgb']}
                    add_sensor_noise(noisy, env.domain, env.np_random)
                    view['rgb'] = noisy['x/rgb']
                if writer is None:
                    size = views[0]['rgb'].shape[:2]
                    attrs = {'config': json.dumps(OmegaConf.to_container(cfg)),
                             'domains': json.dumps(domains)}
                    writer = PairWriter(cfg.out, size, save_depth=bool(cfg.save_depth),
                                        compression=cfg.compression, attrs=attrs)
                writer.add(*views, overlap=overlap, seed=scene_seed, domain=domain_index)
                bar.update(1)
    finally:
        bar.close()
        for env in envs.values():
            env.close()
        written = writer.count if writer is not None else 0
        if writer is not None:
            writer.file.attrs['attempts'] = attempts
            writer.close()
    if written < n:
        _logger.warning('wrote %d of %d pairs in %d attempts (%d below min_overlap, %d above '
                        'max_overlap)', written, n, attempts, rejected_low, rejected_high)
    return {'pairs': written, 'attempts': attempts, 'scenes': scene,
            'rejected_low': rejected_low, 'rejected_high': rejected_high, 'out': cfg.out,
            'size': size}


def main(argv: list[str] | None = None) -> int:
    """Entry point: `argv` are hydra overrides. Returns 0 when all `n` pairs were written."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        cfg = compose_config(argv)
        summary = render_pairs(cfg)
    except ValueError as err:
        _logger.error('%s', err)
        sys.stderr.write(f'error: {err}\n')
        return 2
    sys.stdout.write(f"wrote {summary['pairs']} view pairs to {summary['out']} "
                     f"({summary['attempts']} attempts over {summary['scenes']} scenes; "
                     f"{summary['rejected_low']} below min_overlap, "
                     f"{summary['rejected_high']} above max_overlap)\n")
    return 0 if summary['pairs'] >= int(cfg.n) else 1


if __name__ == '__main__':
    sys.exit(main())
