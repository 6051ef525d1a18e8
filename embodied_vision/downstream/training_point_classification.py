"""Object classification by fine-tuning an I2P-MAE / Point-M2AE encoder, as a training task.

I2P-MAE (Zhang et al., CVPR 2023, https://arxiv.org/abs/2212.06785; upstream
`tools/runner_finetune.py`) reports fine-tuning accuracy on ScanObjectNN (partial scans with
background) and ModelNet40. The recipe, per split:

- points: each cloud is reduced by FPS to `oversample` x `num_points` (1200 for 1024, 2400 for
  2048) once, then every training step takes a random `num_points` of those; evaluation uses
  FPS to exactly `num_points`;
- augmentation: ScanObjectNN scale U(0.9, 1.1) and a random rotation about the up (y) axis;
  ModelNet40 scale-and-translate (`augment: scale_translate`);
- loss: cross-entropy, label smoothing 0.2 on ModelNet40, none on ScanObjectNN;
- AdamW lr 5e-4, weight decay 0.05, cosine with warm-up, grad-norm clip 10 (the config).

Evaluation on the test split: `accuracy`, `class_accuracy` (mean per class) and the same on up
to `eval_train` training clouds. `classification_eval.json` keeps each test cloud's
correctness so that arms can be compared with paired intervals
(`downstream.svm_protocol.accuracy_difference`). `export` writes the classifier
(`save_point_classifier`) to `out_dir/classifier`.

    embodied-vision train experiment=i2p_mae_finetune task.root=shapes \\
        task.backbone_checkpoint=runs/i2p_mae_pretrain/encoder
"""
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import Dataset

from embodied_vision.data.point_clouds import read_point_cloud_split
from embodied_vision.downstream.point_classification import (
    create_point_classifier,
    save_point_classifier,
)
from embodied_vision.layers.point_ops import farthest_point_sample
from embodied_vision.pretrain.training_i2p_mae_pretrain import normalize_cloud
from embodied_vision.training.registry import register_task

__all__ = ['AUGMENTATIONS', 'EVAL_FILE', 'PointClassificationTask', 'rotate_about_up']

_logger = logging.getLogger(__name__)
EVAL_FILE = 'classification_eval.json'
AUGMENTATIONS = ('scale_rotate', 'scale_translate', 'none')


def rotate_about_up(points: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """`(B, N, 3)` rotated by `angle (B,)` radians about the y (up) axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    rotation = torch.stack([torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1),
                            torch.stack([-s, zero, c], -1)], -2)                # (B, 3, 3)
    return points @ rotation.transpose(1, 2).to(points)


class _Pools(Dataset):
    """Items `{'points': (num_points, 3), 'label'}`: a random subset of a cloud's FPS pool."""

    def __init__(self, pools: torch.Tensor, labels: np.ndarray, num_points: int):
        self.pools, self.labels, self.num_points = pools, torch.from_numpy(labels), num_points

    def __len__(self) -> int:
        return len(self.pools)

    def __getitem__(self, i: int) -> dict:
        keep = torch.randperm(self.pools.shape[1])[:self.num_points]
        return {'points': normalize_cloud(self.pools[i, keep]), 'label': self.labels[i]}


def _fps(points: np.ndarray, n: int, batch: int = 64) -> torch.Tensor:
    clouds = torch.from_numpy(np.asarray(points, np.float32))
    out = []
    for start in range(0, len(clouds), batch):
        chunk = clouds[start:start + batch]
        out.append(torch.gather(chunk, 1, farthest_point_sample(chunk, n)[..., None]
                                .expand(-1, -1, 3)))
    return torch.cat(out)


@register_task('point_classification')
class PointClassificationTask:
    """Fine-tune a `PointClassifier` on labelled object clouds.

    Args:
        root: dataset folder (`embodied-vision shapes`, ScanObjectNN or ModelNet40 files).
        layout: 'scanobjectnn' (partial scans), 'modelnet40' (full clouds) or 'auto'.
        variant: ScanObjectNN file variant ('' = the plain OBJ_BG files).
        backbone / backbone_checkpoint / backbone_kwargs: the encoder to start from (None
            checkpoint: from scratch).
        group_sizes, local_radius, pooling, dropout: the classifier (upstream's ScanObjectNN
            settings by default).
        label_smoothing: cross-entropy label smoothing (0.2 for ModelNet40).
        augment: one of `AUGMENTATIONS`.
        oversample: training FPS pool over `num_points` (1200 / 1024).
        train_subset: use only the first this many training clouds (0: all), for
            label-efficiency studies.
        eval_train: training clouds scored at evaluation.
        eval_batch: evaluation batch size.
    """

    def __init__(self, root: str, layout: str = 'scanobjectnn', variant: str = '',
                 backbone: str = 'i2p_mae_small', backbone_checkpoint: str | None = None,
                 backbone_kwargs: dict | None = None, group_sizes=(32, 16, 16),
                 local_radius=(0.48, 0.96, 1.92), pooling: str = 'concat',
                 dropout: float = 0.5, label_smoothing: float = 0.0,
                 augment: str = 'scale_rotate', oversample: float = 1200 / 1024,
                 train_subset: int = 0, eval_train: int = 200, eval_batch: int = 32):
        if augment not in AUGMENTATIONS:
            raise ValueError(f'augment={augment!r} is not one of {AUGMENTATIONS}')
        if oversample < 1.0:
            raise ValueError(f'oversample={oversample} must be >= 1')
        train = read_point_cloud_split(root, 'train', layout, variant)
        test = read_point_cloud_split(root, 'test', layout, variant)
        if train_subset:
            train.points, train.labels = train.points[:train_subset], \
                train.labels[:train_subset]
        self.model = create_point_classifier(
            train.shape_names, backbone, backbone_checkpoint, backbone_kwargs,
            group_sizes, local_radius, pooling, dropout)
        n = self.model.num_points
        if train.points.shape[1] < n:
            raise ValueError(f'{root}: clouds have {train.points.shape[1]} points, the model '
                             f'takes {n}; set task.backbone_kwargs.num_points')
        pool = min(train.points.shape[1], math.ceil(n * oversample))
        self.train_pools = _fps(train.points, pool)
        self.train_labels = train.labels
        self.test_points = normalize_cloud(_fps(test.points, n))
        self.test_labels = test.labels
        self.eval_points = normalize_cloud(_fps(train.points[:eval_train], n))
        self.eval_labels = train.labels[:eval_train]
        self.label_smoothing, self.augment = float(label_smoothing), augment
        self.eval_batch, self.num_points = eval_batch, n
        self._generator = torch.Generator().manual_seed(0)
        self.report: dict = {}
        _logger.info('point classification: %d training / %d test clouds of %s (%d classes), '
                     'backbone %s from %s', len(train.labels), len(test.labels), root,
                     len(train.shape_names), backbone, backbone_checkpoint or 'scratch')

    # ------------------------------------------------------------------ training
    def train_dataset(self) -> Dataset:
        return _Pools(self.train_pools, self.train_labels, self.num_points)

    def _augment(self, points: torch.Tensor) -> torch.Tensor:
        b, g = points.shape[0], self._generator
        if self.augment == 'scale_rotate':
            scale = torch.rand(b, 1, 1, generator=g) * 0.2 + 0.9
            angle = torch.rand(b, generator=g) * 2 * math.pi
            return rotate_about_up(points * scale.to(points), angle)
        if self.augment == 'scale_translate':
            scale = torch.rand(b, 1, 3, generator=g) * (1.5 - 2 / 3) + 2 / 3
            shift = (torch.rand(b, 1, 3, generator=g) * 2 - 1) * 0.2
            return points * scale.to(points) + shift.to(points)
        return points

    def loss(self, model, batch) -> tuple[torch.Tensor, dict]:
        logits = model(self._augment(batch['points']))
        labels = batch['label'].long()
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return loss, {'train_accuracy': float((logits.argmax(1) == labels).float().mean())}

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict(self, model, points: torch.Tensor) -> np.ndarray:
        device = next(model.parameters()).device
        out = [model(points[i:i + self.eval_batch].to(device)).argmax(1).cpu()
               for i in range(0, len(points), self.eval_batch)]
        return torch.cat(out).numpy()

    @staticmethod
    def scores(predictions: np.ndarray, labels: np.ndarray) -> dict:
        correct = predictions == labels
        per_class = [correct[labels == k].mean() for k in np.unique(labels)]
        return {'accuracy': float(correct.mean()), 'class_accuracy': float(np.mean(per_class))}

    def evaluate(self, model, step: int) -> dict:
        was_training = model.training
        model.eval()
        predictions = self.predict(model, self.test_points)
        results = self.scores(predictions, self.test_labels)
        train = self.scores(self.predict(model, self.eval_points), self.eval_labels)
        results.update({f'train_{k}': v for k, v in train.items()})
        self.report = {'step': step, 'labels': self.test_labels.tolist(),
                       'correct': (predictions == self.test_labels).astype(int).tolist(),
                       **results}
        model.train(was_training)
        return results

    def export(self, model, out_dir: Path) -> Path:
        """Write the classifier and `classification_eval.json` (the final test scores)."""
        out_dir = Path(out_dir)
        self.evaluate(model, self.report.get('step', -1))
        (out_dir / EVAL_FILE).write_text(json.dumps(self.report) + '\n')
        return save_point_classifier(model, out_dir / 'classifier')
