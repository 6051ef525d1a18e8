"""`mbs` processor: the tool-camera frame and the tool orientation, a goal image per episode.

The planner scores pool directions in the tool frame and rotates the best one to the world
with the tool orientation, the quaternion (w, x, y, z) in `OBS_STATE[3:7]`. Its goal image is
an episode input: `start_episode` encodes `OBS_GOAL_IMAGE` once (the closed-loop evaluation
renders it by running the scripted expert to success from the episode's seed).
"""
from collections.abc import Mapping

import numpy as np

from embodied_vision.policies.base import OBS_GOAL_IMAGE, OBS_IMAGE, OBS_STATE
from embodied_vision.policies.processor import PolicyProcessor

__all__ = ['IMAGE', 'TOOL_QUAT', 'MbSProcessor']

#: `MbSPolicy.select_action` input: the tool-camera frame, uint8 `(H, W, 3)` or `(3, H, W)`.
IMAGE = 'image'
#: `MbSPolicy.select_action` input: the tool orientation in the world, (w, x, y, z).
TOOL_QUAT = 'tool_quat'


class MbSProcessor(PolicyProcessor):
    """`OBS_IMAGE` -> `IMAGE`, `OBS_STATE[3:7]` -> `TOOL_QUAT`; sets the episode's goal."""

    default_camera = 'wrist'
    episode_features = (OBS_GOAL_IMAGE,)

    def __init__(self, policy, encoder=None):
        super().__init__(policy)
        self.features = (OBS_IMAGE, OBS_STATE)

    def start_episode(self, episode: Mapping) -> None:
        """Reset the planner and encode the episode's goal image."""
        self.policy.reset()
        self.check(episode, self.episode_features)
        self.policy.set_goal(episode[OBS_GOAL_IMAGE])

    def __call__(self, obs: Mapping) -> dict:
        self.check(obs, self.features)
        return {IMAGE: obs[OBS_IMAGE], TOOL_QUAT: np.asarray(obs[OBS_STATE])[3:7]}
