"""CroCo cross-view completion pretraining on simulated view pairs, as a training task.

CroCo: Self-Supervised Pre-training for 3D Vision Tasks by Cross-View Completion
(Weinzaepfel et al., NeurIPS 2022). Paper: https://arxiv.org/abs/2210.10716
CroCo v2: Improved Cross-view Completion Pre-training for Stereo Matching and Optical Flow
(Weinzaepfel et al., ICCV 2023). Paper: https://arxiv.org/abs/2211.10408

Data: view-pair files written by `embodied-vision view-pairs` (`embodied_vision.sim.view_pairs`).
Training items follow upstream's `crop224+acolor` transform: an independent random crop of
each view to the model's input size (the two crops differ on purpose) and asymmetric colour
jitter (torchvision's `v2.ColorJitter`: brightness, contrast, saturation factors in
[0.6, 1.4], hue 0, drawn per view, in random order), then ImageNet normalisation. The loss is
the model's own masked MSE on per-patch-normalised pixels over the masked patches of view 1
(`CroCoPair.forward_loss`).

Evaluation (pairs held out by `val_fraction`, centre crops, no jitter, fixed masks) reports
`masked_loss`, `mean_loss` (the loss of predicting the mean: per-patch-normalised targets have
mean 0, so zeros on the same masked patches) and `loss_ratio = masked_loss / mean_loss`; the
same three on a fixed set of training pairs under `train_*`. `export` writes
`reconstructions.png` (rows: pairs; columns: view 1 masked, reconstruction, view 1, view 2)
and the model with `save_encoder` to `out_dir/encoder`.

    embodied-vision view-pairs n=500 size=80 out=pairs.hdf5
    embodied-vision train experiment=croco_pretrain task.pairs=[pairs.hdf5]
"""
from collections.abc import Sequence
import logging
import math
from pathlib import Path

import numpy as np
from timm.optim import param_groups_weight_decay
import torch
from torch.utils.data import Dataset

from embodied_vision.checkpoints import save_encoder
from embodied_vision.encoders import create_encoder
from embodied_vision.encoders.croco import IMAGENET_MEAN, IMAGENET_STD
from embodied_vision.layers.masking import masked_mse_loss
from embodied_vision.pretrain.augment import colour_jitter
from embodied_vision.training.registry import register_task

__all__ = ['CroCoPretrainTask', 'ViewPairDataset', 'load_pairs', 'mean_predictor_loss']

_logger = logging.getLogger(__name__)

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def load_pairs(paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """`(rgb1, rgb2)` uint8 `(N, H, W, 3)` of one or more view-pair files, concatenated."""
    from embodied_vision.data.view_pairs import read_pairs
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not len(paths):
        raise ValueError('no view-pair files given')
    loaded = [read_pairs(str(p)) for p in paths]
    shapes = {d['rgb1'].shape[1:] for d in loaded}
    if len(shapes) != 1:
        raise ValueError(f'view-pair files have different image sizes {sorted(shapes)}')
    return (np.concatenate([d['rgb1'] for d in loaded]),
            np.concatenate([d['rgb2'] for d in loaded]))


def _crop(img: torch.Tensor, size: tuple[int, int], random: bool,
          generator: torch.Generator | None) -> torch.Tensor:
    """Crop `(3, H, W)` to `size` (random or centre); smaller images are resized up first."""
    h, w = img.shape[-2:]
    if h < size[0] or w < size[1]:
        scale = max(size[0] / h, size[1] / w)
        new = (max(size[0], math.ceil(h * scale)), max(size[1], math.ceil(w * scale)))
        img = torch.nn.functional.interpolate(img[None], size=new, mode='bilinear',
                                              align_corners=False, antialias=True)[0]
        h, w = new
    if random:
        top = int(torch.randint(0, h - size[0] + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - size[1] + 1, (1,), generator=generator))
    else:
        top, left = (h - size[0]) // 2, (w - size[1]) // 2
    return img[:, top:top + size[0], left:left + size[1]]


class ViewPairDataset(Dataset):
    """Items `{'img1', 'img2'}`: ImageNet-normalised `(3, *size)` float views of one pair.

    Args:
        rgb1, rgb2: uint8 `(N, H, W, 3)` arrays.
        indices: which pairs this dataset serves.
        size: output `(height, width)` (the model's input size).
        augment: independent random crops and colour jitter per view (else centre crops).
        jitter: colour-jitter strength (0.4: factors in [0.6, 1.4], as upstream).
    """

    def __init__(self, rgb1: np.ndarray, rgb2: np.ndarray, indices: Sequence[int],
                 size: tuple[int, int], augment: bool = True, jitter: float = 0.4):
        self.rgb1, self.rgb2 = rgb1, rgb2
        self.indices = [int(i) for i in indices]
        self.size, self.augment, self.jitter = tuple(size), augment, jitter
        self.colour = colour_jitter(jitter) if augment else None

    def __len__(self) -> int:
        return len(self.indices)

    def _view(self, image: np.ndarray) -> torch.Tensor:
        img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        img = _crop(img, self.size, self.augment, None)
        if self.colour is not None:
            img = self.colour(img)
        return (img - _MEAN) / _STD

    def __getitem__(self, i: int) -> dict:
        k = self.indices[i]
        return {'img1': self._view(self.rgb1[k]), 'img2': self._view(self.rgb2[k])}


def mean_predictor_loss(target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The masked loss of predicting the mean of every per-patch-normalised target (zeros)."""
    return masked_mse_loss(torch.zeros_like(target), target, mask, norm_pix=True)


@register_task('croco_pretrain')
class CroCoPretrainTask:
    """Cross-view completion pretraining of a registered `CroCoPair` model on view pairs.

    Args:
        pairs: view-pair HDF5 files (`embodied-vision view-pairs`).
        model: registry name of a two-view CroCo model (e.g. `croco_v2_pair_vit_base_smalldec`).
        model_kwargs: architecture overrides (`img_size` = the crop size, `patch_size`,
            `enc_embed_dim`, `enc_depth`, `dec_depth`, `mask_ratio`, ...).
        jitter: colour-jitter strength (upstream: 0.4, factors in [0.6, 1.4]).
        val_fraction: pairs held out for evaluation.
        eval_pairs: at most this many pairs per evaluation set (held out, and training).
        eval_batch: evaluation batch size.
        num_images: rows of the reconstruction grid written by `export`.
        weight_decay: AdamW weight decay of the >= 2-D weights; biases, norms, the mask
            token and the positional embeddings (`model.no_weight_decay()`) get none
            (upstream): `timm.optim.param_groups_weight_decay` groups from
            `trainable_parameters`. None: one group, the optimiser's own weight decay.
        seed: seeds the validation split and the evaluation masks.
    """

    def __init__(self, pairs: Sequence[str], model: str = 'croco_v2_pair_vit_base_smalldec',
                 model_kwargs: dict | None = None, jitter: float = 0.4,
                 val_fraction: float = 0.1, eval_pairs: int = 256, eval_batch: int = 32,
                 num_images: int = 6, weight_decay: float | None = 0.05, seed: int = 0):
        if not 0 <= val_fraction < 1:
            raise ValueError(f'val_fraction must be in [0, 1), got {val_fraction}')
        self.model = create_encoder(model, **(model_kwargs or {}))
        if not hasattr(self.model, 'forward_loss'):
            raise ValueError(f'{model!r} is not a two-view CroCo model (no forward_loss); use '
                             'e.g. croco_v2_pair_vit_base_smalldec')
        self.size = tuple(self.model.img_size)
        self.rgb1, self.rgb2 = load_pairs(pairs)
        n = len(self.rgb1)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        n_val = int(round(val_fraction * n)) if n > 1 else 0
        self.val_ids, self.train_ids = sorted(order[:n_val]), sorted(order[n_val:])
        if not self.train_ids:
            raise ValueError(f'no training pairs left out of {n} (val_fraction={val_fraction})')
        self.jitter, self.eval_pairs, self.eval_batch = jitter, eval_pairs, eval_batch
        self.num_images, self.weight_decay, self.seed = num_images, weight_decay, seed
        _logger.info('CroCo pretraining: %d training / %d held-out pairs of %s, crops %s',
                     len(self.train_ids), len(self.val_ids), self.rgb1.shape[1:3], self.size)

    # ------------------------------------------------------------------ training
    def train_dataset(self) -> Dataset:
        return ViewPairDataset(self.rgb1, self.rgb2, self.train_ids, self.size, augment=True,
                               jitter=self.jitter)

    def trainable_parameters(self, model):
        if self.weight_decay is None:
            return [p for p in model.parameters() if p.requires_grad]
        no_decay = getattr(model, 'no_weight_decay', set)()
        return param_groups_weight_decay(model, self.weight_decay, no_weight_decay_list=no_decay)

    def loss(self, model, batch) -> tuple[torch.Tensor, dict]:
        loss, _ = model.forward_loss(batch['img1'], batch['img2'])
        return loss, {}

    # ---------------------------------------------------------------- evaluation
    def _eval_set(self, ids: Sequence[int]) -> ViewPairDataset:
        return ViewPairDataset(self.rgb1, self.rgb2, list(ids)[:self.eval_pairs], self.size,
                               augment=False)

    @torch.no_grad()
    def _losses(self, model, dataset: ViewPairDataset) -> dict:
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(self.seed + 1)  # same masks every time
        num_patches = model.grid_size[0] * model.grid_size[1]
        masked = mean = count = 0.0
        for start in range(0, len(dataset), self.eval_batch):
            items = [dataset[i] for i in range(start, min(len(dataset), start + self.eval_batch))]
            img1 = torch.stack([it['img1'] for it in items]).to(device)
            img2 = torch.stack([it['img2'] for it in items]).to(device)
            noise = torch.rand(len(items), num_patches, generator=generator)
            mask = torch.zeros_like(noise, dtype=torch.bool).scatter(
                1, noise.argsort(1)[:, :int(model.mask_ratio * num_patches)], True).to(device)
            pred, mask, target = model.forward_pretrain(img1, img2, mask)
            masked += float(masked_mse_loss(pred, target, mask)) * len(items)
            mean += float(mean_predictor_loss(target, mask)) * len(items)
            count += len(items)
        masked, mean = masked / count, mean / count
        return {'masked_loss': masked, 'mean_loss': mean, 'loss_ratio': masked / max(mean, 1e-12)}

    def evaluate(self, model, step: int) -> dict:
        results = {}
        if self.val_ids:
            results.update(self._losses(model, self._eval_set(self.val_ids)))
        train = self._losses(model, self._eval_set(self.train_ids))
        results.update({f'train_{k}': v for k, v in train.items()})
        return results

    # -------------------------------------------------------------------- export
    @torch.no_grad()
    def reconstructions(self, model, ids: Sequence[int]) -> np.ndarray:
        """uint8 `(rows * H, 4 * W, 3)` grid: view 1 masked, reconstruction, view 1, view 2.

        Predicted patches are de-normalised with the true patch mean/variance (as upstream's
        demo); visible patches show the input.
        """
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        data = self._eval_set(ids)
        img1 = torch.stack([data[i]['img1'] for i in range(len(data))]).to(device)
        img2 = torch.stack([data[i]['img2'] for i in range(len(data))]).to(device)
        generator = torch.Generator().manual_seed(self.seed + 2)
        num_patches = model.grid_size[0] * model.grid_size[1]
        noise = torch.rand(len(data), num_patches, generator=generator)
        mask = torch.zeros_like(noise, dtype=torch.bool).scatter(
            1, noise.argsort(1)[:, :int(model.mask_ratio * num_patches)], True).to(device)
        pred, mask, target = model.forward_pretrain(img1, img2, mask)
        mu = target.mean(-1, keepdim=True)
        sigma = (target.var(-1, keepdim=True, correction=1) + 1e-6).sqrt()
        m = mask[..., None]
        recon = torch.where(m, pred * sigma + mu, target)
        hidden = torch.where(m, torch.zeros_like(target), target)  # masked: mean colour
        grid = model.grid_size
        columns = [model.unpatchify(hidden, grid), model.unpatchify(recon, grid), img1, img2]
        model.train(was_training)

        def to_uint8(x):
            x = (x.cpu() * _STD + _MEAN).clamp(0, 1)
            return (x.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)

        rows = [np.concatenate(cols, axis=1)
                for cols in zip(*[to_uint8(c) for c in columns])]
        return np.concatenate(rows, axis=0)

    def export(self, model, out_dir: Path) -> Path:
        """Write `reconstructions.png` (held-out pairs, else training pairs) and the model."""
        from PIL import Image
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        ids = (self.val_ids or self.train_ids)[:self.num_images]
        grid = self.reconstructions(model, ids)
        scale = max(1, 256 // self.size[0])
        image = Image.fromarray(grid)
        if scale > 1:
            image = image.resize((grid.shape[1] * scale, grid.shape[0] * scale),
                                 Image.NEAREST)
        image.save(out_dir / 'reconstructions.png')
        return save_encoder(model, out_dir / 'encoder')
