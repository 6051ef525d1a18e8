"""NeRF-MAE's block mask, loss and 3D sin-cos table against upstream's loop formulations."""
import numpy as np
import pytest
import torch

from embodied_vision.layers.masking import block_token_mask, radiance_mae_loss
from embodied_vision.layers.pos_embed import sincos_pos_embed_3d


def _loop_mask(tokens, uniforms, prob, block=4):
    """Upstream `window_masking_3d` ('random'): one uniform per block in (x, y, z) loop order."""
    mask = torch.zeros(tokens, dtype=torch.bool)
    draws = iter(uniforms.tolist())
    for x in range(0, tokens[0] - block + 1, block):
        for y in range(0, tokens[1] - block + 1, block):
            for z in range(0, tokens[2] - block + 1, block):
                if next(draws) < prob:
                    mask[x:x + block, y:y + block, z:z + block] = True
    return mask


@pytest.mark.parametrize('tokens', [(8, 8, 8), (10, 9, 13)])
def test_block_mask_replays_upstreams_loop_from_the_same_draws(tokens):
    blocks = [t // 4 for t in tokens]
    uniforms = torch.rand((1, *blocks), generator=torch.Generator().manual_seed(3))
    mask = block_token_mask(tokens, 0.75, generator=torch.Generator().manual_seed(3))
    assert mask.shape == tokens and mask.dtype == torch.bool
    assert torch.equal(mask, _loop_mask(tokens, uniforms.flatten(), 0.75))
    if tokens[1] % 4:  # tokens past the last whole block are never masked
        assert not mask[:, 8:].any()


def test_block_mask_per_sample_and_its_rate():
    per_sample = block_token_mask((8, 8, 8), 0.5, batch=3,
                                  generator=torch.Generator().manual_seed(0))
    assert per_sample.shape == (3, 8, 8, 8) and not torch.equal(per_sample[0], per_sample[1])
    # Bernoulli per block: over 4000 blocks the masked fraction is p within 5 standard errors
    masks = block_token_mask((40, 40, 40), 0.75, batch=4,
                             generator=torch.Generator().manual_seed(1))
    rate = masks[:, ::4, ::4, ::4].float().mean().item()
    assert abs(rate - 0.75) < 5 * (0.75 * 0.25 / 4000) ** 0.5
    assert not block_token_mask((8, 8, 8), 0.0).any() and block_token_mask((8, 8, 8), 1.0).all()
    with pytest.raises(ValueError, match='probability'):
        block_token_mask((8, 8, 8), 1.5)


def _patchify(x, p):
    """Upstream `patchify_3d`: (N, 4, H, W, D) -> (N, h, w, l, p^3, 4)."""
    n, c, h, w, d = x.shape
    x = x.reshape(n, c, h // p, p, w // p, p, d // p, p)
    return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(n, h // p, w // p, d // p, p ** 3, c)


def _upstream_loss(pred, target, valid, token_mask, p):
    """Upstream `forward_loss` on patchified tensors, masks shaped as upstream builds them."""
    tgt, prd = _patchify(target, p), _patchify(pred, p)
    valid4 = valid[:, None].expand(-1, 4, -1, -1, -1).double()
    mask_batch = _patchify(valid4, p)[..., 0]                       # (N, h, w, l, p^3)
    mask_remove = (mask_batch * token_mask[..., None].double())[..., None]
    occupied = tgt[..., 3:] > 0.01
    loss_rgb = ((prd[..., :3] - tgt[..., :3]) ** 2 * occupied).sum() / occupied.sum()
    loss_alpha = ((torch.sigmoid(prd[..., 3:]) - tgt[..., 3:]) ** 2 * mask_remove).sum() \
        / mask_remove.sum()
    return loss_rgb + loss_alpha, loss_rgb, loss_alpha


def test_loss_equals_upstreams_patchified_formulation():
    gen = torch.Generator().manual_seed(0)
    p, r = 4, 16
    target = torch.rand((2, 4, r, r, r), generator=gen, dtype=torch.float64)
    target[:, 3] = torch.where(target[:, 3] < 0.5, 0.0, target[:, 3])   # empty voxels
    valid = torch.zeros((2, r, r, r), dtype=torch.bool)
    valid[0, :12, :16, :9] = True
    valid[1, :16, :7, :16] = True
    target = target * valid[:, None]                                   # padding is empty
    pred = torch.randn((2, 4, r, r, r), generator=gen, dtype=torch.float64)
    token_mask = torch.rand((2, r // p, r // p, r // p), generator=gen) < 0.6
    voxels = token_mask
    for axis in (1, 2, 3):
        voxels = voxels.repeat_interleave(p, dim=axis)
    ours = radiance_mae_loss(pred, target, valid, voxels)
    theirs = _upstream_loss(pred, target, valid, token_mask, p)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


def test_loss_of_a_perfect_prediction_is_zero_and_empty_regions_are_finite():
    target = torch.zeros((1, 4, 8, 8, 8))
    pred = torch.zeros_like(target)
    pred[:, 3] = -1e4  # sigmoid -> 0 = target alpha
    everything = torch.ones((1, 8, 8, 8), dtype=torch.bool)
    loss, rgb, alpha = radiance_mae_loss(pred, target, everything, everything)
    assert loss.item() == 0.0 and rgb.item() == 0.0 and alpha.item() == 0.0
    nothing = torch.zeros_like(everything)
    assert torch.isfinite(radiance_mae_loss(pred, target, nothing, nothing)[0])


def _upstream_sincos_3d(dim, grid):
    """numpy as upstream's `get_3d_sincos_pos_embed` (meshgrid 'xy', float64 omega)."""
    def one_d(d, pos):
        omega = np.arange(d // 2, dtype=np.float64) / (d / 2.0)
        out = np.einsum('m,d->md', pos.reshape(-1), 1.0 / 10000 ** omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    axis = np.arange(grid, dtype=np.float32)
    mesh = np.stack(np.meshgrid(axis, axis, axis), axis=0).reshape(3, 1, grid, grid, grid)
    emb = np.concatenate([one_d(dim // 3, mesh[i]) for i in range(3)], axis=1)
    return emb.reshape(grid, grid, grid, dim)


@pytest.mark.parametrize('dim,grid', [(96, 6), (24, 5)])
def test_sincos_3d_equals_upstreams_table(dim, grid):
    ours = sincos_pos_embed_3d(dim, grid)
    assert ours.dtype == torch.float32 and ours.shape == (grid, grid, grid, dim)
    np.testing.assert_allclose(ours.numpy(), _upstream_sincos_3d(dim, grid).astype(np.float32),
                               rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match='multiple of 6'):
        sincos_pos_embed_3d(128, 4)
