"""NeRF-MAE: a 3D Swin Transformer masked autoencoder on radiance grids.

Irshad et al., "NeRF-MAE: Masked AutoEncoders for Self-Supervised 3D Representation Learning
for Neural Radiance Fields", ECCV 2024, https://arxiv.org/abs/2404.01300
(github.com/zubair-irshad/NeRF-MAE, model `SwinTransformer_MAE3D_New`).

Input `(B, 4, X, Y, Z)`: RGB in [0, 1] plus alpha, any extent up to `resolution` per axis,
zero-padded at the high end to `resolution`^3 (the unpadded region is the loss's valid mask).
Patch partition (Conv3d, kernel = stride = patch) -> LayerNorm -> + fixed 3D sin-cos table
-> four Swin stages (2x2x2 patch merging between them). `NerfMAEEncoder` returns the stage
maps; `NerfMAE` adds the learned mask token, the UNETR decoder and the loss. Module and
buffer names are the released `nerf_mae_pretrained.pt`'s, so it loads strictly.
"""
from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from torchvision.ops.misc import Permute

from embodied_vision.encoders._contract import InputContract
from embodied_vision.encoders._registry import PretrainedCfg, register_encoder
from embodied_vision.encoders.base import Encoder
from embodied_vision.layers.masking import block_token_mask, radiance_mae_loss
from embodied_vision.layers.pos_embed import sincos_pos_embed_3d
from embodied_vision.layers.swin3d import PatchMerging3d, swin_block_3d
from embodied_vision.layers.unetr import UnetOutBlock, UnetrUpBlock

__all__ = ['NerfMAE', 'NerfMAEEncoder', 'PRESETS', 'pad_grids']

#: Upstream's `swin_t` / `swin_s` (the released weights are `swin_s`) and CPU-sized presets.
PRESETS = {
    'swin_s': dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24),
                   resolution=160),
    'swin_t': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                   resolution=160),
    'swin_mini': dict(embed_dim=48, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24),
                      resolution=64),
    'swin_micro': dict(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                       resolution=32),
}
MASK_BLOCK = 4  # tokens per side of a masked block (upstream `window_masking_3d`)


def _triple(value, name: str) -> tuple[int, int, int]:
    values = (value,) * 3 if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f'{name} must be an int or 3 positive ints, got {value!r}')
    return values


def pad_grids(grids: Sequence[torch.Tensor] | torch.Tensor,
              size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad grids `(4, X, Y, Z)` (a list of any extents, or a batch) at the high end to
    `size`^3: `(batch (B, 4, S, S, S), valid (B, S, S, S) bool)`, as upstream's `pad_tensor`."""
    items = list(grids.unbind(0)) if isinstance(grids, torch.Tensor) else list(grids)
    if not items:
        raise ValueError('no grids to pad')
    first = items[0]
    batch = first.new_zeros((len(items), first.shape[0], size, size, size))
    valid = torch.zeros((len(items), size, size, size), dtype=torch.bool, device=first.device)
    for i, grid in enumerate(items):
        if grid.ndim != 4 or grid.shape[0] != first.shape[0]:
            raise ValueError(f'grid {i} has shape {tuple(grid.shape)}, expected '
                             f'({first.shape[0]}, X, Y, Z)')
        if max(grid.shape[1:]) > size:
            raise ValueError(f'grid {i} has extent {tuple(grid.shape[1:])}, larger than the '
                             f'model resolution {size} on some axis')
        x, y, z = grid.shape[1:]
        batch[i, :, :x, :y, :z] = grid
        valid[i, :x, :y, :z] = True
    return batch, valid


class NerfMAEEncoder(Encoder):
    """The NeRF-MAE backbone: grid -> four Swin stage maps; pooled embedding of the last.

    Keyword names are the upstream constructor's (`patch_size`, `embed_dim`, `depths`,
    `num_heads`, `window_size`, `mlp_ratio`, `dropout`, `attention_dropout`,
    `stochastic_depth_prob`, `expand_dim`, `input_ch_dim`, `resolution`), so an upstream
    configuration builds the same network. `embed_dim` is the patch embedding width (96 for
    swin_s); the attribute `embed_dim` of the encoder is its embedding size, the last stage's
    width (768). `attention` picks the kernel (`layers.swin3d.ATTENTION_IMPLS`).
    """

    def __init__(self, patch_size: int | Sequence[int] = 4, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 18, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int | Sequence[int] = 4, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, attention_dropout: float = 0.0,
                 stochastic_depth_prob: float = 0.1, expand_dim: bool = True,
                 input_ch_dim: int = 4, resolution: int = 160, attention: str = 'sdpa'):
        super().__init__()
        self.patch_size = _triple(patch_size, 'patch_size')
        self.window_size = _triple(window_size, 'window_size')
        if len(set(self.patch_size)) != 1 or resolution % self.patch_size[0]:
            raise ValueError(f'patch_size {self.patch_size} must be cubic and divide '
                             f'resolution={resolution}')
        if len(depths) != len(num_heads) or not depths:
            raise ValueError(f'depths {list(depths)} and num_heads {list(num_heads)} need one '
                             'entry per stage')
        self.resolution = int(resolution)
        self.tokens = self.resolution // self.patch_size[0]
        self.patch_embed_dim = int(embed_dim)
        dims = [embed_dim * 2 ** i if expand_dim else embed_dim for i in range(len(depths))]
        for dim, heads in zip(dims, num_heads):
            if dim % heads:
                raise ValueError(f'stage width {dim} is not divisible by {heads} heads')
        self.stage_dims, self.embed_dim = dims, dims[-1]
        self.grad_checkpointing = False
        norm = nn.LayerNorm  # eps 1e-5, as upstream
        self.patch_partition = nn.Sequential(
            nn.Conv3d(input_ch_dim, embed_dim, self.patch_size, stride=self.patch_size),
            Permute([0, 2, 3, 4, 1]), norm(embed_dim))
        total, index = sum(depths), 0
        self.stages = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            layers = [PatchMerging3d(dims[i - 1], norm, expand_dim)] if i else []
            for j in range(depth):
                shift = [0 if j % 2 == 0 else w // 2 for w in self.window_size]
                layers.append(swin_block_3d(
                    dims[i], heads, self.window_size, shift, mlp_ratio, dropout,
                    attention_dropout, stochastic_depth_prob * index / max(total - 1, 1),
                    norm, attention))
                index += 1
            self.stages.append(nn.Sequential(*layers))
        table = sincos_pos_embed_3d(embed_dim, self.tokens)[None]
        self.pos_embed = nn.Parameter(table, requires_grad=False)
        for m in self.modules():  # upstream's final init of every Linear
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.input_contract = InputContract(
            'voxels', input_ch_dim, (0.0, 1.0), dtypes=('float32',),
            default_size=(self.resolution,) * 3, max_size=self.resolution,
            notes='RGB in [0, 1] + alpha = 1 - exp(-density / 100), channel-first; smaller '
                  'grids are zero-padded at the high end')

    # ------------------------------------------------------------------- building blocks
    def pad_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, C, X, Y, Z)` -> zero-padded `(B, C, R, R, R)` and its `(B, R, R, R)` valid mask."""
        if x.ndim != 5 or max(x.shape[2:]) > self.resolution:
            raise ValueError(f'{self.name} expects grids (B, {self.input_contract.channels}, '
                             f'X, Y, Z) with every side <= {self.resolution}, got '
                             f'{tuple(x.shape)}')
        r = self.resolution
        pad = (0, r - x.shape[4], 0, r - x.shape[3], 0, r - x.shape[2])
        valid = F.pad(torch.ones_like(x[:, 0], dtype=torch.bool), pad)
        return F.pad(x, pad), valid

    def embed(self, grid: torch.Tensor) -> torch.Tensor:
        """Padded grid -> `(B, T, T, T, C)` tokens with the position table added."""
        return self.patch_partition(grid) + self.pos_embed.to(grid.dtype)

    def run_stages(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """The channels-last output of every stage."""
        maps = []
        for stage in self.stages:
            for block in stage:
                if self.grad_checkpointing and torch.is_grad_enabled():
                    tokens = checkpoint(block, tokens, use_reentrant=False)
                else:
                    tokens = block(tokens)
            maps.append(tokens)
        return maps

    # ------------------------------------------------------------------------ Encoder API
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C_last, T/8, T/8, T/8)` last stage map (channel-first), no masking."""
        return self.forward_intermediates(x)[0]

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list]:
        """`(last map, [the four stage maps])`, each `(B, C, X, Y, Z)` as upstream's FPN
        backbone returns them (e.g. 96x40^3, 192x20^3, 384x10^3, 768x5^3 at 160^3)."""
        grid, _ = self.pad_input(x)
        maps = [m.permute(0, 4, 1, 2, 3) for m in self.run_stages(self.embed(grid))]
        return maps[-1], maps

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Mean over the last map's voxels -> `(B, C_last)`."""
        return features.mean(dim=(2, 3, 4))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return {'pos_embed'}


class NerfMAE(NerfMAEEncoder):
    """The full NeRF-MAE: masked encoder + UNETR decoder + loss (`forward_loss`).

    `masking_prob` is the Bernoulli probability of each 4^3-token block (0.75 in the
    pretraining recipe). Upstream-only keywords are accepted so its configurations build:
    `out_channels` must be 4, `masking_strategy` 'random' (the recipe's), and
    `decoder_embed_dim` / `drop_rate` are unused upstream as here.
    """

    def __init__(self, *args, masking_prob: float = 0.5, masking_strategy: str = 'random',
                 out_channels: int = 4, decoder_embed_dim: int = 768, drop_rate: float = 0.1,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if masking_strategy != 'random':
            raise ValueError(f"masking_strategy={masking_strategy!r}: only 'random' (the "
                             'pretraining recipe) is implemented')
        if out_channels != 4 or len(self.stage_dims) != 4 \
                or self.stage_dims != [self.patch_embed_dim * 2 ** i for i in range(4)]:
            raise ValueError('the NeRF-MAE decoder needs 4 stages with expand_dim=True and '
                             f'out_channels=4, got stages {self.stage_dims}, out_channels '
                             f'{out_channels}')
        if not 0.0 <= masking_prob <= 1.0:
            raise ValueError(f'masking_prob={masking_prob} must be in [0, 1]')
        self.masking_prob = float(masking_prob)
        c = self.patch_embed_dim
        self.mask_token = nn.Parameter(torch.empty(c))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder4 = UnetrUpBlock(8 * c, 4 * c, 2)
        self.decoder3 = UnetrUpBlock(4 * c, 2 * c, 2)
        self.decoder2 = UnetrUpBlock(2 * c, c, 2)
        self.decoder1 = UnetrUpBlock(c, c // 2, self.patch_size[0], use_skip=False)
        self.out = UnetOutBlock(c // 2, 4)

    def draw_token_mask(self, batch: int | None = None, device=None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """A fresh `(T, T, T)` mask shared by the batch (upstream), or `(batch, T, T, T)`."""
        return block_token_mask((self.tokens,) * 3, self.masking_prob, MASK_BLOCK, batch,
                                device, generator)

    def decode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Channels-last stage maps -> `(B, 4, R, R, R)` raw prediction (alpha not activated)."""
        f0, f1, f2, f3 = (m.permute(0, 4, 1, 2, 3) for m in maps)
        x = self.decoder2(self.decoder3(self.decoder4(f3, f2), f1), f0)
        return self.out(self.decoder1(x))

    def forward_pretrain(self, grid: torch.Tensor, token_mask: torch.Tensor | None = None,
                         generator: torch.Generator | None = None):
        """Masked reconstruction: `(pred, token_mask, target, valid)`.

        Args:
            grid: `(B, 4, X, Y, Z)`, every side <= resolution (padded here).
            token_mask: bool, True = masked: `(T, T, T)` shared by the batch or
                `(B, T, T, T)`; drawn with `draw_token_mask` when None, so a run can be
                replayed exactly against another implementation by passing its mask.
            generator: random generator for the drawn mask.
        """
        target, valid = self.pad_input(grid)
        batch, t = target.shape[0], self.tokens
        if token_mask is None:
            token_mask = self.draw_token_mask(device=target.device, generator=generator)
        if token_mask.dtype != torch.bool or token_mask.shape not in ((t, t, t),
                                                                      (batch, t, t, t)):
            raise ValueError(f'token_mask must be bool {(t, t, t)} or {(batch, t, t, t)}, got '
                             f'{token_mask.dtype} {tuple(token_mask.shape)}')
        tokens = self.embed(target)
        masked = token_mask.to(tokens.device).expand(batch, t, t, t)[..., None]
        tokens = torch.where(masked, self.mask_token.to(tokens.dtype), tokens)
        pred = self.decode(self.run_stages(tokens))
        return pred, token_mask, target, valid

    def voxel_mask(self, token_mask: torch.Tensor) -> torch.Tensor:
        """Token mask -> the `(…, R, R, R)` mask of the voxels each masked token covers."""
        p, lead = self.patch_size[0], token_mask.ndim - 3
        for axis in range(lead, lead + 3):
            token_mask = token_mask.repeat_interleave(p, dim=axis)
        return token_mask

    def forward_loss(self, grid: torch.Tensor, token_mask: torch.Tensor | None = None,
                     generator: torch.Generator | None = None):
        """`(loss, outputs)`: NeRF-MAE's loss (`layers.masking.radiance_mae_loss`) and
        `loss_rgb`, `loss_alpha`, `pred`, `token_mask`, `target`, `valid`."""
        pred, token_mask, target, valid = self.forward_pretrain(grid, token_mask, generator)
        voxels = self.voxel_mask(token_mask).to(valid.device)
        loss, loss_rgb, loss_alpha = radiance_mae_loss(pred, target, valid, voxels)
        return loss, {'loss_rgb': loss_rgb, 'loss_alpha': loss_alpha, 'pred': pred,
                      'token_mask': token_mask, 'target': target, 'valid': valid}


# ---------------------------------------------------------------------------- registry
LICENSE = 'CC-BY-NC-4.0'
_RELEASE = PretrainedCfg(
    tag='front3d_hm3d_hypersim', formats=('nerf_mae', 'embodied_vision'), license=LICENSE,
    origin_url='https://huggingface.co/mirshad7/NeRF-MAE', paper='arXiv:2404.01300',
    non_commercial=True,
    notes="nerf_mae_pretrained.pt ({'epoch', 'state_dict', 'train_args'}, the epoch-1200 "
          "swin_s pretraining at 160^3). The repository's README says CC BY-NC 4.0 for code, "
          'data and weights (its LICENSE file says MIT): treated as non-commercial')
_FINETUNED = PretrainedCfg(
    tag='nerf_rpn_finetuned', formats=('nerf_mae_rpn',), license=LICENSE,
    origin_url='https://huggingface.co/mirshad7/NeRF-MAE', paper='arXiv:2404.01300',
    non_commercial=True,
    notes="the backbone of a fine-tuned NeRF-RPN detector (e.g. front3d_obb_finetuned.pt: "
          "'backbone_state_dict' keys 'base.*'; the FPN neck and FCOS head are not loaded)")


def _build(cls, preset: str, kwargs: dict):
    return cls(**{**PRESETS[preset], **kwargs})


@register_encoder(_RELEASE, _FINETUNED)
def nerf_mae_swin_s(**kwargs) -> NerfMAEEncoder:
    """NeRF-MAE's released backbone (swin_s, 160^3): grid -> stage maps, 768-d embedding."""
    return _build(NerfMAEEncoder, 'swin_s', kwargs)


@register_encoder()
def nerf_mae_swin_t(**kwargs) -> NerfMAEEncoder:
    """Upstream's swin_t preset (depths 2/2/6/2) at 160^3 (no released weights)."""
    return _build(NerfMAEEncoder, 'swin_t', kwargs)


@register_encoder()
def nerf_mae_swin_mini(**kwargs) -> NerfMAEEncoder:
    """CPU-sized backbone: width 48, depths 2/2/2/2, 64^3 grids."""
    return _build(NerfMAEEncoder, 'swin_mini', kwargs)


@register_encoder()
def nerf_mae_swin_micro(**kwargs) -> NerfMAEEncoder:
    """Test-sized backbone: width 24, depths 2/2/2/2, 32^3 grids."""
    return _build(NerfMAEEncoder, 'swin_micro', kwargs)


@register_encoder(_RELEASE)
def nerf_mae_pretrain_swin_s(**kwargs) -> NerfMAE:
    """The full released NeRF-MAE (encoder + decoder + mask token; 383 checkpoint keys)."""
    return _build(NerfMAE, 'swin_s', {'masking_prob': 0.75, **kwargs})


@register_encoder()
def nerf_mae_pretrain_swin_t(**kwargs) -> NerfMAE:
    return _build(NerfMAE, 'swin_t', {'masking_prob': 0.75, **kwargs})


@register_encoder()
def nerf_mae_pretrain_swin_mini(**kwargs) -> NerfMAE:
    return _build(NerfMAE, 'swin_mini', {'masking_prob': 0.75, **kwargs})


@register_encoder()
def nerf_mae_pretrain_swin_micro(**kwargs) -> NerfMAE:
    return _build(NerfMAE, 'swin_micro', {'masking_prob': 0.75, **kwargs})
