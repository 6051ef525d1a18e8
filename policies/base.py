"""The policy contract: batch keys (LeRobot naming) and the `PreTrainedPolicy` base class.

Every trainable policy derives from `PreTrainedPolicy` (LeRobot's pattern): it names itself
(`name`, the `type` in its config.json), its config dataclass (`config_class`, a
`PolicyConfig`) and the processor that turns an environment observation into its input
(`processor_class`, see `embodied_vision.policies.processor`), and implements `reset`,
`select_action` and `forward`. Saving and loading are shared.
"""
import abc
from collections.abc import Mapping
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from embodied_vision.checkpoints import load_state_strict
from embodied_vision.checkpoints.artifact import read_artifact, save_artifact
from embodied_vision.policies.configuration import PolicyConfig

__all__ = ['ACTION', 'DOMAIN', 'OBS_EMBEDDING', 'OBS_EXPERT_ACTION', 'OBS_GOAL_IMAGE',
           'OBS_IMAGE', 'OBS_INSTRUCTION', 'OBS_STATE', 'PreTrainedPolicy', 'as_batch']

#: Frozen-encoder embedding of the camera frame, `(B, embed_dim)`.
OBS_EMBEDDING = 'observation.embedding'
#: Proprioception, `(B, state_dim)`: end-effector xyz, quaternion (w, x, y, z), gripper width.
OBS_STATE = 'observation.state'
#: Camera frame, uint8 `(H, W, 3)` or `(B, 3, H, W)` (policies that embed images themselves).
OBS_IMAGE = 'observation.image'
#: The episode's instruction text (with the visual domain under `DOMAIN`).
OBS_INSTRUCTION = 'observation.instruction'
#: The visual domain a policy is told it acts in: 'sim' / 'real'.
DOMAIN = 'domain'
#: The scripted expert's action for the same instant (privileged; sim only).
OBS_EXPERT_ACTION = 'observation.expert_action'
#: The episode's goal image, uint8 `(H, W, 3)` (goal-conditioned planners; once per episode).
OBS_GOAL_IMAGE = 'observation.goal_image'
#: Action, `(B, action_dim)`: `[dx, dy, dz, grip]` in [-1, 1] for the tabletop suite.
ACTION = 'action'


class PreTrainedPolicy(nn.Module, abc.ABC):
    """Base of the trainable policies: config type check, `save_pretrained`, `from_pretrained`.

    Subclasses set the class attributes `name`, `config_class` (whose `type` is `name`) and
    `processor_class`; `load_overrides` lists config fields replaced when a saved policy is
    loaded (e.g. `encoder_checkpoint`: the weights come from the saved state dict).
    """

    name: ClassVar[str]
    config_class: ClassVar[type[PolicyConfig]]
    processor_class: ClassVar[type]
    load_overrides: ClassVar[Mapping] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for attribute in ('name', 'config_class', 'processor_class'):
            if not getattr(cls, attribute, None):
                raise TypeError(f'{cls.__name__} must set the class attribute {attribute!r} '
                                '(see PreTrainedPolicy)')
        if not issubclass(cls.config_class, PolicyConfig) or cls.config_class.type != cls.name:
            raise TypeError(f'{cls.__name__}.config_class must be a PolicyConfig whose type is '
                            f'{cls.name!r}, got {cls.config_class.__name__}')

    def __init__(self, config: PolicyConfig | None = None):
        super().__init__()
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f'{type(self).__name__} takes a {self.config_class.__name__}, got '
                            f'{type(config).__name__}')
        self.config = config

    # ------------------------------------------------------------------------ policy API
    @abc.abstractmethod
    def reset(self) -> None:
        """Clear what is carried between steps; called at the start of every episode."""

    @abc.abstractmethod
    def select_action(self, obs: dict):
        """The action for one observation (the batch `processor_class` makes)."""

    @abc.abstractmethod
    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """The training loss on a batch and a dict of floats to log."""

    # ------------------------------------------------------------------------ save / load
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the policy as a `policy` artefact (`checkpoints.artifact`) to directory `path`;
        the licence of any published weights inside (its encoder's) is recorded."""
        return save_artifact(path, self, 'policy', self.name, self.saved_config())

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = 'cpu'):
        """Rebuild from `save_pretrained` output: strict load, on `device`, eval mode."""
        found = read_artifact(path, kind='policy', name=cls.name)
        policy = cls.from_saved_config(found.config)
        load_state_strict(policy, found.state, f'{found.path} ({cls.name} policy)')
        policy.weights_license, policy.non_commercial = found.license, found.non_commercial
        policy.source_path = Path(path)  # where paths recorded relative to it resolve
        return policy.to(device).eval()

    def saved_config(self) -> dict:
        """The JSON object saved as config.json (the config; policies may add their own)."""
        return self.config.to_dict()

    @classmethod
    def from_saved_config(cls, saved: Mapping) -> 'PreTrainedPolicy':
        """An untrained policy shaped as the saved one (its weights are loaded after)."""
        return cls(cls.config_class.from_dict({**saved, **cls.load_overrides}))


def as_batch(value, name: str, width: int, device=None) -> tuple[torch.Tensor, bool]:
    """`value` as a float32 `(B, width)` tensor; also whether it came without a batch axis."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f'{name} must be an array or tensor, got {type(value).__name__}'
                            ) from err
    single = value.ndim == 1
    value = value[None] if single else value
    if value.ndim != 2 or value.shape[1] != width:
        raise ValueError(f'{name} must have shape ({width},) or (B, {width}), got '
                         f'{tuple(value.shape if not single else value.shape[1:])}')
    return value.to(device=device, dtype=torch.float32), single
