"""R3M-compatible ResNet encoders on timm's ResNets.

R3M: A Universal Visual Representation for Robot Manipulation (Nair et al., CoRL 2022).
Paper: https://arxiv.org/abs/2203.12601  Code: https://github.com/facebookresearch/r3m

R3M keeps a torchvision ResNet-18/34/50 (classifier removed) and, inside `forward`, divides
0-255 pixels by 255 and applies ImageNet mean/std. We keep that contract: raw uint8 camera
frames (or float tensors in 0-255) are valid input, at any batch size and any size >= 32.

Weights: the official `model.pt` files (MIT licence) are loaded from a user-supplied path
(`embodied_vision.checkpoints`); they are never downloaded or redistributed. Torchvision/timm
ImageNet ResNet state dicts load into the same architecture (tag `tv_in1k`).
"""
import logging

import timm
import torch

from embodied_vision.encoders._contract import InputContract
from embodied_vision.encoders._registry import PretrainedCfg, register_encoder
from embodied_vision.encoders.base import Encoder

__all__ = ['R3MResNet', 'r3m_resnet18', 'r3m_resnet34', 'r3m_resnet50']

_logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_EMBED_DIMS = {18: 512, 34: 512, 50: 2048}


class R3MResNet(Encoder):
    """A timm ResNet with R3M's in-model preprocessing: x / 255, then ImageNet-normalise.

    Args:
        depth: 18, 34 or 50.
        image_size: the size the input contract advertises (R3M was trained at 224).
    """

    def __init__(self, depth: int = 50, image_size: int = 224):
        super().__init__()
        if depth not in _EMBED_DIMS:
            raise ValueError(f'depth={depth} is not one of {sorted(_EMBED_DIMS)}')
        self.depth = depth
        self.trunk = timm.create_model(f'resnet{depth}', pretrained=False, num_classes=0)
        self.embed_dim = _EMBED_DIMS[depth]
        self.feature_info = self.trunk.feature_info
        self.input_contract = InputContract(
            modality='image', channels=3, value_range=(0.0, 255.0),
            dtypes=('uint8', 'float32', 'float16', 'bfloat16'),
            mean=IMAGENET_MEAN, std=IMAGENET_STD, default_size=(image_size, image_size),
            min_size=32, notes='0-255 pixels; /255 and ImageNet normalisation happen inside')
        # (x / 255 - mean) / std folded into one multiply-add; not part of the state dict.
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.register_buffer('pixel_scale', 1.0 / (255.0 * std), persistent=False)
        self.register_buffer('pixel_shift', -mean / std, persistent=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """0-255 pixels (any dtype) -> ImageNet-normalised floats in the model's dtype."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f'{self.name} expects images (B,3,H,W) in 0-255, '
                             f'got shape {tuple(x.shape)}')
        return x.to(self.pixel_scale.dtype) * self.pixel_scale + self.pixel_shift

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C, H/32, W/32)` feature map of the last stage."""
        return self.trunk.forward_features(self.preprocess(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Global average pool -> `(B, embed_dim)`, as R3M (fc is Identity)."""
        return self.trunk.forward_head(features)

    def forward_intermediates(self, x: torch.Tensor, indices=None, **kwargs):
        """timm's `forward_intermediates` on preprocessed input (stage feature maps)."""
        return self.trunk.forward_intermediates(self.preprocess(x), indices=indices, **kwargs)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.trunk.set_grad_checkpointing(enable)


def _r3m_cfgs(depth: int) -> tuple[PretrainedCfg, ...]:
    return (
        PretrainedCfg(
            tag='ego4d', formats=('r3m', 'embodied_vision'), license='MIT',
            origin_url='https://github.com/facebookresearch/r3m', paper='arXiv:2203.12601',
            notes=f'official ~/.r3m/r3m_{depth}/model.pt (state dict under "r3m")'),
        PretrainedCfg(
            tag='tv_in1k', formats=('torchvision_resnet', 'embodied_vision'),
            license='BSD-3-Clause',
            origin_url='https://pytorch.org/vision/stable/models.html',
            notes=f'a torchvision or timm resnet{depth} ImageNet state dict'),
    )


@register_encoder(*_r3m_cfgs(18))
def r3m_resnet18(**kwargs) -> R3MResNet:
    """R3M ResNet-18: 512-d embedding."""
    return R3MResNet(depth=18, **kwargs)


@register_encoder(*_r3m_cfgs(34))
def r3m_resnet34(**kwargs) -> R3MResNet:
    """R3M ResNet-34: 512-d embedding."""
    return R3MResNet(depth=34, **kwargs)


@register_encoder(*_r3m_cfgs(50))
def r3m_resnet50(**kwargs) -> R3MResNet:
    """R3M ResNet-50: 2048-d embedding."""
    return R3MResNet(depth=50, **kwargs)
