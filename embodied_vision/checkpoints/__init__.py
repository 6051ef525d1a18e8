"""Checkpoint readers: detect the format from the keys, remap, validate, load strictly.

Formats: official R3M `model.pt` (`r3m`), torchvision/timm ResNet state dicts
(`torchvision_resnet`) and our own safetensors + JSON format (`embodied_vision`).
"""
from embodied_vision.checkpoints import r3m, torchvision_resnet  # noqa: F401  (registration)
from embodied_vision.checkpoints._format import FORMATS, CheckpointError, CheckpointFormat
from embodied_vision.checkpoints.croco import CROCO_FORMAT  # noqa: F401  (registration)
from embodied_vision.checkpoints.loader import (
    load_encoder,
    load_pretrained,
    load_state_strict,
    read_checkpoint,
)
from embodied_vision.checkpoints.native import save_encoder

__all__ = ['CheckpointError', 'CheckpointFormat', 'FORMATS', 'load_encoder', 'load_pretrained',
           'load_state_strict', 'read_checkpoint', 'save_encoder']
