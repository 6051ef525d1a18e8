"""I2P-MAE: a hierarchical point-cloud masked autoencoder guided by a frozen 2D model.

Zhang et al., "Learning 3D Representations from 2D Pre-trained Models via Image-to-Point
Masked Autoencoders", CVPR 2023, https://arxiv.org/abs/2212.06785 (github.com/ZrrSkywalker/
I2P-MAE). Its encoder is Point-M2AE's (Zhang et al., NeurIPS 2022,
https://arxiv.org/abs/2205.14401), "the 3D-only variant" when the 2D guidance is off.

Input `(B, N, 3)` xyz, centered and scaled to the unit sphere, y-up (ShapeNet's frame).
Three scales of FPS + kNN groups (`layers.point_tokens`), a mini-PointNet per scale and the
hierarchical transformer (`layers.point_transformer`). `I2PMAEEncoder` returns the linear-SVM
feature: the last scale's tokens after `encoder_norms.2`, max-pooled; as upstream in eval
mode, each finer scale keeps only the tokens some coarser group references. `I2PMAE` adds the
pretraining decoder, heads and losses (`pretrain.i2p_mae_loss`). Module names are those of
the released `pre-train.pth`, so `h_encoder.*` (and the decoder) load strictly.
"""
from collections.abc import Mapping, Sequence

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from embodied_vision.checkpoints.licence import UNKNOWN_TERMS
from embodied_vision.encoders._contract import InputContract
from embodied_vision.encoders._registry import PretrainedCfg, register_encoder
from embodied_vision.encoders.base import Encoder
from embodied_vision.layers.point_ops import (
    chamfer_l2,
    farthest_point_sample,
    three_nn_interpolate,
)
from embodied_vision.layers.point_tokens import (
    PointGroups,
    group_scales,
    mask_coarse_tokens,
    propagate_visibility,
)
from embodied_vision.layers.point_transformer import (
    BlockStack,
    HierarchicalEncoder,
    ScaleTokens,
    position_mlp,
)

__all__ = ['I2PMAE', 'I2PMAEEncoder', 'PRESETS', 'TokenPropagation', 'model_kwargs']

#: The official pretraining config (`cfgs/pre-training/i2p-mae.yaml`) and CPU-sized ones.
PRESETS = {
    'base': dict(num_points=2048, num_groups=(512, 256, 64), group_sizes=(16, 8, 8),
                 encoder_dims=(96, 192, 384), encoder_depths=(5, 5, 5), num_heads=6),
    'small': dict(num_points=1024, num_groups=(256, 128, 32), group_sizes=(16, 8, 8),
                  encoder_dims=(48, 96, 192), encoder_depths=(2, 2, 2), num_heads=3,
                  decoder_dims=(192, 96)),
    'tiny': dict(num_points=256, num_groups=(64, 32, 8), group_sizes=(8, 4, 4),
                 encoder_dims=(16, 32, 64), encoder_depths=(1, 1, 1), num_heads=2,
                 decoder_dims=(64, 32), image_feature_dim=16),
}
#: Keys of upstream model configs that describe nothing of the network (or only its name).
_IGNORED_KEYS = {'NAME'}


def model_kwargs(config: Mapping) -> dict:
    """Our keyword arguments from an upstream model config (the `model:` section of an
    I2P-MAE / Point-M2AE YAML, as a mapping): unknown keys are refused by name."""
    known = {'num_groups', 'group_sizes', 'encoder_dims', 'encoder_depths', 'num_heads',
             'local_radius', 'mask_ratio', 'decoder_dims', 'decoder_depths', 'drop_path_rate',
             'decoder_up_blocks', 'num_points', 'image_feature_dim', 'cls_dim'}
    unknown = sorted(set(config) - known - _IGNORED_KEYS)
    if unknown:
        raise ValueError(f'model config keys {unknown} are not I2P-MAE options; known: '
                         f'{sorted(known)}')
    kwargs = {k: v for k, v in config.items() if k not in _IGNORED_KEYS}
    up = kwargs.pop('decoder_up_blocks', None)
    if up is not None and list(up) != [1]:
        raise ValueError(f'decoder_up_blocks={list(up)}: only [1] (the released model) is '
                         'implemented')
    kwargs.pop('cls_dim', None)  # the fine-tuning head's; see I2PMAEClassifier
    return kwargs


class I2PMAEEncoder(Encoder):
    """Points -> the linear-SVM feature of the I2P-MAE / Point-M2AE encoder.

    Keyword names are the upstream config's (`num_groups`, `group_sizes`, `encoder_dims`,
    `encoder_depths`, `num_heads`, `local_radius`, `mask_ratio`, `decoder_dims`,
    `decoder_depths`, `drop_path_rate`), so an upstream YAML builds the same network
    (`model_kwargs`); the decoder keys matter only to `I2PMAE`. `num_points` is the cloud
    size the model is fed (2048 in pretraining; the SVM protocol uses the first 1024).
    """

    def __init__(self, num_groups: Sequence[int] = (512, 256, 64),
                 group_sizes: Sequence[int] = (16, 8, 8),
                 encoder_dims: Sequence[int] = (96, 192, 384),
                 encoder_depths: Sequence[int] = (5, 5, 5),
                 num_heads: int | Sequence[int] = 6,
                 local_radius: Sequence[float] = (0.0, 0.0, 0.0),
                 mask_ratio: float = 0.8, decoder_dims: Sequence[int] = (384, 192),
                 decoder_depths: Sequence[int] = (1, 1), drop_path_rate: float = 0.1,
                 num_points: int = 2048, image_feature_dim: int = 512):
        super().__init__()
        self.num_groups = [int(g) for g in num_groups]
        self.group_sizes = [int(k) for k in group_sizes]
        if len(self.num_groups) != 3 or len(self.group_sizes) != 3:
            raise ValueError(f'num_groups {self.num_groups} and group_sizes '
                             f'{self.group_sizes} need 3 scales')
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f'mask_ratio={mask_ratio} must be in [0, 1)')
        if num_points < self.num_groups[0]:
            raise ValueError(f'num_points={num_points} is below num_groups[0]='
                             f'{self.num_groups[0]}')
        self.mask_ratio, self.num_points = float(mask_ratio), int(num_points)
        self.decoder_dims = [int(d) for d in decoder_dims]
        self.decoder_depths = [int(d) for d in decoder_depths]
        self.image_feature_dim = int(image_feature_dim)
        self.h_encoder = HierarchicalEncoder(encoder_dims, encoder_depths, num_heads,
                                             drop_path_rate, local_radius, with_norms=True)
        self.embed_dim = self.h_encoder.dims[-1]
        self.apply(_init_encoder)
        self.input_contract = InputContract(
            'points', 3, (-1.0, 1.0), dtypes=('float32',), default_size=(self.num_points,),
            min_size=self.num_groups[0],
            notes='xyz centered and scaled to the unit sphere, y-up (ShapeNet / ModelNet '
                  'frame); no colour')

    # ------------------------------------------------------------------- building blocks
    def group(self, points: torch.Tensor,
              centers_index: list[torch.Tensor] | None = None) -> list[PointGroups]:
        """FPS + kNN groups at the three scales (`layers.point_tokens.group_scales`)."""
        return group_scales(points, self.num_groups, self.group_sizes, centers_index)

    def referenced_visibility(self, scales: list[PointGroups]) -> list[torch.Tensor]:
        """Eval-mode visibility: every coarse token, and the finer tokens it references."""
        coarse = torch.ones(scales[-1].centers.shape[:2], dtype=torch.bool,
                            device=scales[-1].centers.device)
        return propagate_visibility(coarse, scales)

    def draw_visibility(self, scales: list[PointGroups], saliency: torch.Tensor | None = None,
                        generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Pretraining masks at every scale: `mask_ratio` of the coarse tokens hidden,
        drawn from `softmax(saliency)` (I2P-MAE) or uniformly (Point-M2AE)."""
        centers = scales[-1].centers
        coarse = mask_coarse_tokens(centers.shape[0], centers.shape[1], self.mask_ratio,
                                    saliency, generator, centers.device)
        return propagate_visibility(coarse, scales)

    def sample_centers(self, points: torch.Tensor) -> torch.Tensor:
        """`(B, num_groups[0])` FPS indices of the first scale: the one data-dependent loop
        (the coarser scales take prefixes), run before an exported graph."""
        return farthest_point_sample(points, self.num_groups[0])

    def features_from_centers(self, points: torch.Tensor,
                              centers_index: torch.Tensor | None = None) -> torch.Tensor:
        """`forward_features` with the first scale's FPS indices given (or sampled)."""
        scales = self.group(points, [centers_index, None, None])
        return self.h_encoder(scales, self.referenced_visibility(scales))[-1].tokens

    def export_graph(self) -> tuple[nn.Module, object]:
        """`(graph, prepare)` for `deploy.compile`: the exported graph takes the points and
        the first scale's FPS indices (kNN, the coarser prefixes, embedding, transformer and
        pooling run inside it); `prepare(points)` computes the indices before it."""
        return _GroupedGraph(self), lambda points: (points, self.sample_centers(points))

    # ------------------------------------------------------------------------ Encoder API
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, G_last, C_last)` last-scale tokens after `encoder_norms.2` (eval masking)."""
        return self.features_from_centers(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Max over the last scale's tokens -> `(B, C_last)` (the SVM feature)."""
        return features.amax(dim=1)

    def no_weight_decay(self) -> set[str]:
        return set()


class _GroupedGraph(nn.Module):
    """The exportable part of an `I2PMAEEncoder`: `(points, centers_index) -> embedding`."""

    def __init__(self, encoder: I2PMAEEncoder):
        super().__init__()
        self.encoder = encoder
        self.name = encoder.name

    def forward(self, points: torch.Tensor, centers_index: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward_head(self.encoder.features_from_centers(points,
                                                                            centers_index))

    def example_inputs(self, batch_size: int = 2, size=None, generator=None):
        (points,) = self.encoder.example_inputs(batch_size, size, generator)
        return points, self.encoder.sample_centers(points)

    def dynamic_shapes(self, n_inputs: int = 2, max_batch: int = 256) -> tuple[dict, ...]:
        return self.encoder.dynamic_shapes(n_inputs, max_batch)

    def export_names(self, n_inputs: int = 2) -> tuple[list[str], list[str]]:
        return ['points', 'centers_index'], ['embedding']


class TokenPropagation(nn.Module):
    """Coarse features to finer centers (3-NN, inverse squared distance), concatenated after
    the finer skip, fused (Conv1d-BN-GELU) and refined by one residual Conv-BN block."""

    def __init__(self, skip_dim: int, coarse_dim: int, out_dim: int):
        super().__init__()
        self.fuse = nn.Module()
        self.fuse.net = nn.Sequential(nn.Conv1d(skip_dim + coarse_dim, out_dim, 1),
                                      nn.BatchNorm1d(out_dim), nn.GELU())
        block = nn.Module()
        block.net1 = nn.Sequential(nn.Conv1d(out_dim, out_dim, 1), nn.BatchNorm1d(out_dim),
                                   nn.GELU())
        block.net2 = nn.Sequential(nn.Conv1d(out_dim, out_dim, 1), nn.BatchNorm1d(out_dim))
        self.extraction = nn.Module()
        self.extraction.operation = nn.ModuleList([block])
        self.act = nn.GELU()

    def forward(self, centers: torch.Tensor, coarse_centers: torch.Tensor,
                coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """`(B, G, out_dim)` at `centers (B, G, 3)` from `coarse (B, M, C)` at
        `coarse_centers (B, M, 3)` and the finer `skip (B, G, C_skip)`."""
        up = three_nn_interpolate(centers, coarse_centers, coarse)
        x = self.fuse.net(torch.cat([skip, up], dim=2).transpose(1, 2))
        for block in self.extraction.operation:
            x = self.act(block.net2(block.net1(x)) + x)
        return x.transpose(1, 2)


class I2PMAE(I2PMAEEncoder):
    """The pretraining model: encoder + two-stage decoder + 3D and 2D reconstruction heads.

    Stage 0 decodes the coarse tokens (visible ones plus `mask_token`), stage 1 the scale-1
    tokens after `token_prop.0`; `rec_head_3d` predicts each scale-1 group's
    `group_sizes[1]` member offsets, `rec_head_2d` their 2D features in the three views
    (`image_feature_dim` each, 512 for CLIP ViT-B/16). `forward` is the encoder's embedding.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        dec, enc = self.decoder_dims, self.h_encoder.dims
        if len(dec) != 2 or len(self.decoder_depths) != 2 or dec[0] != enc[2]:
            raise ValueError(f'decoder_dims {dec} / decoder_depths {self.decoder_depths} need '
                             f'2 stages, the first as wide as the last encoder scale '
                             f'({enc[2]})')
        heads = self.h_encoder.encoder_blocks[0].blocks[0].attn.num_heads
        self.mask_token = nn.Parameter(torch.zeros(1, dec[0]))
        self.h_decoder = nn.ModuleList(BlockStack(d, n, heads, [0.0] * n)
                                       for d, n in zip(dec, self.decoder_depths))
        self.decoder_pos_embeds = nn.ModuleList(position_mlp(d) for d in dec)
        self.token_prop = nn.ModuleList([TokenPropagation(enc[1], dec[0], dec[1])])
        self.decoder_norm = nn.LayerNorm(dec[1])
        k = self.group_sizes[1]
        self.rec_head_3d = nn.Conv1d(dec[1], 3 * k, 1)
        self.rec_head_2d = nn.Conv1d(dec[1], 3 * k * self.image_feature_dim, 1)
        for module in (self.h_decoder, self.decoder_pos_embeds):
            module.apply(_init_decoder)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def decode(self, scales: list[PointGroups], encoded: list[ScaleTokens]) -> torch.Tensor:
        """`(B, G_1, decoder_dims[1])` decoded scale-1 tokens."""
        coarse, fine = scales[2], scales[1]
        x = encoded[2].scatter(coarse.centers.shape[1], self.mask_token)
        x = self.h_decoder[0](x, self.decoder_pos_embeds[0](coarse.centers))
        skip = encoded[1].scatter(fine.centers.shape[1], 0.0)
        x = self.token_prop[0](fine.centers, coarse.centers, x, skip)
        x = self.h_decoder[1](x, self.decoder_pos_embeds[1](fine.centers))
        return self.decoder_norm(x)

    def forward_pretrain(self, points: torch.Tensor, saliency: torch.Tensor | None = None,
                         visible: list[torch.Tensor] | None = None,
                         scales: list[PointGroups] | None = None,
                         generator: torch.Generator | None = None,
                         predict_2d: bool = True) -> dict:
        """Masked encoding and decoding of `points (B, N, 3)`.

        Args:
            saliency: `(B, G_2)` 2D saliency of the coarse tokens (2D-guided masking), or
                None for random masking.
            visible: per-scale masks to replay instead of drawing them.
            scales: the groups, when the caller has computed them (e.g. for 2D targets).
            generator: random generator for the masking.
            predict_2d: run `rec_head_2d` (off for Point-M2AE, whose loss does not read it:
                the head is most of the step's work at 512-d features).

        Returns:
            `scales`, `visible`, `pred_3d (B, G_1, K_1, 3)` member offsets and
            `pred_2d (B, G_1, K_1, 3 * image_feature_dim)` (None without `predict_2d`), for
            every scale-1 token.
        """
        scales = self.group(points) if scales is None else scales
        if visible is None:
            visible = self.draw_visibility(scales, saliency, generator)
        encoded = self.h_encoder(scales, visible, pack=True)
        x = self.decode(scales, encoded).transpose(1, 2)
        b, g, k = x.shape[0], x.shape[2], self.group_sizes[1]
        pred_3d = self.rec_head_3d(x).transpose(1, 2).reshape(b, g, k, 3)
        pred_2d = self.rec_head_2d(x).transpose(1, 2).reshape(b, g, k, -1) if predict_2d \
            else None
        return {'scales': scales, 'visible': visible, 'pred_3d': pred_3d, 'pred_2d': pred_2d}

    def forward_loss(self, points: torch.Tensor, guide=None,
                     visible: list[torch.Tensor] | None = None,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """`(loss, outputs)`: I2P-MAE's objective with a 2D `guide`, Point-M2AE's without.

        The 3D loss is Chamfer-L2 (squared) between each **masked** scale-1 token's
        predicted and true member offsets; with a guide (`pretrain.image_guidance.
        ImageGuide`: saliency-guided masking and back-projected 2D features) the 2D loss is
        the MSE on the **visible** scale-1 tokens, weighted 1:1. `outputs` adds `loss_3d`,
        `loss_2d` (0 without a guide) and `signals` to `forward_pretrain`'s.
        """
        if guide is not None and guide.feature_dim != self.image_feature_dim:
            raise ValueError(f'the guide gives {guide.feature_dim}-d features, the model '
                             f'predicts image_feature_dim={self.image_feature_dim}')
        scales = self.group(points)
        signals = None if guide is None else guide.signals(points, scales)
        out = self.forward_pretrain(points, None if signals is None else signals.saliency,
                                    visible, scales, generator, predict_2d=signals is not None)
        shown = out['visible'][1]
        hidden = ~shown
        loss_3d = chamfer_l2(out['pred_3d'][hidden], scales[1].neighborhood[hidden]) \
            if hidden.any() else out['pred_3d'].sum() * 0.0
        loss_2d = out['pred_3d'].sum() * 0.0
        if signals is not None and shown.any():
            loss_2d = F.mse_loss(out['pred_2d'][shown], signals.targets[shown])
        out.update(loss_3d=loss_3d, loss_2d=loss_2d, signals=signals)
        return loss_3d + loss_2d, out


# ------------------------------------------------------------------------------ init
def _init_encoder(m: nn.Module) -> None:
    """Point-M2AE's init: truncated normal (std 0.02) Linear and Conv1d, zero bias."""
    if isinstance(m, (nn.Linear, nn.Conv1d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm1d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _init_decoder(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------- registry
LICENSE = UNKNOWN_TERMS
_RELEASE = PretrainedCfg(
    tag='shapenet55', formats=('i2p_mae', 'embodied_vision'), license=LICENSE,
    origin_url='https://github.com/ZrrSkywalker/I2P-MAE', paper='arXiv:2212.06785',
    non_commercial=True,
    notes="pre-train.pth ({'base_model', 'optimizer', 'epoch', 'metrics', 'best_metrics'}), "
          'the ShapeNet-55 pretraining. The repository publishes no licence and no terms for '
          'the weights: treated as all rights reserved, for research use, never '
          'redistributed')


def _build(cls, preset: str, kwargs: dict):
    return cls(**{**PRESETS[preset], **kwargs})


@register_encoder(_RELEASE)
def i2p_mae(**kwargs) -> I2PMAEEncoder:
    """The released I2P-MAE encoder (2048 points, 3 scales 96/192/384): 384-d SVM feature."""
    return _build(I2PMAEEncoder, 'base', kwargs)


@register_encoder()
def i2p_mae_small(**kwargs) -> I2PMAEEncoder:
    """CPU-sized encoder: 1024 points, widths 48/96/192, 2 blocks per scale."""
    return _build(I2PMAEEncoder, 'small', kwargs)


@register_encoder()
def i2p_mae_tiny(**kwargs) -> I2PMAEEncoder:
    """Test-sized encoder: 256 points, widths 16/32/64, 1 block per scale."""
    return _build(I2PMAEEncoder, 'tiny', kwargs)


@register_encoder(_RELEASE)
def i2p_mae_pretrain(**kwargs) -> I2PMAE:
    """The full released pretraining model (encoder, decoder, heads; CLIP not included)."""
    return _build(I2PMAE, 'base', kwargs)


@register_encoder()
def i2p_mae_pretrain_small(**kwargs) -> I2PMAE:
    return _build(I2PMAE, 'small', kwargs)


@register_encoder()
def i2p_mae_pretrain_tiny(**kwargs) -> I2PMAE:
    return _build(I2PMAE, 'tiny', kwargs)
