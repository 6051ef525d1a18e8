"""UNETR-style 3D decoder blocks (Hatamizadeh et al., WACV 2022, arXiv 2103.10504).

The layout NeRF-MAE (arXiv 2404.01300) decodes its Swin stages with, under the checkpoint's
names: `transp_conv` (ConvTranspose3d, kernel = stride), then `conv_block`, a residual block
`conv1` 3^3 -> InstanceNorm -> LeakyReLU(0.01) -> `conv2` 3^3 -> InstanceNorm (+ a `conv3`
1^3 + InstanceNorm shortcut when the channel count changes) -> add -> LeakyReLU.
InstanceNorm3d is not affine and keeps no running statistics, so it has no weights.

The blocks compute in channels-last memory (`torch.channels_last_3d`): oneDNN's 3D
convolutions run 1.7x (3^3) to 4x (transposed) faster on it than on contiguous NCDHW on a
2-core AVX-512 box, and the Swin stage maps arrive in it (a `(B, X, Y, Z, C)` map seen as
`(B, C, X, Y, Z)`). Instance norm is a two-pass mean / variance over the channels-last view
(float32 like `nn.InstanceNorm3d`, eps 1e-5, biased variance).
"""
import torch
from torch import nn
import torch.nn.functional as F

__all__ = ['UnetOutBlock', 'UnetResBlock', 'UnetrUpBlock', 'instance_norm_3d']

_CL = torch.channels_last_3d
_EPS = 1e-5  # nn.InstanceNorm3d's default
_SLOPE = 0.01


def instance_norm_3d(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """`nn.InstanceNorm3d(C)(x)` (no affine, no running statistics) in channels-last memory:
    per sample and channel, `(x - mean) / sqrt(var + 1e-5)` over the voxels. `inplace`
    overwrites `x` (e.g. a convolution's output) instead of allocating another grid, unless
    autograd records it."""
    b, c = x.shape[:2]
    flat = x.permute(0, 2, 3, 4, 1).reshape(b, -1, c)          # a view when x is channels-last
    mean = flat.mean(dim=1, keepdim=True)
    grad = _autograd(flat)
    centred = flat - mean if grad or not inplace else flat.sub_(mean)
    var = (centred * centred).mean(dim=1, keepdim=True)
    rstd = torch.rsqrt(var + _EPS)
    out = centred * rstd if grad else centred.mul_(rstd)   # centred is ours by now
    return out.view(b, *x.shape[2:], c).permute(0, 4, 1, 2, 3)


def _autograd(x: torch.Tensor) -> bool:
    """Whether autograd records `x` (then no in-place updates: saved tensors must stay)."""
    return torch.is_grad_enabled() and x.requires_grad


class UnetResBlock(nn.Module):
    """Two 3^3 convolutions with instance norm and a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size, padding=pad)
        self.conv3 = nn.Conv3d(in_channels, out_channels, kernel_size=1) \
            if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=_CL)
        out = instance_norm_3d(self.conv1(x), inplace=True)
        out = F.leaky_relu(out, _SLOPE, inplace=not _autograd(out))
        out = instance_norm_3d(self.conv2(out), inplace=True)
        residual = x if self.conv3 is None else instance_norm_3d(self.conv3(x), inplace=True)
        out = out + residual if _autograd(out) else out.add_(residual)
        return F.leaky_relu(out, _SLOPE, inplace=not _autograd(out))


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
        out = self.transp_conv(x.contiguous(memory_format=_CL))
        if self.use_skip:
            if skip is None:
                raise ValueError('this UnetrUpBlock concatenates a skip connection; got none')
            out = torch.cat((out, skip.contiguous(memory_format=_CL)), dim=1)
        return self.conv_block(out)


class UnetOutBlock(nn.Module):
    """1^3 convolution to the output channels (`conv`)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
