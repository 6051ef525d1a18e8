"""The hierarchical point transformer of Point-M2AE / I2P-MAE (`h_encoder`).

Point-M2AE https://arxiv.org/abs/2205.14401, I2P-MAE https://arxiv.org/abs/2212.06785.
Three scales; at each one the tokens (mini-PointNet embeddings at scale 0, merged features of
the previous scale after) run through pre-norm ViT blocks without qkv bias, with the
scale's position MLP on the group centers added to the input of **every** block. Masks are
additive (`-1e5`, not `-inf`): they hide tokens that are not visible (pretraining masking,
or finer tokens no coarser group references) and, when `local_radius` is set, centers
farther apart than the radius (fine-tuning). Visible outputs are written back into the
scale's full token array, which the next scale merges; hidden tokens keep their raw
embedding.

Visibility is applied in one of two equivalent ways: `pack=True` gathers each sample's
visible tokens to the left and pads to the batch maximum (as upstream, and cheaper when few
are visible, as in pretraining); `pack=False` keeps every token in place and masks hidden
keys (static shapes, so it exports). Visible tokens get the same values either way.
Module names are those of the released checkpoints (`token_embed`, `encoder_pos_embeds`,
`encoder_blocks.{i}.blocks.{j}`, `encoder_norms`).
"""
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from embodied_vision.layers.blocks import EncoderBlock
from embodied_vision.layers.point_ops import gather_points
from embodied_vision.layers.point_tokens import PointGroups, TokenEmbed

__all__ = ['MASK_VALUE', 'BlockStack', 'HierarchicalEncoder', 'ScaleTokens', 'attention_bias',
           'position_mlp']

MASK_VALUE = -1e5  # upstream's additive mask value


def position_mlp(dim: int) -> nn.Sequential:
    """Center xyz -> `dim`: Linear, GELU, Linear (indices 0 and 2 hold the weights)."""
    return nn.Sequential(nn.Linear(3, dim), nn.GELU(), nn.Linear(dim, dim))


class BlockStack(nn.Module):
    """Blocks that each take `x + pos` (the position re-added before every block)."""

    def __init__(self, dim: int, depth: int, num_heads: int, drop_path: Sequence[float],
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.blocks = nn.ModuleList(
            EncoderBlock(dim, num_heads, mlp_ratio, qkv_bias=False, drop_path=drop_path[j],
                         norm_layer=nn.LayerNorm) for j in range(depth))

    def forward(self, x: torch.Tensor, pos: torch.Tensor,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x + pos, attn_mask=attn_mask)
        return x


def attention_bias(valid: torch.Tensor | None, centers: torch.Tensor, radius: float,
                   dtype: torch.dtype) -> torch.Tensor | None:
    """Additive `(B, 1, 1|L, L)` bias: `MASK_VALUE` on keys that are not `valid` and, when
    `radius > 0`, between centers at distance >= `radius`; None when nothing is masked."""
    bias = None
    if valid is not None:
        bias = torch.zeros(valid.shape, dtype=dtype, device=valid.device)
        bias = bias.masked_fill(~valid, MASK_VALUE)[:, None, None, :]
    if radius > 0:
        far = torch.cdist(centers, centers) >= radius
        local = torch.zeros(far.shape, dtype=dtype, device=far.device)
        local = local.masked_fill(far, MASK_VALUE)[:, None]
        bias = local if bias is None else (local + bias).clamp_min(MASK_VALUE)
    return bias


@dataclass
class ScaleTokens:
    """One scale's encoder output.

    Attributes:
        tokens: `(B, L, C)` outputs (after the scale's norm when the encoder has norms).
        valid: `(B, L)` bool, which rows are visible tokens; None: all.
        index: `(B, L)` which of the scale's G tokens each row is (packed); None: row i is
            token i.
    """

    tokens: torch.Tensor
    valid: torch.Tensor | None = None
    index: torch.Tensor | None = None

    def scatter(self, n_tokens: int, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
        """`(B, n_tokens, C)`: visible rows at their token position, `fill` elsewhere."""
        b, _, c = self.tokens.shape
        if isinstance(fill, torch.Tensor):
            full = fill.to(self.tokens.dtype).expand(b, n_tokens, c)
        else:
            full = self.tokens.new_full((b, n_tokens, c), fill)
        if self.index is None:
            if self.valid is None:
                return self.tokens
            return torch.where(self.valid[..., None], self.tokens, full)
        rows = torch.where(self.valid[..., None], self.tokens, gather_points(full, self.index))
        return full.scatter(1, self.index[..., None].expand(-1, -1, c), rows)

def _pack(visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the indices of the visible tokens first (stable), cut to the batch's
    largest visible count, and which of those rows are visible."""
    count = visible.sum(dim=1)
    length = max(int(count.max()), 1)
    order = torch.argsort((~visible).to(torch.int8), dim=1, stable=True)[:, :length]
    valid = torch.arange(length, device=visible.device)[None] < count[:, None]
    return order, valid


class HierarchicalEncoder(nn.Module):
    """Three-scale encoder: `PointGroups` per scale (+ visibility) -> `ScaleTokens` per scale.

    Args:
        encoder_dims: token width per scale (`[96, 192, 384]`).
        encoder_depths: blocks per scale (`[5, 5, 5]`).
        num_heads: heads at every scale (an int) or per scale.
        drop_path_rate: stochastic depth, rising linearly from 0 over all blocks.
        local_radius: per scale, mask attention between centers at least this far apart
            (0: off).
        with_norms: per-scale output LayerNorms `encoder_norms` (the pretraining model has
            them; the fine-tuning encoder does not).
        mlp_ratio: MLP hidden width over the token width.
    """

    def __init__(self, encoder_dims: Sequence[int] = (96, 192, 384),
                 encoder_depths: Sequence[int] = (5, 5, 5),
                 num_heads: int | Sequence[int] = 6, drop_path_rate: float = 0.1,
                 local_radius: Sequence[float] = (0.0, 0.0, 0.0), with_norms: bool = True,
                 mlp_ratio: float = 4.0):
        super().__init__()
        dims, depths = [int(d) for d in encoder_dims], [int(d) for d in encoder_depths]
        heads = [int(num_heads)] * len(dims) if isinstance(num_heads, int) \
            else [int(h) for h in num_heads]
        radius = [float(r) for r in local_radius]
        if not (len(dims) == len(depths) == len(heads) == len(radius)) or not dims:
            raise ValueError(f'encoder_dims {dims}, encoder_depths {depths}, num_heads {heads} '
                             f'and local_radius {radius} need one entry per scale')
        for dim, head in zip(dims, heads):
            if head < 1 or dim % head:
                raise ValueError(f'encoder width {dim} is not divisible by {head} heads')
        self.dims, self.local_radius = dims, radius
        total = sum(depths)
        rates = [drop_path_rate * j / max(total - 1, 1) for j in range(total)]
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.token_embed = nn.ModuleList(
            TokenEmbed(3 if i == 0 else dims[i - 1], dims[i]) for i in range(len(dims)))
        self.encoder_pos_embeds = nn.ModuleList(position_mlp(d) for d in dims)
        self.encoder_blocks = nn.ModuleList(
            BlockStack(d, n, h, rates[s:s + n], mlp_ratio)
            for d, n, h, s in zip(dims, depths, heads, starts))
        self.encoder_norms = nn.ModuleList(nn.LayerNorm(d) for d in dims) if with_norms \
            else None

    def forward(self, scales: list[PointGroups], visible: list[torch.Tensor] | None = None,
                pack: bool = False) -> list[ScaleTokens]:
        """Encode every scale.

        Args:
            scales: `group_scales` output, one entry per scale.
            visible: per scale `(B, G_i)` bool masks (`propagate_visibility`), or None for
                every token visible (fine-tuning).
            pack: gather visible tokens (see the module docstring); needs `visible`.
        """
        if len(scales) != len(self.dims):
            raise ValueError(f'{len(scales)} scales given, the encoder has {len(self.dims)}')
        outputs, full = [], None
        for i, groups in enumerate(scales):
            if i == 0:
                tokens = self.token_embed[0](groups.neighborhood)
            else:
                tokens = self.token_embed[i](gather_points(full, groups.index))
            centers, valid, index = groups.centers, None, None
            if visible is not None and pack:
                index, valid = _pack(visible[i])
                x, centers = gather_points(tokens, index), gather_points(centers, index)
            else:
                x = tokens
                valid = None if visible is None else visible[i]
            bias = attention_bias(valid, centers, self.local_radius[i], x.dtype)
            x = self.encoder_blocks[i](x, self.encoder_pos_embeds[i](centers), bias)
            out = ScaleTokens(x, valid, index)
            if i + 1 < len(scales):
                full = out.scatter(tokens.shape[1], tokens) if valid is not None else x
            if self.encoder_norms is not None:
                out.tokens = self.encoder_norms[i](x)
            outputs.append(out)
        return outputs
