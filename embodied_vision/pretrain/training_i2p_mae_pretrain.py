"""I2P-MAE (and Point-M2AE) masked point-cloud pretraining, as a training task.

I2P-MAE: Learning 3D Representations from 2D Pre-trained Models via Image-to-Point Masked
Autoencoders (Zhang et al., CVPR 2023), https://arxiv.org/abs/2212.06785.

Data: object clouds in the ModelNet40-hdf5 or ScanObjectNN layout (`embodied-vision shapes`,
or the real files; `embodied_vision.data.point_clouds`). Per sample, as the recipe: a random
`num_points` subset (a permutation, not FPS), centered and scaled to the unit sphere, then
scale-and-translate (per-axis scale U(2/3, 3/2), shift U(-0.2, 0.2)).

`guide` picks the variant: `vit` (a frozen registered ViT, e.g. a CroCo encoder pretrained
here, from `guide_checkpoint`) or `clip` (OpenAI CLIP ViT-B/16 from a user-supplied open_clip
file) give I2P-MAE's 2D-guided masking and 2D targets (`pretrain.image_guidance`); `none` is
Point-M2AE (random masking, 3D loss only). A random guide is refused unless
`allow_random_guide` says so (tests).

Evaluation (fixed masks): `masked_chamfer` on held-out clouds with `zero_chamfer` (predicting
every member at its group center) and `chamfer_ratio`; `svm_accuracy`, the linear SVM on
frozen features (`downstream.point_svm`, C = 0.01) fit on training clouds and scored on
held-out ones. `export` writes `reconstructions.png` (masked input, reconstruction, target)
and the model (`save_encoder`) to `out_dir/encoder`.

    embodied-vision shapes out=shapes n_per_class=80
    embodied-vision train experiment=i2p_mae_pretrain task.root=shapes task.guide=none
"""
import logging
from pathlib import Path
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from embodied_vision.checkpoints import save_encoder
from embodied_vision.data.point_clouds import read_point_cloud_split
from embodied_vision.downstream.point_svm import SVM_C, extract_features, linear_svm_accuracy
from embodied_vision.encoders import create_encoder, load_encoder
from embodied_vision.encoders.i2p_mae import I2PMAE
from embodied_vision.layers.point_ops import chamfer_l2
from embodied_vision.pretrain.image_guidance import ImageGuide
from embodied_vision.training.registry import register_task

__all__ = ['GUIDES', 'I2PMAEPretrainTask', 'normalize_cloud', 'scale_and_translate']

_logger = logging.getLogger(__name__)
GUIDES = ('none', 'vit', 'clip')


def normalize_cloud(points: torch.Tensor) -> torch.Tensor:
    """`(..., N, 3)` centered on the mean and scaled so the farthest point is at 1."""
    centered = points - points.mean(dim=-2, keepdim=True)
    radius = centered.norm(dim=-1).amax(dim=-1)[..., None, None].clamp_min(1e-8)
    return centered / radius


def scale_and_translate(points: torch.Tensor, generator: torch.Generator | None = None,
                        low: float = 2 / 3, high: float = 1.5, shift: float = 0.2):
    """Per-cloud, per-axis scale U(low, high) and translation U(-shift, shift)."""
    b = points.shape[0]
    scale = torch.rand(b, 1, 3, generator=generator) * (high - low) + low
    offset = (torch.rand(b, 1, 3, generator=generator) * 2 - 1) * shift
    return points * scale.to(points) + offset.to(points)


class CloudSubsets(Dataset):
    """Items `{'points': (num_points, 3)}`: a random subset of a stored cloud, normalised."""

    def __init__(self, clouds: np.ndarray, num_points: int):
        self.clouds, self.num_points = torch.from_numpy(np.asarray(clouds, np.float32)), \
            int(num_points)

    def __len__(self) -> int:
        return len(self.clouds)

    def __getitem__(self, i: int) -> dict:
        cloud = self.clouds[i]
        keep = torch.randperm(cloud.shape[0])[:self.num_points]
        return {'points': normalize_cloud(cloud[keep])}


def _build_guide(kind: str, encoder: str, checkpoint, kwargs: dict, image_size: int,
                 splat: int, allow_random: bool):
    if kind not in GUIDES:
        raise ValueError(f'guide={kind!r} is not one of {GUIDES}')
    if kind == 'none':
        return None
    if kind == 'clip':
        if not checkpoint:
            raise ValueError('guide=clip needs guide_checkpoint: the OpenAI CLIP ViT-B/16 file '
                             'for open_clip (user-supplied)')
        return ImageGuide.from_clip(checkpoint, image_size=image_size, splat=splat)
    if checkpoint:
        vit = load_encoder(checkpoint) if Path(checkpoint).is_dir() else \
            create_encoder(encoder, checkpoint=checkpoint, **kwargs)
    elif allow_random:
        warnings.warn(f'the 2D guide {encoder} has random weights (allow_random_guide): its '
                      'saliency and targets carry no 2D knowledge', UserWarning, stacklevel=3)
        vit = create_encoder(encoder, **kwargs)
    else:
        raise ValueError(f'guide=vit needs guide_checkpoint (weights of {encoder}, e.g. '
                         "experiment=croco_pretrain's encoder/ export); a random 2D model "
                         'teaches nothing. Set allow_random_guide=true only for tests.')
    return ImageGuide(vit, image_size=image_size, splat=splat)


@register_task('i2p_mae_pretrain')
class I2PMAEPretrainTask:
    """Masked point-cloud pretraining of a registered `I2PMAE`.

    Args:
        root: dataset folder; `train` pretrains, `test` is held out.
        layout: which of its layouts to read: 'modelnet40' (full clouds; `embodied-vision
            shapes` writes both), 'scanobjectnn' or 'auto' (the only one there).
        model: registry name of a full pretraining model (`i2p_mae_pretrain*`).
        model_kwargs: architecture overrides (`mask_ratio`, ...); `image_feature_dim` is set
            from the guide.
        guide: one of `GUIDES` (see the module docstring).
        guide_encoder / guide_checkpoint / guide_kwargs: the 2D ViT (`guide=vit`) and its
            weights (an `encoder/` export or a file its registry entry loads), or the CLIP
            file (`guide=clip`).
        image_size, splat: depth image side and per-point square (224 and 5 upstream).
        allow_random_guide: accept a 2D guide without weights (tests only; warned).
        augment: scale-and-translate the training clouds.
        eval_clouds: held-out clouds for the masked losses; svm_train / svm_test: clouds for
            the monitoring SVM.
        num_images: clouds in `reconstructions.png`.
        seed: seeds the evaluation masks.
    """

    def __init__(self, root: str, layout: str = 'modelnet40',
                 model: str = 'i2p_mae_pretrain_small',
                 model_kwargs: dict | None = None, guide: str = 'none',
                 guide_encoder: str = 'croco_vit_base', guide_checkpoint: str | None = None,
                 guide_kwargs: dict | None = None, image_size: int = 224, splat: int = 5,
                 allow_random_guide: bool = False, augment: bool = True,
                 eval_clouds: int = 64, svm_train: int = 400, svm_test: int = 200,
                 num_images: int = 4, seed: int = 0):
        train = read_point_cloud_split(root, 'train', layout)
        test = read_point_cloud_split(root, 'test', layout)
        self.guide = _build_guide(guide, guide_encoder, guide_checkpoint, guide_kwargs or {},
                                  image_size, splat, allow_random_guide)
        kwargs = dict(model_kwargs or {})
        if self.guide is not None:
            kwargs['image_feature_dim'] = self.guide.feature_dim
        self.model = create_encoder(model, **kwargs)
        if not isinstance(self.model, I2PMAE):
            raise ValueError(f'{model!r} is not a full I2P-MAE pretraining model; use an '
                             'i2p_mae_pretrain* model')
        self.num_points = self.model.num_points
        if train.points.shape[1] < self.num_points:
            raise ValueError(f'{root}: clouds have {train.points.shape[1]} points, the model '
                             f'takes {self.num_points}; set task.model_kwargs.num_points')
        if len(train.points) < 2:
            raise ValueError(f'{root}: the train split has {len(train.points)} clouds')
        self.train, self.test, self.augment, self.seed = train, test, augment, seed
        self.guide_kind, self.num_images = guide, num_images
        rng = np.random.default_rng(seed)
        self.eval_points = self._fixed(test.points[:eval_clouds], rng)
        self.eval_train = self._fixed(train.points[:eval_clouds], rng)
        self.svm_sets = (train.points[:svm_train], train.labels[:svm_train],
                         test.points[:svm_test], test.labels[:svm_test])
        self._generator = torch.Generator().manual_seed(seed)
        _logger.info('I2P-MAE pretraining (%s guide): %d training / %d held-out clouds of %s, '
                     'model %s with %d points', guide, len(train.points), len(test.points),
                     root, model, self.num_points)

    def _fixed(self, clouds: np.ndarray, rng) -> torch.Tensor:
        """Normalised fixed subsets of `clouds` (evaluation input)."""
        picks = [rng.permutation(c.shape[0])[:self.num_points] for c in clouds]
        return normalize_cloud(torch.from_numpy(np.stack([c[p] for c, p in zip(clouds, picks)])
                                                .astype(np.float32)))

    # ------------------------------------------------------------------ training
    def train_dataset(self) -> Dataset:
        return CloudSubsets(self.train.points, self.num_points)

    def loss(self, model, batch) -> tuple[torch.Tensor, dict]:
        points = batch['points']
        if self.augment:
            points = scale_and_translate(points, self._generator)
        loss, out = model.forward_loss(points, guide=self.guide)
        return loss, {'loss_3d': out['loss_3d'].item(), 'loss_2d': out['loss_2d'].item()}

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def _losses(self, model, points: torch.Tensor, batch_size: int = 16) -> dict:
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(self.seed + 1)
        sums = dict.fromkeys(('masked_chamfer', 'zero_chamfer', 'loss_2d'), 0.0)
        for start in range(0, len(points), batch_size):
            chunk = points[start:start + batch_size].to(device)
            _, out = model.forward_loss(chunk, guide=self.guide, generator=generator)
            hidden = ~out['visible'][1]
            truth = out['scales'][1].neighborhood[hidden]
            sums['masked_chamfer'] += float(out['loss_3d']) * len(chunk)
            sums['zero_chamfer'] += float(chamfer_l2(torch.zeros_like(truth), truth)) * len(chunk)
            sums['loss_2d'] += float(out['loss_2d']) * len(chunk)
        results = {k: v / len(points) for k, v in sums.items()}
        results['chamfer_ratio'] = results['masked_chamfer'] / max(results['zero_chamfer'],
                                                                   1e-12)
        return results

    def svm_accuracy(self, model) -> float:
        train_x, train_y, test_x, test_y = self.svm_sets
        if len(np.unique(train_y)) < 2 or not len(test_y):
            return float('nan')
        n = min(self.num_points, train_x.shape[1])
        features = [extract_features(model, x, n) for x in (train_x, test_x)]
        return linear_svm_accuracy(features[0], train_y, features[1], test_y,
                                   SVM_C['monitor'])[0]

    def evaluate(self, model, step: int) -> dict:
        was_training = model.training
        model.eval()
        results = self._losses(model, self.eval_points) if len(self.eval_points) else {}
        results.update({f'train_{k}': v for k, v in self._losses(model, self.eval_train).items()})
        results['svm_accuracy'] = self.svm_accuracy(model)
        model.train(was_training)
        return results

    # -------------------------------------------------------------------- export
    @torch.no_grad()
    def reconstruction_figure(self, model, points: torch.Tensor):
        """A matplotlib figure: per cloud, the visible part, the visible part plus the
        predicted masked groups (red), and the whole cloud (side view, x right, y up)."""
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        was_training = model.training
        model.eval()
        generator = torch.Generator().manual_seed(self.seed + 2)
        _, out = model.forward_loss(points, guide=self.guide, generator=generator)
        model.train(was_training)
        scales, visible = out['scales'], out['visible']
        fig, axes = plt.subplots(len(points), 3, figsize=(9, 3 * len(points)), squeeze=False)
        for i in range(len(points)):
            shown = scales[0].members[i][visible[0][i]].reshape(-1, 3)
            hidden = ~visible[1][i]
            guess = (scales[1].centers[i][hidden][:, None] + out['pred_3d'][i][hidden])
            panels = ((shown, None, 'visible'), (shown, guess.reshape(-1, 3), 'reconstruction'),
                      (points[i], None, 'target'))
            for ax, (base, extra, title) in zip(axes[i], panels):
                ax.scatter(base[:, 0], base[:, 1], s=1, c='0.3')
                if extra is not None:
                    ax.scatter(extra[:, 0], extra[:, 1], s=2, c='tab:red')
                ax.set_title(title, fontsize=9)
                ax.set_xlim(-1.6, 1.6)
                ax.set_ylim(-1.6, 1.6)
                ax.set_aspect('equal')
                ax.axis('off')
        fig.tight_layout()
        return fig

    def export(self, model, out_dir: Path) -> Path:
        """Write `reconstructions.png` (held-out clouds) and the model."""
        import matplotlib.pyplot as plt
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        points = (self.eval_points if len(self.eval_points) else self.eval_train)
        fig = self.reconstruction_figure(model, points[:self.num_images])
        fig.savefig(out_dir / 'reconstructions.png', dpi=100)
        plt.close(fig)
        return save_encoder(model, out_dir / 'encoder')
