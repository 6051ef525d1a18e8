"""Episode recording in HDF5 (robomimic-like) and a torch-ready reader.

Core code: numpy, torch and h5py only (never mujoco). The simulator writes with
`EpisodeWriter`; training code reads with `EpisodeReader` (whole episodes as numpy) or
`EpisodeDataset` (a `torch.utils.data.Dataset` of single steps).

File layout (`T` = number of steps of an episode; observation `t` is the one the action `t`
was chosen from)::

    /                                   attrs: format='embodied_vision.episodes', version=1
    data/                               attrs: total (steps in all demos), num_demos,
                                               env_args (JSON: task, domain, cameras, image
                                               size, control rate, camera params, ...)
    data/demo_<i>/                      attrs: num_samples (T), success, seed, instruction,
                                               camera_params (JSON: per camera K 3x3 and
                                               T_world_cam 4x4, OpenCV convention, at reset),
                                               plus any extra attrs given to the writer
    data/demo_<i>/obs/<camera>_rgb      uint8   (T, H, W, 3); also linked as <camera>/rgb
    data/demo_<i>/obs/<camera>_depth    float32 (T, H, W), metres; also <camera>/depth
    data/demo_<i>/obs/proprio           float32 (T, 8): ee xyz, ee quat (w, x, y, z), width
    data/demo_<i>/actions               float32 (T, A)
    data/demo_<i>/rewards               float32 (T,)
    data/demo_<i>/dones                 uint8   (T,), 1 at the last step of the episode
    data/demo_<i>/success               uint8   (T,), info['success'] after the step
    data/demo_<i>/stage                 int32   (T,), the stage index of observation t
    data/demo_<i>/stage_text            utf-8 strings (T,), the stage's canonical sentence
    data/demo_<i>/next_obs/<key>        the observation after each action (virtual datasets
                                        over obs[1:] and next_obs_final: no copy)
    data/demo_<i>/next_obs_final/<key>  the observation after the last action (1, ...)
    data/demo_<i>/states                float64 (T, S), the physics state at observation t
                                        (`TabletopEnv.get_state`), when recorded
    mask/train, mask/valid              demo names (bytes): every 10th demo is `valid`

Observation keys with a `/` (`front/rgb`) are stored flat (`front_rgb`, as robomimic names
them: it reads `obs/<key>` with one level) and soft-linked under their nested name, so both
read the same data; the reader lists the original keys. Images are chunked per frame and
compressed (lzf by default). Version 2 added the flat keys, `next_obs`, `states`, `mask/`
and robomimic's `env_name` / `type` / `env_kwargs` in `env_args`, so robomimic's
`SequenceDataset` reads these files as they are (obs keys `front_rgb`, `proprio`, ...);
version 1 files (nested only) still read here.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
import json
import logging
import os

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    'EpisodeBuffer',
    'EpisodeDataset',
    'EpisodeReader',
    'EpisodeWriter',
    'FORMAT',
    'VERSION',
]

_logger = logging.getLogger(__name__)

FORMAT = 'embodied_vision.episodes'
VERSION = 2
#: Every `VALID_EVERY`-th demo goes to `mask/valid`, the others to `mask/train`.
VALID_EVERY = 10
_STR = h5py.string_dtype('utf-8')


def _to_json(value) -> str:
    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f'cannot serialise {type(o).__name__} to JSON')
    return json.dumps(value, default=default)


class EpisodeBuffer:
    """Accumulates one episode step by step, then hands arrays to `EpisodeWriter`.

    Call `add(obs, action, reward, done, info)` with the observation the action was chosen
    from and the `info` returned by the step (its `stage`/`stage_text` are those of the
    observation *after* the step, so the buffer keeps the previous step's labels for `obs`).
    """

    def __init__(self, first_info: dict | None = None):
        self.obs: dict[str, list[np.ndarray]] = {}
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.dones: list[bool] = []
        self.success: list[bool] = []
        self.stage: list[int] = []
        self.stage_text: list[str] = []
        self.instruction: str | None = None
        self.states: list[np.ndarray] = []
        self.final_obs: dict[str, np.ndarray] | None = None
        self._label = (int(first_info.get('stage', 0)), str(first_info.get('stage_text', ''))) \
            if first_info else (0, '')

    def __len__(self) -> int:
        return len(self.actions)

    def add(self, obs: dict, action, reward: float, done: bool, info: dict,
            next_obs: dict | None = None, state=None) -> None:
        """Append one step; `next_obs` is the observation the step returned (the last one
        is kept as the episode's final observation), `state` the physics state at `obs`."""
        if next_obs is not None:
            self.final_obs = {k: np.asarray(v) for k, v in next_obs.items()
                              if not isinstance(v, str)}
        if state is not None:
            self.states.append(np.asarray(state, np.float64))
        for key, value in obs.items():
            if isinstance(value, str):
                self.instruction = value
                continue
            self.obs.setdefault(key, []).append(np.asarray(value))
        self.actions.append(np.asarray(action, dtype=np.float32))
        self.rewards.append(float(reward))
        self.dones.append(bool(done))
        self.success.append(bool(info.get('success', False)))
        self.stage.append(self._label[0])
        self.stage_text.append(self._label[1])
        self._label = (int(info.get('stage', 0)), str(info.get('stage_text', '')))

    def arrays(self) -> dict:
        """The episode as arrays (keys as in the HDF5 layout)."""
        if not self.actions:
            raise ValueError('the episode buffer is empty')
        dones = np.asarray(self.dones, dtype=np.uint8)
        dones[-1] = 1
        return {
            'obs': {k: np.stack(v) for k, v in self.obs.items()},
            'actions': np.stack(self.actions),
            'rewards': np.asarray(self.rewards, dtype=np.float32),
            'dones': dones,
            'success': np.asarray(self.success, dtype=np.uint8),
            'stage': np.asarray(self.stage, dtype=np.int32),
            'stage_text': list(self.stage_text),
            **({'final_obs': self.final_obs} if self.final_obs is not None else {}),
            **({'states': np.stack(self.states)} if self.states else {}),
        }


class EpisodeWriter:
    """Writes episodes to an HDF5 file in the layout of the module docstring.

    Args:
        path: output file.
        env_args: JSON-serialisable env metadata stored in `data.attrs['env_args']`.
        compression: h5py compression for image/depth datasets (`lzf`, `gzip`, None).
        mode: `w` to create/truncate, `a` to append demos to an existing file.
    """

    def __init__(self, path: str | os.PathLike, env_args: dict | None = None,
                 compression: str | None = 'lzf', mode: str = 'w'):
        if mode not in ('w', 'a'):
            raise ValueError(f"mode must be 'w' or 'a', got {mode!r}")
        self.path = os.fspath(path)
        self.compression = compression
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = h5py.File(self.path, mode)
        self._file.attrs['format'] = FORMAT
        self._file.attrs['version'] = VERSION
        self._data = self._file.require_group('data')
        if env_args is not None:
            self._data.attrs['env_args'] = _to_json(env_args)
        self._count = len([k for k in self._data if k.startswith('demo_')])
        self._total = int(self._data.attrs.get('total', 0))

    @property
    def num_episodes(self) -> int:
        """Episodes written so far."""
        return self._count

    def add_episode(self, episode: dict | EpisodeBuffer, attrs: dict | None = None) -> int:
        """Write one episode (arrays as from `EpisodeBuffer.arrays()`); returns its index."""
        if isinstance(episode, EpisodeBuffer):
            instruction = episode.instruction
            episode = episode.arrays()
        else:
            instruction = episode.get('instruction')
        actions = np.asarray(episode['actions'], dtype=np.float32)
        n = len(actions)
        for key, value in episode['obs'].items():
            if len(value) != n:
                raise ValueError(f'obs[{key!r}] has {len(value)} steps, actions have {n}')
        if 'states' in episode and len(episode['states']) != n:
            raise ValueError(f"states has {len(episode['states'])} steps, actions have {n}")
        final = episode.get('final_obs') or {}
        flat = {key: key.replace('/', '_') for key in episode['obs']}
        if len(set(flat.values())) < len(flat):
            raise ValueError(f'observation keys {sorted(flat)} collide once flattened')
        group = self._data.create_group(f'demo_{self._count}')
        for key, value in episode['obs'].items():
            value = np.asarray(value)
            # without the observation after the last action, the last one stands in for it
            last = np.asarray(final[key])[None] if key in final else value[-1:]
            stored = self._dataset(group, f'obs/{flat[key]}', value)
            stored.attrs['key'] = key
            if flat[key] != key:  # our nested name reads the same data
                group[f'obs/{key}'] = h5py.SoftLink(stored.name)
            tail = self._dataset(group, f'next_obs_final/{flat[key]}', last)
            layout = h5py.VirtualLayout(shape=value.shape, dtype=value.dtype)
            if n > 1:
                layout[:n - 1] = h5py.VirtualSource(stored)[1:]
            layout[n - 1:] = h5py.VirtualSource(tail)
            group.create_virtual_dataset(f'next_obs/{flat[key]}', layout)
        if 'states' in episode:
            group.create_dataset('states', data=np.asarray(episode['states'], np.float64))
        group.create_dataset('actions', data=actions)
        group.create_dataset('rewards', data=np.asarray(episode['rewards'], np.float32))
        group.create_dataset('dones', data=np.asarray(episode['dones'], np.uint8))
        group.create_dataset('success', data=np.asarray(
            episode.get('success', np.zeros(n)), np.uint8))
        group.create_dataset('stage', data=np.asarray(episode['stage'], np.int32))
        group.create_dataset('stage_text', data=np.asarray(episode['stage_text'], dtype=object),
                             dtype=_STR)
        group.attrs['num_samples'] = n
        if instruction is not None:
            group.attrs['instruction'] = instruction
        for key, value in (attrs or {}).items():
            if isinstance(value, (dict, list, tuple, np.ndarray)):
                value = _to_json(value)
            group.attrs[key] = value
        self._count += 1
        self._total += n
        self._data.attrs['total'] = self._total
        self._data.attrs['num_demos'] = self._count
        self._write_masks()
        return self._count - 1

    def _dataset(self, group: h5py.Group, name: str, value: np.ndarray) -> h5py.Dataset:
        image_like = value.ndim >= 3
        return group.create_dataset(name, data=value,
                                    chunks=(1,) + value.shape[1:] if image_like else None,
                                    compression=self.compression if image_like else None)

    def _write_masks(self) -> None:
        """robomimic's filter keys: `mask/valid` every `VALID_EVERY`-th demo, `mask/train`
        the rest."""
        names = [f'demo_{i}' for i in range(self._count)]
        masks = self._file.require_group('mask')
        for key, chosen in (('train', [d for i, d in enumerate(names)
                                       if i % VALID_EVERY != VALID_EVERY - 1]),
                            ('valid', [d for i, d in enumerate(names)
                                       if i % VALID_EVERY == VALID_EVERY - 1])):
            if key in masks:
                del masks[key]
            masks.create_dataset(key, data=np.array(chosen, dtype='S'))

    def close(self) -> None:
        """Flush and close the file."""
        if self._file:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _walk(group: h5py.Group, prefix: str = '') -> list[str]:
    """Observation keys under `group`: a version-2 dataset names its key in `attrs['key']`
    (stored flat, `front_rgb`, and linked as `front/rgb`); version 1 nests them."""
    keys = set()
    for name, item in group.items():
        full = f'{prefix}{name}'
        if isinstance(item, h5py.Group):
            keys.update(_walk(item, full + '/'))
        else:
            keys.add(_decode(item.attrs.get('key', full)))
    return sorted(keys)


def _decode(value):
    return value.decode('utf-8') if isinstance(value, bytes) else value


class EpisodeReader:
    """Reads an episode file written by `EpisodeWriter`.

    Args:
        path: the HDF5 file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._file = h5py.File(self.path, 'r')
        found = _decode(self._file.attrs.get('format'))
        if found != FORMAT or 'data' not in self._file:
            self._file.close()
            raise ValueError(f'{self.path} is not an {FORMAT} file (attrs format={found!r})')
        data = self._file['data']
        self.demos = sorted((k for k in data if k.startswith('demo_')),
                            key=lambda k: int(k.split('_')[1]))

    def __len__(self) -> int:
        return len(self.demos)

    def __iter__(self) -> Iterator[dict]:
        for i in range(len(self)):
            yield self.episode(i)

    @property
    def env_args(self) -> dict:
        """The env metadata stored by the writer (empty if none)."""
        raw = self._file['data'].attrs.get('env_args')
        return json.loads(_decode(raw)) if raw is not None else {}

    def _group(self, index: int) -> h5py.Group:
        if not -len(self) <= index < len(self):
            raise IndexError(f'episode {index} out of range [0, {len(self)})')
        return self._file['data'][self.demos[index]]

    def obs_keys(self, index: int = 0) -> list[str]:
        """Observation keys (`front/rgb`, `proprio`, ...)."""
        return _walk(self._group(index)['obs'])

    def num_samples(self, index: int) -> int:
        """Number of steps of episode `index`."""
        return int(self._group(index).attrs['num_samples'])

    def attrs(self, index: int) -> dict:
        """Per-episode attributes, JSON values decoded."""
        out = {}
        for key, value in self._group(index).attrs.items():
            value = _decode(value)
            if isinstance(value, str) and value[:1] in '{[':
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
            out[key] = value.item() if isinstance(value, np.generic) else value
        return out

    def camera_params(self, index: int) -> dict:
        """Per camera `K` and `T_world_cam` as numpy arrays, for episode `index`."""
        raw = self.attrs(index).get('camera_params') or self.env_args.get('camera_params', {})
        return {cam: {k: np.asarray(v) if k in ('K', 'T_world_cam') else v
                      for k, v in p.items()} for cam, p in raw.items()}

    def episode(self, index: int, obs_keys: Sequence[str] | None = None) -> dict:
        """Episode `index` as numpy arrays: `obs` dict, `actions`, `rewards`, `dones`,
        `success`, `stage`, `stage_text` (list of str), `instruction`, `attrs`."""
        group = self._group(index)
        keys = self.obs_keys(index) if obs_keys is None else list(obs_keys)
        return {
            'obs': {k: group['obs'][k][()] for k in keys},
            'actions': group['actions'][()],
            'rewards': group['rewards'][()],
            'dones': group['dones'][()].astype(bool),
            'success': group['success'][()].astype(bool),
            'stage': group['stage'][()],
            'stage_text': [_decode(s) for s in group['stage_text'][()]],
            'instruction': _decode(group.attrs.get('instruction', '')),
            'attrs': self.attrs(index),
            **({'states': group['states'][()]} if 'states' in group else {}),
        }

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EpisodeDataset(Dataset):
    """A torch Dataset over every step of every episode in one or more files.

    A sample is a dict: `obs` (dict of tensors; RGB as uint8 `(3, H, W)`, depth as float32
    `(1, H, W)`, vectors as float32), `action` float32, `reward`, `done`, `stage` (int64
    tensors), `stage_text` and `instruction` (str), `episode` and `step` (int). The default
    collate function batches it. The HDF5 file is opened lazily in each DataLoader worker.

    Args:
        paths: one file or a list of files.
        obs_keys: observation keys to load (default: all).
        channels_first: return images as `(C, H, W)` (default) rather than `(H, W, C)`.
        in_memory: read every episode (only `obs_keys`) into RAM once, here, instead of
            reading each sample from the file (~1 ms per sample, the main cost of a training
            step on small images). RGB costs H x W x 3 bytes per step: 12 KB at 64 px.
    """

    def __init__(self, paths: str | os.PathLike | Sequence, obs_keys: Sequence[str] | None = None,
                 channels_first: bool = True, in_memory: bool = False):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise ValueError('EpisodeDataset needs at least one file')
        self.channels_first = channels_first
        self.index: list[tuple[int, str, int]] = []
        self.obs_keys = list(obs_keys) if obs_keys is not None else None
        # (file, demo) -> the arrays of `EpisodeReader.episode`, read in the same pass as the
        # index when `in_memory`; None reads each sample from its file.
        self._memory: dict[tuple[int, str], dict] | None = {} if in_memory else None
        for f, path in enumerate(self.paths):
            with EpisodeReader(path) as reader:
                if self.obs_keys is None and len(reader):
                    self.obs_keys = reader.obs_keys(0)
                for i, demo in enumerate(reader.demos):
                    self.index += [(f, demo, t) for t in range(reader.num_samples(i))]
                    if self._memory is not None:
                        self._memory[(f, demo)] = reader.episode(i, obs_keys=self.obs_keys)
        self.obs_keys = self.obs_keys or []
        self._files: dict[int, h5py.File] = {}
        if self._memory is not None:
            size = sum(v.nbytes for e in self._memory.values() for v in e['obs'].values())
            _logger.info('EpisodeDataset: %d episodes, %d steps in memory (%.0f MB of '
                         'observations)', len(self._memory), len(self.index), size / 2 ** 20)

    def __len__(self) -> int:
        return len(self.index)

    def _file(self, f: int) -> h5py.File:
        handle = self._files.get(f)
        if handle is None:
            handle = h5py.File(self.paths[f], 'r')
            self._files[f] = handle
        return handle

    def _tensor(self, key: str, value: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.array(value))  # a copy: never a view of the cache
        if key.endswith('/rgb') and self.channels_first:
            return tensor.permute(2, 0, 1).contiguous()
        if key.endswith('/depth'):
            return tensor.unsqueeze(0) if self.channels_first else tensor.unsqueeze(-1)
        return tensor.float() if tensor.is_floating_point() else tensor

    def __getitem__(self, i: int) -> dict:
        f, demo, t = self.index[i]
        if self._memory is not None:  # the arrays of `EpisodeReader.episode`
            episode = self._memory[(f, demo)]
            instruction = episode['instruction']
        else:  # the HDF5 group, indexed the same way
            episode = self._file(f)['data'][demo]
            instruction = _decode(episode.attrs.get('instruction', ''))
        return {
            'obs': {k: self._tensor(k, episode['obs'][k][t]) for k in self.obs_keys},
            'action': torch.from_numpy(np.array(episode['actions'][t])),
            'reward': torch.tensor(float(episode['rewards'][t])),
            'done': torch.tensor(bool(episode['dones'][t])),
            'stage': torch.tensor(int(episode['stage'][t]), dtype=torch.int64),
            'stage_text': _decode(episode['stage_text'][t]),
            'instruction': instruction,
            'episode': int(demo.split('_')[1]),
            'step': t,
        }

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_files'] = {}
        return state

    def __del__(self):
        for handle in getattr(self, '_files', {}).values():
            try:
                handle.close()
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass
