"""Official and own checkpoint layouts, built here with random weights, load strictly.

The reference for every layout is an independently built torchvision ResNet holding the same
weights, with R3M's preprocessing (x / 255, ImageNet mean/std) applied by hand.
"""
import copy
import warnings

import pytest
import torch
import torchvision

from embodied_vision.checkpoints import CheckpointError, read_checkpoint, save_encoder
from embodied_vision.encoders import create_encoder, load_encoder
from embodied_vision.encoders.r3m_resnet import IMAGENET_MEAN, IMAGENET_STD
from tests.conftest import TINY
from tests.numerics import assert_fp32_close


def _random_torchvision(depth: int, seed: int = 0) -> torch.nn.Module:
    """A torchvision ResNet whose every parameter and BN statistic is random."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, f'resnet{depth}')(weights=None)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith('running_var'):
                tensor.uniform_(0.5, 2.0)
            elif name.endswith('running_mean') or name.endswith('bias'):
                tensor.normal_(0, 0.1)
            elif name.endswith('weight') and tensor.ndim == 1:
                tensor.uniform_(0.5, 1.5)
    return model.eval()


def _reference_embedding(model: torch.nn.Module, x: torch.Tensor,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    trunk = torch.nn.Sequential(*list(model.children())[:-1])  # drop fc
    if dtype != torch.float32:
        trunk = copy.deepcopy(trunk).to(dtype)
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=dtype).view(1, 3, 1, 1)
    with torch.inference_mode():
        return trunk((x.to(dtype) / 255.0 - mean) / std).flatten(1)


def _assert_same_embedding(ours: torch.Tensor, reference: torch.nn.Module) -> None:
    """Our encoder and the torchvision reference are other kernels (our normalisation is one
    fused multiply-add): both fp32 results are held to the float64 reference, then to each
    other."""
    theirs = _reference_embedding(reference, FRAMES)
    exact = _reference_embedding(reference, FRAMES, torch.float64)
    trunk = list(reference.children())[:-1]  # the layers that made the embedding (no fc)
    assert_fp32_close(ours, exact, trunk, exact=True, what='ours vs float64')
    assert_fp32_close(theirs, exact, trunk, exact=True, what='torchvision vs float64')
    assert_fp32_close(ours, theirs, trunk, what='ours vs torchvision')


def _r3m_file(path, model: torch.nn.Module) -> None:
    """Write `model` in the official R3M model.pt layout."""
    state = {f'module.convnet.{k}': v for k, v in model.state_dict().items()
             if not k.startswith('fc.')}
    state['module.lang_enc.distilbert.embeddings.word_embeddings.weight'] = torch.randn(8, 4)
    for i in (0, 2, 4, 6, 8):
        state[f'module.lang_rew.pred.{i}.weight'] = torch.randn(4, 4)
        state[f'module.lang_rew.pred.{i}.bias'] = torch.randn(4)
    torch.save({'r3m': state, 'global_step': 12000}, path)


FRAMES = torch.randint(0, 256, (3, 3, *TINY), dtype=torch.uint8)


@pytest.mark.parametrize('depth', [18, 34, 50])
def test_official_r3m_layout_matches_torchvision_reference(tmp_path, depth):
    reference = _random_torchvision(depth, seed=depth)
    _r3m_file(tmp_path / 'model.pt', reference)
    assert read_checkpoint(tmp_path / 'model.pt')[0] == 'r3m'
    encoder = create_encoder(f'r3m_resnet{depth}', checkpoint=tmp_path / 'model.pt')
    with torch.inference_mode():
        _assert_same_embedding(encoder(FRAMES), reference)


@pytest.mark.parametrize('wrap', ['plain', 'state_dict', 'module_prefix'])
def test_torchvision_state_dicts_load(tmp_path, wrap):
    reference = _random_torchvision(18, seed=1)
    state = reference.state_dict()
    if wrap == 'state_dict':
        state = {'state_dict': state, 'epoch': 90}
    elif wrap == 'module_prefix':
        state = {f'module.{k}': v for k, v in state.items()}
    torch.save(state, tmp_path / 'resnet18.pth')
    encoder = create_encoder('r3m_resnet18.tv_in1k', checkpoint=tmp_path / 'resnet18.pth')
    with torch.inference_mode():
        _assert_same_embedding(encoder(FRAMES), reference)


def test_timm_state_dict_loads(tmp_path):
    import timm
    torch.manual_seed(2)
    model = timm.create_model('resnet18', num_classes=1000).eval()
    torch.save(model.state_dict(), tmp_path / 'timm.pth')
    encoder = create_encoder('r3m_resnet18.tv_in1k', checkpoint=tmp_path / 'timm.pth')
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = model.forward_head(model.forward_features((FRAMES / 255 - mean) / std),
                                      pre_logits=True)
        exact_model = copy.deepcopy(model).double()
        mean64 = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
        std64 = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
        exact = exact_model.forward_head(exact_model.forward_features(
            (FRAMES.double() / 255 - mean64) / std64), pre_logits=True)
        ours = encoder(FRAMES)
    trunk = [m for name, m in model.named_children() if name != 'fc']  # pre_logits: no fc
    assert_fp32_close(ours, exact, trunk, exact=True, what='ours vs float64')
    assert_fp32_close(expected, exact, trunk, exact=True, what='timm vs float64')
    assert_fp32_close(ours, expected, trunk, what='ours vs timm')


def test_own_format_round_trip(tmp_path):
    source = create_encoder('r3m_resnet18', image_size=96)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    save_encoder(source, tmp_path / 'ckpt')
    assert (tmp_path / 'ckpt' / 'config.json').exists()
    for path in (tmp_path / 'ckpt', tmp_path / 'ckpt' / 'model.safetensors'):
        loaded = load_encoder(path)
        assert loaded.name == 'r3m_resnet18' and loaded.init_kwargs == {'image_size': 96}
        with torch.inference_mode():
            torch.testing.assert_close(loaded(FRAMES), source(FRAMES), rtol=0, atol=0)
    # The config is also inside the safetensors header: a lone file is self-contained.
    (tmp_path / 'ckpt' / 'config.json').unlink()
    assert load_encoder(tmp_path / 'ckpt' / 'model.safetensors').init_kwargs == {
        'image_size': 96}


def test_wrong_depth_names_shape_mismatch(tmp_path):
    _r3m_file(tmp_path / 'model.pt', _random_torchvision(18))
    with pytest.raises(CheckpointError,
                       match=r'(?s)r3m_resnet50.*missing keys.*conv3.*shape mismatches'):
        create_encoder('r3m_resnet50', checkpoint=tmp_path / 'model.pt')
    with pytest.raises(CheckpointError, match=r'(?s)missing keys \(96\).*layer1.2'):
        create_encoder('r3m_resnet34', checkpoint=tmp_path / 'model.pt')


def test_unexpected_keys_are_listed(tmp_path):
    state = {f'module.convnet.{k}': v for k, v in _random_torchvision(18).state_dict().items()
             if not k.startswith('fc.')}
    state['module.convnet.extra_head.weight'] = torch.zeros(2)
    torch.save({'r3m': state}, tmp_path / 'model.pt')
    with pytest.raises(CheckpointError, match=r'unexpected keys \(1\).*extra_head'):
        create_encoder('r3m_resnet18', checkpoint=tmp_path / 'model.pt')


def test_format_tag_mismatch_suggests_the_right_tag(tmp_path):
    torch.save(_random_torchvision(18).state_dict(), tmp_path / 'tv.pth')
    with pytest.raises(CheckpointError, match=r'r3m_resnet18.tv_in1k'):
        create_encoder('r3m_resnet18.ego4d', checkpoint=tmp_path / 'tv.pth')


def test_own_checkpoint_of_another_architecture_is_refused(tmp_path):
    save_encoder(create_encoder('r3m_resnet18'), tmp_path / 'ckpt')
    with pytest.raises(CheckpointError, match='saved from r3m_resnet18'):
        create_encoder('r3m_resnet34', checkpoint=tmp_path / 'ckpt')


@pytest.mark.parametrize('content,match', [
    (b'this is not a checkpoint', 'cannot be read as a PyTorch checkpoint'),
    (b'', 'cannot be read as a PyTorch checkpoint'),
])
def test_corrupt_files_are_named(tmp_path, content, match):
    (tmp_path / 'model.pt').write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        create_encoder('r3m_resnet18', checkpoint=tmp_path / 'model.pt')


def test_truncated_file_is_named(tmp_path):
    _r3m_file(tmp_path / 'model.pt', _random_torchvision(18))
    data = (tmp_path / 'model.pt').read_bytes()
    (tmp_path / 'cut.pt').write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match='cut.pt'):
        create_encoder('r3m_resnet18', checkpoint=tmp_path / 'cut.pt')


def test_arbitrary_pickles_are_refused(tmp_path):
    torch.save({'r3m': {'module.convnet.conv1.weight': warnings.WarningMessage}},
               tmp_path / 'evil.pt')
    with pytest.raises(CheckpointError, match='weights_only'):
        create_encoder('r3m_resnet18', checkpoint=tmp_path / 'evil.pt')


def test_unknown_layout_lists_known_formats(tmp_path):
    torch.save({'encoder.blocks.0.weight': torch.zeros(1)}, tmp_path / 'other.pt')
    with pytest.raises(CheckpointError, match=r'(?s)unknown checkpoint layout.*r3m.*torchvision'):
        read_checkpoint(tmp_path / 'other.pt')


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist'):
        create_encoder('r3m_resnet18', checkpoint=tmp_path / 'nope.pt')


def test_official_file_cannot_rebuild_architecture(tmp_path):
    _r3m_file(tmp_path / 'model.pt', _random_torchvision(18))
    with pytest.raises(CheckpointError, match='does not record its architecture'):
        load_encoder(tmp_path / 'model.pt')


def test_detected_source_sets_the_pretrained_cfg_and_own_training_has_none(tmp_path):
    _r3m_file(tmp_path / 'model.pt', _random_torchvision(18))
    loaded = create_encoder('r3m_resnet18', checkpoint=tmp_path / 'model.pt')
    assert loaded.pretrained_cfg.tag == 'ego4d'
    save_encoder(loaded, tmp_path / 'from_r3m')  # keeps its source
    assert load_encoder(tmp_path / 'from_r3m').pretrained_cfg.tag == 'ego4d'
    save_encoder(create_encoder('r3m_resnet18'), tmp_path / 'ours')  # trained here
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no licence warning for our own weights
        assert load_encoder(tmp_path / 'ours').pretrained_cfg is None
