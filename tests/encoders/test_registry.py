"""The timm-style registry: names, tags, errors and the pretrained configs."""
import warnings

import pytest
import torch

import embodied_vision
from embodied_vision.encoders import (
    _registry,
    create_encoder,
    get_pretrained_cfgs,
    list_encoders,
    register_encoder,
)


def test_r3m_encoders_are_registered_with_tags():
    names = list_encoders()
    assert {'r3m_resnet18', 'r3m_resnet34', 'r3m_resnet50'} <= set(names)
    tagged = list_encoders('r3m_resnet50', with_tags=True)
    assert tagged == ['r3m_resnet50.ego4d', 'r3m_resnet50.tv_in1k']
    assert embodied_vision.list_encoders() == names


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"unknown encoder 'r3m_resnet81'.*r3m_resnet18"):
        create_encoder('r3m_resnet81')


def test_unknown_tag_lists_known_tags():
    with pytest.raises(ValueError, match=r'ego4d.*tv_in1k|tv_in1k.*ego4d'):
        create_encoder('r3m_resnet18.imagenet22k')


def test_tag_selects_pretrained_cfg_and_no_tag_means_no_published_weights():
    assert create_encoder('r3m_resnet18.tv_in1k').pretrained_cfg.tag == 'tv_in1k'
    assert create_encoder('r3m_resnet18').pretrained_cfg is None  # random init
    cfgs = get_pretrained_cfgs('r3m_resnet18')
    assert cfgs[0].tag == 'ego4d' and cfgs[0].license == 'MIT'


def test_create_returns_eval_mode_and_records_kwargs():
    encoder = create_encoder('r3m_resnet18', image_size=128)
    assert not encoder.training
    assert encoder.init_kwargs == {'image_size': 128}
    assert encoder.input_contract.default_size == (128, 128)


def test_bad_override_is_a_clear_error():
    with pytest.raises(TypeError, match='colour'):
        create_encoder('r3m_resnet18', colour=3)


def test_duplicate_registration_warns_and_last_wins():
    def tiny_probe_encoder():
        return torch.nn.Identity()
    register_encoder()(tiny_probe_encoder)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            register_encoder()(tiny_probe_encoder)
        assert any('registered twice' in str(w.message) for w in caught)
    finally:
        _registry._ENTRYPOINTS.pop('tiny_probe_encoder')
        _registry._PRETRAINED.pop('tiny_probe_encoder')


def test_load_pretrained_fills_a_built_encoder_from_the_factory(tmp_path):
    from embodied_vision.checkpoints import save_encoder
    from embodied_vision.encoders import load_pretrained
    source = create_encoder('r3m_resnet18')
    with torch.no_grad():
        source.trunk.conv1.weight.add_(1.0)
    save_encoder(source, tmp_path / 'enc')
    target = create_encoder('r3m_resnet18')
    load_pretrained(target, tmp_path / 'enc')
    assert torch.equal(target.trunk.conv1.weight, source.trunk.conv1.weight)
    assert embodied_vision.load_encoder(tmp_path / 'enc').name == 'r3m_resnet18'
