"""Masked modelling: token masks and the reconstruction losses that score them.

CroCo (Weinzaepfel et al., NeurIPS 2022, https://arxiv.org/abs/2210.10716) masks exactly
`floor(ratio * N)` tokens per sample and scores only the masked patches (`random_mask`,
`masked_mse_loss`). NeRF-MAE (Irshad et al., ECCV 2024, https://arxiv.org/abs/2404.01300)
masks cubic blocks of tokens, each with probability p, one mask for the batch
(`block_token_mask`), and scores RGB on occupied voxels and alpha on masked ones
(`radiance_mae_loss`).
"""
import torch
import torch.nn.functional as F

__all__ = ['block_token_mask', 'masked_mse_loss', 'radiance_mae_loss', 'random_mask']


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


def block_token_mask(tokens: tuple[int, int, int], prob: float, block: int = 4,
                     batch: int | None = None, device=None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool token mask (True = masked) of cubic `block`^3-token blocks, each masked with
    probability `prob` (Bernoulli, not an exact count), as NeRF-MAE's `window_masking_3d`.

    `batch=None` gives one `(X, Y, Z)` mask shared by the batch (upstream); an int gives
    `(batch, X, Y, Z)`, independent per sample. Tokens past the last whole block of an axis
    are never masked, as upstream's loop never reaches them.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f'masking probability {prob} must be in [0, 1]')
    blocks = [t // block for t in tokens]
    draw = torch.rand((1 if batch is None else batch, *blocks), generator=generator,
                      device=device) < prob
    mask = draw
    for axis in (1, 2, 3):
        mask = mask.repeat_interleave(block, dim=axis)
    pad = [tokens[2] - mask.shape[3], tokens[1] - mask.shape[2], tokens[0] - mask.shape[1]]
    mask = F.pad(mask, (0, pad[0], 0, pad[1], 0, pad[2]))
    return mask[0] if batch is None else mask


def radiance_mae_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                      voxel_mask: torch.Tensor, occupied: float = 0.01):
    """NeRF-MAE's `forward_loss`: `(loss, loss_rgb, loss_alpha)` on `(B, 4, X, Y, Z)` grids.

    - RGB: squared error of the raw predicted RGB summed over the 3 channels, averaged over
      every voxel whose target alpha exceeds `occupied` (masked and visible alike);
    - alpha: squared error of sigmoid(predicted alpha), averaged over voxels that are masked
      (`voxel_mask`) and inside the unpadded region (`valid`);
    - loss = RGB + alpha. An empty region contributes 0 instead of upstream's 0/0.
    """
    occupied_voxels = (target[:, 3:] > occupied).to(pred.dtype)           # (B, 1, ...)
    rgb = ((pred[:, :3] - target[:, :3]).pow(2) * occupied_voxels).sum()
    loss_rgb = rgb / occupied_voxels.sum().clamp_min(1.0)
    scored = (valid & voxel_mask).unsqueeze(1).to(pred.dtype)
    alpha = ((torch.sigmoid(pred[:, 3:]) - target[:, 3:]).pow(2) * scored).sum()
    loss_alpha = alpha / scored.sum().clamp_min(1.0)
    return loss_rgb + loss_alpha, loss_rgb, loss_alpha
