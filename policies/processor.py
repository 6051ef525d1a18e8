"""Per-policy processors: an environment observation -> the input one policy reads.

LeRobot's preprocessor pattern. The environment side (the closed-loop evaluation, or any
code stepping a sim env in process) gives every policy the same observation vocabulary,
`observation_from_env` of the env's dict:

- `OBS_IMAGE`: the frame of the policy's camera, uint8 `(H, W, 3)`;
- `OBS_STATE`: proprioception `(8,)`;
- `OBS_INSTRUCTION`: the episode's instruction text; `DOMAIN`: the visual domain the
  policy is told it is in ('sim' / 'real');
- `OBS_EXPERT_ACTION`: the scripted expert's action (privileged), only when read;

and, once per episode, the `episode_features` a processor declares (`OBS_GOAL_IMAGE`: the
goal image of a goal-conditioned planner). Each policy names its processor in
`processor_class`; the processor declares the keys it reads (`features`), turns them into
the batch of `policy.select_action`, and turns its output into an env action.

    >>> processor = make_processor(policy, encoder=encoder)
    >>> processor.start_episode({})
    >>> action = processor.postprocess(policy.select_action(processor(observation)))
"""
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from embodied_vision.policies.base import DOMAIN, OBS_IMAGE, OBS_INSTRUCTION, OBS_STATE

__all__ = ['PolicyProcessor', 'make_processor', 'observation_from_env']


def observation_from_env(obs: Mapping, camera: str, domain: str) -> dict:
    """A tabletop env observation (`<camera>/rgb`, `proprio`, `instruction`) in the
    processors' vocabulary; `domain` is what the policy is told."""
    out = {OBS_IMAGE: obs.get(f'{camera}/rgb'), DOMAIN: domain}
    if 'proprio' in obs:
        out[OBS_STATE] = obs['proprio']
    if 'instruction' in obs:
        out[OBS_INSTRUCTION] = str(obs['instruction'])
    return out


class PolicyProcessor:
    """Passes the policy's `input_features` through; subclasses map observations further.

    Args:
        policy: the policy whose input this processor makes.
        encoder: a frozen encoder, for processors that embed frames (`frozen_encoder`).
    """

    #: Whether the policy's behaviour depends on the `DOMAIN` it is told.
    domain_conditioned: ClassVar[bool] = False
    #: Camera read when the policy's config names none.
    default_camera: ClassVar[str] = 'front'
    #: Inputs given once per episode to `start_episode`.
    episode_features: ClassVar[tuple[str, ...]] = ()

    def __init__(self, policy, encoder=None):
        self.policy = policy
        #: Observation keys read at every step.
        self.features: tuple[str, ...] = tuple(getattr(policy, 'input_features', ()))

    @classmethod
    def frozen_encoder(cls, policy, name: str | None = None, checkpoint: str | None = None):
        """The frozen encoder to give this processor (`encoder=`); None when it needs none."""
        return None

    def start_episode(self, episode: Mapping) -> None:
        """A new episode: reset the policy; `episode` holds the `episode_features`."""
        self.policy.reset()

    def __call__(self, obs: Mapping) -> dict:
        """The batch of `policy.select_action` for one environment observation."""
        self.check(obs, self.features)
        return {key: obs[key] for key in self.features}

    def postprocess(self, action) -> np.ndarray:
        """The policy's action as the env's float32 action."""
        return np.asarray(action, np.float32)

    def check(self, obs: Mapping, keys: tuple[str, ...]) -> None:
        """KeyError naming what `keys` lacks in `obs`."""
        missing = [key for key in keys if key not in obs]
        if missing:
            name = getattr(self.policy, 'name', type(self.policy).__name__)
            raise KeyError(f'{name} reads {missing}, missing from the observation '
                           f'(it has {sorted(obs)})')


def make_processor(policy, encoder=None) -> PolicyProcessor:
    """The processor `policy` declares (`policy.processor_class`)."""
    processor_class = getattr(policy, 'processor_class', None)
    if processor_class is None:
        raise TypeError(f'{type(policy).__name__} declares no processor_class: a policy names '
                        'the PolicyProcessor that turns env observations into its input')
    return processor_class(policy, encoder=encoder)
