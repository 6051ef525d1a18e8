"""Policies and planners, installed as `embodied_vision.policies`.

Every trainable policy derives from `PreTrainedPolicy` (LeRobot's pattern): `reset()`,
`select_action(obs) -> action`, `forward(batch) -> (loss, logs)`, `save_pretrained(dir)` /
`from_pretrained(dir)` (safetensors weights + JSON config), a `PolicyConfig` dataclass and a
`PolicyProcessor` that turns environment observations into its input:

    >>> from embodied_vision.policies import make_policy, load_policy
    >>> policy = make_policy('bc_mlp', embed_dim=512, state_dim=8, action_dim=4)
    >>> policy.save_pretrained('runs/bc'); policy = load_policy('runs/bc')
"""
from embodied_vision.policies.base import (
    ACTION,
    DOMAIN,
    OBS_EMBEDDING,
    OBS_EXPERT_ACTION,
    OBS_GOAL_IMAGE,
    OBS_IMAGE,
    OBS_INSTRUCTION,
    OBS_STATE,
    PreTrainedPolicy,
)
from embodied_vision.policies.bc import BCMLPConfig, BCMLPPolicy
from embodied_vision.policies.configuration import PolicyConfig
from embodied_vision.policies.factory import list_policies, load_policy, make_policy
from embodied_vision.policies.processor import (
    PolicyProcessor,
    make_processor,
    observation_from_env,
)
from embodied_vision.policies.scripted import ScriptedExpertPolicy

__all__ = ['ACTION', 'BCMLPConfig', 'BCMLPPolicy', 'DOMAIN', 'OBS_EMBEDDING',
           'OBS_EXPERT_ACTION', 'OBS_GOAL_IMAGE', 'OBS_IMAGE', 'OBS_INSTRUCTION', 'OBS_STATE',
           'PolicyConfig', 'PolicyProcessor', 'PreTrainedPolicy', 'ScriptedExpertPolicy',
           'list_policies', 'load_policy', 'make_policy', 'make_processor',
           'observation_from_env']
