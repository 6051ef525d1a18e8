"""Manipulate-by-Seeing (`mbs`): embedding distance + latent dynamics + greedy planner."""
from embodied_vision.policies.mbs.configuration_mbs import MbSConfig
from embodied_vision.policies.mbs.modeling_mbs import (
    ActionPool,
    GripperClassifier,
    MbSModel,
    MbSPolicy,
    mbs_loss,
    tool_frame_directions,
)
from embodied_vision.policies.mbs.processor_mbs import IMAGE, TOOL_QUAT, MbSProcessor

__all__ = ['IMAGE', 'TOOL_QUAT', 'ActionPool', 'GripperClassifier', 'MbSConfig', 'MbSModel',
           'MbSPolicy', 'MbSProcessor', 'mbs_loss', 'tool_frame_directions']
