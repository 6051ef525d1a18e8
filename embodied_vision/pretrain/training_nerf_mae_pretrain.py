"""NeRF-MAE masked autoencoding of radiance grids, as a training task.

NeRF-MAE: Masked AutoEncoders for Self-Supervised 3D Representation Learning for Neural
Radiance Fields (Irshad et al., ECCV 2024). Paper: https://arxiv.org/abs/2404.01300

Data: a radiance-grid dataset in NeRF-RPN's layout (`embodied-vision grids`, or Front3D /
HM3D / ScanNet grids from the upstream tools; `embodied_vision.data.radiance_grids`). The
model pads every grid to its resolution; the loss is `NerfMAE.forward_loss` (RGB on occupied
voxels, alpha on masked ones; one Bernoulli block mask per batch, as upstream).

Evaluation on the held-out split (`val_scenes`, fixed masks) reports `masked_loss` with its
`loss_rgb` / `loss_alpha` parts, `mean_loss` (the same loss of predicting the training mean:
its mean RGB everywhere and its mean opacity; parts `mean_loss_rgb` / `mean_loss_alpha`) and
`loss_ratio = masked_loss / mean_loss`; the
same under `train_*` on training scenes. `export` writes `reconstructions.png` (held-out
scenes; top and front views, alpha-composited: masked input, reconstruction, target) and the
model with `save_encoder` to `out_dir/encoder`.

    embodied-vision grids n=200 resolution=64 out=grids64
    embodied-vision train experiment=nerf_mae_pretrain task.root=grids64
"""
from collections.abc import Sequence
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from embodied_vision.checkpoints import save_encoder
from embodied_vision.data.radiance_grids import RadianceGridDataset
from embodied_vision.encoders import create_encoder
from embodied_vision.encoders.nerf_mae import NerfMAE, pad_grids
from embodied_vision.layers.masking import radiance_mae_loss
from embodied_vision.training.registry import register_task

__all__ = ['GridList', 'NerfMAEPretrainTask', 'composite_view']

_logger = logging.getLogger(__name__)


class GridList(Dataset):
    """Items `{'grid': (4, X, Y, Z)}` from grids held in memory (loaded once)."""

    def __init__(self, grids: Sequence[torch.Tensor]):
        self.grids = list(grids)

    def __len__(self) -> int:
        return len(self.grids)

    def __getitem__(self, i: int) -> dict:
        return {'grid': self.grids[i]}


def composite_view(grid: torch.Tensor, axis: str = 'top') -> np.ndarray:
    """uint8 `(H, W, 3)` image of a `(4, X, Y, Z)` RGB + alpha grid, alpha-composited front
    to back: `top` looks down -z (rows: y from far to near, columns: x), `front` looks
    along +y (rows: z from top down, columns: x)."""
    rgb, alpha = grid[:3].clamp(0, 1), grid[3].clamp(0, 1)
    if axis == 'top':      # first sample = highest z
        rgb, alpha = rgb.flip(3).permute(3, 0, 2, 1), alpha.flip(2).permute(2, 1, 0)
    elif axis == 'front':  # first sample = smallest y
        rgb, alpha = rgb.permute(2, 0, 3, 1).flip(2), alpha.permute(1, 2, 0).flip(1)
    else:
        raise ValueError(f"axis must be 'top' or 'front', got {axis!r}")
    # rgb (D, 3, rows, cols), alpha (D, rows, cols): transmittance before each sample
    before = torch.cumprod(torch.cat([torch.ones_like(alpha[:1]), 1 - alpha[:-1]]), dim=0)
    image = (before * alpha)[:, None].mul(rgb).sum(0)
    if axis == 'top':
        image = image.flip(1)
    return (image.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _panel(view: np.ndarray, side: int) -> np.ndarray:
    """`view` centred on a black `side` x `side` square with a 1-pixel border."""
    out = np.zeros((side + 2, side + 2, 3), np.uint8)
    top, left = 1 + (side - view.shape[0]) // 2, 1 + (side - view.shape[1]) // 2
    out[top:top + view.shape[0], left:left + view.shape[1]] = view
    return out


@register_task('nerf_mae_pretrain')
class NerfMAEPretrainTask:
    """Masked-autoencoder pretraining of a registered `NerfMAE` on radiance grids.

    Args:
        root: dataset folder (`embodied-vision grids`); its split file names the scenes.
        model: registry name of a full NeRF-MAE (`nerf_mae_pretrain_swin_*`).
        model_kwargs: architecture overrides (`resolution`, `masking_prob`, ...).
        density_activation: 'relu' (our grids, ScanNet) or 'exp' (Instant-NGP grids).
        eval_scenes: at most this many scenes per evaluation set.
        eval_batch: evaluation batch size.
        num_images: rows of `reconstructions.png`.
        grad_checkpointing: recompute the Swin blocks in the backward pass (less memory).
        seed: seeds the evaluation masks.
    """

    def __init__(self, root: str, model: str = 'nerf_mae_pretrain_swin_mini',
                 model_kwargs: dict | None = None, density_activation: str = 'relu',
                 eval_scenes: int = 32, eval_batch: int = 4, num_images: int = 4,
                 grad_checkpointing: bool = False, seed: int = 0):
        self.model = create_encoder(model, **(model_kwargs or {}))
        if not isinstance(self.model, NerfMAE):
            raise ValueError(f'{model!r} is not a full NeRF-MAE (encoder + decoder); use a '
                             'nerf_mae_pretrain_swin_* model')
        self.model.set_grad_checkpointing(grad_checkpointing)
        train = RadianceGridDataset(root, 'train', density_activation)
        val = RadianceGridDataset(root, 'val', density_activation)
        if not len(train):
            raise ValueError(f'{root}: the split file lists no train_scenes')
        size = self.model.resolution
        for data in (train, val):
            for name, header in zip(data.names, data.headers):
                if max(header['shape'][:3]) > size:
                    raise ValueError(f'{root}: scene {name} has resolution '
                                     f'{list(header["shape"][:3])}, larger than the model '
                                     f'resolution {size}; regenerate or set '
                                     'task.model_kwargs.resolution')
        self.train_grids = [train[i]['grid'] for i in range(len(train))]
        self.val_grids = [val[i]['grid'] for i in range(min(len(val), eval_scenes))]
        self.eval_train = self.train_grids[:eval_scenes]
        self.eval_batch, self.num_images, self.seed = eval_batch, num_images, seed
        self.mean_rgb, self.mean_alpha = self._training_means()
        _logger.info('NeRF-MAE pretraining: %d training / %d held-out grids of %s, model %s '
                     '(resolution %d)', len(self.train_grids), len(self.val_grids),
                     tuple(self.train_grids[0].shape[1:]), model, size)

    def _training_means(self) -> tuple[torch.Tensor, float]:
        """Mean RGB of occupied voxels and mean alpha, over the training grids."""
        rgb_sum, count, alpha_sum, voxels = torch.zeros(3, dtype=torch.float64), 0, 0.0, 0
        for grid in self.train_grids:
            occupied = grid[3] > 0.01
            rgb_sum += grid[:3, occupied].double().sum(1)
            count += int(occupied.sum())
            alpha_sum += float(grid[3].double().sum())
            voxels += grid[3].numel()
        return (rgb_sum / max(count, 1)).float(), alpha_sum / voxels

    # ------------------------------------------------------------------ training
    def train_dataset(self) -> Dataset:
        return GridList(self.train_grids)

    def collate(self, samples: list[dict]) -> dict:
        """Grids of any extent, zero-padded to the largest in the batch (the model pads the
        rest of the way to its resolution)."""
        size = max(max(s['grid'].shape[1:]) for s in samples)
        batch, _ = pad_grids([s['grid'] for s in samples], size)
        return {'grid': batch}

    def loss(self, model, batch) -> tuple[torch.Tensor, dict]:
        loss, out = model.forward_loss(batch['grid'])
        return loss, {'loss_rgb': out['loss_rgb'].item(), 'loss_alpha': out['loss_alpha'].item()}

    # ---------------------------------------------------------------- evaluation
    def _mean_prediction(self, like: torch.Tensor) -> torch.Tensor:
        """The training mean as a raw prediction (alpha as the logit of its mean)."""
        pred = torch.empty_like(like)
        pred[:, :3] = self.mean_rgb.to(like).view(1, 3, 1, 1, 1)
        alpha = min(max(self.mean_alpha, 1e-6), 1 - 1e-6)
        pred[:, 3] = float(np.log(alpha / (1 - alpha)))
        return pred

    @torch.no_grad()
    def _losses(self, model, grids: Sequence[torch.Tensor]) -> dict:
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(self.seed + 1)  # the same masks every time
        sums = dict.fromkeys(('masked_loss', 'loss_rgb', 'loss_alpha', 'mean_loss',
                              'mean_loss_rgb', 'mean_loss_alpha'), 0.0)
        for start in range(0, len(grids), self.eval_batch):
            chunk = grids[start:start + self.eval_batch]
            batch = self.collate([{'grid': g} for g in chunk])['grid'].to(device)
            mask = model.draw_token_mask(generator=generator)
            loss, out = model.forward_loss(batch, token_mask=mask)
            mean = radiance_mae_loss(self._mean_prediction(out['target']), out['target'],
                                     out['valid'], model.voxel_mask(mask).to(device))
            for key, value in (('masked_loss', loss), ('loss_rgb', out['loss_rgb']),
                               ('loss_alpha', out['loss_alpha']), ('mean_loss', mean[0]),
                               ('mean_loss_rgb', mean[1]), ('mean_loss_alpha', mean[2])):
                sums[key] += float(value) * len(chunk)
        results = {k: v / len(grids) for k, v in sums.items()}
        results['loss_ratio'] = results['masked_loss'] / max(results['mean_loss'], 1e-12)
        return results

    def evaluate(self, model, step: int) -> dict:
        was_training = model.training
        model.eval()
        results = self._losses(model, self.val_grids) if self.val_grids else {}
        train = self._losses(model, self.eval_train)
        results.update({f'train_{k}': v for k, v in train.items()})
        model.train(was_training)
        return results

    # -------------------------------------------------------------------- export
    @torch.no_grad()
    def reconstructions(self, model, grids: Sequence[torch.Tensor]) -> np.ndarray:
        """uint8 grid of views: per scene, top and front views of the masked input, the
        reconstruction (RGB, sigmoid alpha; visible voxels keep the input) and the target."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(self.seed + 2)
        rows = []
        for grid in grids:
            x = grid[None].to(device)
            mask = model.draw_token_mask(generator=generator)
            pred, mask, target, valid = model.forward_pretrain(x, mask)
            hidden = model.voxel_mask(mask).to(device)[None, None]  # (1, 1, R, R, R)
            extent = [slice(0, s) for s in grid.shape[1:]]
            recon = torch.cat([pred[:, :3], torch.sigmoid(pred[:, 3:])], 1)
            recon = torch.where(hidden, recon, target)
            masked_in = torch.where(hidden, torch.zeros_like(target), target)
            volumes = [v[0][(slice(None), *extent)].cpu() for v in (masked_in, recon, target)]
            rows.append([composite_view(v, axis) for axis in ('top', 'front') for v in volumes])
        model.train(was_training)
        side = max(max(view.shape[:2]) for row in rows for view in row)
        return np.concatenate([np.concatenate([_panel(view, side) for view in row], axis=1)
                               for row in rows], axis=0)

    def export(self, model, out_dir: Path) -> Path:
        """Write `reconstructions.png` (held-out scenes, else training ones) and the model."""
        from PIL import Image
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        grids = (self.val_grids or self.train_grids)[:self.num_images]
        image = self.reconstructions(model, grids)
        scale = max(1, 384 // image.shape[1] + 1)
        Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale),
                                      Image.NEAREST).save(out_dir / 'reconstructions.png')
        return save_encoder(model, out_dir / 'encoder')
