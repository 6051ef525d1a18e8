"""Reader for plain torchvision / timm ResNet state dicts (e.g. ImageNet weights).

Both libraries name ResNet parameters the same way (`conv1`, `bn1`, `layer1..4`,
`downsample.0/1`, `fc`). The classifier `fc.*` is dropped: encoders return pooled features.
Wrappers (`state_dict`, `model`) and a DataParallel `module.` prefix are removed.
"""
from collections.abc import Mapping

from embodied_vision.checkpoints._format import CheckpointFormat, register_format, unwrap

__all__ = ['TORCHVISION_RESNET_FORMAT']


def _flat(container: Mapping) -> dict:
    state = unwrap(container)
    if all(str(k).startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return dict(state)


def _detect(container: Mapping) -> bool:
    keys = _flat(container)
    return 'conv1.weight' in keys and 'layer1.0.conv1.weight' in keys


def _convert(container: Mapping, model) -> dict:
    return {'trunk.' + k: v for k, v in _flat(container).items() if not k.startswith('fc.')}


TORCHVISION_RESNET_FORMAT = register_format(CheckpointFormat(
    name='torchvision_resnet',
    description="torchvision/timm ResNet state dict (keys 'conv1.weight', 'layer1.0.*')",
    detect=_detect, convert=_convert))
