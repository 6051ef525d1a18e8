"""Export an episode's camera stream to MP4 or GIF for a person to look at.

    >>> from embodied_vision.data.video import export_episode_video
    >>> export_episode_video('demos.hdf5', 'demo0_front.mp4', episode=0, camera='front')

Depth streams are rendered as 8-bit greyscale (near = bright), normalised per episode over
valid (> 0) pixels. The container follows the file suffix (`.mp4`: H.264 through
imageio-ffmpeg; `.gif`: Pillow).
"""
from __future__ import annotations

import logging
import os

import imageio.v2 as imageio
import numpy as np

from embodied_vision.data.episodes import EpisodeReader

__all__ = ['depth_to_uint8', 'export_episode_video', 'write_video']

_logger = logging.getLogger(__name__)
_SUFFIXES = ('.mp4', '.gif')


def depth_to_uint8(depth: np.ndarray) -> np.ndarray:
    """Map `(T, H, W)` metric depth to `(T, H, W, 3)` uint8 greyscale (near = bright)."""
    depth = np.asarray(depth, dtype=np.float32)
    valid = depth > 0
    if not valid.any():
        return np.zeros(depth.shape + (3,), np.uint8)
    lo, hi = np.percentile(depth[valid], [1, 99])
    scaled = 1.0 - np.clip((depth - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    grey = np.where(valid, scaled * 255.0, 0.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 20.0) -> str:
    """Write `(T, H, W, 3)` uint8 frames to `path` (.mp4 or .gif); returns the path."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _SUFFIXES:
        raise ValueError(f'unsupported video suffix {suffix!r}; valid: {list(_SUFFIXES)}')
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f'frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}')
    if suffix == '.gif':
        imageio.mimsave(path, list(frames), duration=1000.0 / fps, loop=0)
    else:
        with imageio.get_writer(path, fps=fps, macro_block_size=1, codec='libx264',
                                quality=8) as writer:
            for frame in frames:
                writer.append_data(frame)
    _logger.info('wrote %d frames to %s', len(frames), path)
    return path


def export_episode_video(h5_path: str | os.PathLike, out_path: str | os.PathLike,
                         episode: int = 0, camera: str = 'front', stream: str = 'rgb',
                         fps: float = 20.0) -> str:
    """Export camera `camera`'s `stream` (`rgb` or `depth`) of one recorded episode.

    Raises:
        ValueError: unknown camera/stream, listing the recorded observation keys.
    """
    if stream not in ('rgb', 'depth'):
        raise ValueError(f"stream must be 'rgb' or 'depth', got {stream!r}")
    key = f'{camera}/{stream}'
    with EpisodeReader(h5_path) as reader:
        keys = reader.obs_keys(episode)
        if key not in keys:
            raise ValueError(f'episode {episode} has no observation {key!r}; recorded: {keys}')
        frames = reader.episode(episode, obs_keys=[key])['obs'][key]
    if stream == 'depth':
        frames = depth_to_uint8(frames)
    return write_video(frames, out_path, fps=fps)
