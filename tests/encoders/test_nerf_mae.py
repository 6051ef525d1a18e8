"""NeRF-MAE encoder and full MAE: architecture, input handling, masking semantics, loss."""
import copy

import pytest
import torch

from embodied_vision import create_encoder
from embodied_vision.encoders.nerf_mae import NerfMAE, pad_grids
from embodied_vision.layers.masking import radiance_mae_loss
from tests.numerics import assert_fp32_close

# The checkpoint table of the reference note (shapes of the released swin_s file).
SWIN_S_SHAPES = {
    'pos_embed': (1, 40, 40, 40, 96), 'mask_token': (96,),
    'patch_partition.0.weight': (96, 4, 4, 4, 4), 'patch_partition.0.bias': (96,),
    'patch_partition.2.weight': (96,), 'patch_partition.2.bias': (96,),
    'stages.0.0.norm1.weight': (96,), 'stages.0.1.norm2.bias': (96,),
    'stages.0.0.attn.relative_position_bias_table': (343, 3),
    'stages.0.1.attn.relative_position_index': (4096,),
    'stages.0.0.attn.qkv.weight': (288, 96), 'stages.0.0.attn.qkv.bias': (288,),
    'stages.0.0.attn.proj.weight': (96, 96), 'stages.0.0.mlp.0.weight': (384, 96),
    'stages.0.0.mlp.3.weight': (96, 384),
    'stages.1.0.reduction.weight': (192, 768), 'stages.1.0.norm.weight': (768,),
    'stages.2.0.reduction.weight': (384, 1536), 'stages.3.0.reduction.weight': (768, 3072),
    'stages.2.18.attn.relative_position_bias_table': (343, 12),
    'stages.3.2.mlp.3.weight': (768, 3072),
    'decoder4.transp_conv.weight': (768, 384, 2, 2, 2),
    'decoder4.conv_block.conv1.weight': (384, 768, 3, 3, 3),
    'decoder4.conv_block.conv3.weight': (384, 768, 1, 1, 1),
    'decoder1.transp_conv.weight': (96, 48, 4, 4, 4),
    'decoder1.conv_block.conv2.weight': (48, 48, 3, 3, 3),
    'out.conv.weight': (4, 48, 1, 1, 1), 'out.conv.bias': (4,),
}


def test_swin_s_has_the_released_files_keys_shapes_and_size():
    with torch.device('meta'):
        model = create_encoder('nerf_mae_pretrain_swin_s')
    state = model.state_dict()
    assert len(state) == 383
    for key, shape in SWIN_S_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert 'decoder1.conv_block.conv3.weight' not in state  # 48 -> 48: no shortcut conv
    assert not any(k.startswith('stages.1.0.reduction.bias') for k in state)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert round(trainable / 1e6, 2) == 70.04 and not model.pos_embed.requires_grad
    assert model.embed_dim == 768 and model.masking_prob == 0.75
    # stage 2, its second block: block 5 of 24, depth rising linearly to 0.1
    assert model.stages[2][2].stochastic_depth.p == pytest.approx(0.1 * 5 / 23)


def _micro(name='nerf_mae_pretrain_swin_micro', seed=0, **kwargs):
    torch.manual_seed(seed)
    return create_encoder(name, **kwargs)


def test_encoder_returns_the_four_stage_maps_and_a_pooled_embedding():
    encoder = _micro('nerf_mae_swin_micro')
    x = torch.rand(2, 4, 32, 32, 32)
    last, maps = encoder.forward_intermediates(x)
    assert [tuple(m.shape) for m in maps] == [(2, 24, 8, 8, 8), (2, 48, 4, 4, 4),
                                              (2, 96, 2, 2, 2), (2, 192, 1, 1, 1)]
    assert torch.equal(last, maps[-1]) and torch.equal(encoder.forward_features(x), last)
    emb = encoder(x)
    assert emb.shape == (2, encoder.embed_dim) and torch.equal(emb, last.mean(dim=(2, 3, 4)))


def test_smaller_grids_are_zero_padded_at_the_high_end():
    encoder = _micro('nerf_mae_swin_micro')
    small = torch.rand(1, 4, 20, 32, 27)
    padded = torch.zeros(1, 4, 32, 32, 32)
    padded[:, :, :20, :, :27] = small
    with torch.no_grad():
        torch.testing.assert_close(encoder(small), encoder(padded), rtol=0, atol=0)
    batch, valid = pad_grids([small[0], torch.rand(4, 32, 9, 32)], 32)
    assert batch.shape == (2, 4, 32, 32, 32) and torch.equal(batch[0], padded[0])
    assert valid[0, :20, :, :27].all() and not valid[0, 20:].any()
    assert valid[1].sum() == 32 * 9 * 32


def test_bad_input_is_refused_with_the_contract():
    encoder = _micro('nerf_mae_swin_micro')
    encoder.check_input(torch.rand(1, 4, 32, 16, 8))
    for bad, match in [(torch.rand(1, 4, 33, 8, 8), '<= 32'), (torch.rand(1, 3, 8, 8, 8), 'C=4'),
                       (torch.rand(1, 4, 8, 8), r'\(B,C,X,Y,Z\)')]:
        with pytest.raises(ValueError, match=match):
            encoder.check_input(bad)
    with pytest.raises(TypeError, match='float32'):
        encoder.check_input(torch.zeros(1, 4, 8, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match='every side <= 32'):
        encoder(torch.rand(1, 4, 40, 8, 8))


def test_masked_tokens_see_nothing_of_their_voxels():
    model = _micro()
    x = torch.rand(1, 4, 32, 32, 32)
    token_mask = torch.zeros(8, 8, 8, dtype=torch.bool)
    token_mask[:4, 4:, :4] = True                      # one 4^3-token block = 16^3 voxels
    changed = x.clone()
    changed[:, :, :16, 16:, :16] = torch.rand(1, 4, 16, 16, 16)
    with torch.no_grad():
        pred, mask, target, valid = model.forward_pretrain(x, token_mask)
        pred_changed = model.forward_pretrain(changed, token_mask)[0]
        unmasked = model.forward_pretrain(changed, torch.zeros_like(token_mask))[0]
    assert torch.equal(pred, pred_changed) and torch.equal(mask, token_mask)
    assert not torch.equal(pred, unmasked) and torch.equal(target, x) and valid.all()


def test_forward_loss_is_the_loss_of_its_outputs_and_replays_a_given_mask():
    model = _micro()
    x = torch.rand(2, 4, 32, 28, 30)
    x[:, 3] = (x[:, 3] > 0.6) * x[:, 3]
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        loss, out = model.forward_loss(x, generator=gen)
        again, _ = model.forward_loss(x, token_mask=out['token_mask'])
    assert out['token_mask'].shape == (8, 8, 8)  # one mask for the batch, as upstream
    assert torch.equal(loss, again)
    voxels = model.voxel_mask(out['token_mask'])
    expected = radiance_mae_loss(out['pred'], out['target'], out['valid'], voxels)
    assert torch.equal(loss, expected[0]) and torch.equal(out['loss_alpha'], expected[2])
    per_sample = model.draw_token_mask(batch=2, generator=gen)
    loss_ps, out_ps = model.forward_loss(x, token_mask=per_sample)
    assert out_ps['token_mask'].shape == (2, 8, 8, 8) and torch.isfinite(loss_ps)
    with pytest.raises(ValueError, match='token_mask must be bool'):
        model.forward_loss(x, token_mask=torch.zeros(4, 4, 4, dtype=torch.bool))


def test_float32_forward_matches_float64():
    model = _micro()
    exact = copy.deepcopy(model).double()
    x = torch.rand(1, 4, 32, 32, 32)
    mask = model.draw_token_mask(generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = model.forward_pretrain(x, mask)[0]
        ref = exact.forward_pretrain(x.double(), mask)[0]
    assert_fp32_close(pred, ref, model, exact=True, what='MAE prediction fp32 vs float64')


def test_gradient_checkpointing_gives_the_same_gradients():
    model = _micro().train()
    x = torch.rand(1, 4, 32, 32, 32)
    mask = model.draw_token_mask(generator=torch.Generator().manual_seed(0))

    def grads():
        model.zero_grad()
        torch.manual_seed(0)  # stochastic depth draws
        model.forward_loss(x, mask)[0].backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = grads()
    model.set_grad_checkpointing(True)
    for a, b in zip(grads(), plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_reference_attention_builds_the_same_function():
    fast = _micro()
    ref = _micro(attention='reference')
    ref.load_state_dict(fast.state_dict())
    x = torch.rand(1, 4, 32, 32, 32)
    mask = fast.draw_token_mask(generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_fp32_close(fast.forward_pretrain(x, mask)[0], ref.forward_pretrain(x, mask)[0],
                          fast, what='sdpa vs reference attention')


def test_upstream_keywords_build_and_wrong_ones_are_refused():
    upstream = dict(patch_size=[4, 4, 4], embed_dim=24, depths=[2, 2, 2, 2],
                    num_heads=[1, 2, 4, 8], window_size=[4, 4, 4], stochastic_depth_prob=0.1,
                    expand_dim=True, resolution=32, masking_prob=0.75, out_channels=4,
                    masking_strategy='random', decoder_embed_dim=768, drop_rate=0.1)
    model = NerfMAE(**upstream)
    assert model.tokens == 8 and model.masking_prob == 0.75
    with pytest.raises(ValueError, match="only 'random'"):
        NerfMAE(**{**upstream, 'masking_strategy': 'grid'})
    with pytest.raises(ValueError, match='multiple of 6'):
        NerfMAE(**{**upstream, 'embed_dim': 32, 'num_heads': [1, 2, 4, 8]})
    with pytest.raises(ValueError, match='divide'):
        NerfMAE(**{**upstream, 'resolution': 30})
