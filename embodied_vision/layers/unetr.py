"""UNETR-style 3D decoder blocks (Hatamizadeh et al., WACV 2022, arXiv 2103.10504).

The layout NeRF-MAE (arXiv 2404.01300) decodes its Swin stages with, under the checkpoint's
names: `transp_conv` (ConvTranspose3d, kernel = stride), then `conv_block`, a residual block
`conv1` 3^3 -> InstanceNorm -> LeakyReLU(0.01) -> `conv2` 3^3 -> InstanceNorm (+ a `conv3`
1^3 + InstanceNorm shortcut when the channel count changes) -> add -> LeakyReLU.
InstanceNorm3d is not affine and keeps no running statistics, so it has no weights.
"""
import torch
from torch import nn

__all__ = ['UnetOutBlock', 'UnetResBlock', 'UnetrUpBlock']


class UnetResBlock(nn.Module):
    """Two 3^3 convolutions with instance norm and a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size, padding=pad)
        self.norm1 = nn.InstanceNorm3d(out_channels)
        self.norm2 = nn.InstanceNorm3d(out_channels)
        self.activation = nn.LeakyReLU(0.01)
        if in_channels != out_channels:
            self.conv3 = nn.Conv3d(in_channels, out_channels, kernel_size=1)
            self.norm3 = nn.InstanceNorm3d(out_channels)
        else:
            self.conv3 = self.norm3 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.activation(self.norm1(self.conv1(x)))))
        residual = x if self.conv3 is None else self.norm3(self.conv3(x))
        return self.activation(out + residual)


class UnetrUpBlock(nn.Module):
    """Upsample by `upsample_kernel_size` (transposed conv), concatenate the skip, refine."""

    def __init__(self, in_channels: int, out_channels: int, upsample_kernel_size: int = 2,
                 kernel_size: int = 3, use_skip: bool = True):
        super().__init__()
        self.use_skip = use_skip
        self.transp_conv = nn.ConvTranspose3d(in_channels, out_channels, upsample_kernel_size,
                                              stride=upsample_kernel_size)
        self.conv_block = UnetResBlock(2 * out_channels if use_skip else out_channels,
                                       out_channels, kernel_size)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.transp_conv(x)
        if self.use_skip:
            if skip is None:
                raise ValueError('this UnetrUpBlock concatenates a skip connection; got none')
            out = torch.cat((out, skip), dim=1)
        return self.conv_block(out)


class UnetOutBlock(nn.Module):
    """1^3 convolution to the output channels (`conv`)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
