"""DPT dense prediction head: four ViT token maps -> a full-resolution N-channel map.

Vision Transformers for Dense Prediction (Ranftl, Bochkovskiy, Koltun, ICCV 2021).
Paper: https://arxiv.org/abs/2103.13413. CroCo-Stereo/Flow use the same head
(`DPTOutputAdapter` in https://github.com/naver/croco, arXiv 2211.10408) on hooked encoder and
decoder block outputs; this is an independent implementation from the papers' description.

1. Reassemble: each token map `(B, N, C_i)` becomes a `(B, C_i, H/p, W/p)` image, a 1x1 conv
   projects it to `layer_dims[i]` and it is resampled to strides `p/4, p/8, p/16, p/32` for
   patch 16 (4x and 2x transposed convs, identity, a stride-2 3x3 conv), then a 3x3 conv
   (no bias) maps every scale to `feature_dim`.
2. Fuse top-down (coarsest first) with residual conv units: `x = RCU2(x + RCU1(skip))`,
   bilinear 2x up (align_corners, as DPT), 1x1 conv.
3. Head: 3x3 conv to `feature_dim/2`, bilinear up to the input size, 3x3 conv to `last_dim`,
   ReLU, 1x1 conv to `out_channels`.

Upsampling goes to the size of the next finer map rather than a fixed 2x, so grids that are
not multiples of 8 (any `H, W` multiple of the patch size) work; for the paper's sizes the
two are identical. Weights licence: no pretrained weights here (trained by the user).
"""
from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

__all__ = ['DPTHead', 'ResidualConvUnit', 'FeatureFusionBlock']


class ResidualConvUnit(nn.Module):
    """`x + conv(relu(conv(relu(x))))` with 3x3 convs (DPT's RCU, no batch norm)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """`out_conv(up(RCU2(x + RCU1(skip))))`; the coarsest scale has no skip (`skip=False`)."""

    def __init__(self, dim: int, skip: bool = True):
        super().__init__()
        self.skip_unit = ResidualConvUnit(dim) if skip else None
        self.unit = ResidualConvUnit(dim)
        self.out_conv = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None,
                size: tuple[int, int]) -> torch.Tensor:
        if skip is not None:
            if self.skip_unit is None:
                raise ValueError('this fusion block was built without a skip input')
            x = x + self.skip_unit(skip)
        x = self.unit(x)
        x = F.interpolate(x, size=size, mode='bilinear', align_corners=True)
        return self.out_conv(x)


def _resampler(dim: int, level: int) -> nn.Module:
    """Level 0..3 -> 4x up, 2x up, identity, 2x down (strides p/4 .. p/32 for patch p)."""
    if level == 0:
        return nn.ConvTranspose2d(dim, dim, 4, stride=4)
    if level == 1:
        return nn.ConvTranspose2d(dim, dim, 2, stride=2)
    if level == 2:
        return nn.Identity()
    return nn.Conv2d(dim, dim, 3, stride=2, padding=1)


class DPTHead(nn.Module):
    """Dense head over four token maps (finest hook first).

    Args:
        in_dims: channels of the four token maps, in hook order (shallow to deep).
        out_channels: output channels (1 depth/disparity, +1 for a confidence, ...).
        layer_dims: reassembly widths of the four scales (DPT/CroCo: 96, 192, 384, 768).
        feature_dim: fusion width (256 in DPT/CroCo).
        last_dim: width before the final 1x1 conv (32 in CroCo).
    """

    def __init__(self, in_dims: Sequence[int], out_channels: int,
                 layer_dims: Sequence[int] = (96, 192, 384, 768), feature_dim: int = 256,
                 last_dim: int = 32):
        super().__init__()
        if len(in_dims) != 4 or len(layer_dims) != 4:
            raise ValueError(f'DPTHead needs 4 in_dims and 4 layer_dims, got {list(in_dims)} '
                             f'and {list(layer_dims)}')
        if out_channels < 1 or feature_dim < 2 or last_dim < 1:
            raise ValueError(f'need out_channels >= 1, feature_dim >= 2, last_dim >= 1, got '
                             f'{out_channels}, {feature_dim}, {last_dim}')
        self.in_dims = tuple(int(d) for d in in_dims)
        self.out_channels = out_channels
        self.project = nn.ModuleList(nn.Conv2d(c, d, 1) for c, d in zip(in_dims, layer_dims))
        self.resample = nn.ModuleList(_resampler(d, i) for i, d in enumerate(layer_dims))
        self.to_features = nn.ModuleList(
            nn.Conv2d(d, feature_dim, 3, padding=1, bias=False) for d in layer_dims)
        self.fusion = nn.ModuleList(FeatureFusionBlock(feature_dim, skip=i < 3)
                                    for i in range(4))
        self.head = nn.ModuleDict({
            'conv1': nn.Conv2d(feature_dim, feature_dim // 2, 3, padding=1),
            'conv2': nn.Conv2d(feature_dim // 2, last_dim, 3, padding=1),
            'conv3': nn.Conv2d(last_dim, out_channels, 1),
        })

    def forward(self, tokens: Sequence[torch.Tensor], grid: tuple[int, int],
                size: tuple[int, int]) -> torch.Tensor:
        """`(B, out_channels, *size)` from four `(B, grid_h * grid_w, C_i)` token maps."""
        if len(tokens) != 4:
            raise ValueError(f'DPTHead takes 4 token maps, got {len(tokens)}')
        maps = []
        for i, x in enumerate(tokens):
            batch, num, dim = x.shape
            if num != grid[0] * grid[1] or dim != self.in_dims[i]:
                raise ValueError(f'token map {i} has shape {tuple(x.shape)}, expected '
                                 f'(B, {grid[0] * grid[1]}, {self.in_dims[i]})')
            x = x.transpose(1, 2).reshape(batch, dim, grid[0], grid[1])
            x = self.resample[i](self.project[i](x))
            maps.append(self.to_features[i](x))
        x = self.fusion[3](maps[3], None, maps[2].shape[-2:])
        x = self.fusion[2](x, maps[2], maps[1].shape[-2:])
        x = self.fusion[1](x, maps[1], maps[0].shape[-2:])
        finest = maps[0].shape[-2:]
        x = self.fusion[0](x, maps[0], (2 * finest[0], 2 * finest[1]))
        x = self.head['conv1'](x)
        x = F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=True)
        return self.head['conv3'](F.relu(self.head['conv2'](x)))
