"""Semantic voxel labelling on a NeRF-MAE backbone: a class per voxel of a radiance grid.

NeRF-MAE (Irshad et al., ECCV 2024, https://arxiv.org/abs/2404.01300) evaluates its
pretraining by fine-tuning on voxel labelling (upstream `run_voxel_semantics.py`): the
pretrained Swin encoder and UNETR decoder run unmasked on the whole grid and a fresh 1^3
convolution maps the decoder's last features to class logits, trained with a class-weighted
per-voxel cross-entropy. Here the backbone is any registered full `NerfMAE`
(`nerf_mae_pretrain_swin_*`), from random init, our pretraining export or the released
`nerf_mae_pretrained.pt`; its reconstruction head (`out`) and `mask_token` are not used.

Labels are those of `embodied-vision grids` (`voxel_<name>/`, class 0 = background: table,
floor, empty space). Only occupied voxels (input alpha > `occupied_alpha`) are labelled and
scored: empty space is background by construction, and `predict` returns 0 there.

Checkpoint: a `head` artefact named `nerf_mae_semantics` (`checkpoints.artifact`), with the
class names. Weights licence: that of the backbone's initialisation (the released NeRF-MAE
weights are CC BY-NC 4.0, recorded and warned about on load).
"""
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from embodied_vision.checkpoints import load_head
from embodied_vision.checkpoints.artifact import is_artifact, save_artifact
from embodied_vision.encoders import create_encoder, load_encoder
from embodied_vision.encoders.nerf_mae import NerfMAE
from embodied_vision.layers.unetr import UnetOutBlock

__all__ = ['EVAL_FILE', 'HEAD_NAME', 'VoxelSemanticsModel', 'class_weights', 'confusion_matrix',
           'create_voxel_semantics_model', 'iou_per_class', 'load_voxel_semantics_model',
           'mean_iou', 'save_voxel_semantics_model', 'voxel_loss']

HEAD_NAME = 'nerf_mae_semantics'
EVAL_FILE = 'semantics_eval.json'  # a run's per-scene confusions (training task, compare)


class VoxelSemanticsModel(nn.Module):
    """`(B, 4, X, Y, Z)` grid -> `(B, K, X, Y, Z)` class logits (NeRF-MAE encoder + decoder).

    Args:
        backbone: a full `NerfMAE`; its encoder and decoder blocks are used, unmasked.
        class_names: the K class names, background first.
        occupied_alpha: voxels at or below this input alpha are empty (background).
    """

    def __init__(self, backbone: NerfMAE, class_names, occupied_alpha: float = 0.01):
        super().__init__()
        if not isinstance(backbone, NerfMAE):
            raise ValueError(f'the backbone must be a full NeRF-MAE (encoder + decoder, '
                             f'nerf_mae_pretrain_swin_*), got {type(backbone).__name__}')
        self.class_names = [str(name) for name in class_names]
        if len(self.class_names) < 2:
            raise ValueError(f'need at least 2 classes (background first), got '
                             f'{self.class_names}')
        self.backbone = backbone
        self.occupied_alpha = float(occupied_alpha)
        self.head = UnetOutBlock(backbone.patch_embed_dim // 2, len(self.class_names))
        self.backbone_source = ''

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_contract(self):
        return self.backbone.input_contract

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """Logits over the grid's own extent (the padding the backbone adds is cropped)."""
        b = self.backbone
        padded, _ = b.pad_input(grid)
        f0, f1, f2, f3 = (m.permute(0, 4, 1, 2, 3) for m in b.run_stages(b.embed(padded)))
        x = b.decoder2(b.decoder3(b.decoder4(f3, f2), f1), f0)
        logits = self.head(b.decoder1(x))
        return logits[:, :, :grid.shape[2], :grid.shape[3], :grid.shape[4]]

    def occupied(self, grid: torch.Tensor) -> torch.Tensor:
        """`(B, X, Y, Z)` bool: the voxels that get a class (input alpha above the floor)."""
        return grid[:, 3] > self.occupied_alpha

    @torch.no_grad()
    def predict(self, grid: torch.Tensor) -> torch.Tensor:
        """`(B, X, Y, Z)` int64 class per voxel; 0 where the grid is empty."""
        labels = self(grid).argmax(1)
        return torch.where(self.occupied(grid), labels, torch.zeros_like(labels))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        return {f'backbone.{name}' for name in self.backbone.no_weight_decay()}

    # ------------------------------------------------------------------------- export
    def example_inputs(self, batch_size: int = 2, size: int | None = None,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor]:
        side = size or self.backbone.resolution
        return (torch.rand((batch_size, 4, side, side, side), generator=generator),)

    def dynamic_shapes(self, n_inputs: int = 1, max_batch: int = 64) -> tuple[dict, ...]:
        batch = torch.export.Dim('batch', min=1, max=max(2, max_batch))
        return tuple({0: batch} for _ in range(n_inputs))

    def export_names(self, n_inputs: int = 1) -> tuple[list[str], list[str]]:
        return ['grid'], ['logits']

    def config(self) -> dict:
        """The JSON config that rebuilds this model (`load_voxel_semantics_model`)."""
        return {'backbone': self.backbone.name,
                'backbone_kwargs': dict(self.backbone.init_kwargs),
                'backbone_source': self.backbone_source, 'class_names': self.class_names,
                'occupied_alpha': self.occupied_alpha}


def create_voxel_semantics_model(class_names, backbone: str = 'nerf_mae_pretrain_swin_mini',
                                 backbone_checkpoint: str | os.PathLike | None = None,
                                 occupied_alpha: float = 0.01,
                                 **backbone_overrides) -> VoxelSemanticsModel:
    """A `VoxelSemanticsModel` on a registered full NeRF-MAE.

    Args:
        class_names: K class names, background first (a dataset's `classes.json`).
        backbone: registry name (`nerf_mae_pretrain_swin_*`).
        backbone_checkpoint: None (random init), our pretraining export (`encoder/`) or the
            released `nerf_mae_pretrained.pt`; loaded strictly, its licence recorded.
        **backbone_overrides: architecture arguments, e.g. `resolution=64`.
    """
    if backbone_checkpoint is not None and is_artifact(backbone_checkpoint):
        model = _recorded_backbone(backbone, backbone_checkpoint, backbone_overrides)
    else:
        model = create_encoder(backbone, checkpoint=backbone_checkpoint, **backbone_overrides)
    semantics = VoxelSemanticsModel(model, class_names, occupied_alpha)
    semantics.backbone_source = str(backbone_checkpoint or '')
    return semantics


def _recorded_backbone(backbone: str, path, overrides: dict) -> NerfMAE:
    """Our export of `backbone` with the architecture it records (pretraining-only settings
    such as `masking_prob` may differ); `overrides` must give the same tensor shapes."""
    model = load_encoder(path)
    if model.name.split('.')[0] != backbone.split('.')[0]:
        raise ValueError(f'{path} holds {model.name}, not {backbone}; set backbone to it')
    with torch.device('meta'):
        wanted = create_encoder(backbone, **overrides).state_dict()
    found = model.state_dict()
    differ = [k for k in wanted if k not in found or found[k].shape != wanted[k].shape]
    if differ or set(found) - set(wanted):
        raise ValueError(f'{path} ({model.name}, {dict(model.init_kwargs)}) is another '
                         f'architecture than {backbone} with {overrides}: {differ[:3]} differ')
    return model


def save_voxel_semantics_model(model: VoxelSemanticsModel, directory) -> Path:
    """Write the model as a `head` artefact (`checkpoints.artifact`) to `directory`."""
    return save_artifact(directory, model, 'head', HEAD_NAME, model.config())


def load_voxel_semantics_model(directory, map_location='cpu') -> VoxelSemanticsModel:
    """Rebuild a model written by `save_voxel_semantics_model` (eval mode); warns when the
    weights are non-commercial."""
    def build(config: dict) -> VoxelSemanticsModel:
        backbone = create_encoder(config['backbone'], **config.get('backbone_kwargs', {}))
        return VoxelSemanticsModel(backbone, config['class_names'],
                                   config.get('occupied_alpha', 0.01))
    return load_head(directory, HEAD_NAME, build, 'save_voxel_semantics_model', map_location)


# --------------------------------------------------------------------------- metrics
def class_weights(counts: np.ndarray, power: float = 0.5) -> torch.Tensor:
    """Cross-entropy weights `(count / total) ** -power`, normalised to mean 1 over classes
    that occur (weight 0 for absent ones); power 0.5 softens inverse frequency."""
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = (counts[present] / counts.sum()) ** -power
    weights[present] /= weights[present].mean()
    return torch.from_numpy(weights).float()


def voxel_loss(logits: torch.Tensor, labels: torch.Tensor, occupied: torch.Tensor,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Class-weighted cross-entropy averaged over the occupied voxels (weighted mean)."""
    if not occupied.any():
        return logits.sum() * 0.0
    picked = logits.movedim(1, -1)[occupied]  # (N, K)
    return F.cross_entropy(picked, labels[occupied],
                           weight=None if weights is None else weights.to(logits))


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, where: torch.Tensor,
                     num_classes: int) -> np.ndarray:
    """`(K, K)` int64 counts, rows = true class, columns = predicted, over `where` voxels."""
    t, p = target[where].long().flatten(), pred[where].long().flatten()
    if t.numel() and (int(t.max()) >= num_classes or int(t.min()) < 0):
        raise ValueError(f'labels outside 0..{num_classes - 1}: '
                         f'{sorted(set(t.unique().tolist()) - set(range(num_classes)))}')
    counts = torch.bincount(t * num_classes + p, minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU of each class (NaN for a class neither true nor predicted anywhere)."""
    confusion = np.asarray(confusion, np.float64)
    hits = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - hits
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(union > 0, hits / union, np.nan)


def mean_iou(confusion: np.ndarray, skip_background: bool = False) -> float:
    """Mean IoU over the classes that occur in the targets (rows with counts); with
    `skip_background`, over the object classes (1..K-1) only."""
    confusion = np.asarray(confusion)
    present = confusion.sum(1) > 0
    if skip_background:
        present[0] = False
    if not present.any():
        return float('nan')
    return float(np.nanmean(iou_per_class(confusion)[present]))
