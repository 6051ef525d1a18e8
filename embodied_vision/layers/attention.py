"""Multi-head self- and cross-attention on fused scaled-dot-product attention, optional RoPE.

Parameter names follow CroCo/timm so official state dicts load without renaming:
self-attention has a fused `qkv` and `proj`; cross-attention has `projq`, `projk`, `projv`
and `proj`. Both call `torch.nn.functional.scaled_dot_product_attention` (flash / memory
efficient kernels where available, and a single op for export) and take optional 2D RoPE
tables (`(cos, sin)` from `embodied_vision.layers.rope`) broadcastable to
`(B, heads, N, head_dim)`.
"""
import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from embodied_vision.layers.rope import apply_rope_2d

__all__ = ['Attention', 'CrossAttention', 'RopeTables']

RopeTables = tuple[torch.Tensor, torch.Tensor]


def _check_heads(dim: int, num_heads: int) -> int:
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f'dim={dim} must be a positive multiple of num_heads={num_heads}')
    return dim // num_heads


class Attention(nn.Module):
    """Self-attention: `x (B, N, dim) -> (B, N, dim)`.

    Args:
        dim: token width.
        num_heads: attention heads.
        qkv_bias: bias on the fused qkv projection.
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout after the output projection.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = _check_heads(dim, num_heads)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`attn_mask`: optional additive bias (or bool, True = attend) broadcastable to
        `(B, heads, N, N)`."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)                      # (3, B, heads, N, head_dim)
        if rope is not None:
            qk = apply_rope_2d(qkv[:2], *rope)                # q and k in one pass
            q, k, v = qk[0], qk[1], qkv[2]
        else:
            q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj_drop(self.proj(x))


class CrossAttention(nn.Module):
    """Cross-attention: queries from `x (B, N, dim)`, keys/values from `memory (B, M, dim)`.

    Args:
        dim: token width of both streams.
        num_heads: attention heads.
        qkv_bias: bias on the q, k and v projections.
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout after the output projection.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = _check_heads(dim, num_heads)
        self.projq = nn.Linear(dim, dim, bias=qkv_bias)
        self.projk = nn.Linear(dim, dim, bias=qkv_bias)
        self.projv = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, rope_q: RopeTables | None = None,
                rope_k: RopeTables | None = None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q = self._heads(self.projq(x))
        k = self._heads(self.projk(memory))
        v = self._heads(self.projv(memory))
        if rope_q is not None:
            q = apply_rope_2d(q, *rope_q)
        if rope_k is not None:
            k = apply_rope_2d(k, *rope_k)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj_drop(self.proj(x))
