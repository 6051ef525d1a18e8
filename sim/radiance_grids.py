"""`embodied-vision grids`: a dataset of radiance grids with labels for NeRF-MAE.

NeRF-MAE (Irshad et al., ECCV 2024, https://arxiv.org/abs/2404.01300) pretrains on radiance
grids in NeRF-RPN's layout; its downstream heads read boxes (NeRF-RPN detection) and
per-voxel classes. Here every scene comes from the tabletop suite:

- scene `k` uses task `tasks[k % len(tasks)]` in domain
  `domains[(k // len(tasks)) % len(domains)]`, so every task appears in every domain; it is
  reset with seed `seed + k` (random layout and hand pose) and, optionally, the scripted
  expert runs a random number of steps (uniform in `[0, max_expert_steps]`) so that the arm
  and the objects move;
- `n_views` posed RGB-D views on a ring around `bbox` (default `WORKSPACE_BBOX`) get the
  domain's sensor noise and are fused by `fuse_radiance_grid` into a grid with `resolution`
  samples along the longest side (ReLU density convention);
- labels come from the MuJoCo geoms (`embodied_vision.sim.grid_labels`): NeRF-RPN AABBs and
  yaw OBBs in voxel units, a class per occupied voxel, world-frame boxes in `meta/`.

Scenes are independent (their own seeds), so the output depends only on the config. A scene
whose grid is (nearly) empty, e.g. a `bbox` with nothing in it, is refused.

    embodied-vision grids n=200 resolution=64 out=grids domains=[sim,real] seed=0

The layout and its reader (`RadianceGridDataset`) are in `embodied_vision.data.radiance_grids`.
"""
from __future__ import annotations

from collections.abc import Sequence
import json
import logging
from pathlib import Path
import sys
import time

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from embodied_vision.configs import compose_config as compose_package_config
from embodied_vision.data.radiance_grids import (
    AABB_DIR,
    CLASSES_FILE,
    FEATURES_DIR,
    FORMAT,
    META_DIR,
    OBB_DIR,
    SEMANTICS_PREFIX,
    SPLIT_SUFFIX,
    VERSION,
)
from embodied_vision.geometry.radiance_grid import fuse_radiance_grid
from embodied_vision.sim.base import EVALUATION_SEED_BASE
from embodied_vision.sim.domains import DOMAINS, add_sensor_noise
from embodied_vision.sim.grid_labels import (
    class_table,
    scene_instances,
    voxel_boxes,
    voxel_semantics,
    world_boxes,
)
from embodied_vision.sim.perception import WORKSPACE_BBOX
from embodied_vision.sim.tasks import TASKS

__all__ = ['compose_config', 'generate', 'main', 'plan_scenes', 'render_scene',
           'split_scenes']

_logger = logging.getLogger(__name__)
DATASET_FILE = 'dataset.json'
_SCENE_STREAM, _SPLIT_STREAM = 0, 1  # independent random streams derived from `seed`


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """Compose `radiance_grids.yaml` with hydra-style `overrides` (`key=value`)."""
    return compose_package_config('radiance_grids', overrides)


def _bbox(cfg: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    if cfg.bbox is None:
        return WORKSPACE_BBOX[0].copy(), WORKSPACE_BBOX[1].copy()
    box = np.asarray(OmegaConf.to_container(cfg.bbox), np.float64)
    if box.shape != (2, 3) or not np.all(np.isfinite(box)) or np.any(box[1] <= box[0]):
        raise ValueError(f'bbox={OmegaConf.to_container(cfg.bbox)} must be [[x, y, z], '
                         f'[x, y, z]] with max > min on every axis')
    return box[0], box[1]


def _tasks(cfg: DictConfig) -> list[str]:
    return list(TASKS) if cfg.tasks is None else [str(t) for t in cfg.tasks]


def _validate(cfg: DictConfig) -> None:
    tasks = _tasks(cfg)
    if not tasks or any(t not in TASKS for t in tasks):
        raise ValueError(f'tasks={tasks} must be a non-empty subset of {sorted(TASKS)} '
                         f'(or null for all)')
    bad = [d for d in cfg.domains if d not in DOMAINS]
    if bad or not len(cfg.domains):
        raise ValueError(f'domains={list(cfg.domains)} must be a non-empty subset of '
                         f'{sorted(DOMAINS)}')
    if int(cfg.n) < 1:
        raise ValueError(f'n must be >= 1, got {cfg.n}')
    if not (0.0 <= float(cfg.val) and 0.0 <= float(cfg.test)
            and float(cfg.val) + float(cfg.test) < 1.0):
        raise ValueError(f'val={cfg.val} and test={cfg.test} must be >= 0 with val + test < 1 '
                         f'(the rest is train)')
    if int(cfg.seed) < 0 or int(cfg.seed) + int(cfg.n) > EVALUATION_SEED_BASE:
        raise ValueError(f'seed={cfg.seed} with n={cfg.n} would reset with seeds up to '
                         f'{int(cfg.seed) + int(cfg.n) - 1}; scene seeds must lie in [0, '
                         f'{EVALUATION_SEED_BASE}): seeds from there up are held out for '
                         f'evaluation')
    name = str(cfg.name)
    if not name or not all(c.isalnum() or c in '_-' for c in name):
        raise ValueError(f'name={name!r} must be non-empty letters, digits, _ or - (it names '
                         f'<name>{SPLIT_SUFFIX} and {SEMANTICS_PREFIX}<name>/)')
    for key in ('resolution', 'n_views', 'voxel_samples'):
        if int(cfg[key]) < 1:
            raise ValueError(f'{key} must be >= 1, got {cfg[key]}')
    if int(cfg.max_expert_steps) < 0:
        raise ValueError(f'max_expert_steps must be >= 0, got {cfg.max_expert_steps}')
    if not 0.0 <= float(cfg.occupied_alpha) < 1.0:
        raise ValueError(f'occupied_alpha must be in [0, 1), got {cfg.occupied_alpha}')
    if not 0.0 <= float(cfg.min_occupancy) <= 1.0:
        raise ValueError(f'min_occupancy must be in [0, 1], got {cfg.min_occupancy}')
    _bbox(cfg)


def plan_scenes(cfg: DictConfig) -> list[dict]:
    """`[{'index', 'name', 'task', 'domain', 'seed'}, ...]`: what each scene shows."""
    tasks, domains = _tasks(cfg), list(cfg.domains)
    scenes = []
    for k in range(int(cfg.n)):
        task, domain = tasks[k % len(tasks)], domains[(k // len(tasks)) % len(domains)]
        scenes.append({'index': k, 'name': f'{task.lower()}_{domain}_{k:05d}', 'task': task,
                       'domain': domain, 'seed': int(cfg.seed) + k})
    return scenes


def split_scenes(names: Sequence[str], val: float, test: float, seed: int) -> dict:
    """Disjoint `{'train', 'val', 'test'}` name lists (sorted) from a seeded shuffle."""
    order = np.random.default_rng([int(seed), _SPLIT_STREAM]).permutation(len(names))
    n_val, n_test = round(val * len(names)), round(test * len(names))
    picked = [str(names[i]) for i in order]
    return {'val': sorted(picked[:n_val]), 'test': sorted(picked[n_val:n_val + n_test]),
            'train': sorted(picked[n_val + n_test:])}


def _make_env(cfg: DictConfig, task: str, domain: str):
    import gymnasium as gym

    from embodied_vision.sim.registration import env_id
    randomization = cfg.domain_randomization
    if OmegaConf.is_config(randomization):
        randomization = OmegaConf.to_container(randomization)
    return gym.make(env_id(task), cameras=(), depth=False, shadows=bool(cfg.shadows),
                    domain=domain, domain_randomization=randomization).unwrapped


def render_scene(env, cfg: DictConfig, scene: dict) -> tuple:
    """Reset, run the expert, render, fuse and label one scene.

    Returns `(grid, labels, meta)`; `labels` is None when `cfg.labels` is false, else a dict
    with `aabb`, `obb` (voxel units) and `semantics`.
    """
    bbox = _bbox(cfg)
    env.reset(seed=scene['seed'])
    rng = np.random.default_rng([int(cfg.seed), _SCENE_STREAM, scene['index']])
    steps = 0
    for _ in range(int(rng.integers(0, int(cfg.max_expert_steps) + 1))):
        _, _, terminated, truncated, _ = env.step(env.expert_action())
        steps += 1
        if terminated or truncated:
            break
    size = cfg.image_size
    size = tuple(size) if OmegaConf.is_list(size) else int(size)
    views = env.radiance_views(int(cfg.n_views), size, distance=float(cfg.view_distance),
                               elevations=tuple(float(e) for e in cfg.elevations), bbox=bbox)
    if cfg.sensor_noise:
        for view in views:
            noisy = {'view/rgb': view['rgb'], 'view/depth': view['depth']}
            add_sensor_noise(noisy, env.domain, rng)
            view['rgb'], view['depth'] = noisy['view/rgb'], noisy['view/depth']
    grid = fuse_radiance_grid(views, *bbox, max_resolution=int(cfg.resolution))
    occupied = int(np.count_nonzero(grid.alpha > float(cfg.occupied_alpha)))
    fraction = occupied / grid.alpha.size
    if fraction < float(cfg.min_occupancy) or occupied == 0:
        raise ValueError(f'scene {scene["name"]}: the grid is empty ({occupied} occupied voxels, '
                         f'{fraction:.3%}; expected at least {float(cfg.min_occupancy):.3%}): '
                         f'the {len(views)} views see nothing inside bbox {bbox[0].tolist()} '
                         f'to {bbox[1].tolist()}')
    meta = {'scene': scene['name'], 'task': scene['task'], 'domain': scene['domain'],
            'reset_seed': scene['seed'], 'expert_steps': steps, 'occupied_voxels': occupied}
    if not cfg.labels:
        return grid, None, meta
    instances = scene_instances(env)
    semantics = voxel_semantics(grid, instances, float(cfg.occupied_alpha),
                                int(cfg.voxel_samples))
    world = [world_boxes(instance) for instance in instances]
    aabb_world = np.array([w[0] for w in world]).reshape(-1, 6)
    obb_world = np.array([w[1] for w in world]).reshape(-1, 7)
    aabb, obb, keep = voxel_boxes(aabb_world, obb_world, grid)
    meta['objects'] = [
        {'name': inst.name, 'class_id': inst.class_id,
         'aabb_world': np.round(aabb_world[i], 6).tolist(),
         'obb_world': np.round(obb_world[i], 6).tolist()}
        for i, inst in enumerate(instances) if keep[i]]
    meta['voxels_per_class'] = {str(c): int(v) for c, v in
                                zip(*np.unique(semantics, return_counts=True))}
    return grid, {'aabb': aabb, 'obb': obb, 'semantics': semantics}, meta


def _layout_dirs(out: Path, cfg: DictConfig) -> list[Path]:
    dirs = [out / FEATURES_DIR, out / META_DIR]
    if cfg.labels:
        dirs += [out / AABB_DIR, out / OBB_DIR, out / f'{SEMANTICS_PREFIX}{cfg.name}']
    return dirs


def _prepare_out(out: Path, cfg: DictConfig) -> None:
    """Refuse to mix with an earlier dataset in `out` unless `overwrite`; then clear it."""
    earlier = sorted((out / FEATURES_DIR).glob('*.npz')) + sorted(out.glob(f'*{SPLIT_SUFFIX}'))
    if earlier and not cfg.overwrite:
        raise ValueError(f'{out} already holds a radiance-grid dataset ({len(earlier)} grid/'
                         f'split files); pass overwrite=true to replace it or choose another '
                         f'out=')
    folders = [out / FEATURES_DIR, out / AABB_DIR, out / OBB_DIR, out / META_DIR,
               *out.glob(f'{SEMANTICS_PREFIX}*')]
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.suffix in ('.npz', '.npy', '.json') and path.is_file():
                path.unlink()
        if folder.name.startswith(SEMANTICS_PREFIX) and not any(folder.iterdir()):
            folder.rmdir()
    for path in [*out.glob(f'*{SPLIT_SUFFIX}'), out / CLASSES_FILE, out / DATASET_FILE]:
        path.unlink(missing_ok=True)
    for folder in _layout_dirs(out, cfg):
        folder.mkdir(parents=True, exist_ok=True)


def _write_scene(out: Path, cfg: DictConfig, name: str, grid, labels, meta) -> None:
    grid.save_npz(out / FEATURES_DIR / f'{name}.npz', compressed=bool(cfg.compressed))
    (out / META_DIR / f'{name}.json').write_text(json.dumps(meta, indent=1) + '\n')
    if labels is None:
        return
    np.save(out / AABB_DIR / f'{name}.npy', labels['aabb'])
    np.save(out / OBB_DIR / f'{name}.npy', labels['obb'])
    np.save(out / f'{SEMANTICS_PREFIX}{cfg.name}' / f'{name}.npy', labels['semantics'])


def generate(cfg: DictConfig) -> dict:
    """Render, label and write `cfg.n` scenes and the split; returns a summary."""
    _validate(cfg)
    start = time.perf_counter()
    out = Path(cfg.out)
    _prepare_out(out, cfg)
    scenes = plan_scenes(cfg)
    groups: dict[tuple, list] = {}
    for scene in scenes:  # one env at a time: every scene of a (task, domain) in a row
        groups.setdefault((scene['task'], scene['domain']), []).append(scene)
    resolution, boxes = None, 0
    bar = tqdm(total=len(scenes), desc='radiance grids', unit='scene', disable=not cfg.progress)
    try:
        for (task, domain), members in groups.items():
            env = _make_env(cfg, task, domain)
            try:
                for scene in members:
                    grid, labels, meta = render_scene(env, cfg, scene)
                    _write_scene(out, cfg, scene['name'], grid, labels, meta)
                    resolution = grid.resolution.tolist()
                    boxes += 0 if labels is None else len(labels['aabb'])
                    bar.update(1)
            finally:
                env.close()
    finally:
        bar.close()
    split = split_scenes([s['name'] for s in scenes], float(cfg.val), float(cfg.test),
                         int(cfg.seed))
    np.savez(out / f'{cfg.name}{SPLIT_SUFFIX}',
             **{f'{k}_scenes': np.array(v, dtype=str) for k, v in split.items()})
    if cfg.labels:
        (out / CLASSES_FILE).write_text(json.dumps({'classes': class_table()}, indent=1) + '\n')
    lo, hi = _bbox(cfg)
    seconds = time.perf_counter() - start
    summary = {'scenes': len(scenes), 'out': str(out), 'resolution': resolution,
               'splits': {k: len(v) for k, v in split.items()}, 'boxes': boxes,
               'seconds': round(seconds, 2)}
    info = {'format': FORMAT, 'version': VERSION, 'name': str(cfg.name), **summary,
            'bbox_min': lo.tolist(), 'bbox_max': hi.tolist(), 'density_activation': 'relu',
            'config': OmegaConf.to_container(cfg)}
    (out / DATASET_FILE).write_text(json.dumps(info, indent=1) + '\n')
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point: `argv` are hydra overrides. Returns 0 when every scene was written."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        summary = generate(compose_config(argv))
    except ValueError as err:
        _logger.error('%s', err)
        sys.stderr.write(f'error: {err}\n')
        return 2
    splits = summary['splits']
    sys.stdout.write(f"wrote {summary['scenes']} radiance grids {summary['resolution']} "
                     f"({summary['boxes']} boxes; train/val/test {splits['train']}/"
                     f"{splits['val']}/{splits['test']}) to {summary['out']} in "
                     f"{summary['seconds']:.1f} s\n")
    return 0


if __name__ == '__main__':
    sys.exit(main())
