"""CroCo and CroCo v2: cross-view completion ViTs (encoder embedding and two-view model).

CroCo: Self-Supervised Pre-training for 3D Vision Tasks by Cross-View Completion
(Weinzaepfel et al., NeurIPS 2022). Paper: https://arxiv.org/abs/2210.10716
CroCo v2: Improved Cross-view Completion Pre-training for Stereo Matching and Optical Flow
(Weinzaepfel et al., ICCV 2023). Paper: https://arxiv.org/abs/2211.10408
Code: https://github.com/naver/croco (independent reimplementation; no upstream code copied).

A ViT-B/L encoder (patch 16) sees a 90%-masked view 1 and the full view 2 (same, Siamese
weights); a decoder of pre-norm blocks (self-attention, cross-attention to view 2, MLP)
rebuilds the masked patches of view 1 from a shared `decoder_embed`, a learned `mask_token`
and a linear `prediction_head`. The loss is the MSE on per-patch-normalised pixels over the
masked patches only. Positions: fixed 2D sin-cos tables added to the tokens (v1, "cosine")
or 2D RoPE with base 100 inside every attention (v2, "RoPE100").

Differences from upstream, all numerically neutral for the released weights:
- any input size that is a multiple of 16, non-square included (upstream asserts one fixed
  size): RoPE tables are computed per grid; cosine tables are bicubically resampled, as
  upstream does for its downstream crops;
- fused `scaled_dot_product_attention` and a vectorised RoPE with cached tables (upstream:
  explicit softmax(q k^T) and a per-call RoPE, or a CUDA-only kernel that blocks export).

Registry (tags name the weights; files are never downloaded, users pass a path):
- encoder-only embedding, image -> `(B, enc_dim)` mean of the encoder's output tokens:
  `croco_vit_base` (v1), `croco_v2_vit_base`, `croco_v2_vit_large`;
- the full two-view model, image pair -> `(B, dec_dim)` mean of the decoder's output tokens
  (view 1 unmasked as queries, view 2 as memory; the binocular features of CroCo-Stereo/Flow):
  `croco_pair_vit_base` (v1), `croco_v2_pair_vit_base_smalldec`,
  `croco_v2_pair_vit_base_basedec`, `croco_v2_pair_vit_large_basedec`.
  Pretraining uses `forward_pretrain` / `forward_loss` on the same module.

Input: ImageNet-normalised float RGB, `(x / 255 - mean) / std`, done by the caller as in
upstream CroCo (not inside the model). A pair is one `(B, 6, H, W)` tensor: view 1 in
channels 0-2, view 2 in 3-5 (`CroCoPair.join_views`).

Weights licence: the official checkpoints (`CroCo.pth`, `CroCo_V2_*.pth`) are CC BY-NC-SA 4.0
(non-commercial, share-alike; the code's terms, no separate weights licence). They are
loaded from a user-supplied path by `embodied_vision.checkpoints.croco` (`create_encoder(name,
checkpoint=path)`, or `croco_from_checkpoint(path)` for the architecture a file describes)
and a non-commercial warning is raised on load. Their architectures are the table in
`embodied_vision.checkpoints.croco_archs`, which the registry entries below read.
"""
from collections.abc import Callable
import logging

import torch
from torch import nn
import torch.utils.checkpoint

from embodied_vision.checkpoints.croco import (
    croco_architecture,
    load_croco_checkpoint,
    read_croco_checkpoint,
)
from embodied_vision.checkpoints.croco_archs import (
    DECODER_KEYS,
    ENCODER_KEYS,
    LICENSE,
    ORIGIN,
    RELEASES,
    match_release,
)
from embodied_vision.encoders._registry import PretrainedCfg, register_encoder
from embodied_vision.encoders.croco_encoder import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORM_EPS,
    CroCoEncoder,
    init_weights,
)
from embodied_vision.encoders.factory import create_encoder
from embodied_vision.layers import (
    DecoderBlock,
    RoPE2D,
    sincos_pos_embed_2d,
)
from embodied_vision.layers.masking import masked_mse_loss, random_mask

__all__ = ['CroCoEncoder', 'CroCoPair', 'IMAGENET_MEAN', 'IMAGENET_STD', 'croco_from_checkpoint',
           'croco_vit_base', 'croco_v2_vit_base', 'croco_v2_vit_large', 'croco_pair_vit_base',
           'croco_v2_pair_vit_base_smalldec', 'croco_v2_pair_vit_base_basedec',
           'croco_v2_pair_vit_large_basedec']

_logger = logging.getLogger(__name__)


class CroCoPair(CroCoEncoder):
    """The full cross-view completion model: encoder, decoder and prediction head.

    As an `Encoder` its input is a pair `(B, 6, H, W)` and `forward` returns the mean of the
    decoder's output tokens, `(B, dec_dim)`: both views are encoded whole (one batched pass),
    view 1 queries view 2 through the decoder; `forward_features` gives those tokens
    `(B, N, dec_dim)` after `dec_norm`. Pretraining: `forward_pretrain` / `forward_loss`.

    Args:
        dec_embed_dim: decoder token width.
        dec_depth: number of decoder blocks.
        dec_num_heads: decoder attention heads.
        mask_ratio: fraction of view-1 patches masked in pretraining (0.9).
        norm_im2_in_dec: normalise view 2 with each block's `norm_y` (True upstream).
        **kwargs: encoder arguments (see `CroCoEncoder`).
    """

    def __init__(self, dec_embed_dim: int = 512, dec_depth: int = 8, dec_num_heads: int = 16,
                 mask_ratio: float = 0.9, norm_im2_in_dec: bool = True, **kwargs):
        super().__init__(**kwargs)
        if dec_num_heads < 1 or dec_embed_dim % dec_num_heads or dec_depth < 1:
            raise ValueError(f'dec_embed_dim={dec_embed_dim} must be a multiple of '
                             f'dec_num_heads={dec_num_heads} and dec_depth={dec_depth} >= 1')
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f'mask_ratio={mask_ratio} must be in [0, 1)')
        self.mask_ratio = mask_ratio
        self.dec_embed_dim = dec_embed_dim
        self.embed_dim = dec_embed_dim
        self.decoder_embed = nn.Linear(self.enc_embed_dim, dec_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_embed_dim))
        self.dec_rope = None
        if self.enc_rope is None:
            self.register_buffer('dec_pos_embed', sincos_pos_embed_2d(
                dec_embed_dim, *self.grid_size))
        else:
            self.register_buffer('dec_pos_embed', None)
            self.dec_rope = RoPE2D(dec_embed_dim // dec_num_heads, self.enc_rope.base)
        self.dec_blocks = nn.ModuleList(
            DecoderBlock(dec_embed_dim, dec_num_heads, self.mlp_ratio, norm_mem=norm_im2_in_dec)
            for _ in range(dec_depth))
        self.dec_norm = nn.LayerNorm(dec_embed_dim, eps=NORM_EPS)
        self.prediction_head = nn.Linear(dec_embed_dim, self.patch_size ** 2 * 3)
        self.input_contract = self._contract('image_pair', 6)
        for module in (self.decoder_embed, self.dec_blocks, self.dec_norm,
                       self.prediction_head):
            module.apply(init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    # ------------------------------------------------------------------------ helpers
    @staticmethod
    def join_views(img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        """Two `(B, 3, H, W)` views -> the `(B, 6, H, W)` pair input."""
        if img1.shape != img2.shape:
            raise ValueError(f'both views must have the same shape, got {tuple(img1.shape)} '
                             f'and {tuple(img2.shape)}')
        return torch.cat((img1, img2), dim=1)

    @staticmethod
    def split_views(pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, 6, H, W)` -> view 1, view 2."""
        if pair.ndim != 4 or pair.shape[1] != 6:
            raise ValueError('expected an image pair (B,6,H,W) (view 1 in channels 0-2, '
                             f'view 2 in 3-5), got {tuple(pair.shape)}')
        return pair[:, :3], pair[:, 3:]

    def croco_kwargs(self) -> dict:
        """The encoder's `CroCoNet` keyword arguments and the decoder's."""
        return {**super().croco_kwargs(), 'dec_embed_dim': self.dec_embed_dim,
                'dec_depth': len(self.dec_blocks),
                'dec_num_heads': self.dec_blocks[0].attn.num_heads,
                'norm_im2_in_dec': not isinstance(self.dec_blocks[0].norm_y, nn.Identity)}

    def decode(self, feat1: torch.Tensor, feat2: torch.Tensor, grid: tuple[int, int],
               ids_keep: torch.Tensor | None = None,
               intermediates: list | None = None) -> torch.Tensor:
        """Decoder tokens after `dec_norm`, `(B, N, dec_dim)`.

        Args:
            feat1: view-1 encoder tokens, all `N` or only the visible `ids_keep`.
            feat2: view-2 encoder tokens `(B, N, enc_dim)`, the memory of every block.
            grid: `(grid_h, grid_w)` patch grid of both views.
            ids_keep: visible patch indices of view 1; the other slots get `mask_token`.
            intermediates: if a list, every block's output (before `dec_norm`) is appended.
        """
        x = self.decoder_embed(feat1)
        y = self.decoder_embed(feat2)
        if ids_keep is not None:
            slots = self.mask_token.to(x.dtype).expand(x.shape[0], grid[0] * grid[1], -1)
            x = slots.scatter(1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]), x)
        rope = None
        if self.dec_pos_embed is not None:
            table = self._table(self.dec_pos_embed, grid).to(x.dtype)
            x, y = x + table, y + table
        else:
            rope = self.dec_rope(*grid, device=x.device)
        for block in self.dec_blocks:
            x = self._run(block, x, y, rope, rope)
            if intermediates is not None:
                intermediates.append(x)
        return self.dec_norm(x)

    # ------------------------------------------------------------------- Encoder API
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, N, dec_dim)` decoder tokens for the pair `x` `(B, 6, H, W)`, no masking."""
        img1, img2 = self.split_views(x)
        grid = self._grid(img1)
        batch = img1.shape[0]
        feats = self.encode(torch.cat((img1, img2), dim=0))     # both views, one pass
        return self.decode(feats[:batch], feats[batch:], grid)

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list]:
        """`(decoder tokens, [encoder block outputs of view 1] + [decoder block outputs])`.

        The feature list of CroCo-Stereo/Flow (`enc_norm`/`dec_norm` not applied to it).
        """
        img1, img2 = self.split_views(x)
        grid = self._grid(img1)
        batch = img1.shape[0]
        enc_blocks, dec_blocks = [], []
        feats = self.encode(torch.cat((img1, img2), dim=0), intermediates=enc_blocks)
        out = self.decode(feats[:batch], feats[batch:], grid, intermediates=dec_blocks)
        return out, [t[:batch] for t in enc_blocks] + dec_blocks

    def example_inputs(self, batch_size: int = 2, size: tuple[int, ...] | None = None,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """One random `(B, 6, H, W)` pair tensor (see `join_views`)."""
        low, high = self.input_contract.value_range
        size = tuple(size or self.input_contract.default_size)
        return (torch.rand((batch_size, 6, *size), generator=generator) * (high - low) + low,)

    # --------------------------------------------------------------------- pretraining
    def forward_pretrain(self, img1: torch.Tensor, img2: torch.Tensor,
                         mask: torch.Tensor | None = None,
                         generator: torch.Generator | None = None):
        """Cross-view completion: `(pred, mask, target)`, each over the N patches of view 1.

        Args:
            img1: `(B, 3, H, W)` view to complete (masked at `mask_ratio`).
            img2: `(B, 3, H, W)` reference view, encoded whole.
            mask: `(B, N)` bool, True = masked, the same count in every row; drawn with
                `random_mask` when None.
            generator: random generator for the mask.

        Returns:
            pred `(B, N, p*p*3)`, mask `(B, N)`, target = `patchify(img1)`.
        """
        if img1.shape != img2.shape:
            raise ValueError(f'both views must have the same shape, got {tuple(img1.shape)} '
                             f'and {tuple(img2.shape)}')
        grid = self._grid(img1)
        num_patches = grid[0] * grid[1]
        batch = img1.shape[0]
        if mask is None:
            mask = random_mask(batch, num_patches, self.mask_ratio, img1.device, generator)
        if mask.shape != (batch, num_patches) or mask.dtype != torch.bool:
            raise ValueError(f'mask must be bool {(batch, num_patches)}, got {mask.dtype} '
                             f'{tuple(mask.shape)}')
        visible = (~mask).sum(dim=1)
        if not bool((visible == visible[0]).all()) or int(visible[0]) == 0:
            raise ValueError('mask must leave the same number (>= 1) of visible patches in '
                             f'every row, got {visible.tolist()}')
        # Indices of the visible patches, ascending (stable sort puts False first).
        ids_keep = mask.to(torch.uint8).argsort(dim=1, stable=True)[:, :int(visible[0])]
        feat1 = self.encode(img1, ids_keep)
        feat2 = self.encode(img2)
        pred = self.prediction_head(self.decode(feat1, feat2, grid, ids_keep))
        return pred, mask, self.patchify(img1)

    def forward_loss(self, img1: torch.Tensor, img2: torch.Tensor,
                     mask: torch.Tensor | None = None,
                     generator: torch.Generator | None = None, norm_pix: bool = True):
        """`(loss, outputs)`: masked MSE of `forward_pretrain` and its `pred/mask/target`."""
        pred, mask, target = self.forward_pretrain(img1, img2, mask, generator)
        loss = masked_mse_loss(pred, target, mask, norm_pix=norm_pix)
        return loss, {'pred': pred, 'mask': mask, 'target': target}


# ---------------------------------------------------------------------------- init
def _cfg(tag: str, file: str, encoder_only: bool = False) -> PretrainedCfg:
    version = 'v1' if file == 'CroCo.pth' else 'v2'
    what = 'encoder weights of ' if encoder_only else ''
    return PretrainedCfg(
        tag=tag, formats=('croco', 'embodied_vision'), license=LICENSE,
        origin_url=ORIGIN + file, non_commercial=True, paper=RELEASES[file].paper,
        notes=(f'{what}the official CroCo {version} release {file} (state dict under '
               "'model'; the v2 files add 'croco_kwargs'); files written by upstream "
               "pretrain.py (architecture in args.model) load too"))


def croco_from_checkpoint(path, pair: bool = True, **overrides) -> CroCoEncoder:
    """Build the CroCo model a file describes and load it (eval mode).

    Args:
        path: an official release or a file written by upstream `pretrain.py`.
        pair: the full two-view model (`CroCoPair`); False for the encoder-only embedding.
        **overrides: extra constructor arguments (e.g. `img_size`).
    """
    kwargs, _ = croco_architecture(read_croco_checkpoint(path))
    release = match_release(kwargs)
    if release is None:  # self-trained: the v1 or v2 ViT-B entry with the differences as kwargs
        release = RELEASES['CroCo.pth' if kwargs.get('pos_embed') == 'cosine' else
                           'CroCo_V2_ViTBase_SmallDecoder.pth']
    defaults = release.architecture()
    keys = ('img_size',) + ENCODER_KEYS + ((DECODER_KEYS + ('mask_ratio',)) if pair else ())
    arch = {k: kwargs[k] for k in keys if k in kwargs and kwargs[k] != defaults[k]}
    if isinstance(arch.get('img_size'), list):
        arch['img_size'] = tuple(arch['img_size'])
    model = create_encoder(release.pair if pair else release.encoder, **{**arch, **overrides})
    load_croco_checkpoint(model, path)
    return model.eval()


def _create(cls: Callable, defaults: dict, overrides: dict):
    return cls(**{**defaults, **overrides})


@register_encoder(_cfg('habitat_pairs', 'CroCo.pth', encoder_only=True))
def croco_vit_base(**kwargs) -> CroCoEncoder:
    """CroCo v1 ViT-B/16 encoder, 2D sin-cos positions: 768-d embedding."""
    return _create(CroCoEncoder, RELEASES['CroCo.pth'].encoder_kwargs(), kwargs)


@register_encoder(_cfg('habitat_real_smalldec', 'CroCo_V2_ViTBase_SmallDecoder.pth', True),
                  _cfg('habitat_real_basedec', 'CroCo_V2_ViTBase_BaseDecoder.pth', True))
def croco_v2_vit_base(**kwargs) -> CroCoEncoder:
    """CroCo v2 ViT-B/16 encoder, RoPE100: 768-d embedding."""
    return _create(CroCoEncoder, RELEASES['CroCo_V2_ViTBase_SmallDecoder.pth'].encoder_kwargs(),
                   kwargs)


@register_encoder(_cfg('habitat_real_basedec', 'CroCo_V2_ViTLarge_BaseDecoder.pth', True))
def croco_v2_vit_large(**kwargs) -> CroCoEncoder:
    """CroCo v2 ViT-L/16 encoder, RoPE100: 1024-d embedding."""
    return _create(CroCoEncoder, RELEASES['CroCo_V2_ViTLarge_BaseDecoder.pth'].encoder_kwargs(),
                   kwargs)


@register_encoder(_cfg('habitat_pairs', 'CroCo.pth'))
def croco_pair_vit_base(**kwargs) -> CroCoPair:
    """CroCo v1 two-view model, ViT-B encoder + small decoder (512/8/16): 512-d embedding."""
    return _create(CroCoPair, RELEASES['CroCo.pth'].kwargs, kwargs)


@register_encoder(_cfg('habitat_real', 'CroCo_V2_ViTBase_SmallDecoder.pth'))
def croco_v2_pair_vit_base_smalldec(**kwargs) -> CroCoPair:
    """CroCo v2 two-view model, ViT-B + small decoder, RoPE100: 512-d embedding."""
    return _create(CroCoPair, RELEASES['CroCo_V2_ViTBase_SmallDecoder.pth'].kwargs, kwargs)


@register_encoder(_cfg('habitat_real', 'CroCo_V2_ViTBase_BaseDecoder.pth'))
def croco_v2_pair_vit_base_basedec(**kwargs) -> CroCoPair:
    """CroCo v2 two-view model, ViT-B + base decoder (768/12/12), RoPE100: 768-d."""
    return _create(CroCoPair, RELEASES['CroCo_V2_ViTBase_BaseDecoder.pth'].kwargs, kwargs)


@register_encoder(_cfg('habitat_real', 'CroCo_V2_ViTLarge_BaseDecoder.pth'))
def croco_v2_pair_vit_large_basedec(**kwargs) -> CroCoPair:
    """CroCo v2 two-view model, ViT-L + base decoder, RoPE100: 768-d embedding."""
    return _create(CroCoPair, RELEASES['CroCo_V2_ViTLarge_BaseDecoder.pth'].kwargs, kwargs)
