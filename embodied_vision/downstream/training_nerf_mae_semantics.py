"""Fine-tuning a NeRF-MAE backbone for semantic voxel labelling, as a training task.

NeRF-MAE (https://arxiv.org/abs/2404.01300) shows its pretraining's value by fine-tuning on
labelled grids; this task does that on a radiance-grid dataset with per-voxel classes
(`embodied-vision grids`, `voxel_<name>/`): the model is
`nerf_mae_semantics.VoxelSemanticsModel`, the loss a class-weighted cross-entropy over the
occupied voxels (weights `(frequency) ** -weight_power` from the labelled training voxels),
with random flips of the grid along x and y (`flip`).

`labelled_scenes=k` trains on the first k scenes of a fixed permutation (`subset_seed`) of the
training split, so every arm of a comparison sees the same labelled scenes; `seed` varies
the initialisation and the batch order. Evaluation on `eval_split` (default the test split,
which pretraining never sees): `miou` (classes that occur in the targets, background = the
table included), `miou_objects` (without background), `accuracy`, each over occupied voxels,
and `iou_<class>`. `export` writes the model (`model/`) and `semantics_eval.json`: the
per-scene confusion matrices, so that runs can be compared with a bootstrap over scenes
and seeds (`embodied-vision compare-semantics`).

    embodied-vision train experiment=nerf_mae_semantics task.root=grids64 \\
        task.backbone_checkpoint=runs/nerf_mae_pretrain/encoder task.labelled_scenes=8
"""
import json
import logging
from pathlib import Path

import numpy as np
from timm.optim import param_groups_weight_decay
import torch
from torch.utils.data import Dataset

from embodied_vision.data.radiance_grids import RadianceGridDataset
from embodied_vision.downstream.nerf_mae_semantics import (
    EVAL_FILE,
    class_weights,
    confusion_matrix,
    create_voxel_semantics_model,
    iou_per_class,
    mean_iou,
    save_voxel_semantics_model,
    voxel_loss,
)
from embodied_vision.encoders.nerf_mae import pad_grids
from embodied_vision.training.registry import register_task

__all__ = ['LabelledGrids', 'NerfMAESemanticsTask']

_logger = logging.getLogger(__name__)


class LabelledGrids(Dataset):
    """Items `{'grid': (4, X, Y, Z) float, 'labels': (X, Y, Z) int64}` held in memory, with
    optional random flips along x and y (both tensors flipped alike)."""

    def __init__(self, grids: list, labels: list, flip: bool = False):
        self.grids, self.labels, self.flip = grids, labels, flip

    def __len__(self) -> int:
        return len(self.grids)

    def __getitem__(self, i: int) -> dict:
        grid, labels = self.grids[i], self.labels[i].long()
        if self.flip:
            for axis in (0, 1):
                if torch.rand(()) < 0.5:
                    grid, labels = grid.flip(axis + 1), labels.flip(axis)
        return {'grid': grid, 'labels': labels}


def collate_labelled(samples: list[dict]) -> dict:
    """Grids zero-padded to the batch's largest side (labels padded with 0, unoccupied)."""
    size = max(max(s['grid'].shape[1:]) for s in samples)
    grids, _ = pad_grids([s['grid'] for s in samples], size)
    labels = torch.zeros((len(samples), *grids.shape[2:]), dtype=torch.int64)
    for i, s in enumerate(samples):
        x, y, z = s['labels'].shape
        labels[i, :x, :y, :z] = s['labels']
    return {'grid': grids, 'labels': labels}


@register_task('nerf_mae_semantics')
class NerfMAESemanticsTask:
    """Semantic voxel labelling with a NeRF-MAE backbone (pretrained or from random init).

    Args:
        root: dataset folder with per-voxel classes (`embodied-vision grids labels=true`).
        backbone: registry name of a full NeRF-MAE (`nerf_mae_pretrain_swin_*`).
        backbone_checkpoint: None (random init: the baseline), our pretraining export
            (`<run>/encoder`) or the released `nerf_mae_pretrained.pt`.
        backbone_kwargs: architecture overrides (e.g. `resolution: 64`).
        labelled_scenes: train on this many scenes of the training split (None: all).
        subset_seed: seeds the permutation the labelled scenes are taken from.
        eval_split: 'test' or 'val'.
        eval_scenes: at most this many evaluation scenes.
        occupied_alpha: voxels with input alpha above this are labelled and scored.
        weight_power: class weights `(frequency) ** -weight_power` (0: unweighted).
        weight_decay: AdamW decay of weights (not of norms, biases, `pos_embed`).
        flip: random flips along x and y during training.
        density_activation: 'relu' (our grids, ScanNet) or 'exp' (Instant-NGP grids).
        eval_batch: evaluation batch size.
    """

    def __init__(self, root: str, backbone: str = 'nerf_mae_pretrain_swin_mini',
                 backbone_checkpoint: str | None = None, backbone_kwargs: dict | None = None,
                 labelled_scenes: int | None = None, subset_seed: int = 0,
                 eval_split: str = 'test', eval_scenes: int = 64, occupied_alpha: float = 0.01,
                 weight_power: float = 0.5, weight_decay: float = 1e-3, flip: bool = True,
                 density_activation: str = 'relu', eval_batch: int = 4):
        if eval_split not in ('val', 'test'):
            raise ValueError(f"eval_split must be 'val' or 'test', got {eval_split!r}")
        train = RadianceGridDataset(root, 'train', density_activation, labels=['semantics'])
        held_out = RadianceGridDataset(root, eval_split, density_activation,
                                       labels=['semantics'])
        if not len(train) or not len(held_out):
            raise ValueError(f'{root}: need train and {eval_split} scenes, the split file '
                             f'lists {len(train)} and {len(held_out)}')
        class_names = train.classes
        if not class_names:
            raise ValueError(f'{root}: no classes.json, so the class names are unknown')
        order = np.random.default_rng(subset_seed).permutation(len(train))
        if labelled_scenes is not None:
            if not 1 <= int(labelled_scenes) <= len(train):
                raise ValueError(f'labelled_scenes={labelled_scenes}: the training split has '
                                 f'{len(train)} scenes')
            order = order[:int(labelled_scenes)]
        self.train_names = [train.ids[i] for i in order]
        self.model = create_voxel_semantics_model(
            class_names, backbone, backbone_checkpoint, occupied_alpha,
            **(backbone_kwargs or {}))
        size = self.model.backbone.resolution
        self.grids, self.labels = self._load(train, order, size)
        self.eval_names = held_out.ids[:eval_scenes]
        self.eval_grids, self.eval_labels = self._load(held_out, range(len(self.eval_names)),
                                                       size)
        counts = np.zeros(len(class_names), np.int64)
        for grid, labels in zip(self.grids, self.labels):
            occupied = grid[3] > occupied_alpha
            counts += np.bincount(labels[occupied].numpy(), minlength=len(class_names))
        self.class_counts = counts
        self.weights = class_weights(counts, weight_power) if weight_power else None
        self.weight_decay, self.flip, self.eval_batch = weight_decay, flip, eval_batch
        _logger.info('NeRF-MAE voxel semantics: %d labelled training scenes, %d %s scenes, '
                     '%d classes, backbone %s from %s', len(self.grids), len(self.eval_grids),
                     eval_split, len(class_names), backbone, backbone_checkpoint or 'random init')

    @staticmethod
    def _load(data: RadianceGridDataset, indices, size: int) -> tuple[list, list]:
        grids, labels = [], []
        for i in indices:
            item = data[int(i)]
            if max(item['grid'].shape[1:]) > size:
                raise ValueError(f'{data.root}: scene {data.ids[int(i)]} has extent '
                                 f'{list(item["grid"].shape[1:])}, larger than the model '
                                 f'resolution {size}; set task.backbone_kwargs.resolution')
            grids.append(item['grid'])
            labels.append(item['semantics'].to(torch.uint8))
        return grids, labels

    # ------------------------------------------------------------------ training
    def train_dataset(self) -> Dataset:
        return LabelledGrids(self.grids, self.labels, self.flip)

    def collate(self, samples: list[dict]) -> dict:
        return collate_labelled(samples)

    def trainable_parameters(self, model):
        return param_groups_weight_decay(model, self.weight_decay,
                                         no_weight_decay_list=model.no_weight_decay())

    def loss(self, model, batch) -> tuple[torch.Tensor, dict]:
        grid = batch['grid']
        logits = model(grid)
        loss = voxel_loss(logits, batch['labels'], model.occupied(grid), self.weights)
        return loss, {}

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def confusions(self, model) -> list[np.ndarray]:
        """One `(K, K)` confusion matrix per evaluation scene (occupied voxels)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        found = []
        for start in range(0, len(self.eval_grids), self.eval_batch):
            samples = [{'grid': g, 'labels': lab.long()} for g, lab in
                       zip(self.eval_grids[start:start + self.eval_batch],
                           self.eval_labels[start:start + self.eval_batch])]
            batch = collate_labelled(samples)
            grid = batch['grid'].to(device)
            pred, occupied = model.predict(grid).cpu(), model.occupied(grid).cpu()
            for i in range(len(samples)):
                found.append(confusion_matrix(pred[i], batch['labels'][i], occupied[i],
                                              model.num_classes))
        model.train(was_training)
        return found

    def metrics(self, confusion: np.ndarray, class_names) -> dict:
        results = {'miou': mean_iou(confusion),
                   'miou_objects': mean_iou(confusion, skip_background=True),
                   'accuracy': float(np.trace(confusion) / max(confusion.sum(), 1))}
        for name, iou in zip(class_names, iou_per_class(confusion)):
            if not np.isnan(iou):
                results[f'iou_{name}'] = float(iou)
        return results

    def evaluate(self, model, step: int) -> dict:
        return self.metrics(sum(self.confusions(model)), model.class_names)

    # -------------------------------------------------------------------- export
    def export(self, model, out_dir: Path) -> Path:
        """Write `model/` and `semantics_eval.json` (per-scene confusions and the metrics)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        per_scene = self.confusions(model)
        report = {'class_names': model.class_names,
                  'backbone_checkpoint': model.backbone_source,
                  'labelled_scenes': self.train_names,
                  'training_class_counts': self.class_counts.tolist(),
                  'metrics': self.metrics(sum(per_scene), model.class_names),
                  'scenes': {name: c.tolist() for name, c in zip(self.eval_names, per_scene)}}
        (out_dir / EVAL_FILE).write_text(json.dumps(report, indent=1))
        return save_voxel_semantics_model(model, out_dir / 'model')
