"""Tool-camera videos for Manipulate-by-Seeing, read from recorded episodes.

A video is one episode of `embodied_vision.data.episodes` with a tool (wrist) camera and the
tool pose in `obs/proprio` (xyz + quaternion w-x-y-z). A sample is the frame o_t, the frame
o_{t+k} (k = `frame_stride`), a goal frame o_g drawn uniformly from the rest of the video,
the action a_t = unit tool-frame translation t -> t+k, and the gripper label (the commanded
grip at t closes). Steps whose motion is <= `min_translation` are not samples, as in the
paper. Training frames are resized, randomly cropped and colour-jittered; validation frames
are centre-cropped.
"""
from collections.abc import Sequence
import os

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from embodied_vision.data.episodes import EpisodeReader
from embodied_vision.data.images import resize_center_crop
from embodied_vision.policies.mbs.configuration_mbs import MbSConfig
from embodied_vision.policies.mbs.modeling_mbs import ActionPool, tool_frame_directions

__all__ = ['MbSVideoDataset', 'load_videos', 'split_videos']


def load_videos(paths: Sequence[str | os.PathLike], camera: str) -> list[dict]:
    """Per video: file, demo group, tool positions, quaternions and grip commands."""
    videos = []
    for path in paths:
        with EpisodeReader(path) as reader:
            key = f'{camera}/rgb'
            for index, demo in enumerate(reader.demos):
                episode = reader.episode(index, obs_keys=['proprio'])
                if key not in reader.obs_keys(index):
                    raise ValueError(f'{path} {demo} has no {key!r} frames; recorded: '
                                     f'{reader.obs_keys(index)}')
                proprio = episode['obs']['proprio']
                videos.append({'path': os.fspath(path), 'demo': demo,
                               'positions': proprio[:, :3].astype(np.float64),
                               'quats': proprio[:, 3:7].astype(np.float64),
                               'grip': episode['actions'][:, 3].astype(np.float32)})
    if not videos:
        raise ValueError(f'no episodes in {list(paths)}')
    return videos


def split_videos(videos: list[dict], val_fraction: float, seed: int
                 ) -> tuple[list[dict], list[dict]]:
    """Split by video (never by frame), seeded."""
    order = np.random.default_rng(seed).permutation(len(videos))
    n_val = int(round(val_fraction * len(videos))) if len(videos) > 1 else 0
    val = set(order[:n_val].tolist())
    return ([v for i, v in enumerate(videos) if i not in val],
            [v for i, v in enumerate(videos) if i in val])


def action_pool(videos: list[dict], config: MbSConfig) -> ActionPool:
    """Every observed tool direction of `videos` (at most `config.max_pool_size`)."""
    pool = ActionPool.from_trajectories([(v['positions'], v['quats']) for v in videos],
                                        config.frame_stride, config.min_translation)
    if config.max_pool_size is not None:
        pool = pool.farthest_point_subset(config.max_pool_size)
    return pool


class MbSVideoDataset(Dataset):
    """(o_t, o_{t+k}, o_goal, a_t, gripper) samples from tool-camera videos."""

    def __init__(self, videos: list[dict], config: MbSConfig, camera: str = 'wrist',
                 train: bool = True):
        self.videos, self.config, self.train = videos, config, train
        self.key = f'{camera}/rgb'
        self.index: list[tuple[int, int]] = []
        self.directions = []
        for v, video in enumerate(videos):
            directions, length = tool_frame_directions(video['positions'], video['quats'],
                                                       config.frame_stride)
            self.directions.append(torch.from_numpy(directions))
            self.index += [(v, t) for t in np.flatnonzero(length > config.min_translation)]
        if not self.index:
            raise ValueError('no tool motion longer than min_translation='
                             f'{config.min_translation} m in these videos')
        self.jitter = v2.ColorJitter(*(config.color_jitter,) * 3, min(0.5, config.color_jitter)) \
            if train and config.color_jitter > 0 else None
        self._files: dict[str, h5py.File] = {}

    def __len__(self) -> int:
        return len(self.index)

    def _frames(self, video: dict, steps: list[int]) -> list[torch.Tensor]:
        handle = self._files.get(video['path'])
        if handle is None:
            handle = self._files[video['path']] = h5py.File(video['path'], 'r')
        frames = handle['data'][video['demo']]['obs'][self.key]
        return [torch.from_numpy(np.ascontiguousarray(frames[t])).permute(2, 0, 1)
                for t in steps]

    def _view(self, frame: torch.Tensor, corner: list[int] | None) -> torch.Tensor:
        """The centre crop (validation) or the crop at `corner` (None: a random one)."""
        size, resize = self.config.image_size, self.config.resize_to
        if not self.train:
            return resize_center_crop(frame[None], (size, size), resize / size)[0]
        frame = resize_center_crop(frame[None], (resize, resize), 1.0)[0]
        top, left = corner or self._random_corner()
        frame = frame[:, top:top + size, left:left + size]
        return self.jitter(frame) if self.jitter is not None else frame

    def _random_corner(self) -> list[int]:
        """(top, left) of a random training crop."""
        span = self.config.resize_to - self.config.image_size + 1
        return torch.randint(0, span, (2,)).tolist()

    def views(self, frames: list[torch.Tensor]) -> list[torch.Tensor]:
        """The crops (and jitter) of one sample's uint8 `(3, H, W)` frames."""
        shared = self.train and self.config.shared_crop
        corner = self._random_corner() if shared else None
        return [self._view(frame, corner) for frame in frames]

    def __getitem__(self, i: int) -> dict:
        v, t = self.index[i]
        video = self.videos[v]
        stride, last = self.config.frame_stride, len(video['positions']) - 1
        goal = int(torch.randint(t + stride, last + 1, ()).item())
        frames = self._frames(video, [t, t + stride, goal])
        obs, next_obs, goal_obs = self.views(frames)
        return {'obs': obs, 'next_obs': next_obs, 'goal': goal_obs,
                'action': self.directions[v][t],
                'gripper': torch.tensor(float(video['grip'][t] > 0))}

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_files'] = {}
        return state
