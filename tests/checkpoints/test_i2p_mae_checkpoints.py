"""Official I2P-MAE `pre-train.pth` files, built here in the upstream layout, random weights."""
import pytest
import torch

from embodied_vision import create_encoder
from embodied_vision.checkpoints import CheckpointError, read_checkpoint
from embodied_vision.encoders.i2p_mae import PRESETS

# the released architecture's names at test size
TINY = dict(PRESETS['tiny'])


def _random_model(seed=0):
    torch.manual_seed(seed)
    model = create_encoder('i2p_mae_pretrain', **TINY)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 0.1)
        for name, tensor in model.state_dict().items():
            if name.endswith('running_var'):
                tensor.abs_().add_(0.5)
    return model.eval()


def _save(path, model, prefix='module.', clip=True, mask_token_shape=None):
    state = {prefix + k: v for k, v in model.state_dict().items()}
    if mask_token_shape is not None:
        state[prefix + 'mask_token'] = state[prefix + 'mask_token'].reshape(mask_token_shape)
    if clip:  # the frozen CLIP ViT-B/16 (text tower too), probably stored in fp16
        state[prefix + 'clip_model.visual.conv1.weight'] = torch.randn(8, 3, 16, 16).half()
        state[prefix + 'clip_model.token_embedding.weight'] = torch.randn(10, 8).half()
    torch.save({'base_model': state, 'optimizer': {'state': {}, 'param_groups': []},
                'epoch': 300, 'metrics': {'acc': 93.35}, 'best_metrics': {'acc': 93.35}}, path)
    return path


def _points(seed=0):
    x = torch.randn(2, TINY['num_points'], 3, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=-1).amax(dim=1)[:, None, None]


@pytest.mark.parametrize('prefix', ['module.', ''])
def test_pretraining_file_loads_strictly_and_warns_about_unknown_terms(tmp_path, prefix):
    source = _random_model()
    path = _save(tmp_path / 'pre-train.pth', source, prefix, mask_token_shape=(1, 1, -1))
    assert read_checkpoint(path)[0] == 'i2p_mae'
    with pytest.warns(UserWarning, match='published without a licence .*do not redistribute'):
        model = create_encoder('i2p_mae_pretrain', checkpoint=path, **TINY)
    assert model.pretrained_cfg.tag == 'shapenet55'
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    with pytest.warns(UserWarning, match='published without a licence'):
        encoder = create_encoder('i2p_mae', checkpoint=path, **TINY)
    points = _points()
    scales = source.group(points)
    visible = source.draw_visibility(scales, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(encoder(points), source(points))
        got = model.forward_pretrain(points, visible=visible, scales=scales)['pred_2d']
        want = source.forward_pretrain(points, visible=visible, scales=scales)['pred_2d']
        assert torch.equal(got, want)


def test_encoder_needs_every_h_encoder_key_and_nothing_else_is_read(tmp_path):
    source = _random_model()
    state = source.state_dict()
    del state['h_encoder.encoder_norms.2.weight']
    path = tmp_path / 'missing.pth'
    torch.save({'base_model': {f'module.{k}': v for k, v in state.items()}, 'optimizer': {},
                'epoch': 1, 'metrics': {}, 'best_metrics': {}}, path)
    with pytest.raises(CheckpointError, match=r'missing keys \(1\).*encoder_norms\.2\.weight'):
        create_encoder('i2p_mae', checkpoint=path, **TINY)
    # a decoder of another width does not matter to the encoder, it does to the full model
    wide = create_encoder('i2p_mae_pretrain', **{**TINY, 'decoder_dims': (64, 48)})
    wide.h_encoder.load_state_dict(source.h_encoder.state_dict())
    other = _save(tmp_path / 'other_decoder.pth', wide)
    with pytest.warns(UserWarning):
        create_encoder('i2p_mae', checkpoint=other, **TINY)
    with pytest.raises(CheckpointError, match=r'shape mismatches \(37\).*h_decoder\.1\.blocks'):
        create_encoder('i2p_mae_pretrain', checkpoint=other, **TINY)


def test_wrong_files_are_refused_by_name(tmp_path):
    narrow = _save(tmp_path / 'other_width.pth', _random_model())
    with pytest.raises(CheckpointError, match='shape mismatches'):
        create_encoder('i2p_mae', checkpoint=narrow, **{**TINY, 'encoder_dims': (16, 32, 48)})
    foreign = tmp_path / 'foreign.pth'
    torch.save({'base_model': {'encoder.blocks.0.weight': torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match='unknown checkpoint layout.*i2p_mae: official'):
        create_encoder('i2p_mae', checkpoint=foreign, **TINY)
    release = _save(tmp_path / 'pre-train.pth', _random_model())
    with pytest.raises(CheckpointError, match="'i2p_mae' checkpoint, but r3m_resnet18 loads"):
        create_encoder('r3m_resnet18', checkpoint=release)
