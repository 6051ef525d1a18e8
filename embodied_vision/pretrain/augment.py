"""Image augmentations used by the pretraining objectives (batched, no Python loop per pixel)."""
import torch
import torch.nn.functional as F  # noqa: N812
from torchvision.transforms import v2

__all__ = ['colour_jitter', 'pad_random_crop']


def colour_jitter(strength: float) -> v2.ColorJitter | None:
    """Upstream CroCo's colour jitter: brightness, contrast and saturation factors uniform in
    `[1 - strength, 1 + strength]`, hue untouched, applied in random order to a [0, 1] float
    image (clamped after each); None for `strength <= 0`."""
    if strength <= 0:
        return None
    return v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength, hue=0.0)


def pad_random_crop(images: torch.Tensor, pad: int, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """Replicate-pad by `pad` pixels, then crop back at a random offset per image.

    The "pad-and-random-crop" shift augmentation of Lang4Sim2Real (pad 12 for pretraining,
    4 for BC) and DrQ. Works on `(B, C, H, W)` of any dtype; returns the same shape and dtype.
    """
    if pad < 0:
        raise ValueError(f'pad must be >= 0, got {pad}')
    if pad == 0:
        return images
    batch, _, height, width = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode='replicate')
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator)
    rows = offsets[:, 0, None] + torch.arange(height)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(width)  # (B, W)
    index = torch.arange(batch)[:, None, None]
    cropped = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
    return cropped.permute(0, 3, 1, 2).to(images.dtype).contiguous()
