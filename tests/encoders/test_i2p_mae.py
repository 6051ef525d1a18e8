"""I2P-MAE / Point-M2AE: grouping, visibility, the hierarchical encoder against an
upstream-style per-sample reference, the decoder, the key layout of the release, config keys."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from benchmarks.i2p_mae import baseline_encoder
from embodied_vision.encoders import create_encoder
from embodied_vision.encoders.i2p_mae import I2PMAE, PRESETS, I2PMAEEncoder, model_kwargs
from embodied_vision.layers.point_ops import farthest_point_sample
from embodied_vision.layers.point_tokens import (
    group_scales,
    mask_coarse_tokens,
    propagate_visibility,
)
from tests.numerics import assert_fp32_close

TINY = dict(PRESETS['tiny'])


def _cloud(b=2, n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, n, 3))
    x /= np.linalg.norm(x, axis=-1).max(axis=1)[:, None, None]
    return torch.from_numpy(x).float()


@pytest.fixture(scope='module')
def tiny():
    torch.manual_seed(0)
    return create_encoder('i2p_mae_pretrain_tiny').eval()


# ----------------------------------------------------------------------- grouping
def test_each_scale_groups_the_previous_scales_centers():
    points = _cloud()
    scales = group_scales(points, [64, 32, 8], [8, 4, 4])
    source = points
    for groups, g, k in zip(scales, [64, 32, 8], [8, 4, 4]):
        assert groups.centers.shape == (2, g, 3) and groups.index.shape == (2, g, k)
        for b in range(2):
            d = torch.cdist(groups.centers[b].double(), source[b].double())
            want = d.argsort(dim=1, stable=True)[:, :k]
            assert torch.equal(groups.index[b], want)  # nearest first
            assert torch.equal(groups.members[b], source[b][groups.index[b]])
        assert torch.allclose(groups.neighborhood, groups.members - groups.centers[:, :, None])
        # rows of the flattened (B * N_prev, C) tensor
        flat = source.reshape(-1, 3)[groups.flat_index]
        assert torch.equal(flat, groups.members)
        source = groups.centers
    # coarser centers are the prefix of the finer ones: what FPS on them returns, ties too
    grid = torch.stack(torch.meshgrid(*[torch.arange(8.0)] * 2, torch.arange(4.0),
                                      indexing='ij'), -1).reshape(1, 256, 3)
    for cloud in (points, grid):
        chain = group_scales(cloud, [64, 32, 8], [8, 4, 4])
        for i in (1, 2):
            fps = farthest_point_sample(chain[i - 1].centers, chain[i].centers.shape[1],
                                        backend='torch')
            assert torch.equal(fps, torch.arange(fps.shape[1]).expand_as(fps))
    # a center is its own nearest member at scales >= 1 (centers are previous centers)
    assert torch.equal(scales[1].members[:, :, 0], scales[1].centers)
    with pytest.raises(ValueError, match='fewer than the 64 groups'):
        group_scales(points[:, :40], [64, 32, 8], [8, 4, 4])
    with pytest.raises(ValueError, match='non-increasing'):
        group_scales(points, [32, 64, 8], [8, 4, 4])


def test_visibility_propagates_to_the_members_of_visible_groups():
    points = _cloud(3)
    scales = group_scales(points, [64, 32, 8], [8, 4, 4])
    coarse = mask_coarse_tokens(3, 8, 0.75, generator=torch.Generator().manual_seed(1))
    assert coarse.sum(1).tolist() == [2, 2, 2]  # int(0.75 * 8) = 6 masked
    masks = propagate_visibility(coarse, scales)
    assert [m.shape for m in masks] == [(3, 64), (3, 32), (3, 8)]
    for b in range(3):  # brute force: a finer token is visible iff a visible group lists it
        for i in (2, 1):
            want = torch.zeros(scales[i].n_source, dtype=torch.bool)
            for g in range(scales[i].index.shape[1]):
                if masks[i][b, g]:
                    want[scales[i].index[b, g]] = True
            assert torch.equal(masks[i - 1][b], want)


def test_saliency_keeps_salient_tokens_visible():
    saliency = torch.zeros(400, 8)
    saliency[:, 0] = 6.0  # token 0 carries e^6 / (e^6 + 7) ~ 98% of the first draw
    generator = torch.Generator().manual_seed(0)
    visible = mask_coarse_tokens(400, 8, 0.75, saliency, generator)
    uniform = mask_coarse_tokens(400, 8, 0.75, generator=generator)
    assert visible[:, 0].float().mean() > 0.95
    assert 0.1 < uniform[:, 0].float().mean() < 0.4  # 2 of 8 visible by chance: 0.25
    with pytest.raises(ValueError, match=r'saliency must be \(400, 8\)'):
        mask_coarse_tokens(400, 8, 0.75, saliency[:, :4])


# ------------------------------------------------- encoder vs an upstream-style loop
# the benchmark's baseline: per-sample packing with a (B, L, L) mask of ones outside the
# visible block, softmax(q k^T scale + mask * -1e5) v written out, boolean write-back
_reference_encoder = baseline_encoder


@pytest.mark.parametrize('pack', [True, False])
def test_hierarchical_encoder_matches_the_per_sample_reference(tiny, pack):
    points = _cloud(3)
    scales = tiny.group(points)
    visible = tiny.draw_visibility(scales, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = tiny.h_encoder(scales, visible, pack=pack)
        ref = _reference_encoder(tiny.h_encoder, scales, visible)
    for i, (out, (want, valid)) in enumerate(zip(ours, ref)):
        if pack:
            got, got_valid = out.tokens, out.valid
            assert torch.equal(got_valid, valid)
            # packed rows are the visible token indices in increasing order
            for s in range(3):
                n = int(valid[s].sum())
                assert out.index[s, :n].tolist() == torch.nonzero(visible[i][s])[:, 0].tolist()
        else:
            got = torch.stack([F.pad(out.tokens[s][visible[i][s]],
                                     (0, 0, 0, want.shape[1] - int(visible[i][s].sum())))
                               for s in range(3)])
        assert_fp32_close(got[valid], want[valid], tiny.h_encoder, what=f'scale {i}')


def test_eval_feature_leaves_out_unreferenced_finer_tokens(tiny):
    points = _cloud(2)
    scales = tiny.group(points)
    referenced = tiny.referenced_visibility(scales)
    assert referenced[2].all()
    assert not referenced[1].all() and not referenced[0].all()  # some are left out
    with torch.no_grad():
        feature = tiny(points)
        every = tiny.h_encoder(scales, None)[-1].tokens.amax(1)
        ref = _reference_encoder(tiny.h_encoder, scales, referenced)[-1][0].amax(1)
    assert_fp32_close(feature, ref, tiny.h_encoder, what='SVM feature')
    assert (feature - every).abs().max() > 1e-3  # the quirk changes the features


def test_local_radius_masks_far_tokens():
    torch.manual_seed(0)
    near = create_encoder('i2p_mae_tiny', local_radius=(0.05, 0.05, 0.05)).eval()
    far = create_encoder('i2p_mae_tiny').eval()
    far.load_state_dict(near.state_dict())
    points = _cloud(1)
    with torch.no_grad():
        scales = near.group(points)
        out = near.h_encoder(scales)[0].tokens
        assert not torch.allclose(out, far.h_encoder(scales)[0].tokens)
        # a radius above the cloud's diameter masks nothing
        huge = create_encoder('i2p_mae_tiny', local_radius=(3.0, 3.0, 3.0)).eval()
        huge.load_state_dict(near.state_dict())
        assert_fp32_close(huge.h_encoder(scales)[0].tokens, far.h_encoder(scales)[0].tokens,
                          far.h_encoder, what='radius 3 vs none')


# ------------------------------------------------------------------------ decoder
def test_pretraining_outputs_and_decoder_sees_only_visible_encoder_tokens(tiny):
    points = _cloud(2)
    scales = tiny.group(points)
    visible = tiny.draw_visibility(scales, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = tiny.forward_pretrain(points, visible=visible, scales=scales)
        k = TINY['group_sizes'][1]
        assert out['pred_3d'].shape == (2, 32, k, 3)
        assert out['pred_2d'].shape == (2, 32, k, 3 * TINY['image_feature_dim'])
        # hidden scale-0 offsets do not reach the prediction: perturb them, nothing changes
        hidden = ~visible[0]
        moved = [type(s)(**vars(s)) for s in scales]
        moved[0].neighborhood = torch.where(hidden[..., None, None],
                                            scales[0].neighborhood.flip(-1) * 2,
                                            scales[0].neighborhood)
        again = tiny.forward_pretrain(points, visible=visible, scales=moved)
        assert torch.equal(again['pred_3d'], out['pred_3d'])  # per-token ops only: exact
        # ... while a visible one does
        shown = [type(s)(**vars(s)) for s in scales]
        shown[0].neighborhood = torch.where(visible[0][..., None, None],
                                            scales[0].neighborhood.flip(-1) * 2,
                                            scales[0].neighborhood)
        changed = tiny.forward_pretrain(points, visible=visible, scales=shown)
        assert (changed['pred_3d'] - out['pred_3d']).abs().max() > 1e-6


# --------------------------------------------------------------- release layout
def test_key_layout_of_the_released_pretraining_model():
    with torch.device('meta'):
        model = create_encoder('i2p_mae_pretrain')
        encoder = create_encoder('i2p_mae')
    state = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for i in range(3):
        for part in ('first_conv', 'second_conv'):
            for j in (0, 3):
                assert f'h_encoder.token_embed.{i}.{part}.{j}.weight' in state
            assert f'h_encoder.token_embed.{i}.{part}.1.running_var' in state
            assert f'h_encoder.token_embed.{i}.{part}.1.num_batches_tracked' in state
        for j in (0, 2):
            assert f'h_encoder.encoder_pos_embeds.{i}.{j}.bias' in state
        for j in range(5):
            prefix = f'h_encoder.encoder_blocks.{i}.blocks.{j}.'
            for name in ('norm1', 'attn.proj', 'norm2', 'mlp.fc1', 'mlp.fc2'):
                assert prefix + name + '.weight' in state and prefix + name + '.bias' in state
            assert prefix + 'attn.qkv.weight' in state
        assert f'h_encoder.encoder_norms.{i}.weight' in state
    assert not [k for k in state if k.endswith('qkv.bias')]
    assert shapes['h_encoder.token_embed.0.first_conv.0.weight'] == (128, 3, 1)
    assert shapes['h_encoder.token_embed.0.second_conv.3.weight'] == (96, 512, 1)
    assert shapes['h_encoder.token_embed.2.second_conv.0.weight'] == (384, 384, 1)
    assert shapes['mask_token'] == (1, 384)
    assert shapes['token_prop.0.fuse.net.0.weight'] == (192, 576, 1)
    assert 'token_prop.0.extraction.operation.0.net1.1.running_mean' in state
    assert 'token_prop.0.extraction.operation.0.net2.1.weight' in state
    assert shapes['rec_head_3d.weight'] == (24, 192, 1)
    assert shapes['rec_head_2d.weight'] == (12288, 192, 1)
    for i in (0, 1):
        assert f'h_decoder.{i}.blocks.0.attn.qkv.weight' in state
        assert f'decoder_pos_embeds.{i}.2.weight' in state
    assert 'decoder_norm.weight' in state
    extra = {k.split('.')[0] for k in set(state) - set(encoder.state_dict())}
    assert extra == {'mask_token', 'h_decoder', 'decoder_pos_embeds', 'token_prop',
                     'decoder_norm', 'rec_head_3d', 'rec_head_2d'}
    params = sum(p.numel() for p in encoder.parameters())
    # README: 12.9 M with the fine-tuning head (384*256 + 256*256 + 256*40 + norms ~ 0.17 M)
    assert 12.5e6 < params < 12.9e6, params


def test_upstream_config_keys_build_the_same_network():
    config = {'NAME': 'I2P_MAE', 'mask_ratio': 0.8, 'group_sizes': [16, 8, 8],
              'num_groups': [512, 256, 64], 'encoder_depths': [5, 5, 5],
              'encoder_dims': [96, 192, 384], 'local_radius': [0, 0, 0],
              'decoder_depths': [1, 1], 'decoder_dims': [384, 192], 'decoder_up_blocks': [1],
              'drop_path_rate': 0.1, 'num_heads': 6}
    with torch.device('meta'):
        built = I2PMAE(**model_kwargs(config))
        registered = create_encoder('i2p_mae_pretrain')
    assert {k: v.shape for k, v in built.state_dict().items()} == \
        {k: v.shape for k, v in registered.state_dict().items()}
    with pytest.raises(ValueError, match=r"\['trans_dim'\] are not I2P-MAE options"):
        model_kwargs({**config, 'trans_dim': 384})
    with pytest.raises(ValueError, match=r'decoder_up_blocks=\[2\]'):
        model_kwargs({**config, 'decoder_up_blocks': [2]})
    with pytest.raises(ValueError, match='not divisible by 5 heads'):
        I2PMAEEncoder(**{**model_kwargs(config), 'num_heads': 5})
    with pytest.raises(ValueError, match='mask_ratio=1.0'):
        I2PMAEEncoder(mask_ratio=1.0)


def test_drop_path_rises_linearly_over_the_fifteen_blocks():
    with torch.device('meta'):
        model = create_encoder('i2p_mae')
    rates = [getattr(b.drop_path, 'drop_prob', 0.0) for stack in model.h_encoder.encoder_blocks
             for b in stack.blocks]
    assert len(rates) == 15
    assert np.allclose(rates, np.linspace(0, 0.1, 15)) and math.isclose(rates[-1], 0.1)


@pytest.mark.parametrize('channels', [3, 32])
@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_token_embedding_matches_the_conv1d_formulation(channels, mode):
    """Upstream's mini-PointNet: Conv1d over (B*G, C, K), the group max concatenated first."""
    from embodied_vision.layers.point_tokens import TokenEmbed
    torch.manual_seed(0)
    embed = TokenEmbed(channels, 48)
    with torch.no_grad():
        for m in embed.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    getattr(embed, mode)()
    members = torch.randn(3, 20, 8, channels)
    b, g, k, c = members.shape
    with torch.no_grad():
        x = embed.first_conv(members.reshape(b * g, k, c).transpose(1, 2))
        x = torch.cat([x.amax(dim=2, keepdim=True).expand(-1, -1, k), x], dim=1)
        want = embed.second_conv(x).amax(dim=2).reshape(b, g, 48)
        got = embed(members)
    assert_fp32_close(got, want, embed, what=f'token embedding ({mode})')
