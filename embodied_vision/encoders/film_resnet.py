"""Narrow FiLM-ResNet-18, the Lang4Sim2Real image encoder.

Natural Language Can Help Bridge the Sim2Real Gap (Yu et al., RSS 2024).
Paper: https://arxiv.org/abs/2405.10020  Code: https://github.com/UT-Austin-RobIn/lang4sim2real

A ResNet-18 layout (BasicBlocks [2, 2, 2, 2]) made narrow (channels 16/32/64/128) for 128x128
input, trained from random initialisation. Every BasicBlock carries a FiLM layer,
x <- (1 + gamma(e)) * x + beta(e), conditioned on a 384-d instruction embedding; it is an
identity when no embedding is given (pretraining) and starts near identity (|init| <= 1e-3).
Strides follow the paper's code: stem conv 2, max-pool 2, stage 1 stride 2, later stages 1,
so a 128x128 frame gives a 128 x 16 x 16 map for spatial-softmax policies.

Input: uint8 or float pixels in 0-255, divided by 255 inside the model. Weights: none
published in a loadable format; train them with `embodied_vision.pretrain` (MIT code).
"""
import math

import torch
from torch import nn

from embodied_vision.encoders._contract import InputContract
from embodied_vision.encoders._registry import PretrainedCfg, register_encoder
from embodied_vision.encoders.base import Encoder

__all__ = ['FiLM', 'FiLMBasicBlock', 'FiLMResNet', 'lang4sim2real_resnet18']


class FiLM(nn.Module):
    """Feature-wise affine modulation from a conditioning vector, near identity at init."""

    def __init__(self, cond_dim: int, channels: int, init_scale: float = 1e-3):
        super().__init__()
        self.gamma = nn.Linear(cond_dim, channels)
        self.beta = nn.Linear(cond_dim, channels)
        for layer in (self.gamma, self.beta):
            nn.init.uniform_(layer.weight, -init_scale, init_scale)
            nn.init.uniform_(layer.bias, -init_scale, init_scale)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma(cond)[:, :, None, None]
        beta = self.beta(cond)[:, :, None, None]
        return (1 + gamma) * x + beta


class FiLMBasicBlock(nn.Module):
    """ResNet BasicBlock with FiLM after the second BatchNorm, before the residual add."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, cond_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.act = nn.ReLU(inplace=True)
        self.film = FiLM(cond_dim, out_chs) if cond_dim else None
        self.downsample = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_chs))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        if cond is not None and self.film is not None:
            x = self.film(x, cond)
        return self.act(x + shortcut)


class FiLMResNet(Encoder):
    """Narrow ResNet with FiLM in every block.

    Args:
        widths: channels of the four stages.
        blocks: BasicBlocks per stage.
        stage_strides: stride of the first block of each stage.
        cond_dim: size of the FiLM conditioning vector (0 disables FiLM).
        image_size: the size the contract advertises (the paper uses 128).
    """

    def __init__(self, widths=(16, 32, 64, 128), blocks=(2, 2, 2, 2), stage_strides=(2, 1, 1, 1),
                 cond_dim: int = 384, image_size: int = 128):
        super().__init__()
        if not (len(widths) == len(blocks) == len(stage_strides)):
            raise ValueError(f'widths {widths}, blocks {blocks} and stage_strides '
                             f'{stage_strides} must have the same length')
        self.cond_dim = cond_dim
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, in_chs = [], widths[0]
        for width, count, stride in zip(widths, blocks, stage_strides):
            stage = [FiLMBasicBlock(in_chs, width, stride, cond_dim)]
            stage += [FiLMBasicBlock(width, width, 1, cond_dim) for _ in range(count - 1)]
            layers.append(nn.ModuleList(stage))
            in_chs = width
        self.layers = nn.ModuleList(layers)
        self.embed_dim = widths[-1]
        reduction = 4 * math.prod(stage_strides)
        self.feature_info = [dict(num_chs=w, reduction=4 * math.prod(stage_strides[:i + 1]),
                                  module=f'layers.{i}') for i, w in enumerate(widths)]
        self.input_contract = InputContract(
            modality='image', channels=3, value_range=(0.0, 255.0),
            dtypes=('uint8', 'float32', 'float16', 'bfloat16'),
            default_size=(image_size, image_size), min_size=reduction,
            notes='0-255 pixels, divided by 255 inside; optional FiLM conditioning')
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')

    def film_parameters(self) -> list[nn.Parameter]:
        """Parameters of the FiLM layers (kept trainable when the encoder is frozen)."""
        return [p for name, p in self.named_parameters() if '.film.' in name]

    def forward_features(self, x: torch.Tensor, cond: torch.Tensor | None = None
                         ) -> torch.Tensor:
        """`(B, 128, H/8, W/8)` map; `cond` `(B, cond_dim)` turns FiLM on."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f'{self.name} expects images (B,3,H,W) in 0-255, '
                             f'got shape {tuple(x.shape)}')
        if cond is not None and (cond.ndim != 2 or cond.shape[1] != self.cond_dim):
            raise ValueError(f'FiLM conditioning must be (B, {self.cond_dim}), got '
                             f'{tuple(cond.shape)}')
        x = x.to(self.conv1.weight.dtype) / 255.0
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for stage in self.layers:
            for block in stage:
                x = block(x, cond)
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Global average pool -> `(B, 128)`."""
        return features.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, cond))


@register_encoder(PretrainedCfg(
    tag='sim2real', formats=('embodied_vision',), license='MIT',
    origin_url='https://github.com/UT-Austin-RobIn/lang4sim2real', paper='arXiv:2405.10020',
    notes='train with embodied_vision.pretrain (language regression or distance)'))
def lang4sim2real_resnet18(**kwargs) -> FiLMResNet:
    """Lang4Sim2Real narrow FiLM-ResNet-18: 128-d embedding from 128x128 frames."""
    return FiLMResNet(**kwargs)
