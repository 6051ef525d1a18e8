"""Datasets of radiance grids in NeRF-RPN / NeRF-MAE's layout: the layout and its reader.

The simulator writes them (`embodied_vision.sim.radiance_grids`, `embodied-vision grids`);
grids exported by the upstream tools (Front3D, HM3D, Hypersim, ScanNet) use the same layout.
Core code: numpy and torch only (never mujoco).

Layout (`<name>` is the dataset name, e.g. `front3d`, `hm3d`, ours `tabletop`)::

    DIR/features/<scene>.npz     rgbsigma (X, Y, Z, 4) float32 or uint8 (divided by 255):
                                 RGB + raw density, z up; resolution (3,) = X, Y, Z;
                                 bbox_min, bbox_max (3,) world corners of the grid
    DIR/aabb/<scene>.npy         (N, 6) x_min y_min z_min x_max y_max z_max
    DIR/obb/<scene>.npy          (N, 7) x y z w l h theta: centre, size along the box's own
                                 axes, yaw about +z in radians
    DIR/voxel_<name>/<scene>.npy (X, Y, Z) integer class per voxel, 0 = background
    DIR/<name>_split.npz         train_scenes, val_scenes, test_scenes (string arrays)
    DIR/classes.json             (ours) {"classes": [{"id", "name", "description"}, ...]}
    DIR/meta/<scene>.json        (ours) task, domain, seeds, and per box row its object name,
                                 class and world-frame boxes (metres)

Boxes are in voxel units of the scene's grid, as NeRF-RPN stores them: world point `p` maps
to `(p - bbox_min) / (bbox_max - bbox_min) * resolution` (NeRF-RPN
`data/hypersim/preprocess_boxes.py`, `data/scannet/filter_bbox.py`), so box coordinates run
from 0 to the resolution along each axis.
"""
from collections.abc import Sequence
import json
import os
from pathlib import Path
import zipfile

import numpy as np
import torch
from torch.utils.data import Dataset

from embodied_vision.geometry.radiance_grid import DENSITY_ACTIVATIONS, RadianceGrid

__all__ = [
    'AABB_DIR', 'CLASSES_FILE', 'FEATURES_DIR', 'FORMAT', 'GRID_KEYS', 'LABELS', 'META_DIR',
    'OBB_DIR', 'SEMANTICS_PREFIX', 'SPLITS', 'SPLIT_SUFFIX', 'VERSION', 'RadianceGridDataset',
    'find_semantics_dir', 'find_split_file', 'read_grid_header', 'read_split',
]

FORMAT = 'embodied_vision.radiance_grids'
VERSION = 1
FEATURES_DIR = 'features'
AABB_DIR = 'aabb'
OBB_DIR = 'obb'
META_DIR = 'meta'
SEMANTICS_PREFIX = 'voxel_'
SPLIT_SUFFIX = '_split.npz'
CLASSES_FILE = 'classes.json'
SPLITS = ('train', 'val', 'test')
LABELS = ('aabb', 'obb', 'semantics')
GRID_KEYS = ('rgbsigma', 'resolution', 'bbox_min', 'bbox_max')
_EXPECTED_GRID = ('rgbsigma (X, Y, Z, 4), resolution (3,) = rgbsigma.shape[:3], '
                  'bbox_min (3,), bbox_max (3,)')


# ------------------------------------------------------------------------- layout
def find_split_file(root) -> Path:
    """The one `<name>_split.npz` in `root`."""
    root = Path(root)
    found = sorted(root.glob(f'*{SPLIT_SUFFIX}'))
    if len(found) != 1:
        what = 'no' if not found else f'{len(found)} ({", ".join(p.name for p in found)})'
        raise FileNotFoundError(f'{root}: found {what} split files; expected exactly one '
                                f'<name>{SPLIT_SUFFIX} (pass split_file= to choose)')
    return found[0]


def read_split(root, split_file=None) -> dict[str, list[str]]:
    """Scene names per split: `{'train': [...], 'val': [...], 'test': [...]}`."""
    path = Path(split_file) if split_file is not None else find_split_file(root)
    with np.load(path) as data:
        missing = [f'{s}_scenes' for s in SPLITS if f'{s}_scenes' not in data]
        if missing:
            raise ValueError(f'{path}: missing key(s) {missing}; a split file holds '
                             f'train_scenes, val_scenes, test_scenes')
        return {s: [str(n) for n in np.asarray(data[f'{s}_scenes']).reshape(-1)]
                for s in SPLITS}


def find_semantics_dir(root) -> Path | None:
    """The `voxel_<name>/` folder of per-voxel classes in `root`, or None."""
    found = sorted(p for p in Path(root).glob(f'{SEMANTICS_PREFIX}*') if p.is_dir())
    if len(found) > 1:
        raise ValueError(f'{root}: several per-voxel class folders '
                         f'({", ".join(p.name for p in found)}); expected one '
                         f'{SEMANTICS_PREFIX}<name>/')
    return found[0] if found else None


def _member_header(archive: zipfile.ZipFile, member: str):
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    return shape, dtype


def read_grid_header(path) -> dict:
    """Check a grid `.npz` without loading `rgbsigma`; returns its shape, dtype and box.

    Raises ValueError naming the file and what is wrong: missing keys, an `rgbsigma` that is
    not (X, Y, Z, 4) float/uint8, a `resolution` that differs from its shape, or an empty,
    inverted or non-finite `bbox_min`/`bbox_max`.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(m).stem: m for m in archive.namelist() if m.endswith('.npy')}
            missing = [k for k in GRID_KEYS if k not in members]
            if missing:
                raise ValueError(f'{path}: missing key(s) {missing}; expected {_EXPECTED_GRID}')
            shape, dtype = _member_header(archive, members['rgbsigma'])
    except zipfile.BadZipFile:
        raise ValueError(f'{path}: not an .npz archive; expected {_EXPECTED_GRID}') from None
    if len(shape) != 4 or shape[-1] != 4 or min(shape) < 1:
        raise ValueError(f'{path}: rgbsigma has shape {shape}; expected (X, Y, Z, 4) with '
                         f'RGB + density last')
    if not (np.issubdtype(dtype, np.floating) or dtype == np.uint8):
        raise ValueError(f'{path}: rgbsigma has dtype {dtype}; expected float or uint8')
    with np.load(path) as data:
        resolution = np.asarray(data['resolution']).reshape(-1)
        bbox_min = np.asarray(data['bbox_min'], np.float64).reshape(-1)
        bbox_max = np.asarray(data['bbox_max'], np.float64).reshape(-1)
    if resolution.tolist() != list(shape[:3]):
        raise ValueError(f'{path}: resolution {resolution.tolist()} does not match rgbsigma '
                         f'shape {shape}; expected resolution == {list(shape[:3])}')
    if (bbox_min.shape != (3,) or bbox_max.shape != (3,) or not np.all(np.isfinite(bbox_min))
            or not np.all(np.isfinite(bbox_max)) or np.any(bbox_max <= bbox_min)):
        raise ValueError(f'{path}: empty or inverted grid box bbox_min {bbox_min.tolist()}, '
                         f'bbox_max {bbox_max.tolist()}; expected three finite values each '
                         f'with bbox_max > bbox_min on every axis')
    return {'shape': tuple(shape), 'dtype': dtype, 'resolution': tuple(shape[:3]),
            'bbox_min': bbox_min, 'bbox_max': bbox_max}


def _load_boxes(path: Path, columns: int) -> np.ndarray:
    """(N, 6) AABBs or (N, 7) OBBs, checked: finite, non-empty, not inverted."""
    if not path.is_file():
        raise FileNotFoundError(f'{path}: box file missing')
    boxes = np.load(path)
    if boxes.size == 0:
        return np.zeros((0, columns), np.float32)
    layout = ('x_min y_min z_min x_max y_max z_max' if columns == 6
              else 'x y z w l h theta')
    if boxes.ndim != 2 or boxes.shape[1] != columns:
        raise ValueError(f'{path}: boxes have shape {boxes.shape}; expected (N, {columns}) '
                         f'with columns {layout}')
    boxes = boxes.astype(np.float32)
    bad = np.flatnonzero(~np.all(np.isfinite(boxes), axis=1))
    if len(bad):
        raise ValueError(f'{path}: box {int(bad[0])} has NaN/inf values '
                         f'{boxes[bad[0]].tolist()}; expected finite {layout}')
    sizes = boxes[:, 3:6] - boxes[:, :3] if columns == 6 else boxes[:, 3:6]
    bad = np.flatnonzero(np.any(sizes <= 0, axis=1))
    if len(bad):
        rule = ('x_min < x_max, y_min < y_max, z_min < z_max' if columns == 6
                else 'w, l, h > 0')
        raise ValueError(f'{path}: box {int(bad[0])} is empty or inverted '
                         f'({boxes[bad[0]].tolist()}); expected {rule} (columns {layout})')
    return boxes


def _check_semantics(path: Path, resolution: tuple) -> None:
    if not path.is_file():
        raise FileNotFoundError(f'{path}: per-voxel class file missing')
    labels = np.load(path, mmap_mode='r')
    if labels.shape != tuple(resolution) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f'{path}: per-voxel classes have shape {labels.shape} and dtype '
                         f'{labels.dtype}; expected integers of the grid shape '
                         f'{tuple(resolution)}')


# ------------------------------------------------------------------------- dataset
class RadianceGridDataset(Dataset):
    """Scenes of a radiance-grid dataset as model inputs (and optionally labels).

    Each item is `{'name': str, 'grid': float32 (4, X, Y, Z)}`: RGB in [0, 1] plus alpha =
    1 - exp(-act(sigma) / 100) (`RadianceGrid.to_tensor`, unpadded), and with labels
    `'aabb'` (N, 6), `'obb'` (N, 7) float32 in voxel units and `'semantics'` int64 (X, Y, Z).

    Every scene's header and labels are checked here (keys, shapes, boxes); NaN/inf in a
    grid is found when the item is loaded. Errors name the file and what was expected.

    Args:
        root: dataset folder (layout in the module docstring).
        split: 'train', 'val', 'test' (from the split file) or None for every scene in
            `features/`.
        density_activation: 'relu' (ours, ScanNet) or 'exp' (Instant-NGP: Front3D, HM3D).
        labels: False, True (aabb, obb and semantics) or a subset of those names.
        split_file: a split `.npz` to use instead of the one `<name>_split.npz` in `root`.
    """

    def __init__(self, root, split: str | None = 'train', density_activation: str = 'relu',
                 labels: bool | Sequence[str] = False, split_file=None):
        self.root = Path(root)
        if split is not None and split not in SPLITS:
            raise ValueError(f'split must be one of {list(SPLITS)} or None, got {split!r}')
        if density_activation not in DENSITY_ACTIVATIONS:
            raise ValueError(f'density_activation must be one of {list(DENSITY_ACTIVATIONS)}, '
                             f'got {density_activation!r}')
        self.density_activation = density_activation
        self.labels = self._label_kinds(labels)
        features = self.root / FEATURES_DIR
        if not features.is_dir():
            raise FileNotFoundError(f'{self.root}: no {FEATURES_DIR}/ folder of grid .npz files')
        if split is None:
            self.names = sorted(p.stem for p in features.glob('*.npz'))
        else:
            self.names = read_split(self.root, split_file)[split]
        self.headers = [read_grid_header(self._grid_path(n)) for n in self.names]
        self._boxes = {kind: [] for kind in ('aabb', 'obb') if kind in self.labels}
        semantics = find_semantics_dir(self.root) if 'semantics' in self.labels else None
        if 'semantics' in self.labels and semantics is None:
            raise FileNotFoundError(f'{self.root}: no {SEMANTICS_PREFIX}<name>/ folder of '
                                    f'per-voxel classes (labels={list(self.labels)})')
        self.semantics_dir = semantics
        for name, header in zip(self.names, self.headers):
            for kind, rows in self._boxes.items():
                columns = 6 if kind == 'aabb' else 7
                rows.append(_load_boxes(self.root / kind / f'{name}.npy', columns))
            if semantics is not None:
                _check_semantics(semantics / f'{name}.npy', header['resolution'])
        self.classes = self._read_classes()

    @staticmethod
    def _label_kinds(labels) -> tuple[str, ...]:
        if labels is True:
            return LABELS
        if labels is False or labels is None:
            return ()
        kinds = (labels,) if isinstance(labels, str) else tuple(labels)
        bad = [k for k in kinds if k not in LABELS]
        if bad:
            raise ValueError(f'labels must be True, False or a subset of {list(LABELS)}, '
                             f'got {list(kinds)}')
        return kinds

    def _grid_path(self, name: str) -> Path:
        path = self.root / FEATURES_DIR / f'{name}.npz'
        if not path.is_file():
            raise FileNotFoundError(f'{path}: grid of scene {name!r} missing')
        return path

    def _read_classes(self) -> list[str] | None:
        path = self.root / CLASSES_FILE
        if not path.is_file():
            return None
        table = json.loads(path.read_text())['classes']
        return [entry['name'] for entry in sorted(table, key=lambda e: e['id'])]

    @property
    def ids(self) -> list[str]:
        """Scene ids (the same list as `names`)."""
        return self.names

    def __len__(self) -> int:
        return len(self.names)

    def load_grid(self, index: int) -> RadianceGrid:
        """The scene's `RadianceGrid`; ValueError naming the file if it holds NaN/inf."""
        path = self._grid_path(self.names[index])
        with np.load(path) as data:
            rgbsigma = data['rgbsigma']
            header = self.headers[index]
            if rgbsigma.shape != header['shape']:
                raise ValueError(f'{path}: rgbsigma changed shape to {rgbsigma.shape} since '
                                 f'the dataset was built (was {header["shape"]})')
            if np.issubdtype(rgbsigma.dtype, np.floating):
                bad = int(np.count_nonzero(~np.isfinite(rgbsigma)))
                if bad:
                    raise ValueError(f'{path}: rgbsigma holds {bad} NaN/inf values; '
                                     f'expected finite RGB and density')
            return RadianceGrid(rgbsigma, header['bbox_min'], header['bbox_max'],
                                header['resolution'], self.density_activation)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f'index {index} out of range for {len(self)} scenes')
        index %= len(self)
        name = self.names[index]
        item = {'name': name, 'grid': self.load_grid(index).to_tensor()}
        for kind, rows in self._boxes.items():
            item[kind] = torch.from_numpy(rows[index].copy())
        if self.semantics_dir is not None:
            labels = np.load(self.semantics_dir / f'{name}.npy')
            item['semantics'] = torch.from_numpy(labels.astype(np.int64))
        return item

    def __repr__(self) -> str:
        return (f'{type(self).__name__}({os.fspath(self.root)!r}, scenes={len(self)}, '
                f'labels={list(self.labels)})')
