"""One artefact format for encoders, policies and heads: envelope, licence, legacy files."""
import json
import warnings

import pytest
import safetensors.torch
import torch
from torch import nn

from embodied_vision.checkpoints import CheckpointError
from embodied_vision.checkpoints.artifact import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    licence_of,
    read_artifact,
    save_artifact,
)
from embodied_vision.encoders._registry import PretrainedCfg

NC = PretrainedCfg(tag='t', formats=(), license='CC-BY-NC-SA-4.0', non_commercial=True)
MIT = PretrainedCfg(tag='m', formats=(), license='MIT')


def _module(*cfgs) -> nn.Module:
    torch.manual_seed(0)
    module = nn.Sequential(*(nn.Linear(3, 3) for _ in cfgs or (None,)))
    for sub, cfg in zip(module, cfgs):
        sub.pretrained_cfg = cfg
    return module


def test_round_trip_keeps_weights_envelope_and_the_kind_fields(tmp_path):
    module = _module()
    path = save_artifact(tmp_path / 'a', module, 'policy', 'toy', {'hidden': [3, 3]})
    stored = json.loads((path / CONFIG_FILE).read_text())
    assert (stored['format'], stored['format_version'], stored['kind'], stored['name']) == (
        'embodied_vision', 2, 'policy', 'toy')
    assert set(stored['versions']) == {'embodied_vision', 'torch'}
    found = read_artifact(path, kind='policy', name='toy')
    assert found.config == {'hidden': [3, 3]} and found.license == ''
    assert found.state.keys() == module.state_dict().keys()
    for key, value in module.state_dict().items():
        assert torch.equal(found.state[key], value)
    # the weights file alone says what it holds
    (path / CONFIG_FILE).unlink()
    alone = read_artifact(path / WEIGHTS_FILE)
    assert (alone.kind, alone.name, alone.config) == ('policy', 'toy', {'hidden': [3, 3]})


def test_licence_follows_published_weights_into_every_artefact(tmp_path):
    assert licence_of(_module()) == ('', False)
    timm_style = _module()
    timm_style.pretrained_cfg = {'license': 'apache-2.0'}  # describes the model, not weights
    assert licence_of(timm_style) == ('', False)
    assert licence_of(_module(MIT, NC)) == ('MIT + CC-BY-NC-SA-4.0', True)
    path = save_artifact(tmp_path / 'head', _module(NC), 'head', 'toy_head', {})
    assert json.loads((path / CONFIG_FILE).read_text())['non_commercial'] is True
    with pytest.warns(UserWarning, match='CC-BY-NC-SA-4.0.*non-commercial'):
        found = read_artifact(path)
    assert found.non_commercial
    # a model built on a read-back artefact keeps the mark when saved again
    rebuilt = _module()
    rebuilt.weights_license, rebuilt.non_commercial = found.license, found.non_commercial
    assert licence_of(nn.Sequential(rebuilt)) == ('CC-BY-NC-SA-4.0', True)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        read_artifact(save_artifact(tmp_path / 'mit', _module(MIT), 'head', 'toy_head', {}))


def test_wrong_kind_name_or_envelope_is_refused(tmp_path):
    path = save_artifact(tmp_path / 'a', _module(), 'encoder', 'r3m_resnet18', {})
    with pytest.raises(CheckpointError, match="holds encoder 'r3m_resnet18', not a policy"):
        read_artifact(path, kind='policy')
    with pytest.raises(CheckpointError, match="not 'mbs'"):
        read_artifact(path, kind='encoder', name='mbs')
    with pytest.raises(ValueError, match='kind'):
        save_artifact(tmp_path / 'b', _module(), 'optimizer', 'x', {})
    with pytest.raises(ValueError, match=r"envelope keys \['license'\]"):
        save_artifact(tmp_path / 'c', _module(), 'head', 'x', {'license': 'MIT'})
    config = json.loads((path / CONFIG_FILE).read_text())
    (path / CONFIG_FILE).write_text(json.dumps({**config, 'format_version': 99}))
    with pytest.raises(CheckpointError, match='format_version 99'):
        read_artifact(path)
    (path / CONFIG_FILE).write_text(json.dumps({**config, 'format': 'something_else'}))
    with pytest.raises(CheckpointError, match="format 'something_else'"):
        read_artifact(path)


@pytest.mark.parametrize('legacy, kind, name', [
    ({'format': 'embodied_vision', 'format_version': 1, 'name': 'r3m_resnet18', 'tag': '',
      'kwargs': {}}, 'encoder', 'r3m_resnet18'),
    ({'format': 'embodied_vision.pair_geometry', 'format_version': 1, 'backbone': 'b',
      'license': 'CC-BY-NC-SA-4.0', 'non_commercial': True}, 'head', 'pair_geometry'),
    ({'type': 'mbs', 'hidden_dim': 8}, 'policy', 'mbs'),
])
def test_files_written_before_format_version_2_still_read(tmp_path, legacy, kind, name):
    tmp_path.joinpath(CONFIG_FILE).write_text(json.dumps(legacy))
    safetensors.torch.save_file({'w': torch.ones(2)}, str(tmp_path / WEIGHTS_FILE))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        found = read_artifact(tmp_path, kind=kind)
    assert (found.kind, found.name, found.format_version) == (kind, name, 1)
    assert found.non_commercial == bool(legacy.get('non_commercial'))
    assert len(caught) == int(found.non_commercial)
    assert 'format' not in found.config and torch.equal(found.state['w'], torch.ones(2))
