"""Manipulate-by-Seeing training as a task of `embodied_vision.training.Trainer`.

    embodied-vision collect task=PickPlace n=60 cameras=[wrist] size=128 expert_noise=0.3 \
        out=pick_videos.hdf5
    embodied-vision train experiment=mbs_pickplace task.videos=[pick_videos.hdf5]
"""
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from embodied_vision.policies.mbs.configuration_mbs import MbSConfig
from embodied_vision.policies.mbs.data_mbs import (
    MbSVideoDataset,
    action_pool,
    load_videos,
    split_videos,
)
from embodied_vision.policies.mbs.modeling_mbs import (
    GripperClassifier,
    MbSModel,
    MbSPolicy,
    mbs_loss,
)
from embodied_vision.training.registry import register_task

__all__ = ['MbSTask']


class _MbSWithGripper(nn.Module):
    def __init__(self, config: MbSConfig, train_gripper: bool):
        super().__init__()
        self.mbs = MbSModel(config)
        self.gripper = GripperClassifier(config.encoder, config.encoder_checkpoint) \
            if train_gripper else None


@register_task('mbs')
class MbSTask:
    """Train R + F (and optionally the gripper classifier) on tool-camera videos.

    Args:
        videos: HDF5 episode files with a tool camera and proprio.
        camera: the tool camera's name.
        val_fraction: videos held out (split by video).
        seed: seeds the split.
        train_gripper: also train the gripper classifier (a separate encoder, BCE).
        max_delta: metres per env control step, used by the exported planner.
        **config: `MbSConfig` fields.
    """

    def __init__(self, videos: Sequence[str], camera: str = 'wrist', val_fraction: float = 0.2,
                 seed: int = 6767, train_gripper: bool = True, max_delta: float = 0.02,
                 **config):
        self.config = MbSConfig(**config)
        self.max_delta = max_delta
        loaded = load_videos(list(videos), camera)
        train_videos, val_videos = split_videos(loaded, val_fraction, seed)
        self.pool = action_pool(loaded, self.config)  # every video of the task, as official
        self._train = MbSVideoDataset(train_videos, self.config, camera, train=True)
        self.val = MbSVideoDataset(val_videos, self.config, camera, train=False) \
            if val_videos else None
        self.model = _MbSWithGripper(self.config, train_gripper)

    def train_dataset(self) -> MbSVideoDataset:
        return self._train

    def loss(self, model, batch) -> tuple[torch.Tensor, dict]:
        model = model.module if hasattr(model, 'module') else model
        loss, logs = mbs_loss(model.mbs, batch['obs'], batch['next_obs'], batch['goal'],
                              batch['action'], self.pool)
        if model.gripper is not None:
            bce = F.binary_cross_entropy_with_logits(model.gripper(batch['obs']),
                                                     batch['gripper'])
            loss = loss + bce
            logs['loss_gripper'] = bce.item()
        return loss, logs

    def evaluate(self, model, step: int) -> dict:
        if self.val is None:
            return {}
        torch.manual_seed(step)  # fixed goal draws per evaluation
        loader = torch.utils.data.DataLoader(self.val, batch_size=32)
        totals: dict[str, float] = {}
        count = 0
        device = next(model.parameters()).device
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, logs = self.loss(model, batch)
            logs['loss'] = loss.item()
            if model.gripper is not None:
                predicted = torch.sigmoid(model.gripper(batch['obs'])) > 0.5
                logs['gripper_accuracy'] = (predicted == batch['gripper'].bool()).float().mean(
                    ).item()
            n = len(batch['obs'])
            for key, value in logs.items():
                totals[key] = totals.get(key, 0.0) + value * n
            count += n
        return {k: v / count for k, v in totals.items()}

    def export(self, model, out_dir: Path) -> Path:
        """Save the planner (model, pool, gripper) as `out_dir/policy`."""
        policy = MbSPolicy(self.config, self.pool, self.max_delta, gripper=model.gripper)
        policy.model.load_state_dict(model.mbs.state_dict())
        return policy.save_pretrained(Path(out_dir) / 'policy')
