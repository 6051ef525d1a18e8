"""The CroCo / CroCo v2 ViT encoder, shared by the encoder-only and the two-view models.

CroCo (Weinzaepfel et al., NeurIPS 2022, https://arxiv.org/abs/2210.10716) and CroCo v2
(ICCV 2023, https://arxiv.org/abs/2211.10408); the family, its registry entries and its
licence are described in `embodied_vision.encoders.croco`.
"""
import math
import re

from timm.layers import PatchEmbed
import torch
from torch import nn
import torch.utils.checkpoint

from embodied_vision.encoders._contract import InputContract
from embodied_vision.encoders.base import Encoder
from embodied_vision.layers import EncoderBlock, RoPE2D, resample_pos_embed_2d, sincos_pos_embed_2d

__all__ = ['CroCoEncoder', 'IMAGENET_MEAN', 'IMAGENET_STD', 'NORM_EPS', 'init_weights']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Range of ImageNet-normalised values of 0..1 pixels, for the contract and example inputs.
_NORMALISED_RANGE = (min(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)),
                     max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)))
_ROPE = re.compile(r'^RoPE(\d+(?:\.\d+)?)$')
NORM_EPS = 1e-6


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f'img_size={size} must be an int or (height, width)')
    return size


def _rope_base(pos_embed: str) -> float | None:
    """None for 'cosine', the base frequency for 'RoPE<base>'; ValueError otherwise."""
    if pos_embed == 'cosine':
        return None
    match = _ROPE.match(str(pos_embed))
    if not match:
        raise ValueError(f"pos_embed={pos_embed!r} is not 'cosine' or 'RoPE<base>' "
                         "(e.g. 'RoPE100')")
    return float(match.group(1))


class CroCoEncoder(Encoder):
    """The CroCo ViT encoder; as an `Encoder`, image -> mean of its output tokens.

    Args:
        img_size: default input size `int` or `(H, W)`; any multiple of `patch_size` runs.
            Cosine models store their tables at this size.
        patch_size: patch side (16 in every release).
        enc_embed_dim: token width.
        enc_depth: number of encoder blocks.
        enc_num_heads: attention heads.
        mlp_ratio: MLP hidden width over the token width.
        pos_embed: 'cosine' (v1, fixed 2D sin-cos added to tokens) or 'RoPE<base>' (v2,
            'RoPE100': 2D rotary embedding inside attention).
        drop_path_rate: stochastic depth, linearly increasing over blocks (0 upstream).
    """

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int = 16,
                 enc_embed_dim: int = 768, enc_depth: int = 12, enc_num_heads: int = 12,
                 mlp_ratio: float = 4.0, pos_embed: str = 'cosine', drop_path_rate: float = 0.0):
        super().__init__()
        self.img_size = _pair(img_size)
        if patch_size < 1 or any(s < patch_size or s % patch_size for s in self.img_size):
            raise ValueError(f'img_size={self.img_size} must be multiples of '
                             f'patch_size={patch_size} (>= 1)')
        if enc_depth < 1:
            raise ValueError(f'enc_depth={enc_depth} must be >= 1')
        self.patch_size = patch_size
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.pos_embed = pos_embed
        rope_base = _rope_base(pos_embed)
        if enc_num_heads < 1 or enc_embed_dim % enc_num_heads:
            raise ValueError(f'enc_embed_dim={enc_embed_dim} must be a multiple of '
                             f'enc_num_heads={enc_num_heads}')
        self.enc_embed_dim = enc_embed_dim
        self.embed_dim = enc_embed_dim
        self.mlp_ratio = mlp_ratio
        self.grad_checkpointing = False
        self.patch_embed = PatchEmbed(self.img_size, patch_size, 3, enc_embed_dim,
                                      strict_img_size=False)
        self.enc_rope = None
        if rope_base is None:
            self.register_buffer('enc_pos_embed', sincos_pos_embed_2d(
                enc_embed_dim, *self.grid_size))
        else:
            self.register_buffer('enc_pos_embed', None)
            self.enc_rope = RoPE2D(enc_embed_dim // enc_num_heads, rope_base)
        rates = [drop_path_rate * i / max(enc_depth - 1, 1) for i in range(enc_depth)]
        self.enc_blocks = nn.ModuleList(
            EncoderBlock(enc_embed_dim, enc_num_heads, mlp_ratio, drop_path=rate)
            for rate in rates)
        self.enc_norm = nn.LayerNorm(enc_embed_dim, eps=NORM_EPS)
        self.input_contract = self._contract('image', 3)
        self.apply(init_weights)
        _init_patch_embed(self.patch_embed)

    def _contract(self, modality: str, channels: int) -> InputContract:
        positions = ('2D RoPE (any multiple of 16 without resampling)' if self.enc_rope
                     else 'fixed sin-cos tables, bicubically resampled at other sizes')
        views = ('; pair = (B,6,H,W), view 1 in channels 0-2, view 2 in 3-5'
                 if channels == 6 else '')
        return InputContract(
            modality=modality, channels=channels, value_range=_NORMALISED_RANGE,
            dtypes=('float32', 'float16', 'bfloat16'), mean=None, std=None,
            caller_mean=IMAGENET_MEAN, caller_std=IMAGENET_STD,
            default_size=self.img_size, size_multiple=self.patch_size,
            min_size=self.patch_size,
            notes=('ImageNet-normalised float RGB, (x/255 - mean)/std with mean '
                   f'{IMAGENET_MEAN} and std {IMAGENET_STD}, applied by the caller as in '
                   f'upstream CroCo{views}; positions: {positions}'))

    # ------------------------------------------------------------------------ helpers
    def _grid(self, img: torch.Tensor) -> tuple[int, int]:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f'{self.name} expects images (B,3,H,W), got {tuple(img.shape)}')
        height, width = img.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f'{self.name}: image size {(height, width)} is not a multiple of '
                             f'patch_size={self.patch_size}')
        return height // self.patch_size, width // self.patch_size

    def _table(self, table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return resample_pos_embed_2d(table, self.grid_size, grid)

    def _run(self, block: nn.Module, *args) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def encode(self, img: torch.Tensor, ids_keep: torch.Tensor | None = None,
               intermediates: list | None = None) -> torch.Tensor:
        """Encoder tokens after `enc_norm`, `(B, n, enc_dim)`.

        Args:
            img: `(B, 3, H, W)` ImageNet-normalised images.
            ids_keep: `(B, n)` indices of the visible patches (row-major) to encode, or
                None for all `N = H/16 * W/16`.
            intermediates: if a list, every block's output (before `enc_norm`) is appended.
        """
        grid = self._grid(img)
        x = self.patch_embed(img)
        if self.enc_pos_embed is not None:
            x = x + self._table(self.enc_pos_embed, grid).to(x.dtype)
        rope = None if self.enc_rope is None else self.enc_rope(*grid, device=x.device)
        if ids_keep is not None:
            x = x.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            if rope is not None:
                rope = RoPE2D.select(rope, ids_keep)
        for block in self.enc_blocks:
            x = self._run(block, x, rope)
            if intermediates is not None:
                intermediates.append(x)
        return self.enc_norm(x)

    # ------------------------------------------------------------------- Encoder API
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, N, enc_dim)` encoder tokens of the whole image, row-major patch order."""
        return self.encode(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Mean over tokens -> `(B, enc_dim)`."""
        return features.mean(dim=1)

    def forward_intermediates(self, x: torch.Tensor) -> tuple[torch.Tensor, list]:
        """`(final tokens, [output of every encoder block])` (upstream's monocular feats)."""
        blocks = []
        return self.encode(x, intermediates=blocks), blocks

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def croco_kwargs(self) -> dict:
        """The upstream `CroCoNet` keyword arguments that fix these weights (checked on load)."""
        return {'patch_size': self.patch_size, 'enc_embed_dim': self.enc_embed_dim,
                'enc_depth': len(self.enc_blocks),
                'enc_num_heads': self.enc_blocks[0].attn.num_heads,
                'mlp_ratio': self.mlp_ratio, 'pos_embed': self.pos_embed}

    def no_weight_decay(self) -> set[str]:
        return {'mask_token', 'enc_pos_embed', 'dec_pos_embed'}

    def patchify(self, img: torch.Tensor) -> torch.Tensor:
        """`(B, 3, H, W)` -> `(B, N, p*p*3)`, per patch (row, column, channel), channel fastest."""
        grid_h, grid_w = self._grid(img)
        p = self.patch_size
        x = img.reshape(img.shape[0], 3, grid_h, p, grid_w, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(img.shape[0], grid_h * grid_w, p * p * 3)

    def unpatchify(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Inverse of `patchify` for a `(grid_h, grid_w)` patch grid."""
        grid_h, grid_w = grid
        p = self.patch_size
        x = patches.reshape(patches.shape[0], grid_h, grid_w, p, p, 3)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(patches.shape[0], 3, grid_h * p, grid_w * p)


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform Linear with zero bias; LayerNorm weight 1, bias 0 (as upstream)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _init_patch_embed(patch_embed: PatchEmbed) -> None:
    """Xavier-uniform on the conv weight viewed as `(out, in * k * k)`, like a Linear."""
    weight = patch_embed.proj.weight
    bound = math.sqrt(6.0 / (weight.shape[0] + weight[0].numel()))
    nn.init.uniform_(weight, -bound, bound)
    nn.init.zeros_(patch_embed.proj.bias)


# ------------------------------------------------------------------------- registry
