"""Official NeRF-MAE files, built here in the upstream layout with random weights."""
import argparse

import pytest
import torch

from embodied_vision import create_encoder
from embodied_vision.checkpoints import CheckpointError, read_checkpoint

# swin_s's names at test size: the released architecture's keys, small tensors
TINY = dict(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), resolution=32)


def _random_mae(seed=0):
    torch.manual_seed(seed)
    model = create_encoder('nerf_mae_pretrain_swin_s', **TINY)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and name != 'pos_embed':
                tensor.copy_(torch.randn_like(tensor) * 0.05)
    return model


def _save_pretrain(path, model, train_args=None):
    args = {'resolution': 32, 'backbone_type': 'swin_s', 'masking_prob': 0.75, 'lr': 1e-4}
    torch.save({'epoch': 1200, 'state_dict': model.state_dict(),
                'train_args': args if train_args is None else train_args}, path)
    return path


def test_pretraining_file_loads_strictly_into_the_full_mae_and_warns(tmp_path):
    source = _random_mae()
    path = _save_pretrain(tmp_path / 'nerf_mae_pretrained.pt', source)
    assert read_checkpoint(path)[0] == 'nerf_mae'
    with pytest.warns(UserWarning, match='non-commercial'):
        model = create_encoder('nerf_mae_pretrain_swin_s', checkpoint=path, **TINY)
    assert model.pretrained_cfg.tag == 'front3d_hm3d_hypersim'
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    x = torch.rand(1, 4, 32, 32, 32)
    mask = model.draw_token_mask(generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.forward_loss(x, mask)[0], source.forward_loss(x, mask)[0])


def test_encoder_takes_the_backbone_of_both_official_layouts(tmp_path):
    source = _random_mae()
    pretrain = _save_pretrain(tmp_path / 'pretrained.pt', source,
                              argparse.Namespace(resolution=32, backbone_type='swin_s'))
    backbone = {f'base.{k}': v for k, v in source.state_dict().items()
                if not k.startswith(('decoder', 'out.', 'mask_token'))}
    backbone['fpn_neck.inner.0.weight'] = torch.zeros(4, 4)  # the detector's neck: not ours
    rpn = tmp_path / 'front3d_obb_finetuned.pt'
    torch.save({'epoch': 1000, 'backbone_state_dict': backbone,
                'fcos_state_dict': {'cls.weight': torch.zeros(2)}, 'train_args': {}}, rpn)
    assert read_checkpoint(rpn)[0] == 'nerf_mae_rpn'
    x = torch.rand(1, 4, 32, 32, 32)
    with torch.no_grad():
        expected = source.forward_intermediates(x)[1]
        for path in (pretrain, rpn):
            with pytest.warns(UserWarning, match='non-commercial'):
                encoder = create_encoder('nerf_mae_swin_s', checkpoint=path, **TINY)
            for got, want in zip(encoder.forward_intermediates(x)[1], expected):
                assert torch.equal(got, want)
    assert encoder.pretrained_cfg.tag == 'nerf_rpn_finetuned'
    with pytest.raises(CheckpointError, match="'nerf_mae_rpn' checkpoint, but .* loads only"):
        create_encoder('nerf_mae_pretrain_swin_s', checkpoint=rpn, **TINY)


def test_wrong_files_are_refused_naming_what_differs(tmp_path):
    source = _random_mae()
    state = source.state_dict()
    missing = dict(state)
    del missing['stages.1.0.reduction.weight']
    path = tmp_path / 'missing.pt'
    torch.save({'epoch': 1, 'state_dict': missing, 'train_args': {}}, path)
    with pytest.raises(CheckpointError, match=r'missing keys \(1\).*stages\.1\.0\.reduction'):
        create_encoder('nerf_mae_pretrain_swin_s', checkpoint=path, **TINY)
    wrong_res = _save_pretrain(tmp_path / 'res.pt', source, {'resolution': 160})
    with pytest.raises(CheckpointError, match='resolution: file 160 vs model 32'):
        create_encoder('nerf_mae_pretrain_swin_s', checkpoint=wrong_res, **TINY)
    other = _save_pretrain(tmp_path / 'other.pt', source, {'backbone_type': 'swin_t'})
    with pytest.raises(CheckpointError, match="backbone_type: file 'swin_t'"):
        create_encoder('nerf_mae_pretrain_swin_s', checkpoint=other, **TINY)
    # another width: every mismatching shape is named
    with pytest.raises(CheckpointError, match='shape mismatches'):
        create_encoder('nerf_mae_pretrain_swin_s', checkpoint=_save_pretrain(
            tmp_path / 'ok.pt', source), **{**TINY, 'embed_dim': 48})
    # the released weights exist for swin_s only: the CPU presets take no official file
    with pytest.raises(CheckpointError, match='loads only'):
        create_encoder('nerf_mae_pretrain_swin_micro', checkpoint=tmp_path / 'ok.pt')


def test_our_artefact_of_a_loaded_release_keeps_its_licence(tmp_path):
    from embodied_vision import load_encoder
    from embodied_vision.checkpoints import save_encoder
    path = _save_pretrain(tmp_path / 'pretrained.pt', _random_mae())
    with pytest.warns(UserWarning, match='non-commercial'):
        encoder = create_encoder('nerf_mae_swin_s', checkpoint=path, **TINY)
    save_encoder(encoder, tmp_path / 'ours')
    with pytest.warns(UserWarning, match='non-commercial'):
        again = load_encoder(tmp_path / 'ours')
    x = torch.rand(1, 4, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), encoder(x))
