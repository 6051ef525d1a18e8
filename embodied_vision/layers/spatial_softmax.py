"""Spatial softmax: feature maps -> expected 2D keypoint coordinates per channel.

Levine, Finn et al., End-to-End Training of Deep Visuomotor Policies (JMLR 2016,
https://arxiv.org/abs/1504.00702). Each channel's map is a softmax distribution over pixels;
its expected (x, y) in [-1, 1] is one keypoint, so C channels give 2C features.
"""
import torch
from torch import nn

__all__ = ['SpatialSoftmax']


class SpatialSoftmax(nn.Module):
    """`(B, C, H, W)` -> `(B, 2C)` expected coordinates `[x_0, y_0, x_1, y_1, ...]`.

    Args:
        learnable_temperature: learn the softmax temperature (starts at `temperature`).
        temperature: divides the logits.
    """

    def __init__(self, temperature: float = 1.0, learnable_temperature: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        value = torch.tensor(float(temperature)).log()
        self.log_temperature = nn.Parameter(value, requires_grad=learnable_temperature)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        logits = features.flatten(2) / self.log_temperature.exp()
        weights = logits.softmax(dim=-1).view(batch, channels, height, width)
        ys = torch.linspace(-1.0, 1.0, height, device=features.device, dtype=features.dtype)
        xs = torch.linspace(-1.0, 1.0, width, device=features.device, dtype=features.dtype)
        x = (weights.sum(dim=2) * xs).sum(dim=-1)  # marginal over rows, then E[x]
        y = (weights.sum(dim=3) * ys).sum(dim=-1)
        return torch.stack([x, y], dim=-1).flatten(1)
