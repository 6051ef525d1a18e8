"""`embodied-vision shapes`: procedural object point clouds in ModelNet40 / ScanObjectNN files.

A CPU-sized stand-in for the datasets that point-cloud pretraining is evaluated on (I2P-MAE,
Point-M2AE: linear SVM on frozen features, fine-tuning). Every instance comes from a
category generator of `embodied_vision.sim.shape_categories` and yields:

- a **full cloud** (ModelNet-like, `embodied_vision.sim.shape_clouds`): `points` samples
  uniform over the surface of the union of its primitives (points inside another part are
  dropped), turned from MuJoCo's z-up to the y-up convention of ShapeNet / ModelNet /
  ScanObjectNN (-90 degrees about x: `(x, y, z) -> (x, z, -y)`, so the front stays +x),
  centred on the mean and scaled to max norm 1 (PointNet's `pc_normalize`), written to
  `<out>/modelnet40_ply_hdf5_2048/`;
- with `partial=true`, a **partial scan** (ScanObjectNN OBJ_BG-like) of the same instance,
  rendered in a MuJoCo scene with floor and neighbouring objects
  (`embodied_vision.sim.shape_scans`), written to `<out>/main_split/`.

Instance `i` of a category in a split is drawn from `np.random.default_rng([seed, stream,
split, category, i])`, with `category` its index in the whole suite, so a category yields the
same instances whatever `categories` subset is chosen; the clouds of each split are shuffled
with a seeded permutation (the ModelNet40 files are shuffled too). The output depends only
on the config, which `dataset.json` records.

    embodied-vision shapes n_per_class=80 n_test_per_class=20 out=shapes partial=true seed=0

The layouts and their reader (`PointCloudDataset`) are in `embodied_vision.data.point_clouds`.
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
from embodied_vision.data.point_clouds import (
    MODELNET40_DIR,
    SCANOBJECTNN_DIR,
    SHAPE_NAMES_FILE,
    write_modelnet40,
    write_scanobjectnn,
)
from embodied_vision.sim.shape_categories import CATEGORIES, make_shape
from embodied_vision.sim.shape_clouds import full_cloud

__all__ = ['DATASET_FILE', 'compose_config', 'generate', 'main', 'plan_split']

_logger = logging.getLogger(__name__)
DATASET_FILE = 'dataset.json'
FORMAT = 'embodied_vision.shapes'
VERSION = 1
SPLITS = ('train', 'test')
_SHAPE_STREAM, _SCAN_STREAM, _ORDER_STREAM = 0, 1, 2  # independent streams derived from seed


# ------------------------------------------------------------------------- the command
def compose_config(overrides: Sequence[str]) -> DictConfig:
    """Compose `shapes.yaml` with hydra-style `overrides` (`key=value`)."""
    return compose_package_config('shapes', overrides)


def _categories(cfg: DictConfig) -> list[str]:
    names = list(CATEGORIES) if cfg.categories is None else [str(c) for c in cfg.categories]
    bad = [c for c in names if c not in CATEGORIES]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(f'categories={names} must be distinct names from {list(CATEGORIES)} '
                         f'(or null for all); unknown: {bad}')
    return names


def _validate(cfg: DictConfig) -> None:
    _categories(cfg)
    for key in ('n_per_class', 'n_test_per_class', 'points'):
        if int(cfg[key]) < 1:
            raise ValueError(f'{key} must be >= 1, got {cfg[key]}')
    if int(cfg.seed) < 0:
        raise ValueError(f'seed must be >= 0, got {cfg.seed}')


def plan_split(cfg: DictConfig, split: str) -> list[dict]:
    """`[{'category', 'label', 'index', 'seed'}, ...]` of a split, before shuffling."""
    split_id = SPLITS.index(split)
    count = int(cfg.n_per_class if split == 'train' else cfg.n_test_per_class)
    suite = list(CATEGORIES)
    return [{'category': name, 'label': label, 'index': i,
             'seed': [int(cfg.seed), split_id, suite.index(name), i]}
            for label, name in enumerate(_categories(cfg)) for i in range(count)]


def _earlier_files(out: Path) -> list[Path]:
    return (sorted((out / MODELNET40_DIR).glob('ply_data_*.h5'))
            + sorted((out / SCANOBJECTNN_DIR).glob('*_objectdataset*.h5')))


def _prepare_out(out: Path, cfg: DictConfig) -> None:
    """Refuse to mix with an earlier dataset in `out` unless `overwrite`; then clear it."""
    earlier = _earlier_files(out)
    if earlier and not cfg.overwrite:
        raise ValueError(f'{out} already holds a shape dataset ({len(earlier)} h5 files); pass '
                         f'overwrite=true to replace it or choose another out=')
    listed = [out / MODELNET40_DIR / f'{s}_files.txt' for s in SPLITS]
    names = [out / folder / SHAPE_NAMES_FILE for folder in (MODELNET40_DIR, SCANOBJECTNN_DIR)]
    for path in [*earlier, *listed, *names, out / DATASET_FILE]:
        path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _scan_config(cfg: DictConfig):
    from embodied_vision.sim.shape_scans import ScanConfig
    options = OmegaConf.to_container(cfg.scan, resolve=True)
    for key in ('elevation', 'neighbours'):
        if not isinstance(options[key], list) or len(options[key]) != 2:
            raise ValueError(f'scan.{key}={options[key]} must be a [min, max] list')
        options[key] = tuple(options[key])
    return ScanConfig(**options)


def _make_split(cfg: DictConfig, split: str, scanner, bar) -> dict:
    plan = plan_split(cfg, split)
    points = int(cfg.points)
    full = np.empty((len(plan), points, 3), np.float32)
    partial = np.empty_like(full) if scanner is not None else None
    mask = np.empty((len(plan), points), np.int32) if scanner is not None else None
    fractions = []
    for k, item in enumerate(plan):
        rng = np.random.default_rng([item['seed'][0], _SHAPE_STREAM, *item['seed'][1:]])
        shape = make_shape(item['category'], rng)
        full[k] = full_cloud(shape, points, rng).points
        if scanner is not None:
            scan_rng = np.random.default_rng([item['seed'][0], _SCAN_STREAM, *item['seed'][1:]])
            scan = scanner.scan(shape, scan_rng, points)
            partial[k], mask[k] = scan.points, scan.mask
            fractions.append(scan.object_fraction)
        bar.update(1)
    order = np.random.default_rng([int(cfg.seed), _ORDER_STREAM, SPLITS.index(split)]
                                  ).permutation(len(plan))
    labels = np.array([item['label'] for item in plan], np.int64)[order]
    return {'full': full[order], 'labels': labels,
            'partial': None if partial is None else partial[order],
            'mask': None if mask is None else mask[order], 'object_fraction': fractions}


def generate(cfg: DictConfig) -> dict:
    """Draw, sample (and scan) every instance and write both splits; returns a summary."""
    _validate(cfg)
    scan_config = _scan_config(cfg)  # checked even when not scanning
    start = time.perf_counter()
    out = Path(cfg.out)
    _prepare_out(out, cfg)
    names = _categories(cfg)
    total = len(names) * (int(cfg.n_per_class) + int(cfg.n_test_per_class))
    scanner = None
    if cfg.partial:
        from embodied_vision.sim.shape_scans import ShapeScanner
        scanner = ShapeScanner(scan_config)
    bar = tqdm(total=total, desc='shapes', unit='shape', disable=not cfg.progress)
    counts, fractions = {}, []
    try:
        for split in SPLITS:
            made = _make_split(cfg, split, scanner, bar)
            write_modelnet40(out, split, made['full'], made['labels'], names)
            if scanner is not None:
                write_scanobjectnn(out, split, made['partial'], made['labels'], made['mask'],
                                   names)
                fractions += made['object_fraction']
            counts[split] = len(made['labels'])
    finally:
        bar.close()
        if scanner is not None:
            scanner.close()
    seconds = time.perf_counter() - start
    summary = {'out': str(out), 'categories': names, 'splits': counts, 'points': int(cfg.points),
               'partial': bool(cfg.partial), 'seconds': round(seconds, 2)}
    if fractions:
        summary['object_fraction_mean'] = round(float(np.mean(fractions)), 4)
    info = {'format': FORMAT, 'version': VERSION, **summary, 'axes': 'y-up (x, z, -y of MuJoCo)',
            'normalization': 'centred on the mean, max norm 1',
            'layouts': [MODELNET40_DIR] + ([SCANOBJECTNN_DIR] if cfg.partial else []),
            'config': OmegaConf.to_container(cfg, resolve=True)}
    (out / DATASET_FILE).write_text(json.dumps(info, indent=1) + '\n')
    _logger.info('wrote %s', summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point: `argv` are hydra overrides. Returns 0 when every split was written."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        summary = generate(compose_config(argv))
    except (ValueError, TypeError) as err:
        _logger.error('%s', err)
        sys.stderr.write(f'error: {err}\n')
        return 2
    kinds = 'full + partial' if summary['partial'] else 'full'
    sys.stdout.write(f"wrote {summary['splits']['train']} train / {summary['splits']['test']} "
                     f"test {kinds} clouds of {len(summary['categories'])} categories "
                     f"({summary['points']} points) to {summary['out']} in "
                     f"{summary['seconds']:.1f} s\n")
    return 0


if __name__ == '__main__':
    sys.exit(main())
