"""Checkpoint readers: detect the format from the keys, remap, validate, load strictly.

Formats: official R3M `model.pt` (`r3m`), torchvision/timm ResNet state dicts
(`torchvision_resnet`), official CroCo files (`croco`), official NeRF-MAE pretraining and
fine-tuned NeRF-RPN files (`nerf_mae`, `nerf_mae_rpn`), official I2P-MAE pretraining files
(`i2p_mae`) and our own artefacts
(`embodied_vision`, `checkpoints.artifact`: every encoder, policy and head we write). The
readers know no models: `embodied_vision.create_encoder(name, checkpoint=path)` and
`embodied_vision.load_encoder(path)` join them to the registry.
"""
from embodied_vision.checkpoints import r3m, torchvision_resnet  # noqa: F401  (registration)
from embodied_vision.checkpoints._format import FORMATS, CheckpointError, CheckpointFormat
from embodied_vision.checkpoints.artifact import read_artifact, save_artifact, save_encoder
from embodied_vision.checkpoints.croco import CROCO_FORMAT  # noqa: F401  (registration)
from embodied_vision.checkpoints.i2p_mae import I2P_MAE_FORMAT  # noqa: F401  (registration)
from embodied_vision.checkpoints.loader import (
    load_checkpoint,
    load_head,
    load_state_strict,
    read_checkpoint,
)
from embodied_vision.checkpoints.nerf_mae import NERF_MAE_FORMAT  # noqa: F401  (registration)

__all__ = ['CheckpointError', 'CheckpointFormat', 'FORMATS', 'load_checkpoint', 'load_head',
           'load_state_strict', 'read_artifact', 'read_checkpoint', 'save_artifact',
           'save_encoder']
