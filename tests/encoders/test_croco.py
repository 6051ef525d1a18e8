"""CroCo / CroCo v2 models and their layers: RoPE-2D, sin-cos tables, masking, loss, sizes."""
import copy
import math

import pytest
import torch

from embodied_vision.checkpoints.croco_archs import (
    DECODER_KEYS,
    ENCODER_KEYS,
    RELEASES,
    match_release,
)
from embodied_vision.encoders import create_encoder, get_pretrained_cfgs
from embodied_vision.encoders.croco import CroCoPair
from embodied_vision.layers import (
    DecoderBlock,
    RoPE2D,
    apply_rope_2d,
    grid_positions,
    rope_2d_tables,
    sincos_pos_embed_2d,
)
from embodied_vision.layers.masking import masked_mse_loss, random_mask
from tests.learning import assert_learned
from tests.numerics import assert_fp32_close

TINY_ENC = {'enc_embed_dim': 32, 'enc_depth': 2, 'enc_num_heads': 2, 'img_size': 32}
TINY_PAIR = {**TINY_ENC, 'dec_embed_dim': 32, 'dec_depth': 2, 'dec_num_heads': 2}
PAIRS = {'v1': 'croco_pair_vit_base', 'v2': 'croco_v2_pair_vit_base_smalldec'}


def _pair(version: str, **kwargs) -> CroCoPair:
    torch.manual_seed(0)
    return create_encoder(PAIRS[version], **{**TINY_PAIR, **kwargs})


def _images(batch: int, size=(32, 32), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, *size, generator=generator),
            torch.randn(batch, 3, *size, generator=generator))


# ------------------------------------------------------------------------------ RoPE
def _reference_rope(t: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Straightforward RoPE-2D from the notes: y rotates the first half, x the second;
    channel i pairs with i + Dh/4 inside each half; angle = pos * base^(-j / (Dh/4))."""
    head_dim = t.shape[-1]
    quarter = head_dim // 4
    out = t.clone().double()
    src = t.double()
    for n in range(t.shape[-2]):
        for axis in (0, 1):
            offset = axis * head_dim // 2
            pos = float(positions[n, axis])
            for j in range(quarter):
                angle = pos * base ** (-j / quarter)
                c, s = math.cos(angle), math.sin(angle)
                u, v = src[..., n, offset + j], src[..., n, offset + j + quarter]
                out[..., n, offset + j] = u * c - v * s
                out[..., n, offset + j + quarter] = v * c + u * s
    return out


def test_vectorised_rope_matches_reference_loop():
    torch.manual_seed(0)
    t = torch.randn(2, 3, 12, 16)
    positions = grid_positions(3, 4)
    cos, sin = RoPE2D(16, base=100.0)(3, 4)
    expected = _reference_rope(t, positions, 100.0)
    torch.testing.assert_close(apply_rope_2d(t, cos, sin).double(), expected,
                               atol=1e-5, rtol=1e-5)


def test_rope_dot_product_depends_only_on_relative_position():
    torch.manual_seed(1)
    q, k = torch.randn(32), torch.randn(32)

    def score(pq, pk):
        cq, sq = rope_2d_tables(torch.tensor(pq, dtype=torch.float32), 32)
        ck, sk = rope_2d_tables(torch.tensor(pk, dtype=torch.float32), 32)
        return (apply_rope_2d(q, cq, sq) * apply_rope_2d(k, ck, sk)).sum()

    reference = score([2.0, 5.0], [7.0, 1.0])
    for shift in ([1.0, 0.0], [0.0, 3.0], [-4.0, 11.0], [2.5, -1.5]):
        shifted = score([2.0 + shift[0], 5.0 + shift[1]], [7.0 + shift[0], 1.0 + shift[1]])
        torch.testing.assert_close(shifted, reference, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(score([2.0, 5.0], [7.0, 2.0]), reference, atol=1e-3)
    # a rotation keeps norms
    cos, sin = rope_2d_tables(torch.tensor([3.0, 9.0]), 32)
    torch.testing.assert_close(apply_rope_2d(q, cos, sin).norm(), q.norm())


def test_rope_tables_are_cached_per_grid_and_validated():
    rope = RoPE2D(8)
    first = rope(2, 3)
    assert rope(2, 3)[0] is first[0] and first[0].shape == (6, 8)
    assert rope(3, 2)[0] is not first[0]
    with pytest.raises(ValueError, match='multiple of 4'):
        RoPE2D(6)


# --------------------------------------------------------------------------- sin-cos
def test_sincos_table_puts_x_in_the_first_half():
    dim, grid_h, grid_w = 16, 3, 5
    table = sincos_pos_embed_2d(dim, grid_h, grid_w)
    assert table.shape == (15, 16) and table.dtype == torch.float32
    omega = [10000.0 ** (-k / (dim / 4)) for k in range(dim // 4)]
    for y, x in ((0, 0), (1, 3), (2, 4)):
        row = table[y * grid_w + x]
        expected = ([math.sin(x * w) for w in omega] + [math.cos(x * w) for w in omega]
                    + [math.sin(y * w) for w in omega] + [math.cos(y * w) for w in omega])
        torch.testing.assert_close(row, torch.tensor(expected), atol=1e-6, rtol=0)


def test_cosine_buffers_and_resampling():
    model = _pair('v1')
    assert model.enc_pos_embed.shape == (4, 32) and model.dec_pos_embed.shape == (4, 32)
    torch.testing.assert_close(model.enc_pos_embed, sincos_pos_embed_2d(32, 2, 2))
    assert model._table(model.enc_pos_embed, (2, 2)) is model.enc_pos_embed
    assert model._table(model.enc_pos_embed, (3, 5)).shape == (15, 32)


# --------------------------------------------------------------------------- sizes
@pytest.mark.parametrize('version', ['v1', 'v2'])
@pytest.mark.parametrize('size', [(32, 32), (48, 32), (32, 64), (16, 16)])
def test_any_multiple_of_16_runs(version, size):
    model = _pair(version)
    img1, img2 = _images(2, size)
    with torch.inference_mode():
        tokens = model.forward_features(model.join_views(img1, img2))
        embedding = model(model.join_views(img1, img2))
        enc = model.encode(img1)
    n = (size[0] // 16) * (size[1] // 16)
    assert tokens.shape == (2, n, 32) and embedding.shape == (2, 32)
    assert enc.shape == (2, n, 32) and torch.isfinite(tokens).all()


def test_bad_inputs_are_clear_errors():
    model = _pair('v2')
    with pytest.raises(ValueError, match='multiple of patch_size'):
        model.encode(torch.zeros(1, 3, 40, 32))
    with pytest.raises(ValueError, match=r'\(B,6,H,W\)'):
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match='same shape'):
        model.forward_pretrain(*_images(1, (32, 32))[:1], _images(1, (48, 32))[0])
    with pytest.raises(ValueError, match="pos_embed='sine'"):
        create_encoder('croco_vit_base', **TINY_ENC, pos_embed='sine')
    with pytest.raises(ValueError, match='img_size'):
        create_encoder('croco_vit_base', **{**TINY_ENC, 'img_size': 40})
    with pytest.raises(ValueError, match='enc_num_heads=3'):
        create_encoder('croco_vit_base', **{**TINY_ENC, 'enc_num_heads': 3})


def test_encoder_embedding_is_the_mean_of_its_tokens():
    torch.manual_seed(0)
    model = create_encoder('croco_v2_vit_base', **TINY_ENC)
    x = model.example_inputs(3, (32, 48))[0]
    with torch.inference_mode():
        tokens = model.forward_features(x)
        final, blocks = model.forward_intermediates(x)
    assert model.embed_dim == 32 and model.input_contract.modality == 'image'
    assert 'ImageNet-normalised' in model.input_contract.notes
    torch.testing.assert_close(model(x), tokens.mean(1))
    torch.testing.assert_close(final, tokens)
    assert len(blocks) == 2


def test_pair_features_are_the_decoder_over_both_encoded_views():
    model = _pair('v2')
    img1, img2 = _images(2)
    with torch.inference_mode():
        expected = model.decode(model.encode(img1), model.encode(img2), (2, 2))
        tokens = model.forward_features(model.join_views(img1, img2))
        _, feats = model.forward_intermediates(model.join_views(img1, img2))
        exact = copy.deepcopy(model).double().forward_features(
            model.join_views(img1.double(), img2.double()))
    # One encoder pass over both views vs one per view: other batch shapes, other kernels.
    assert_fp32_close(tokens, exact, model, exact=True, what='joint pass vs float64')
    assert_fp32_close(expected, exact, model, exact=True, what='per-view passes vs float64')
    assert_fp32_close(tokens, expected, model, what='joint vs per-view passes')
    assert len(feats) == 4 and model.input_contract.channels == 6


# --------------------------------------------------------------------- masking/loss
def test_random_mask_masks_exactly_floor_ratio_per_row():
    generator = torch.Generator().manual_seed(0)
    mask = random_mask(64, 196, 0.9, generator=generator)
    assert mask.dtype == torch.bool and (mask.sum(1) == 176).all()
    assert len({tuple(row.nonzero().flatten().tolist()) for row in mask}) == 64
    assert (random_mask(3, 10, 0.75).sum(1) == 7).all()
    # uniform: every position is masked about 90% of the time
    rate = random_mask(2000, 20, 0.9, generator=generator).float().mean(0)
    assert ((rate - 0.9).abs() < 0.03).all()
    with pytest.raises(ValueError, match='ratio'):
        random_mask(1, 4, 1.0)


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_pretrain_encodes_visible_patches_and_predicts_every_patch(version):
    model = _pair(version, img_size=64).eval()
    img1, img2 = _images(2, (64, 64))
    with torch.inference_mode():
        pred, mask, target = model.forward_pretrain(img1, img2)
    assert pred.shape == target.shape == (2, 16, 768) and mask.shape == (2, 16)
    assert (mask.sum(1) == 14).all()
    torch.testing.assert_close(model.unpatchify(target, (4, 4)), img1)
    # target layout: (row in patch, column in patch, channel), channel fastest
    assert target[0, 5, 3 * (2 * 16 + 7) + 1] == img1[0, 1, 16 + 2, 16 + 7]
    # changing a masked patch of view 1 changes nothing; a visible one changes predictions
    masked = mask[0].nonzero()[0].item()
    visible = (~mask[0]).nonzero()[0].item()
    for patch, changes in ((masked, False), (visible, True)):
        edited = model.patchify(img1).clone()
        edited[:, patch] += 1.0
        with torch.inference_mode():
            out, _, _ = model.forward_pretrain(model.unpatchify(edited, (4, 4)), img2, mask)
        assert torch.allclose(out, pred, atol=1e-6) != changes


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_unmasked_pretrain_path_equals_the_pair_features(version):
    model = _pair(version)
    img1, img2 = _images(2)
    none = torch.zeros(2, 4, dtype=torch.bool)
    with torch.inference_mode():
        pred, _, _ = model.forward_pretrain(img1, img2, none)
        expected = model.prediction_head(model.forward_features(model.join_views(img1, img2)))
        double = copy.deepcopy(model).double()
        exact = double.prediction_head(double.forward_features(
            model.join_views(img1.double(), img2.double())))
    # forward_pretrain encodes the views one at a time, forward_features both in one batch.
    assert_fp32_close(pred, exact, model, exact=True, what='pretrain path vs float64')
    assert_fp32_close(expected, exact, model, exact=True, what='pair features vs float64')
    assert_fp32_close(pred, expected, model, what='pretrain path vs pair features')


def test_loss_is_normalised_mse_over_masked_patches_only():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 5, 12), torch.randn(2, 5, 12) * 3 + 1
    mask = torch.tensor([[True, False, True, False, False], [False, True, False, False, True]])
    norm = (target - target.mean(-1, keepdim=True)) / (target.var(-1, unbiased=True,
                                                                  keepdim=True) + 1e-6).sqrt()
    expected = ((pred - norm) ** 2).mean(-1)[mask].mean()
    torch.testing.assert_close(masked_mse_loss(pred, target, mask), expected)
    raw = ((pred - target) ** 2).mean(-1)[mask].mean()
    torch.testing.assert_close(masked_mse_loss(pred, target, mask, norm_pix=False), raw)
    edited = pred.clone()
    edited[~mask] = 100.0
    torch.testing.assert_close(masked_mse_loss(edited, target, mask), expected)


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_loss_falls_when_overfitting_a_tiny_batch(version):
    model = _pair(version).train()
    img1, img2 = _images(2, seed=3)
    mask = random_mask(2, 4, 0.5, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        loss, _ = model.forward_loss(img1, img2, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # the same batch and mask every step (no dropout): a deterministic before / after
    assert_learned(losses[-1] / losses[0], 0.6, f'{version} masked loss')
    # predicting zeros scores ~1 on normalised patches; the fit must get well below it
    assert_learned(losses[-1], 0.7, f'{version} masked loss / zero predictor')


def test_grad_checkpointing_gives_the_same_gradients():
    grads = []
    for enable in (False, True):
        model = _pair('v2').train()
        model.set_grad_checkpointing(enable)
        loss, _ = model.forward_loss(*_images(2), random_mask(
            2, 4, 0.5, generator=torch.Generator().manual_seed(0)))
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_decoder_block_reads_its_memory_without_changing_it():
    torch.manual_seed(0)
    block = DecoderBlock(16, 2)
    x, y = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    y_before = y.clone()
    out = block(x, y)
    assert out.shape == x.shape and torch.equal(y, y_before)
    assert not torch.allclose(block(x, torch.randn(2, 7, 16)), out)  # cross-attention uses y


def test_registry_entries_licence_and_tags():
    from embodied_vision.encoders import get_pretrained_cfgs, list_encoders
    names = list_encoders('croco', with_tags=True)
    assert 'croco_vit_base.habitat_pairs' in names
    assert 'croco_v2_pair_vit_large_basedec.habitat_real' in names
    for arch in list_encoders('croco'):
        for cfg in get_pretrained_cfgs(arch):
            assert cfg.non_commercial and cfg.license == 'CC-BY-NC-SA-4.0'
            assert cfg.origin_url.endswith('.pth') and 'croco' in cfg.formats


@pytest.mark.parametrize('file', sorted(RELEASES))
def test_registry_entries_build_the_architecture_of_the_release_table(file):
    release = RELEASES[file]
    arch = release.architecture()
    with torch.device('meta'):  # full size, no memory
        pair = create_encoder(release.pair)
        encoder = create_encoder(release.encoder)
    assert pair.croco_kwargs() == {k: arch[k] for k in ENCODER_KEYS + DECODER_KEYS}
    assert encoder.croco_kwargs() == {k: arch[k] for k in ENCODER_KEYS}
    assert (pair.img_size, pair.mask_ratio) == ((arch['img_size'],) * 2, arch['mask_ratio'])
    sources = {cfg.origin_url.rsplit('/', 1)[-1] for cfg in get_pretrained_cfgs(release.pair)}
    assert sources == {file}
    assert file in {cfg.origin_url.rsplit('/', 1)[-1]
                    for cfg in get_pretrained_cfgs(release.encoder)}
    assert match_release(arch) is release
