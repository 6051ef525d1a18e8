"""The policy contract: one config serialisation, the PreTrainedPolicy base, the processors."""
from dataclasses import dataclass, field
import json
from typing import ClassVar

import numpy as np
import pytest
import torch

from embodied_vision.data.images import to_batch
from embodied_vision.encoders import create_encoder
from embodied_vision.policies import (
    DOMAIN,
    OBS_EMBEDDING,
    OBS_EXPERT_ACTION,
    OBS_GOAL_IMAGE,
    OBS_IMAGE,
    OBS_INSTRUCTION,
    OBS_STATE,
    BCMLPConfig,
    BCMLPPolicy,
    PolicyConfig,
    PolicyProcessor,
    PreTrainedPolicy,
    ScriptedExpertPolicy,
    load_policy,
    make_policy,
    make_processor,
    observation_from_env,
)
from embodied_vision.policies.lang4sim2real import L4SBCConfig, L4SBCPolicy
from embodied_vision.policies.mbs import TOOL_QUAT, ActionPool, MbSConfig, MbSPolicy


@dataclass
class _Optimiser:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class _NestedConfig(PolicyConfig):
    type: ClassVar[str] = 'nested'

    widths: tuple[int, ...] = (4, 8)
    optimiser: _Optimiser = field(default_factory=_Optimiser)
    cameras: list[str] = field(default_factory=lambda: ['front'])
    clip: float | None = None


def test_one_serialisation_handles_nested_dataclasses_and_tuples():
    config = _NestedConfig(widths=(1, 2, 3), optimiser=_Optimiser(betas=(0.5, 0.6)), clip=2.0)
    saved = json.loads(json.dumps(config.to_dict()))
    assert saved == {'type': 'nested', 'widths': [1, 2, 3],
                     'optimiser': {'lr': 1e-3, 'betas': [0.5, 0.6]}, 'cameras': ['front'],
                     'clip': 2.0}
    loaded = _NestedConfig.from_dict(saved)
    assert loaded == config and isinstance(loaded.optimiser.betas, tuple)
    assert _NestedConfig.from_dict({'clip': None}).clip is None
    with pytest.raises(ValueError, match=r"unknown _NestedConfig fields \['colour'\]"):
        _NestedConfig.from_dict({'colour': 'red'})
    with pytest.raises(ValueError, match=r"unknown _NestedConfig.optimiser fields "
                                         r"\['momentum'\]"):
        _NestedConfig.from_dict({'optimiser': {'momentum': 0.9}})
    with pytest.raises(ValueError, match=r'_NestedConfig.optimiser.betas must hold 2 values'):
        _NestedConfig.from_dict({'optimiser': {'betas': [0.9]}})
    with pytest.raises(ValueError, match="config type is 'bc_mlp', expected 'nested'"):
        _NestedConfig.from_dict({'type': 'bc_mlp'})


@pytest.mark.parametrize('config', [
    BCMLPConfig(embed_dim=16, hidden_dims=(8,)),
    L4SBCConfig(image_size=32, log_std_range=(-5.0, -1.0)),
    MbSConfig(dynamics_hidden=(16, 16), temperature=0.1),
], ids=lambda config: config.type)
def test_every_policy_config_round_trips_through_json_and_refuses_strangers(config):
    saved = json.loads(json.dumps(config.to_dict()))
    assert saved['type'] == config.type
    assert type(config).from_dict(saved) == config
    with pytest.raises(ValueError, match=f'unknown {type(config).__name__} fields'):
        type(config).from_dict({**saved, 'colour': 'red'})
    other = 'mbs' if config.type != 'mbs' else 'bc_mlp'
    with pytest.raises(ValueError, match=f'config type is {other!r}'):
        type(config).from_dict({**saved, 'type': other})


def test_the_base_class_checks_subclasses_and_configs():
    with pytest.raises(TypeError, match="must set the class attribute 'processor_class'"):
        class _NoProcessor(PreTrainedPolicy):  # noqa: F841
            name = 'bc_mlp'
            config_class = BCMLPConfig
    with pytest.raises(TypeError, match="PolicyConfig whose type is 'other'"):
        class _WrongConfig(PreTrainedPolicy):  # noqa: F841
            name = 'other'
            config_class = BCMLPConfig
            processor_class = PolicyProcessor
    with pytest.raises(TypeError, match='BCMLPPolicy takes a BCMLPConfig, got L4SBCConfig'):
        BCMLPPolicy(L4SBCConfig())
    assert isinstance(make_policy('bc_mlp'), PreTrainedPolicy)


def test_save_and_load_go_through_the_base_class(tmp_path):
    policy = MbSPolicy(MbSConfig(image_size=32, resize_to=36, proj_dim=8, dynamics_hidden=(),
                                 encoder='lang4sim2real_resnet18', step_size=0.02),
                       ActionPool(torch.eye(3)), max_delta=0.01)
    saved = json.loads((policy.save_pretrained(tmp_path / 'mbs') / 'config.json').read_text())
    assert saved['type'] == 'mbs' and saved['pool_size'] == 3 and saved['max_delta'] == 0.01
    loaded = load_policy(tmp_path / 'mbs')
    assert loaded.config == policy.config and loaded.steps_per_move == 2
    assert not loaded.training
    (tmp_path / 'bad').mkdir()
    for name in ('model.safetensors', 'config.json'):
        (tmp_path / 'bad' / name).write_bytes((tmp_path / 'mbs' / name).read_bytes())
    (tmp_path / 'bad' / 'config.json').write_text(json.dumps(
        {k: v for k, v in saved.items() if k != 'pool_size'}))
    with pytest.raises(ValueError, match=r"lacks \['pool_size'\]"):
        load_policy(tmp_path / 'bad')


def _env_observation(rng):
    return {'front/rgb': rng.integers(0, 256, (40, 48, 3), dtype=np.uint8),
            'proprio': rng.normal(size=8).astype(np.float32), 'instruction': 'reach the cube'}


def test_observation_from_env_names_what_every_processor_reads():
    obs = _env_observation(np.random.default_rng(0))
    out = observation_from_env(obs, 'front', 'real')
    assert set(out) == {OBS_IMAGE, OBS_STATE, OBS_INSTRUCTION, DOMAIN}
    assert out[OBS_IMAGE] is obs['front/rgb'] and out[OBS_STATE] is obs['proprio']
    assert out[OBS_INSTRUCTION] == 'reach the cube' and out[DOMAIN] == 'real'


def test_bc_processor_embeds_the_frame_as_the_training_data_was():
    encoder = create_encoder('r3m_resnet18').eval()
    policy = make_policy('bc_mlp', embed_dim=512, image_size=32)
    with pytest.raises(ValueError, match='frozen encoder'):
        make_processor(policy)
    processor = make_processor(policy, encoder=encoder)
    assert processor.features == (OBS_IMAGE, OBS_STATE)
    obs = observation_from_env(_env_observation(np.random.default_rng(1)), 'front', 'sim')
    batch = processor(obs)
    with torch.no_grad():
        expected = encoder(to_batch([obs[OBS_IMAGE]], (32, 32)))[0]
    torch.testing.assert_close(batch[OBS_EMBEDDING], expected, rtol=0, atol=0)
    torch.testing.assert_close(batch[OBS_STATE], torch.from_numpy(obs[OBS_STATE]))
    assert processor.postprocess(policy.select_action(batch)).dtype == np.float32
    with pytest.raises(KeyError, match=r"bc_mlp reads \['observation.state'\]"):
        processor({OBS_IMAGE: obs[OBS_IMAGE]})
    images_only = make_processor(make_policy('bc_mlp', state_dim=0), encoder=encoder)
    assert images_only.features == (OBS_IMAGE,)


def test_l4s_processor_passes_the_text_and_the_domain_it_is_told():
    policy = L4SBCPolicy(L4SBCConfig(image_size=32, hidden_dims=(16,)))
    processor = make_processor(policy)
    assert type(processor).domain_conditioned and not PolicyProcessor.domain_conditioned
    obs = observation_from_env(_env_observation(np.random.default_rng(2)), 'front', 'sim')
    assert processor(obs) == {k: obs[k] for k in (OBS_IMAGE, OBS_INSTRUCTION, OBS_STATE,
                                                  DOMAIN)}


def test_mbs_processor_reads_the_tool_orientation_and_sets_the_goal_per_episode():
    policy = MbSPolicy(MbSConfig(image_size=32, resize_to=36, proj_dim=8, dynamics_hidden=()),
                       ActionPool(torch.eye(3)))
    processor = make_processor(policy)
    assert processor.episode_features == (OBS_GOAL_IMAGE,)
    assert type(processor).default_camera == 'wrist'
    obs = observation_from_env(_env_observation(np.random.default_rng(3)), 'front', 'sim')
    batch = processor(obs)
    np.testing.assert_array_equal(batch[TOOL_QUAT], obs[OBS_STATE][3:7])
    with pytest.raises(KeyError, match='goal_image'):
        processor.start_episode({})
    processor.start_episode({OBS_GOAL_IMAGE: obs[OBS_IMAGE]})
    assert policy.select_action(batch).shape == (4,)


def test_scripted_expert_processor_reads_the_privileged_action():
    assert make_processor(ScriptedExpertPolicy()).features == (OBS_EXPERT_ACTION,)
    assert make_processor(ScriptedExpertPolicy(env=object())).features == ()
    with pytest.raises(TypeError, match='declares no processor_class'):
        make_processor(object())


@dataclass
class _EchoConfig(PolicyConfig):
    type: ClassVar[str] = 'echo'

    action_dim: int = 4


class _EchoProcessor(PolicyProcessor):
    domain_conditioned = True

    def __init__(self, policy, encoder=None):
        super().__init__(policy)
        self.features = (OBS_INSTRUCTION, DOMAIN, OBS_EXPERT_ACTION)


class _EchoPolicy(PreTrainedPolicy):
    """A policy the evaluation has never heard of: it replays the expert and logs its input."""

    name = 'echo'
    config_class = _EchoConfig
    processor_class = _EchoProcessor

    def __init__(self, config=None):
        super().__init__(config)
        self.seen, self.resets = [], 0

    def reset(self):
        self.resets += 1

    def select_action(self, obs):
        self.seen.append(dict(obs))
        return obs[OBS_EXPERT_ACTION]

    def forward(self, batch):
        raise NotImplementedError


def test_evaluation_runs_a_new_policy_through_its_processor_alone():
    pytest.importorskip('mujoco')
    import gymnasium as gym

    from embodied_vision.policies.evaluation import evaluate
    import embodied_vision.sim  # noqa: F401  (registers the envs)

    def make_env():
        return gym.make('embodied_vision/Reach-v0', cameras=('front',), image_size=32,
                        depth=False, disable_env_checker=True)

    policy = _EchoPolicy()
    result = evaluate(policy, make_env, episodes=2, seed=3, domain='real')
    assert result['success_rate'] == 1.0 and policy.resets == 2
    assert {frozenset(obs) for obs in policy.seen} == {frozenset(_EchoProcessor(policy).features)}
    assert {obs[DOMAIN] for obs in policy.seen} == {'real'}

    class _Unprovided(_EchoProcessor):
        episode_features = ('observation.map',)

    _EchoPolicy.processor_class = _Unprovided
    try:
        with pytest.raises(ValueError, match=r"reads \['observation.map'\], which the "
                                             'evaluation does not provide'):
            evaluate(policy, make_env, episodes=1)
    finally:
        _EchoPolicy.processor_class = _EchoProcessor
