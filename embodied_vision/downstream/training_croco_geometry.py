"""Training and evaluation of the CroCo pair-geometry heads (depth of view 1, relative pose).

CroCo (https://arxiv.org/abs/2210.10716) and CroCo v2 (https://arxiv.org/abs/2211.10408)
evaluate cross-view-completion pretraining by fine-tuning on two-view tasks; here the model is
`croco_geometry.PairGeometryModel` and the data are view-pair files of the simulator
(`embodied-vision view-pairs`, with `save_depth`): `depth1` is the depth target, `T1`/`T2`
(camera-to-world) give the relative pose `T = inv(T1) @ T2`, `x_cam1 = R @ x_cam2 + t`.

Losses (weights `depth_weight`, `pose_weight`; 0 drops that head from the step):
- depth, scale-aware, over valid pixels (depth > 0): L1 on log-depth (`l1_log`), or the
  Laplacian negative log-likelihood `|log d - log d*| / b + log b` with the predicted scale
  `b` (`laplacian`, the confidence-weighted loss of CroCo-Stereo);
- pose: geodesic rotation angle (radians) + `translation_weight * (1 - cos)` between the
  predicted and true translation directions, the latter over pairs whose baseline exceeds
  `min_baseline` metres (shorter ones have no reliable direction).

Evaluation on held-out pairs (`val_pairs` files, else a `val_fraction` of the scene seeds, so
no scene is in both sets): `abs_rel` and `delta1` (fraction with `max(d/d*, d*/d) < 1.25`),
per image over valid pixels then averaged; median/mean rotation error and median
translation-direction error in degrees. References from trivial predictors on the same pairs:
`ref_abs_rel` / `ref_delta1` (the training median depth everywhere), `ref_rot_err_median_deg`
(identity rotation), `ref_trans_err_median_deg` (the mean training direction).

    embodied-vision train experiment=croco_stereo_depth task.pairs=[stereo.hdf5] \\
        task.val_pairs=[stereo_heldout.hdf5] task.backbone_checkpoint=runs/pre/encoder
"""
from collections.abc import Sequence
import logging
import math
from pathlib import Path

import numpy as np
from timm.optim import param_groups_weight_decay
import torch
from torch.utils.data import Dataset

from embodied_vision.downstream.croco_geometry import (
    create_pair_geometry_model,
    save_pair_geometry_model,
)
from embodied_vision.pretrain.augment import colour_jitter
from embodied_vision.training.registry import register_task

__all__ = ['CroCoGeometryTask', 'PairGeometryDataset', 'depth_loss', 'depth_metrics',
           'direction_error_deg', 'geodesic_angle', 'load_geometry_pairs', 'pose_loss',
           'relative_pose', 'rotation_error_deg']

_logger = logging.getLogger(__name__)
_KEYS = ('rgb1', 'rgb2', 'depth1', 'depth2', 'T1', 'T2', 'seed')
_DEPTH_LOSSES = ('l1_log', 'laplacian')


# --------------------------------------------------------------------------- data
def relative_pose(T1: np.ndarray, T2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: N803
    """`(R, t)` of camera 2 in camera 1 from camera-to-world `(..., 4, 4)` poses."""
    rel = np.linalg.inv(T1) @ T2
    return rel[..., :3, :3], rel[..., :3, 3]


def load_geometry_pairs(paths: Sequence[str]) -> dict:
    """Arrays of one or more view-pair files with depth, concatenated (`rgb1`, `rgb2`,
    `depth1`, `depth2`, `T1`, `T2`, `seed`)."""
    from embodied_vision.data.view_pairs import read_pairs
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not len(paths):
        raise ValueError('no view-pair files given')
    loaded = []
    for path in paths:
        try:
            loaded.append(read_pairs(str(path), keys=_KEYS))
        except KeyError as err:
            raise ValueError(f'{path} has no {err} dataset: render it with '
                             '`embodied-vision view-pairs save_depth=true`') from err
    shapes = {d['rgb1'].shape[1:] for d in loaded}
    if len(shapes) != 1:
        raise ValueError(f'view-pair files have different image sizes {sorted(shapes)}')
    return {k: np.concatenate([d[k] for d in loaded]) for k in _KEYS}


class PairGeometryDataset(Dataset):
    """Items `pair (6, H, W)` 0..255, `depth (1, H, W)` metres (0 invalid), `rotation (3, 3)`,
    `translation (3,)` unit, `baseline` metres.

    Args:
        data: arrays from `load_geometry_pairs`.
        indices: which pairs this dataset serves.
        size: `(H, W)` crop; the same window in both views (random when `augment`, else
            centred). Images must be at least this size.
        augment: random crop, colour jitter per view, and random view swap (`swap`).
        jitter: colour-jitter strength (factors in `[1 - jitter, 1 + jitter]`, torchvision's
            `v2.ColorJitter` on brightness, contrast, saturation).
        swap: with `augment`, swap the views with probability 1/2 (depth2 becomes the target
            and the pose is inverted).
    """

    def __init__(self, data: dict, indices: Sequence[int], size: tuple[int, int],
                 augment: bool = False, jitter: float = 0.2, swap: bool = True):
        height, width = data['rgb1'].shape[1:3]
        if height < size[0] or width < size[1]:
            raise ValueError(f'view pairs are {(height, width)}, smaller than the model input '
                             f'{tuple(size)}: render them at least that size')
        self.data, self.indices, self.size = data, [int(i) for i in indices], tuple(size)
        self.augment, self.jitter, self.swap = augment, jitter, swap
        self.colour = colour_jitter(jitter) if augment else None
        self.rotation, self.translation = relative_pose(data['T1'], data['T2'])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        k = self.indices[i]
        rgb1, rgb2 = self.data['rgb1'][k], self.data['rgb2'][k]
        depth = self.data['depth1'][k]
        rotation, translation = self.rotation[k], self.translation[k]
        if self.augment and self.swap and torch.rand(()) < 0.5:
            rgb1, rgb2, depth = rgb2, rgb1, self.data['depth2'][k]
            rotation, translation = rotation.T, -rotation.T @ translation
        h, w = self.size
        top, left = (rgb1.shape[0] - h) // 2, (rgb1.shape[1] - w) // 2
        if self.augment:
            top = int(torch.randint(0, rgb1.shape[0] - h + 1, ()))
            left = int(torch.randint(0, rgb1.shape[1] - w + 1, ()))
        window = (slice(top, top + h), slice(left, left + w))
        views = [torch.from_numpy(np.ascontiguousarray(v[window])).permute(2, 0, 1).float()
                 for v in (rgb1, rgb2)]
        if self.colour is not None:
            views = [self.colour(v / 255.0) * 255.0 for v in views]
        baseline = float(np.linalg.norm(translation))
        return {'pair': torch.cat(views, dim=0),
                'depth': torch.from_numpy(np.ascontiguousarray(depth[window]))[None].float(),
                'rotation': torch.from_numpy(np.asarray(rotation, dtype=np.float32)),
                'translation': torch.from_numpy(
                    np.asarray(translation / max(baseline, 1e-12), dtype=np.float32)),
                'baseline': torch.tensor(baseline, dtype=torch.float32)}


# ------------------------------------------------------------------ losses, metrics
def geodesic_angle(r_pred: torch.Tensor, r_true: torch.Tensor) -> torch.Tensor:
    """`(...)` rotation angle in radians of `r_pred^T r_true` for `(..., 3, 3)` rotations."""
    trace = (r_pred * r_true).sum(dim=(-2, -1))        # = trace(r_pred^T r_true)
    return torch.acos(((trace - 1.0) / 2.0).clamp(-1.0 + 1e-7, 1.0 - 1e-7))


def rotation_error_deg(r_pred: torch.Tensor, r_true: torch.Tensor) -> torch.Tensor:
    """Geodesic rotation error in degrees, `atan2(sin, cos)` of `M = r_pred^T r_true`
    (`cos = (tr M - 1) / 2`, `sin = |vee(M - M^T)| / 2`): accurate near 0, unlike acos."""
    m = r_pred.double().transpose(-2, -1) @ r_true.double()
    cos = (m.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    vee = torch.stack((m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                       m[..., 1, 0] - m[..., 0, 1]), dim=-1)
    return torch.rad2deg(torch.atan2(vee.norm(dim=-1) / 2.0, cos)).float()


def direction_error_deg(t_pred: torch.Tensor, t_true: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between `(..., 3)` direction vectors (any length)."""
    cos = torch.nn.functional.cosine_similarity(t_pred.double(), t_true.double(), dim=-1)
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0))).float()


def depth_loss(log_depth: torch.Tensor, depth: torch.Tensor, log_scale: torch.Tensor | None = None
               ) -> torch.Tensor:
    """Mean over valid pixels (`depth > 0`) of `|log d - log d*|`, or of the Laplacian NLL
    `|log d - log d*| * exp(-s) + s` when the log-scale `s` is given; 0 without valid pixels."""
    valid = depth > 0
    error = (log_depth - depth.clamp_min(1e-6).log()).abs()
    if log_scale is not None:
        error = error * torch.exp(-log_scale) + log_scale
    return torch.where(valid, error, 0.0).sum() / valid.sum().clamp_min(1)


def pose_loss(rotation: torch.Tensor, translation: torch.Tensor, true_rotation: torch.Tensor,
              true_translation: torch.Tensor, baseline: torch.Tensor | None = None,
              min_baseline: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """`(mean geodesic angle, mean (1 - cos) of the directions over baseline > min_baseline)`."""
    rot = geodesic_angle(rotation, true_rotation).mean()
    cos = torch.nn.functional.cosine_similarity(translation, true_translation, dim=-1)
    keep = torch.ones_like(cos, dtype=torch.bool) if baseline is None else \
        baseline > min_baseline
    trans = torch.where(keep, 1.0 - cos, 0.0).sum() / keep.sum().clamp_min(1)
    return rot, trans


def depth_metrics(pred: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image `abs_rel` and `delta1` over valid pixels of `(B, ...)` depths (NaN if none)."""
    valid = (depth > 0).flatten(1)
    pred, depth = pred.flatten(1).double(), depth.flatten(1).double().clamp_min(1e-12)
    count = valid.sum(1).double()
    rel = torch.where(valid, (pred - depth).abs() / depth, 0.0).sum(1) / count
    ratio = torch.maximum(pred / depth, depth / pred.clamp_min(1e-12))
    delta = torch.where(valid, (ratio < 1.25).double(), 0.0).sum(1) / count
    return {'abs_rel': rel.float(), 'delta1': delta.float()}


# --------------------------------------------------------------------------- task
@register_task('croco_geometry')
class CroCoGeometryTask:
    """Fine-tune a `PairGeometryModel` for depth and/or relative pose on view pairs.

    Args:
        pairs: training view-pair files (with depth).
        val_pairs: held-out view-pair files; None: hold out `val_fraction` of the scene seeds
            of `pairs`.
        val_fraction: share of scenes held out when `val_pairs` is None.
        backbone: registry name of the two-view CroCo model.
        backbone_checkpoint: None (random init: the baseline), our CroCo pretraining export
            (`<run>/encoder`) or an official CroCo file.
        backbone_kwargs: architecture overrides (`img_size` = the input size, ...); with a
            checkpoint of ours they must agree with its recorded architecture.
        head_kwargs: `PairGeometryModel` head options (`depth_confidence`, `dpt_*`, ...).
        freeze_backbone: train only the heads (linear-probe style).
        depth_weight, pose_weight: loss weights (0 skips that head).
        depth_loss: 'l1_log' or 'laplacian' (needs `head_kwargs.depth_confidence`).
        translation_weight: weight of the direction term inside the pose loss.
        min_baseline: metres; shorter baselines get no direction loss or metric.
        jitter: colour-jitter strength of the training views.
        swap_views: randomly swap the two views in training (pose inverted).
        eval_pairs: at most this many held-out pairs per evaluation.
        eval_batch: evaluation batch size.
        num_images: rows of `depth.png` written by `export` (0: none).
        weight_decay: AdamW decay of >= 2-D weights, none on biases, norms and the backbone's
            `no_weight_decay()` (`timm.optim.param_groups_weight_decay`); None: one group.
        seed: seeds the scene split.
    """

    def __init__(self, pairs: Sequence[str], val_pairs: Sequence[str] | None = None,
                 val_fraction: float = 0.1, backbone: str = 'croco_v2_pair_vit_base_smalldec',
                 backbone_checkpoint: str | None = None, backbone_kwargs: dict | None = None,
                 head_kwargs: dict | None = None, freeze_backbone: bool = False,
                 depth_weight: float = 1.0, pose_weight: float = 1.0,
                 depth_loss: str = 'l1_log', translation_weight: float = 1.0,
                 min_baseline: float = 0.01, jitter: float = 0.2, swap_views: bool = True,
                 eval_pairs: int = 512, eval_batch: int = 32, num_images: int = 4,
                 weight_decay: float | None = 0.05, seed: int = 0):
        if depth_loss not in _DEPTH_LOSSES:
            raise ValueError(f'depth_loss={depth_loss!r} must be one of {_DEPTH_LOSSES}')
        if depth_weight < 0 or pose_weight < 0 or depth_weight + pose_weight == 0:
            raise ValueError(f'need depth_weight, pose_weight >= 0 and not both 0, got '
                             f'{depth_weight}, {pose_weight}')
        self.model = create_pair_geometry_model(backbone, backbone_checkpoint, head_kwargs,
                                                **(backbone_kwargs or {}))
        if depth_loss == 'laplacian' and not self.model.depth_confidence:
            raise ValueError("depth_loss='laplacian' needs head_kwargs.depth_confidence=true")
        self.model.freeze_backbone(freeze_backbone)
        self.size = self.model.input_size
        self.data = load_geometry_pairs(pairs)
        if val_pairs:
            self.val_data = load_geometry_pairs(val_pairs)
            self.train_ids = list(range(len(self.data['rgb1'])))
            self.val_ids = list(range(len(self.val_data['rgb1'])))
        else:
            self.val_data = self.data
            self.train_ids, self.val_ids = _split_by_scene(self.data['seed'], val_fraction, seed)
        if not self.train_ids:
            raise ValueError('no training pairs left after holding out the validation scenes')
        overlap = set(self.data['seed'][self.train_ids].tolist()) & set(
            self.val_data['seed'][self.val_ids].tolist())
        if val_pairs and overlap:
            _logger.warning('%d scene seeds are in both the training and the held-out files',
                            len(overlap))
        self.depth_weight, self.pose_weight = float(depth_weight), float(pose_weight)
        self.depth_loss, self.translation_weight = depth_loss, float(translation_weight)
        self.min_baseline, self.jitter, self.swap_views = float(min_baseline), jitter, swap_views
        self.eval_pairs, self.eval_batch, self.num_images = eval_pairs, eval_batch, num_images
        self.weight_decay = weight_decay
        self._references = self._reference_predictors()
        _logger.info('pair geometry: %d training / %d held-out pairs, input %s, backbone %s '
                     '(%s)%s', len(self.train_ids), len(self.val_ids), self.size, backbone,
                     backbone_checkpoint or 'random init',
                     ', frozen' if freeze_backbone else '')

    # ------------------------------------------------------------------ training
    def train_dataset(self) -> Dataset:
        return PairGeometryDataset(self.data, self.train_ids, self.size, augment=True,
                                   jitter=self.jitter, swap=self.swap_views)

    def trainable_parameters(self, model):
        if self.weight_decay is None:
            return [p for p in model.parameters() if p.requires_grad]
        no_decay = [f'backbone.{n}' for n in model.backbone.no_weight_decay()]
        return param_groups_weight_decay(model, self.weight_decay, no_weight_decay_list=no_decay)

    def loss(self, model, batch) -> tuple[torch.Tensor, dict]:
        out = model.forward_outputs(batch['pair'], depth=self.depth_weight > 0,
                                    pose=self.pose_weight > 0)
        total, logs = 0.0, {}
        if self.depth_weight > 0:
            scale = out['log_scale'] if self.depth_loss == 'laplacian' else None
            loss = depth_loss(out['log_depth'], batch['depth'], scale)
            total = total + self.depth_weight * loss
            logs['depth_loss'] = float(loss.detach())
            if scale is not None:
                logs['depth_l1_log'] = float(depth_loss(out['log_depth'].detach(),
                                                        batch['depth']))
        if self.pose_weight > 0:
            rot, trans = pose_loss(out['rotation'], out['translation'], batch['rotation'],
                                   batch['translation'], batch['baseline'], self.min_baseline)
            total = total + self.pose_weight * (rot + self.translation_weight * trans)
            logs.update({'rot_loss': float(rot.detach()), 'trans_loss': float(trans.detach())})
        return total, logs

    # ---------------------------------------------------------------- evaluation
    def _val_dataset(self) -> PairGeometryDataset:
        return PairGeometryDataset(self.val_data, self.val_ids[:self.eval_pairs], self.size)

    def _reference_predictors(self) -> dict:
        """Median training depth and mean training direction (trivial predictors)."""
        depth = self.data['depth1'][self.train_ids]
        _, translation = relative_pose(self.data['T1'][self.train_ids],
                                       self.data['T2'][self.train_ids])
        norms = np.linalg.norm(translation, axis=1, keepdims=True)
        keep = norms[:, 0] > self.min_baseline
        mean_dir = (translation[keep] / norms[keep]).mean(0) if keep.any() else np.ones(3)
        return {'depth': float(np.median(depth[depth > 0])) if (depth > 0).any() else 1.0,
                'direction': torch.tensor(mean_dir, dtype=torch.float32)}

    @torch.no_grad()
    def evaluate(self, model, step: int) -> dict:
        device = next(model.parameters()).device
        data = self._val_dataset()
        rows = {k: [] for k in ('abs_rel', 'delta1', 'ref_abs_rel', 'ref_delta1', 'rot',
                                'ref_rot', 'trans', 'ref_trans', 'baseline')}
        for start in range(0, len(data), self.eval_batch):
            items = [data[i] for i in range(start, min(len(data), start + self.eval_batch))]
            batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
            out = model.forward_outputs(batch['pair'].to(device), depth=self.depth_weight > 0,
                                        pose=self.pose_weight > 0)
            if self.depth_weight > 0:
                metrics = depth_metrics(out['log_depth'].exp().cpu(), batch['depth'])
                ref = depth_metrics(torch.full_like(batch['depth'], self._references['depth']),
                                    batch['depth'])
                for key in ('abs_rel', 'delta1'):
                    rows[key].append(metrics[key])
                    rows[f'ref_{key}'].append(ref[key])
            if self.pose_weight > 0:
                eye = torch.eye(3).expand_as(batch['rotation'])
                rows['rot'].append(rotation_error_deg(out['rotation'].cpu(), batch['rotation']))
                rows['ref_rot'].append(rotation_error_deg(eye, batch['rotation']))
                rows['trans'].append(direction_error_deg(out['translation'].cpu(),
                                                         batch['translation']))
                rows['ref_trans'].append(direction_error_deg(
                    self._references['direction'].expand_as(batch['translation']),
                    batch['translation']))
                rows['baseline'].append(batch['baseline'])
        return _summarise({k: torch.cat(v) for k, v in rows.items() if v}, self.min_baseline)

    # -------------------------------------------------------------------- export
    def export(self, model, out_dir: Path) -> Path:
        """Write the model to `out_dir/model` and, when training depth, `depth.png`."""
        out_dir = Path(out_dir)
        if self.depth_weight > 0 and self.num_images > 0:
            _depth_figure(model, self._val_dataset(), self.num_images, out_dir / 'depth.png')
        return save_pair_geometry_model(model, out_dir / 'model')


def _split_by_scene(seeds: np.ndarray, fraction: float, seed: int) -> tuple[list, list]:
    if not 0 <= fraction < 1:
        raise ValueError(f'val_fraction must be in [0, 1), got {fraction}')
    scenes = np.unique(seeds)
    order = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(seed)).numpy()
    held = set(scenes[order[:int(round(fraction * len(scenes)))]].tolist())
    val = [i for i, s in enumerate(seeds.tolist()) if s in held]
    train = [i for i, s in enumerate(seeds.tolist()) if s not in held]
    return train, val


def _summarise(rows: dict, min_baseline: float) -> dict:
    results = {}

    def nanmean(x):
        return float(x[~torch.isnan(x)].mean()) if (~torch.isnan(x)).any() else math.nan

    for key in ('abs_rel', 'delta1', 'ref_abs_rel', 'ref_delta1'):
        if key in rows:
            results[key] = nanmean(rows[key])
    if 'rot' in rows:
        results.update({'rot_err_median_deg': float(rows['rot'].median()),
                        'rot_err_mean_deg': float(rows['rot'].mean()),
                        'ref_rot_err_median_deg': float(rows['ref_rot'].median())})
        keep = rows['baseline'] > min_baseline
        if keep.any():
            results['trans_err_median_deg'] = float(rows['trans'][keep].median())
            results['ref_trans_err_median_deg'] = float(rows['ref_trans'][keep].median())
    return results


@torch.no_grad()
def _depth_figure(model, data: PairGeometryDataset, rows: int, path: Path) -> None:
    """PNG rows: view 1, view 2, true depth, predicted depth (shared inverse-depth scale)."""
    from PIL import Image
    device = next(model.parameters()).device
    items = [data[i] for i in range(min(rows, len(data)))]
    if not items:
        return
    pair = torch.stack([it['pair'] for it in items]).to(device)
    pred = model.forward_outputs(pair, pose=False)['log_depth'].exp().cpu()[:, 0]
    true = torch.stack([it['depth'][0] for it in items])
    valid = true > 0
    near, far = float(true[valid].min()), float(true[valid].max())

    def shade(depth):   # near bright, far dark, invalid black
        inv = (1.0 / depth.clamp(near, far) - 1.0 / far) / max(1.0 / near - 1.0 / far, 1e-9)
        return (inv.clamp(0, 1)[..., None].expand(*depth.shape, 3) * 255).to(torch.uint8)

    pair = pair.cpu().clamp(0, 255).to(torch.uint8)
    columns = [pair[:, :3].permute(0, 2, 3, 1), pair[:, 3:].permute(0, 2, 3, 1),
               torch.where(valid[..., None], shade(true), 0), shade(pred)]
    grid = torch.cat([torch.cat(list(c), dim=0) for c in columns], dim=1).numpy()
    image = Image.fromarray(grid)
    scale = max(1, 192 // data.size[0])
    image.resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)
