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

__all__ = ['ActionPool', 'GripperClassifier', 'MbSConfig', 'MbSModel', 'MbSPolicy', 'mbs_loss',
           'tool_frame_directions']
