"""The sim suite's scripted expert behind the policy contract.

The expert reads privileged simulator state, so it needs the env. Two ways to give it one:

- in-process: `ScriptedExpertPolicy(env=env)` calls `env.unwrapped.expert_action()`;
- over ROS: `sim_node` publishes the expert's action for each observation (privileged, on
  `expert_action`, stamped like the observation) and `policy_node` puts it in the observation
  under `OBS_EXPERT_ACTION`; `ScriptedExpertPolicy()` returns it. This keeps sim and policy
  in separate processes (launch files) and still exercises the whole graph.
"""
import numpy as np
import torch

from embodied_vision.policies.base import OBS_EXPERT_ACTION, as_batch
from embodied_vision.policies.processor import PolicyProcessor

__all__ = ['ScriptedExpertPolicy']


class ScriptedExpertPolicy:
    """A non-trainable policy: the scripted expert of the sim suite.

    Args:
        env: a tabletop env (or a gymnasium wrapper of one) to query in-process; None to read
            the expert action from the observation (`OBS_EXPERT_ACTION`).
        action_dim: size of the action vector.
    """

    name = 'scripted_expert'
    #: passes `input_features` through: the closed-loop evaluation supplies the privileged
    #: `OBS_EXPERT_ACTION` when it is read, as `sim_node` does over ROS
    processor_class = PolicyProcessor

    def __init__(self, env=None, action_dim: int = 4):
        self.env = env
        self.action_dim = int(action_dim)
        self.input_features = () if env is not None else (OBS_EXPERT_ACTION,)

    def reset(self) -> None:
        """Nothing to clear: the env builds a fresh expert every episode."""

    def select_action(self, obs: dict) -> torch.Tensor:
        """The expert's `(action_dim,)` action for the current state."""
        if self.env is not None:
            action = np.asarray(self.env.unwrapped.expert_action(), np.float32)
            return torch.from_numpy(action)
        if OBS_EXPERT_ACTION not in obs:
            raise KeyError(f'{OBS_EXPERT_ACTION!r} is missing from the observation: the '
                           'scripted expert needs the sim to publish its privileged action')
        action, single = as_batch(obs[OBS_EXPERT_ACTION], OBS_EXPERT_ACTION, self.action_dim)
        return action[0] if single else action

    def forward(self, batch):
        raise TypeError('the scripted expert is not trainable; train a bc_mlp policy on its '
                        'episodes instead')
