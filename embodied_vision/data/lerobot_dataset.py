"""Our episode files as LeRobotDataset v3.0 folders, and LeRobot datasets as episode files.

LeRobot (https://github.com/huggingface/lerobot) is where robot-learning datasets are shared.
Its library pins torch below 2.11, so it does not install next to our torch; the format is
written and read here with pyarrow (`pip install 'embodied_vision[lerobot]'`) and the core's
imageio-ffmpeg, laid out as lerobot 0.4 writes it (format `v3.0`):

    meta/info.json                      codebase_version, fps, features, path templates
    meta/stats.json                     per feature min / max / mean / std / count (images
                                        per channel, (3, 1, 1), in [0, 1])
    meta/tasks.parquet                  task_index, indexed by the task string (pandas)
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks, its
                                        data file and global index range, its video files
    data/chunk-CCC/file-FFF.parquet     one row per frame: observation.state, action,
                                        next.reward, next.done, timestamp, frame_index,
                                        episode_index, index, task_index (+ PNG images)
    videos/<key>/chunk-CCC/file-FFF.mp4 H.264, constant `fps`, frame k at k / fps

Here each episode has its own data and video files (file `e % 1000` of chunk `e // 1000`),
which LeRobot reads like its concatenated ones. Our observations map to
`observation.state` (proprio), `observation.images.<camera>` (`<camera>/rgb`; depth is not
exported) and the instruction to the task. `import_lerobot` writes any such dataset (ours or
from the Hub, downloaded by the user) as an episode file, which every training task reads.

    embodied-vision lerobot-export demos.hdf5 --out demos_lerobot [--images]
    embodied-vision lerobot-import demos_lerobot --out demos.hdf5
"""
from collections.abc import Iterable
import io
import json
import os
from pathlib import Path

import numpy as np

from embodied_vision.utils import require_package

__all__ = ['CODEBASE_VERSION', 'export_lerobot', 'import_lerobot', 'import_main', 'main']

CODEBASE_VERSION = 'v3.0'
CHUNK = 1000
DATA_PATH = 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
VIDEO_PATH = 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4'
EPISODES_PATH = 'meta/episodes/chunk-000/file-000.parquet'
STATE_NAMES = ['x', 'y', 'z', 'qw', 'qx', 'qy', 'qz', 'gripper_width']
_DEFAULT_FEATURES = {'timestamp': 'float32', 'frame_index': 'int64', 'episode_index': 'int64',
                     'index': 'int64', 'task_index': 'int64'}


def _arrow():
    pa = require_package('pyarrow', 'lerobot', 'LeRobot datasets')
    import pyarrow.parquet as pq
    return pa, pq


def _location(episode: int) -> dict:
    return {'chunk_index': episode // CHUNK, 'file_index': episode % CHUNK}


def _stats(values: np.ndarray, image: bool = False) -> dict:
    """min / max / mean / std / count over frames (images per channel in [0, 1])."""
    if image:
        pixels = values.reshape(-1, 3).astype(np.float64) / 255.0
        shape = (3, 1, 1)
        out = {k: f(pixels, axis=0).reshape(shape) for k, f in
               (('min', np.min), ('max', np.max), ('mean', np.mean), ('std', np.std))}
    else:
        flat = values.reshape(len(values), -1).astype(np.float64)
        out = {k: f(flat, axis=0) for k, f in
               (('min', np.min), ('max', np.max), ('mean', np.mean), ('std', np.std))}
    return {**{k: v.tolist() for k, v in out.items()}, 'count': [int(len(values))]}


def _write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    import imageio.v3 as iio
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, frames, extension='.mp4', fps=fps, codec='libx264', quality=10,
                pixelformat='yuv420p', macro_block_size=1)


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format='PNG')
    return buffer.getvalue()


def export_lerobot(episode_files: Iterable[str | os.PathLike], out: str | os.PathLike,
                   videos: bool = True, robot_type: str = 'embodied_vision_tabletop') -> dict:
    """Write the episodes of `episode_files` as a LeRobotDataset v3.0 folder `out`;
    returns its `info.json`. `videos=False` stores frames as PNG in the data files."""
    from embodied_vision.data.episodes import EpisodeReader
    pa, pq = _arrow()
    out = Path(out)
    if (out / 'meta' / 'info.json').exists():
        raise FileExistsError(f'{out} holds a dataset already; pick a new folder')
    tasks: dict[str, int] = {}
    rows, stats_parts, features, fps = [], {}, None, None
    total = 0
    for path in episode_files:
        with EpisodeReader(path) as reader:
            args = reader.env_args
            rate = round(1.0 / float(args.get('control_dt', 0.1)))
            if fps is None:
                fps = rate
            elif rate != fps:
                raise ValueError(f'{path} runs at {rate} Hz, the others at {fps} Hz')
            for i in range(len(reader)):
                episode = reader.episode(i)
                index = len(rows)
                cameras = sorted(k.split('/')[0] for k in episode['obs'] if k.endswith('/rgb'))
                n = len(episode['actions'])
                task = episode['instruction'] or args.get('task', 'task')
                task_index = tasks.setdefault(task, len(tasks))
                columns = {
                    'observation.state': episode['obs']['proprio'].astype(np.float32),
                    'action': episode['actions'].astype(np.float32),
                    'next.reward': episode['rewards'].astype(np.float32),
                    'next.done': episode['dones'].astype(bool),
                    'next.success': episode['success'].astype(bool),
                    'timestamp': (np.arange(n) / fps).astype(np.float32),
                    'frame_index': np.arange(n, dtype=np.int64),
                    'episode_index': np.full(n, index, np.int64),
                    'index': np.arange(total, total + n, dtype=np.int64),
                    'task_index': np.full(n, task_index, np.int64)}
                images = {f'observation.images.{c}': episode['obs'][f'{c}/rgb'] for c in cameras}
                these = _features(columns, images, videos, fps)
                if features is None:
                    features = these
                elif these != features:
                    raise ValueError(f'{path} episode {i} has features {sorted(these)}, the '
                                     f'first had {sorted(features)}')
                table = {k: _column(pa, v) for k, v in columns.items()}
                for key, frames in images.items():
                    if videos:
                        _write_video(out / VIDEO_PATH.format(video_key=key, **_location(index)),
                                     frames, fps)
                    else:
                        table[key] = pa.array([{'bytes': _png(f), 'path': None} for f in frames],
                                              pa.struct([('bytes', pa.binary()),
                                                         ('path', pa.string())]))
                file = out / DATA_PATH.format(**_location(index))
                file.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.table(table), file)
                for key, value in {**columns, **images}.items():
                    stats_parts.setdefault(key, []).append(value)
                rows.append(_episode_row(index, task, n, total, images if videos else {}, fps))
                total += n
    if not rows:
        raise ValueError('no episodes to export')
    episodes = pa.table({key: [row[key] for row in rows] for key in rows[0]})
    (out / EPISODES_PATH).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(episodes, out / EPISODES_PATH)
    _write_tasks(pa, pq, out / 'meta' / 'tasks.parquet', tasks)
    stats = {key: _stats(np.concatenate(parts), image=key.startswith('observation.images.'))
             for key, parts in stats_parts.items()}
    (out / 'meta' / 'stats.json').write_text(json.dumps(stats, indent=2) + '\n')
    info = {'codebase_version': CODEBASE_VERSION, 'robot_type': robot_type,
            'total_episodes': len(rows), 'total_frames': total, 'total_tasks': len(tasks),
            'chunks_size': CHUNK, 'data_files_size_in_mb': 100, 'video_files_size_in_mb': 200,
            'fps': fps, 'splits': {'train': f'0:{len(rows)}'}, 'data_path': DATA_PATH,
            'video_path': VIDEO_PATH if videos and any(
                k.startswith('observation.images.') for k in features) else None,
            'features': features}
    (out / 'meta' / 'info.json').write_text(json.dumps(info, indent=4) + '\n')
    return info


def _column(pa, values: np.ndarray):
    if values.ndim == 1:
        return pa.array(values)
    return pa.array(list(values), pa.list_(pa.from_numpy_dtype(values.dtype)))


def _features(columns: dict, images: dict, videos: bool, fps: int) -> dict:
    features = {}
    for key, value in columns.items():
        names = STATE_NAMES if key == 'observation.state' and value.shape[1:] == (8,) else None
        shape = list(value.shape[1:]) or [1]
        features[key] = {'dtype': 'bool' if value.dtype == bool else str(value.dtype),
                         'shape': shape, 'names': names}
    for key, frames in images.items():
        height, width = frames.shape[1:3]
        entry = {'dtype': 'video' if videos else 'image', 'shape': [height, width, 3],
                 'names': ['height', 'width', 'channels']}
        if videos:
            entry['info'] = {'video.height': height, 'video.width': width,
                             'video.codec': 'h264', 'video.pix_fmt': 'yuv420p',
                             'video.is_depth_map': False, 'video.fps': fps,
                             'video.channels': 3, 'has_audio': False}
        features[key] = entry
    return features


def _episode_row(index: int, task: str, n: int, start: int, videos: dict, fps: int) -> dict:
    location = _location(index)
    row = {'episode_index': index, 'tasks': [task], 'length': n,
           'data/chunk_index': location['chunk_index'],
           'data/file_index': location['file_index'],
           'dataset_from_index': start, 'dataset_to_index': start + n}
    for key in videos:
        row.update({f'videos/{key}/chunk_index': location['chunk_index'],
                    f'videos/{key}/file_index': location['file_index'],
                    f'videos/{key}/from_timestamp': 0.0,
                    f'videos/{key}/to_timestamp': n / fps})
    row.update({'meta/episodes/chunk_index': 0, 'meta/episodes/file_index': 0})
    return row


def _write_tasks(pa, pq, path: Path, tasks: dict[str, int]) -> None:
    """`task_index` indexed by the task string, as pandas writes it (LeRobot reads
    `tasks.iloc[i].name`)."""
    table = pa.table({'task_index': pa.array(list(tasks.values()), pa.int64()),
                      'task': pa.array(list(tasks))})
    pandas = {'index_columns': ['task'], 'column_indexes': [], 'pandas_version': '2.2.0',
              'columns': [{'name': 'task_index', 'field_name': 'task_index',
                           'pandas_type': 'int64', 'numpy_type': 'int64', 'metadata': None},
                          {'name': 'task', 'field_name': 'task', 'pandas_type': 'unicode',
                           'numpy_type': 'object', 'metadata': None}]}
    pq.write_table(table.replace_schema_metadata({b'pandas': json.dumps(pandas).encode()}),
                   path)


def _read_table(pq, path: Path, what: str):
    if not path.is_file():
        raise FileNotFoundError(f'{path}: missing {what} of the LeRobot dataset')
    return pq.read_table(path)


def _task_names(pq, root: Path) -> list[str]:
    table = _read_table(pq, root / 'meta' / 'tasks.parquet', 'the task table')
    names = [n for n in ('task', '__index_level_0__') if n in table.column_names]
    if not names:
        raise ValueError(f'{root}/meta/tasks.parquet has no task strings '
                         f'(columns {table.column_names})')
    order = np.argsort(table.column('task_index').to_numpy())
    return [str(table.column(names[0])[int(i)]) for i in order]


def _vectors(data, key: str, dtype=np.float32, default=None):
    """A column as `(T, D)`, or `default` when the dataset has no such feature."""
    if key not in data.column_names:
        return default
    return np.asarray(data.column(key).to_pylist(), dtype).reshape(data.num_rows, -1)


def _frames(root: Path, info: dict, key: str, row: dict, data, fps: int) -> np.ndarray:
    """`(T, H, W, 3)` uint8 frames of one episode's image or video feature."""
    if info['features'][key]['dtype'] == 'image':
        from PIL import Image
        return np.stack([np.asarray(Image.open(io.BytesIO(cell['bytes'])).convert('RGB'))
                         for cell in data.column(key).to_pylist()])
    import imageio.v3 as iio
    path = root / info['video_path'].format(
        video_key=key, chunk_index=row[f'videos/{key}/chunk_index'],
        file_index=row[f'videos/{key}/file_index'])
    if not path.is_file():
        raise FileNotFoundError(f'{path}: missing video of {key}')
    start = round(float(row[f'videos/{key}/from_timestamp']) * fps)
    frames = iio.imread(path, index=None)[start:start + row['length']]
    if len(frames) != row['length']:
        raise ValueError(f'{path} holds {len(frames)} frames for episode '
                         f'{row["episode_index"]} from frame {start}, expected {row["length"]}')
    return np.ascontiguousarray(frames[..., :3])


def import_lerobot(root: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write the LeRobotDataset v3.0 folder `root` (`embodied-vision lerobot-export`'s, or one
    downloaded from the Hub) as an episode file `out`; returns the episodes written.

    `observation.state` becomes `proprio`, `observation.images.<name>` `<name>/rgb`, the task
    the instruction; rewards, dones and success are read when present.
    """
    from embodied_vision.data.episodes import EpisodeWriter
    pa, pq = _arrow()
    root = Path(root)
    info_file = root / 'meta' / 'info.json'
    if not info_file.is_file():
        raise FileNotFoundError(f'{root}: no meta/info.json, not a LeRobot dataset')
    info = json.loads(info_file.read_text())
    if info.get('codebase_version') != CODEBASE_VERSION:
        raise ValueError(f'{root} is LeRobot format {info.get("codebase_version")!r}; this '
                         f"reads {CODEBASE_VERSION} (convert older ones with lerobot's "
                         'convert_dataset_v21_to_v30)')
    features, fps = info['features'], int(info['fps'])
    missing = [k for k in ('observation.state', 'action') if k not in features]
    if missing:
        raise ValueError(f'{root} has no {missing} feature; features: {sorted(features)}')
    images = sorted(k for k, v in features.items() if v['dtype'] in ('image', 'video'))
    tasks = _task_names(pq, root)
    episodes = []
    for file in sorted((root / 'meta' / 'episodes').glob('chunk-*/file-*.parquet')):
        episodes += pq.read_table(file).to_pylist()
    if not episodes:
        raise ValueError(f'{root}/meta/episodes holds no episodes')
    episodes.sort(key=lambda row: row['episode_index'])
    env_args = {'source': 'lerobot', 'root': str(root), 'robot_type': info.get('robot_type'),
                'fps': fps, 'control_dt': 1.0 / fps,
                'cameras': [k.removeprefix('observation.images.') for k in images]}
    tables: dict[Path, object] = {}
    with EpisodeWriter(out, env_args=env_args) as writer:
        for row in episodes:
            path = root / info['data_path'].format(chunk_index=row['data/chunk_index'],
                                                   file_index=row['data/file_index'])
            if path not in tables:
                tables = {path: _read_table(pq, path, 'a data file')}  # files in order
            table = tables[path]
            mask = table.column('episode_index').to_numpy() == row['episode_index']
            data = table.filter(pa.array(mask))
            data = data.take(pa.array(np.argsort(data.column('frame_index').to_numpy())))
            n = data.num_rows
            if n != row['length']:
                raise ValueError(f'{path} holds {n} frames of episode {row["episode_index"]}, '
                                 f'its metadata says {row["length"]}')
            obs = {'proprio': _vectors(data, 'observation.state')}
            for key in images:
                name = key.removeprefix('observation.images.')
                obs[f'{name}/rgb'] = _frames(root, info, key, row, data, fps)
            dones = _vectors(data, 'next.done', bool, np.zeros((n, 1), bool))[:, 0]
            dones = dones.astype(np.uint8)
            dones[-1] = 1
            task_index = int(data.column('task_index')[0]) if 'task_index' in \
                data.column_names else 0
            writer.add_episode({
                'obs': obs, 'actions': _vectors(data, 'action'),
                'rewards': _vectors(data, 'next.reward', np.float32, np.zeros((n, 1)))[:, 0],
                'dones': dones,
                'success': _vectors(data, 'next.success', bool, np.zeros((n, 1), bool))[:, 0],
                'stage': np.zeros(n, np.int32), 'stage_text': [''] * n,
                'instruction': tasks[task_index] if task_index < len(tasks) else ''},
                attrs={'lerobot_episode_index': int(row['episode_index'])})
    return len(episodes)


def main(argv: list[str] | None = None, command: str = 'lerobot-export') -> int:
    """`embodied-vision lerobot-export` / `lerobot-import`."""
    import argparse
    parser = argparse.ArgumentParser(prog=f'embodied-vision {command}')
    if command == 'lerobot-export':
        parser.add_argument('episodes', nargs='+', help='episode files (collect)')
        parser.add_argument('--out', required=True, help='new LeRobotDataset folder')
        parser.add_argument('--images', action='store_true',
                            help='PNG frames in the data files instead of H.264 videos')
        args = parser.parse_args(argv)
        info = export_lerobot(args.episodes, args.out, videos=not args.images)
        print(f'wrote {info["total_episodes"]} episodes ({info["total_frames"]} frames, '
              f'{info["fps"]} fps) to {args.out} (LeRobotDataset {CODEBASE_VERSION})')
    else:
        parser.add_argument('root', help='LeRobotDataset v3.0 folder')
        parser.add_argument('--out', required=True, help='episode file to write (.hdf5)')
        args = parser.parse_args(argv)
        count = import_lerobot(args.root, args.out)
        print(f'wrote {count} episodes of {args.root} to {args.out}')
    return 0


def import_main(argv: list[str] | None = None) -> int:
    """`embodied-vision lerobot-import`."""
    return main(argv, 'lerobot-import')
