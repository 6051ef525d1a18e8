"""3D shifted-window attention, Swin blocks and 2x2x2 patch merging (NeRF-MAE's layout).

Swin Transformer (Liu et al., ICCV 2021, https://arxiv.org/abs/2103.14030) in 3D as NeRF-MAE
(Irshad et al., ECCV 2024, https://arxiv.org/abs/2404.01300) uses it on radiance grids:
channels-last `(B, X, Y, Z, C)` maps, cubic windows, every odd block shifted by half a window.

The block is torchvision's `SwinTransformerBlock` (norm1, attn, norm2, mlp.0, mlp.3: the
checkpoint's names) with `WindowAttention3d`, which differs from torchvision's
`ShiftedWindowAttention3d` where NeRF-MAE does:

- the window never shrinks: a map smaller than the window is zero-padded up to it (torchvision
  shrinks the window to the map), and the shift is dropped on every axis whose padded size
  the window covers;
- `relative_position_index` is stored flat, `(N * N,)` with N the window volume.

`attention='sdpa'` (default) runs the attention in `F.scaled_dot_product_attention` with the
relative-position bias and the shift mask as one additive mask; `attention='reference'` runs
torchvision's `shifted_window_attention_3d` (explicit matmul + softmax, the official
numerics). Both compute the same function.
"""
from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F
from torchvision.models.swin_transformer import SwinTransformerBlock
from torchvision.models.video.swin_transformer import shifted_window_attention_3d

__all__ = ['ATTENTION_IMPLS', 'PatchMerging3d', 'WindowAttention3d', 'relative_position_index_3d',
           'shift_window_mask', 'swin_block_3d', 'window_and_shift']

ATTENTION_IMPLS = ('sdpa', 'reference')
_MASKED = -100.0  # additive logit of a pair of tokens from different shifted regions


def relative_position_index_3d(window: Sequence[int]) -> torch.Tensor:
    """Flat `(N * N,)` index into the `(2w-1)^3` bias table for every pair of window tokens.

    Token pair (a, b) with offsets (dx, dy, dz) = a - b reads row
    `(dx + w0 - 1)(2w1 - 1)(2w2 - 1) + (dy + w1 - 1)(2w2 - 1) + (dz + w2 - 1)`.
    """
    coords = torch.stack(torch.meshgrid(*(torch.arange(w) for w in window), indexing='ij'))
    coords = coords.flatten(1)                                   # (3, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 3)
    rel = rel + torch.tensor([w - 1 for w in window])
    strides = torch.tensor([(2 * window[1] - 1) * (2 * window[2] - 1), 2 * window[2] - 1, 1])
    return (rel * strides).sum(-1).flatten()


def window_and_shift(size: Sequence[int], window: Sequence[int],
                     shift: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """NeRF-MAE's rule: `(padded size, shift)`: each axis padded up to a window multiple; the
    shift dropped where the window covers the padded axis."""
    padded = tuple(-(-s // w) * w for s, w in zip(size, window))
    return padded, tuple(0 if w >= p else s for p, w, s in zip(padded, window, shift))


def shift_window_mask(padded: Sequence[int], window: Sequence[int], shift: Sequence[int],
                      device=None) -> torch.Tensor:
    """`(num_windows, N, N)` additive mask (0 or -100) that keeps shifted windows from mixing
    tokens rolled in from the opposite border (the Swin slices, vectorised)."""
    regions = []
    for p, w, s in zip(padded, window, shift):
        c = torch.arange(p, device=device)
        # Swin's three slices per axis: [0, p-w), [p-w, p-s), [p-s, p); one when not shifted
        regions.append((c >= p - w).long() + (c >= p - s).long() if s else torch.zeros_like(c))
    label = (regions[0][:, None, None] * 9 + regions[1][None, :, None] * 3
             + regions[2][None, None, :])
    label = _partition(label[None, ..., None], window).squeeze(-1)  # (nW, N)
    differ = label[:, :, None] != label[:, None, :]
    return differ.to(torch.float32) * _MASKED


def _partition(x: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """`(B, X, Y, Z, C)` -> `(B * num_windows, N, C)`, windows in (x, y, z) raster order."""
    b, px, py, pz, c = x.shape
    wx, wy, wz = window
    x = x.view(b, px // wx, wx, py // wy, wy, pz // wz, wz, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wx * wy * wz, c)


def _unpartition(x: torch.Tensor, window: Sequence[int], padded: Sequence[int],
                 batch: int) -> torch.Tensor:
    wx, wy, wz = window
    px, py, pz = padded
    x = x.view(batch, px // wx, py // wy, pz // wz, wx, wy, wz, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(batch, px, py, pz, -1)


class WindowAttention3d(nn.Module):
    """Multi-head self-attention inside (shifted) 3D windows, with relative position bias.

    Args:
        dim: channels. window_size / shift_size: 3 ints each. num_heads: heads.
        attention: one of `ATTENTION_IMPLS` (same function, different kernels).
    """

    def __init__(self, dim: int, window_size: Sequence[int], shift_size: Sequence[int],
                 num_heads: int, qkv_bias: bool = True, proj_bias: bool = True,
                 attention_dropout: float = 0.0, dropout: float = 0.0,
                 attention: str = 'sdpa'):
        super().__init__()
        if len(window_size) != 3 or len(shift_size) != 3:
            raise ValueError(f'window_size and shift_size need 3 values each, got '
                             f'{list(window_size)} and {list(shift_size)}')
        if dim % num_heads:
            raise ValueError(f'dim={dim} is not divisible by num_heads={num_heads}')
        if attention not in ATTENTION_IMPLS:
            raise ValueError(f'attention={attention!r} is not one of {ATTENTION_IMPLS}')
        self.window_size, self.shift_size = list(window_size), list(shift_size)
        self.num_heads, self.attention = num_heads, attention
        self.attention_dropout, self.dropout = attention_dropout, dropout
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        rows = 1
        for w in window_size:
            rows *= 2 * w - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer('relative_position_index', relative_position_index_3d(window_size))

    def relative_position_bias(self) -> torch.Tensor:
        """`(1, heads, N, N)` bias added to every window's attention logits."""
        n = self.window_size[0] * self.window_size[1] * self.window_size[2]
        bias = self.relative_position_bias_table[self.relative_position_index]
        return bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, X, Y, Z, C)` -> same shape."""
        padded, shift = window_and_shift(x.shape[1:4], self.window_size, self.shift_size)
        bias = self.relative_position_bias()
        if self.attention == 'reference':
            return shifted_window_attention_3d(
                x, self.qkv.weight, self.proj.weight, bias, self.window_size, self.num_heads,
                shift_size=list(shift), attention_dropout=self.attention_dropout,
                dropout=self.dropout, qkv_bias=self.qkv.bias, proj_bias=self.proj.bias,
                training=self.training)
        return self._sdpa(x, padded, shift, bias)

    def _sdpa(self, x, padded, shift, bias):
        b, sx, sy, sz, c = x.shape
        x = F.pad(x, (0, 0, 0, padded[2] - sz, 0, padded[1] - sy, 0, padded[0] - sx))
        shifted = any(shift)
        if shifted:
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        windows = _partition(x, self.window_size)                 # (B*nW, N, C)
        n_win, n = windows.shape[0] // b, windows.shape[1]
        qkv = F.linear(windows, self.qkv.weight, self.qkv.bias)
        q, k, v = qkv.view(b, n_win, n, 3, self.num_heads, -1).permute(3, 0, 1, 4, 2, 5)
        mask = bias.to(q.dtype)                                    # (1, heads, N, N)
        if shifted:  # windows differ: fold them into the head axis, one mask per (window, head)
            region = shift_window_mask(padded, self.window_size, shift, x.device).to(q.dtype)
            mask = (mask + region[:, None]).reshape(1, n_win * self.num_heads, n, n)
            q, k, v = (t.reshape(b, n_win * self.num_heads, n, -1) for t in (q, k, v))
        else:  # one mask for every window
            q, k, v = (t.reshape(b * n_win, self.num_heads, n, -1) for t in (q, k, v))
        drop = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        out = out.view(b * n_win, self.num_heads, n, -1).transpose(1, 2).reshape(b * n_win, n, c)
        out = F.linear(out, self.proj.weight, self.proj.bias)
        out = F.dropout(out, p=self.dropout, training=self.training)
        out = _unpartition(out, self.window_size, padded, b)
        if shifted:
            out = torch.roll(out, shifts=tuple(shift), dims=(1, 2, 3))
        return out[:, :sx, :sy, :sz].contiguous()


def swin_block_3d(dim: int, num_heads: int, window_size: Sequence[int],
                  shift_size: Sequence[int], mlp_ratio: float = 4.0, dropout: float = 0.0,
                  attention_dropout: float = 0.0, stochastic_depth_prob: float = 0.0,
                  norm_layer=nn.LayerNorm, attention: str = 'sdpa') -> SwinTransformerBlock:
    """torchvision's pre-norm Swin block (MLP Linear-GELU-Dropout-Linear-Dropout, row-wise
    stochastic depth) around `WindowAttention3d`."""
    def attn_layer(*args, **kwargs):
        return WindowAttention3d(*args, attention=attention, **kwargs)
    return SwinTransformerBlock(dim, num_heads, list(window_size), list(shift_size),
                                mlp_ratio=mlp_ratio, dropout=dropout,
                                attention_dropout=attention_dropout,
                                stochastic_depth_prob=stochastic_depth_prob,
                                norm_layer=norm_layer, attn_layer=attn_layer)


class PatchMerging3d(nn.Module):
    """2x2x2 neighbourhoods -> one token: concatenate (8C), LayerNorm, Linear without bias.

    Odd sides are zero-padded at the high end. Neighbours are concatenated in offset order
    (x, y, z) = (0,0,0), (1,0,0), (0,1,0), (1,1,0), (0,0,1), (1,0,1), (0,1,1), (1,1,1), the
    order NeRF-MAE's `reduction` weights were trained with.
    """

    def __init__(self, dim: int, norm_layer=nn.LayerNorm, expand_dim: bool = True):
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(8 * dim, 2 * dim if expand_dim else dim, bias=False)
        self.norm = norm_layer(8 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, X, Y, Z, C)` -> `(B, ceil(X/2), ceil(Y/2), ceil(Z/2), 2C or C)`."""
        b, sx, sy, sz, c = x.shape
        x = F.pad(x, (0, 0, 0, sz % 2, 0, sy % 2, 0, sx % 2))
        hx, hy, hz = x.shape[1] // 2, x.shape[2] // 2, x.shape[3] // 2
        x = x.view(b, hx, 2, hy, 2, hz, 2, c)
        # (b, hx, hy, hz, dz, dy, dx, c): dx varies fastest, then dy, then dz
        x = x.permute(0, 1, 3, 5, 6, 4, 2, 7).reshape(b, hx, hy, hz, 8 * c)
        return self.reduction(self.norm(x))
