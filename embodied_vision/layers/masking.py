"""Masked modelling: a uniform random token mask and CroCo's per-patch masked MSE.

CroCo (Weinzaepfel et al., NeurIPS 2022, https://arxiv.org/abs/2210.10716) masks exactly
`floor(ratio * N)` tokens per sample and scores only the masked patches.
"""
import torch

__all__ = ['masked_mse_loss', 'random_mask']


def random_mask(batch: int, num_patches: int, ratio: float, device=None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """`(batch, num_patches)` bool mask, True = masked: exactly `floor(ratio * N)` per row.

    Uniform and independent per sample, like CroCo's `RandomMask` (not Bernoulli).
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f'mask ratio={ratio} must be in [0, 1)')
    num_masked = int(ratio * num_patches)
    noise = torch.rand(batch, num_patches, generator=generator, device=device)
    order = noise.argsort(dim=1)
    mask = torch.zeros(batch, num_patches, dtype=torch.bool, device=device)
    return mask.scatter(1, order[:, :num_masked], True)


def masked_mse_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                    norm_pix: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """CroCo's MaskedMSE: pixel MSE averaged per patch, then over masked patches only.

    With `norm_pix`, each target patch becomes `(t - mean) / sqrt(var + eps)` with the
    unbiased variance, as upstream `norm_pix_loss`.
    """
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True, correction=1)
        target = (target - mean) / (var + eps).sqrt()
    per_patch = (pred - target).pow(2).mean(dim=-1)
    weights = mask.to(per_patch.dtype)
    return (per_patch * weights).sum() / weights.sum().clamp_min(1.0)
