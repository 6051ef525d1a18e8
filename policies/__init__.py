"""Policies and planners, installed as `embodied_vision.policies`.

Every policy follows the LeRobot-style contract: `reset()`, `select_action(obs) -> action`,
`forward(batch) -> (loss, logs)`, `save_pretrained(dir)` / `from_pretrained(dir)`
(safetensors weights + JSON config):

    >>> from embodied_vision.policies import make_policy, load_policy
    >>> policy = make_policy('bc_mlp', embed_dim=512, state_dim=8, action_dim=4)
    >>> policy.save_pretrained('runs/bc'); policy = load_policy('runs/bc')
"""
from embodied_vision.policies.base import (
    ACTION,
    OBS_EMBEDDING,
    OBS_EXPERT_ACTION,
    OBS_IMAGE,
    OBS_INSTRUCTION,
    OBS_STATE,
)
from embodied_vision.policies.bc import BCMLPConfig, BCMLPPolicy
from embodied_vision.policies.factory import list_policies, load_policy, make_policy
from embodied_vision.policies.scripted import ScriptedExpertPolicy

__all__ = ['ACTION', 'BCMLPConfig', 'BCMLPPolicy', 'OBS_EMBEDDING', 'OBS_EXPERT_ACTION',
           'OBS_IMAGE', 'OBS_INSTRUCTION', 'OBS_STATE', 'ScriptedExpertPolicy', 'list_policies',
           'load_policy', 'make_policy']
