"""Object classification by fine-tuning an I2P-MAE / Point-M2AE encoder.

I2P-MAE (Zhang et al., CVPR 2023, https://arxiv.org/abs/2212.06785; upstream
`models/I2P_MAE_Finetune.py`) fine-tunes its pretrained hierarchical encoder on ModelNet40
and ScanObjectNN: the same groupers (larger groups: [32, 16, 16] for ScanObjectNN,
[48, 24, 24] for ModelNet40), the encoder with local attention (`local_radius`) and no
masking, a fresh LayerNorm `norm` on the last scale's tokens, a pooled feature (ScanObjectNN:
concat(mean, max); ModelNet40: mean + max) and an MLP head `cls_head_finetune`
(Linear-BN-ReLU-Dropout 0.5, twice, then Linear). Module names are upstream's
(`h_encoder.*` without `encoder_norms`, `norm.*`, `cls_head_finetune.{0,1,4,5,8}.*`).

The encoder comes from any registered I2P-MAE model (`i2p_mae*`, `i2p_mae_pretrain*`): random
init, our pretraining export or the released `pre-train.pth`; its weights licence is kept
and written with the classifier. Checkpoint: a `head` artefact named `point_classifier`.
"""
import os
from pathlib import Path

import torch
from torch import nn

from embodied_vision.checkpoints import load_head
from embodied_vision.checkpoints.artifact import is_artifact, licence_of, save_artifact
from embodied_vision.encoders import create_encoder, load_encoder
from embodied_vision.encoders.i2p_mae import I2PMAEEncoder
from embodied_vision.layers.point_tokens import group_scales
from embodied_vision.layers.point_transformer import HierarchicalEncoder

__all__ = ['HEAD_NAME', 'POOLINGS', 'PointClassifier', 'create_point_classifier',
           'load_point_classifier', 'save_point_classifier']

HEAD_NAME = 'point_classifier'
POOLINGS = ('concat', 'sum')  # concat(mean, max) (ScanObjectNN) or mean + max (ModelNet40)


class PointClassifier(nn.Module):
    """`(B, N, 3)` cloud -> `(B, K)` logits.

    Args:
        backbone: a registered I2P-MAE encoder; its `h_encoder` weights (without the
            pretraining `encoder_norms`) initialise this model's.
        class_names: the K class names.
        group_sizes: members per group at the three scales (upstream's fine-tuning sizes).
        local_radius: per scale, attention only between centers closer than this.
        pooling: one of `POOLINGS`.
        dropout: of the head's two hidden layers.
    """

    def __init__(self, backbone: I2PMAEEncoder, class_names, group_sizes=(32, 16, 16),
                 local_radius=(0.48, 0.96, 1.92), pooling: str = 'concat',
                 dropout: float = 0.5):
        super().__init__()
        if not isinstance(backbone, I2PMAEEncoder):
            raise ValueError(f'the backbone must be an I2P-MAE encoder (i2p_mae*), got '
                             f'{type(backbone).__name__}')
        if pooling not in POOLINGS:
            raise ValueError(f'pooling={pooling!r} is not one of {POOLINGS}')
        self.class_names = [str(c) for c in class_names]
        if len(self.class_names) < 2:
            raise ValueError(f'need at least 2 classes, got {self.class_names}')
        source = backbone.h_encoder
        blocks = source.encoder_blocks
        self.num_groups = list(backbone.num_groups)
        self.group_sizes = [int(k) for k in group_sizes]
        self.num_points, self.pooling = backbone.num_points, pooling
        self.h_encoder = HierarchicalEncoder(
            source.dims, [len(b.blocks) for b in blocks],
            [b.blocks[0].attn.num_heads for b in blocks],
            _drop_path_rate(source), local_radius, with_norms=False)
        state = {k: v for k, v in source.state_dict().items()
                 if not k.startswith('encoder_norms.')}
        self.h_encoder.load_state_dict(state, strict=True)
        width = source.dims[-1]
        self.norm = nn.LayerNorm(width)
        features = 2 * width if pooling == 'concat' else width
        self.cls_head_finetune = nn.Sequential(
            nn.Linear(features, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(256, 256), nn.BatchNorm1d(256),
            nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(256, len(self.class_names)))
        for m in self.cls_head_finetune:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.weights_license, self.non_commercial = licence_of(backbone)
        self.backbone_name, self.backbone_kwargs = backbone.name, dict(backbone.init_kwargs)
        self.backbone_source = ''
        self.local_radius, self.dropout = [float(r) for r in local_radius], float(dropout)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def features(self, points: torch.Tensor) -> torch.Tensor:
        """The pooled feature the head reads."""
        if points.ndim != 3 or points.shape[-1] != 3 or points.shape[1] < self.num_groups[0]:
            raise ValueError(f'expects (B, N >= {self.num_groups[0]}, 3) points, got '
                             f'{tuple(points.shape)}')
        scales = group_scales(points, self.num_groups, self.group_sizes)
        x = self.norm(self.h_encoder(scales)[-1].tokens)
        mean, top = x.mean(dim=1), x.amax(dim=1)
        return torch.cat([mean, top], dim=1) if self.pooling == 'concat' else mean + top

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.cls_head_finetune(self.features(points))

    def example_inputs(self, batch_size: int = 2, size: int | None = None,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor]:
        points = torch.randn(batch_size, size or self.num_points, 3, generator=generator)
        return (points / points.norm(dim=-1).amax(dim=1)[:, None, None],)

    def dynamic_shapes(self, n_inputs: int = 1, max_batch: int = 64) -> tuple[dict, ...]:
        batch = torch.export.Dim('batch', min=1, max=max(2, max_batch))
        return tuple({0: batch} for _ in range(n_inputs))

    def export_names(self, n_inputs: int = 1) -> tuple[list[str], list[str]]:
        return ['points'], ['logits']

    def config(self) -> dict:
        """The JSON config that rebuilds this model (`load_point_classifier`)."""
        return {'backbone': self.backbone_name, 'backbone_kwargs': self.backbone_kwargs,
                'backbone_source': self.backbone_source, 'class_names': self.class_names,
                'group_sizes': self.group_sizes, 'local_radius': self.local_radius,
                'pooling': self.pooling, 'dropout': self.dropout}


def _drop_path_rate(encoder: HierarchicalEncoder) -> float:
    last = encoder.encoder_blocks[-1].blocks[-1].drop_path
    return float(getattr(last, 'drop_prob', 0.0))


def create_point_classifier(class_names, backbone: str = 'i2p_mae_small',
                            backbone_checkpoint: str | os.PathLike | None = None,
                            backbone_kwargs: dict | None = None, group_sizes=(32, 16, 16),
                            local_radius=(0.48, 0.96, 1.92), pooling: str = 'concat',
                            dropout: float = 0.5) -> PointClassifier:
    """A `PointClassifier` on a registered I2P-MAE encoder.

    Args:
        class_names: K class names (a dataset's `shape_names.txt`).
        backbone: registry name (`i2p_mae*`, `i2p_mae_pretrain*`).
        backbone_checkpoint: None (random init), our pretraining export (`encoder/`, its
            recorded architecture) or the released `pre-train.pth`; loaded strictly.
        group_sizes, local_radius, pooling, dropout: see `PointClassifier`; the defaults are
            upstream's ScanObjectNN (OBJ-BG / PB_T50_RS) settings.
        backbone_kwargs: architecture arguments of the backbone (its own `group_sizes` are
            those of pretraining; the classifier groups with `group_sizes`).
    """
    if backbone_checkpoint is not None and is_artifact(backbone_checkpoint):
        encoder = load_encoder(backbone_checkpoint)
        if encoder.name != backbone.split('.')[0]:
            raise ValueError(f'{backbone_checkpoint} holds {encoder.name}, not {backbone}; '
                             'set backbone to it')
    else:
        encoder = create_encoder(backbone, checkpoint=backbone_checkpoint,
                                 **(backbone_kwargs or {}))
    model = PointClassifier(encoder, class_names, group_sizes, local_radius, pooling, dropout)
    model.backbone_source = str(backbone_checkpoint or '')
    return model


def save_point_classifier(model: PointClassifier, directory) -> Path:
    """Write the model as a `head` artefact (`checkpoints.artifact`) to `directory`."""
    return save_artifact(directory, model, 'head', HEAD_NAME, model.config())


def load_point_classifier(directory, map_location='cpu') -> PointClassifier:
    """Rebuild a model written by `save_point_classifier` (eval mode)."""
    def build(config: dict) -> PointClassifier:
        with torch.device('meta'):
            encoder = create_encoder(config['backbone'], **config.get('backbone_kwargs', {}))
        encoder = encoder.to_empty(device='cpu')
        return PointClassifier(encoder, config['class_names'], config['group_sizes'],
                               config['local_radius'], config['pooling'], config['dropout'])
    return load_head(directory, HEAD_NAME, build, 'save_point_classifier', map_location)
