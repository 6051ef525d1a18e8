"""Pre-norm transformer blocks of CroCo: a ViT encoder block and a cross-view decoder block.

Module names (`norm1`, `attn`, `norm2`, `mlp.fc1`, ..., `cross_attn`, `norm3`, `norm_y`)
match the official CroCo state dicts. The MLP, drop-path and LayerNorm come from timm.
"""
from collections.abc import Callable
from functools import partial

from timm.layers import DropPath, Mlp
import torch
from torch import nn

from embodied_vision.layers.attention import Attention, CrossAttention, RopeTables

__all__ = ['DecoderBlock', 'EncoderBlock']

_LayerNorm = partial(nn.LayerNorm, eps=1e-6)


class EncoderBlock(nn.Module):
    """`x += attn(norm1(x)); x += mlp(norm2(x))`.

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width over `dim`.
        qkv_bias: bias on the qkv projection.
        drop: dropout after projections and in the MLP.
        attn_drop: dropout on attention weights.
        drop_path: stochastic-depth rate.
        act_layer: MLP activation.
        norm_layer: normalisation layer (LayerNorm, eps 1e-6, by default).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 act_layer: Callable[..., nn.Module] = nn.GELU,
                 norm_layer: Callable[..., nn.Module] = _LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                              proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), rope, attn_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class DecoderBlock(nn.Module):
    """Self-attention, cross-attention to a second stream, MLP; all pre-norm.

    `x += self_attn(norm1(x)); x += cross_attn(norm2(x), norm_y(y)); x += mlp(norm3(x))`.
    The memory `y` is only read: CroCo feeds every block the same projected second view
    (each block has its own `norm_y`), unlike DUSt3R, which updates both streams.

    Args:
        dim: token width of both streams.
        num_heads: attention heads (self and cross).
        mlp_ratio: MLP hidden width over `dim`.
        qkv_bias: bias on the q/k/v projections.
        drop: dropout after projections and in the MLP.
        attn_drop: dropout on attention weights.
        drop_path: stochastic-depth rate.
        act_layer: MLP activation.
        norm_layer: normalisation layer (LayerNorm, eps 1e-6, by default).
        norm_mem: normalise the memory with `norm_y` (CroCo's `norm_im2_in_dec`); else
            `norm_y` is an identity.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 act_layer: Callable[..., nn.Module] = nn.GELU,
                 norm_layer: Callable[..., nn.Module] = _LayerNorm, norm_mem: bool = True):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                              proj_drop=drop)
        self.cross_attn = CrossAttention(dim, num_heads, qkv_bias=qkv_bias,
                                         attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.norm3 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.norm_y = norm_layer(dim) if norm_mem else nn.Identity()

    def forward(self, x: torch.Tensor, y: torch.Tensor, rope_x: RopeTables | None = None,
                rope_y: RopeTables | None = None) -> torch.Tensor:
        """Update `x` (`(B, N, dim)`) from memory `y` (`(B, M, dim)`); returns the new `x`."""
        x = x + self.drop_path(self.attn(self.norm1(x), rope_x))
        memory = self.norm_y(y)
        x = x + self.drop_path(self.cross_attn(self.norm2(x), memory, rope_x, rope_y))
        return x + self.drop_path(self.mlp(self.norm3(x)))
