"""Object point-cloud datasets in ModelNet40-hdf5 and ScanObjectNN layouts: reader and writer.

These are the files the point-cloud pretraining papers evaluate on (I2P-MAE, Point-M2AE,
Point-MAE: linear SVM on frozen features and fine-tuning). The simulator writes both
layouts (`embodied_vision.sim.shapes`, `embodied-vision shapes`), so the same commands run
on the real downloads when a user has them. Core code: numpy and torch; h5py is imported
lazily (it comes with the `sim` extra).

ModelNet40, PointNet's `modelnet40_ply_hdf5_2048` (full surface samples)::

    DIR/modelnet40_ply_hdf5_2048/ply_data_train0.h5 ...  data float32 (N, 2048, 3), label
                                                         uint8 (N, 1) (the originals also
                                                         hold `normal` and `faceId`)
    DIR/modelnet40_ply_hdf5_2048/ply_data_test0.h5 ...
    DIR/modelnet40_ply_hdf5_2048/train_files.txt         one h5 path per line (the originals
    DIR/modelnet40_ply_hdf5_2048/test_files.txt          say data/modelnet40_ply_hdf5_2048/..)
    DIR/modelnet40_ply_hdf5_2048/shape_names.txt         one class per line, line k = label k

ScanObjectNN, `main_split` (OBJ_BG: partial scans with background) or `main_split_nobg`::

    DIR/main_split/training_objectdataset[_<variant>].h5   data float32 (N, 2048, 3), label
    DIR/main_split/test_objectdataset[_<variant>].h5       int (N,), mask int (N, 2048):
                                                           -1 background, >= 0 object
    DIR/main_split/shape_names.txt                         (ours; ScanObjectNN ships none:
                                                           its 15 classes are used then)

Variants are e.g. `augmentedrot_scale75` (PB_T50_RS). Both layouts are y-up (ShapeNet
convention); the points are centred and scaled into the unit sphere.
"""
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from embodied_vision.utils.import_utils import require_package

__all__ = [
    'LAYOUTS', 'MODELNET40_DIR', 'SCANOBJECTNN_CLASSES', 'SCANOBJECTNN_DIR', 'SHAPE_NAMES_FILE',
    'PointCloudDataset', 'PointCloudSplit', 'find_layout', 'modelnet40_files',
    'read_point_cloud_split', 'read_shape_names', 'scanobjectnn_file', 'write_modelnet40',
    'write_scanobjectnn',
]

LAYOUTS = ('modelnet40', 'scanobjectnn')
MODELNET40_DIR = 'modelnet40_ply_hdf5_2048'
SCANOBJECTNN_DIR = 'main_split'
SCANOBJECTNN_NOBG_DIR = 'main_split_nobg'
SHAPE_NAMES_FILE = 'shape_names.txt'
SPLITS = ('train', 'test')
#: ScanObjectNN's 15 classes in label order (its h5 files carry no names).
SCANOBJECTNN_CLASSES = ('bag', 'bin', 'box', 'cabinet', 'chair', 'desk', 'display', 'door',
                        'shelf', 'table', 'bed', 'pillow', 'sink', 'sofa', 'toilet')
#: Shapes per ModelNet40 h5 file, as in the originals.
MODELNET40_FILE_SIZE = 2048
_SCAN_PREFIX = {'train': 'training', 'test': 'test'}
_EXPECTED = {
    'modelnet40': 'data float (N, P, 3) and label integer (N, 1) or (N,)',
    'scanobjectnn': 'data float (N, P, 3), label integer (N,) and mask integer (N, P)',
}


def _h5py():
    return require_package('h5py', extra='sim', purpose='ModelNet40 / ScanObjectNN hdf5 files')


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f'split={split!r}; expected one of {list(SPLITS)}')
    return split


# ------------------------------------------------------------------------- layout
def find_layout(root, layout: str = 'auto') -> tuple[str, Path]:
    """`(layout, folder)`: which layout `root` holds and the folder with its h5 files.

    `root` is the folder with the files (`modelnet40_ply_hdf5_2048/`, `main_split/`,
    `main_split_nobg/`) or its parent. `layout` is 'auto', 'modelnet40' or 'scanobjectnn'.
    """
    if layout not in ('auto', *LAYOUTS):
        raise ValueError(f'layout={layout!r}; expected auto or one of {list(LAYOUTS)}')
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f'{root}: no such folder; expected a {MODELNET40_DIR}/ or '
                                f'{SCANOBJECTNN_DIR}/ folder (ModelNet40 hdf5 / ScanObjectNN) '
                                f'or the folder that holds one')
    here = {'modelnet40': any(root.glob('ply_data_*.h5')) or (root / 'train_files.txt').is_file(),
            'scanobjectnn': any(root.glob('*_objectdataset*.h5'))}
    below = {'modelnet40': root / MODELNET40_DIR, 'scanobjectnn': root / SCANOBJECTNN_DIR}
    found = [(name, root) for name in LAYOUTS if here[name]]
    found += [(name, below[name]) for name in LAYOUTS if not here[name] and below[name].is_dir()]
    if layout != 'auto':
        found = [f for f in found if f[0] == layout]
    if len(found) == 1:
        return found[0]
    want = 'neither layout' if layout == 'auto' else f'no {layout} files'
    if not found:
        raise FileNotFoundError(f'{root}: holds {want}; expected ply_data_*.h5 + '
                                f'train_files.txt (ModelNet40, in {MODELNET40_DIR}/) or '
                                f'*_objectdataset*.h5 (ScanObjectNN, in {SCANOBJECTNN_DIR}/)')
    raise ValueError(f'{root}: holds both layouts ({", ".join(str(f[1]) for f in found)}); '
                     f'pass layout= {list(LAYOUTS)}')


def read_shape_names(folder, layout: str) -> list[str] | None:
    """Class names from `folder/shape_names.txt` (line k = label k), or None when absent."""
    path = Path(folder) / SHAPE_NAMES_FILE
    if not path.is_file():
        if layout == 'modelnet40':
            raise FileNotFoundError(f'{path}: missing; a {MODELNET40_DIR} folder lists its '
                                    f'classes there, one per line (line k = label k)')
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names or len(set(names)) != len(names):
        raise ValueError(f'{path}: expected unique class names, one per line; got {names}')
    return names


def modelnet40_files(folder, split: str) -> list[Path]:
    """The h5 files of a ModelNet40 split, in the order of `<split>_files.txt`.

    Each line is tried relative to the folder's parent, to the folder, then by file name in
    the folder (the originals list `data/modelnet40_ply_hdf5_2048/ply_data_train0.h5`).
    Without a list file, `ply_data_<split>*.h5` in the folder, sorted.
    """
    folder = Path(folder)
    listing = folder / f'{_check_split(split)}_files.txt'
    if not listing.is_file():
        files = sorted(folder.glob(f'ply_data_{split}*.h5'))
        if not files:
            raise FileNotFoundError(f'{listing}: missing and no ply_data_{split}*.h5 in '
                                    f'{folder}; expected the ModelNet40 hdf5 layout')
        return files
    files = []
    for line in (s.strip() for s in listing.read_text().splitlines()):
        if not line:
            continue
        tries = [folder.parent / line, folder / line, folder / Path(line).name]
        hit = next((p for p in tries if p.is_file()), None)
        if hit is None:
            raise FileNotFoundError(f'{listing}: lists {line!r}, which is not at '
                                    f'{", ".join(map(str, tries))}')
        files.append(hit)
    if not files:
        raise ValueError(f'{listing}: lists no h5 files; expected one path per line')
    return files


def scanobjectnn_file(folder, split: str, variant: str = '') -> Path:
    """`folder/{training,test}_objectdataset[_<variant>].h5`."""
    suffix = f'_{variant}' if variant else ''
    return Path(folder) / f'{_SCAN_PREFIX[_check_split(split)]}_objectdataset{suffix}.h5'


# ------------------------------------------------------------------------- reading
@dataclass
class PointCloudSplit:
    """One split in memory.

    Args:
        points: float32 (N, P, 3).
        labels: int64 (N,).
        shape_names: class names, index = label.
        mask: int64 (N, P) (ScanObjectNN: -1 background, >= 0 object) or None.
        files: the h5 files read, in order.
        layout: 'modelnet40' or 'scanobjectnn'.
    """

    points: np.ndarray
    labels: np.ndarray
    shape_names: list[str]
    mask: np.ndarray | None
    files: list[Path]
    layout: str


def _read_h5(path: Path, layout: str, keys: Sequence[str]) -> dict:
    h5py = _h5py()
    if not path.is_file():
        raise FileNotFoundError(f'{path}: missing; expected {_EXPECTED[layout]}')
    try:
        with h5py.File(path, 'r') as f:
            missing = [k for k in keys if k not in f]
            if missing:
                raise ValueError(f'{path}: missing key(s) {missing} (has {sorted(f.keys())}); '
                                 f'expected {_EXPECTED[layout]}')
            return {k: np.asarray(f[k][()]) for k in keys}
    except OSError as err:
        raise ValueError(f'{path}: not a readable hdf5 file ({err})') from None


def _check_arrays(path: Path, layout: str, arrays: dict) -> tuple:
    data, label = arrays['data'], arrays['label']
    if data.ndim != 3 or data.shape[2] != 3 or not np.issubdtype(data.dtype, np.floating):
        raise ValueError(f'{path}: data has shape {data.shape} and dtype {data.dtype}; '
                         f'expected float (N, P, 3)')
    n = data.shape[0]
    shapes = [(n,)] + ([(n, 1)] if layout == 'modelnet40' else [])
    if label.shape not in shapes or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f'{path}: label has shape {label.shape} and dtype {label.dtype}; '
                         f'expected integer {" or ".join(map(str, shapes))} for {n} clouds')
    mask = arrays.get('mask')
    if mask is not None and (mask.shape != data.shape[:2]
                             or not np.issubdtype(mask.dtype, np.integer)):
        raise ValueError(f'{path}: mask has shape {mask.shape} and dtype {mask.dtype}; '
                         f'expected integer {data.shape[:2]} (one entry per point)')
    return (data.astype(np.float32, copy=False), label.reshape(n).astype(np.int64),
            None if mask is None else mask.astype(np.int64))


def read_point_cloud_split(root, split: str = 'train', layout: str = 'auto', variant: str = '',
                           with_mask: bool = False) -> PointCloudSplit:
    """Read one split of a ModelNet40-hdf5 or ScanObjectNN folder, checked.

    Errors name the file and what was expected: a missing folder or file, missing keys,
    wrong shapes or dtypes, files with different point counts, labels outside the class list.

    Args:
        root: the layout folder or its parent (see `find_layout`).
        split: 'train' or 'test'.
        layout: 'auto', 'modelnet40' or 'scanobjectnn'.
        variant: ScanObjectNN file variant, e.g. 'augmentedrot_scale75' ('' = the plain one).
        with_mask: also read ScanObjectNN's `mask` (object vs background per point).
    """
    layout, folder = find_layout(root, layout)
    if with_mask and layout != 'scanobjectnn':
        raise ValueError(f'{folder}: with_mask needs the ScanObjectNN layout (ModelNet40 clouds '
                         f'have no background mask)')
    if variant and layout != 'scanobjectnn':
        raise ValueError(f'variant={variant!r} applies to ScanObjectNN files only; {folder} '
                         f'holds ModelNet40')
    names = read_shape_names(folder, layout)
    if names is None:
        names = list(SCANOBJECTNN_CLASSES)
    if layout == 'modelnet40':
        files, keys = modelnet40_files(folder, split), ('data', 'label')
    else:
        files = [scanobjectnn_file(folder, split, variant)]
        keys = ('data', 'label', 'mask') if with_mask else ('data', 'label')
    points, labels, masks = [], [], []
    for path in files:
        data, label, mask = _check_arrays(path, layout, _read_h5(path, layout, keys))
        if points and data.shape[1] != points[0].shape[1]:
            raise ValueError(f'{path}: {data.shape[1]} points per cloud, but {files[0]} has '
                             f'{points[0].shape[1]}; expected one point count per split')
        bad = np.flatnonzero((label < 0) | (label >= len(names)))
        if len(bad):
            raise ValueError(f'{path}: label {int(label[bad[0]])} (cloud {int(bad[0])}) is '
                             f'outside the {len(names)} classes of {SHAPE_NAMES_FILE} '
                             f'({names[0]} ... {names[-1]}); expected 0 to {len(names) - 1}')
        points.append(data)
        labels.append(label)
        masks.append(mask)
    return PointCloudSplit(np.concatenate(points), np.concatenate(labels), names,
                           np.concatenate(masks) if with_mask else None, files, layout)


class PointCloudDataset(Dataset):
    """Object point clouds from ModelNet40 hdf5 or ScanObjectNN files, as model inputs.

    Each item is `(points, label)`: float32 tensor (n_points, 3) and an int (with
    `with_mask`, also the int64 (n_points,) mask). The whole split is read and checked at
    construction (`read_point_cloud_split`), as the upstream loaders do.

    Args:
        root: the layout folder or its parent.
        split: 'train' or 'test'.
        n_points: keep the first n points of every cloud (the SVM protocol uses 1024 of
            2048); None keeps all.
        layout: 'auto', 'modelnet40' or 'scanobjectnn'.
        variant: ScanObjectNN file variant, e.g. 'augmentedrot_scale75'.
        with_mask: also return ScanObjectNN's background mask.
        transform: optional callable applied to the float32 (n, 3) numpy points.
    """

    def __init__(self, root, split: str = 'train', n_points: int | None = None,
                 layout: str = 'auto', variant: str = '', with_mask: bool = False,
                 transform=None):
        self.split = read_point_cloud_split(root, split, layout, variant, with_mask)
        available = self.split.points.shape[1]
        if n_points is not None and not 1 <= int(n_points) <= available:
            raise ValueError(f'n_points={n_points}; the clouds of {self.split.files[0]} have '
                             f'{available} points, expected 1 to {available} (or None)')
        self.n_points = available if n_points is None else int(n_points)
        self.with_mask = bool(with_mask)
        self.transform = transform

    @property
    def shape_names(self) -> list[str]:
        """Class names, index = label."""
        return self.split.shape_names

    @property
    def labels(self) -> np.ndarray:
        """int64 (N,) labels of every cloud."""
        return self.split.labels

    def __len__(self) -> int:
        return len(self.split.labels)

    def __getitem__(self, index: int):
        points = self.split.points[index, :self.n_points].copy()  # items never share memory
        if self.transform is not None:
            points = np.array(self.transform(points), np.float32)
        item = (torch.from_numpy(points), int(self.split.labels[index]))
        if self.with_mask:
            item += (torch.from_numpy(self.split.mask[index, :self.n_points].copy()),)
        return item


# ------------------------------------------------------------------------- writing
def _check_clouds(points, labels, shape_names, mask=None):
    points = np.asarray(points, np.float32)
    labels = np.asarray(labels).reshape(-1)
    if points.ndim != 3 or points.shape[2] != 3 or len(labels) != len(points):
        raise ValueError(f'points {points.shape} and labels {labels.shape}: expected (N, P, 3) '
                         f'and (N,)')
    if len(labels) and (labels.min() < 0 or labels.max() >= len(shape_names)):
        raise ValueError(f'labels span {labels.min()} to {labels.max()}; expected 0 to '
                         f'{len(shape_names) - 1} ({len(shape_names)} shape names)')
    if mask is not None and np.shape(mask) != points.shape[:2]:
        raise ValueError(f'mask {np.shape(mask)}: expected {points.shape[:2]}')
    return points, labels


def _write_names(folder: Path, shape_names: Sequence[str]) -> None:
    (folder / SHAPE_NAMES_FILE).write_text(''.join(f'{n}\n' for n in shape_names))


def write_modelnet40(root, split: str, points, labels, shape_names: Sequence[str],
                     file_size: int = MODELNET40_FILE_SIZE) -> list[Path]:
    """Write a split as `root/modelnet40_ply_hdf5_2048/ply_data_<split>{k}.h5` (+ lists).

    `data` float32 (N, P, 3) and `label` uint8 (N, 1), `file_size` clouds per file, and
    `<split>_files.txt` listing `modelnet40_ply_hdf5_2048/ply_data_<split>{k}.h5` (relative
    to `root`); `shape_names.txt` too. Returns the h5 paths.
    """
    h5py = _h5py()
    points, labels = _check_clouds(points, labels, shape_names)
    if len(shape_names) > 256:
        raise ValueError(f'{len(shape_names)} classes do not fit the uint8 labels of ModelNet40 '
                         f'files; expected at most 256')
    folder = Path(root) / MODELNET40_DIR
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, start in enumerate(range(0, max(len(points), 1), int(file_size))):
        path = folder / f'ply_data_{_check_split(split)}{k}.h5'
        with h5py.File(path, 'w') as f:
            f.create_dataset('data', data=points[start:start + file_size])
            f.create_dataset('label', data=labels[start:start + file_size, None].astype(np.uint8))
        paths.append(path)
    (folder / f'{split}_files.txt').write_text(''.join(f'{MODELNET40_DIR}/{p.name}\n'
                                                       for p in paths))
    _write_names(folder, shape_names)
    return paths


def write_scanobjectnn(root, split: str, points, labels, mask, shape_names: Sequence[str],
                       folder: str = SCANOBJECTNN_DIR) -> Path:
    """Write `root/<folder>/{training,test}_objectdataset.h5` and `shape_names.txt`.

    `data` float32 (N, P, 3), `label` int64 (N,), `mask` int32 (N, P) (-1 background).
    """
    h5py = _h5py()
    points, labels = _check_clouds(points, labels, shape_names, mask)
    out = Path(root) / folder
    out.mkdir(parents=True, exist_ok=True)
    path = scanobjectnn_file(out, split)
    with h5py.File(path, 'w') as f:
        f.create_dataset('data', data=points)
        f.create_dataset('label', data=labels.astype(np.int64))
        f.create_dataset('mask', data=np.asarray(mask, np.int32))
    _write_names(out, shape_names)
    return path
