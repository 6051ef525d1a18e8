"""Reader for the official R3M `model.pt` (https://github.com/facebookresearch/r3m).

Layout: `torch.load(path)['r3m']` is a state dict saved from `nn.DataParallel(R3M)`, so keys
start with `module.`; the ResNet lives under `module.convnet.` (no `fc`), and the language
encoder / reward head (`module.lang_enc.*`, `module.lang_rew.*`) are dropped, as upstream's
`load_r3m` does.
"""
from collections.abc import Mapping

from embodied_vision.checkpoints._format import CheckpointFormat, register_format

__all__ = ['R3M_FORMAT']

_CONVNET = 'module.convnet.'
_LANGUAGE = ('module.lang_enc.', 'module.lang_rew.')


def _state(container: Mapping) -> Mapping:
    return container['r3m'] if isinstance(container.get('r3m'), Mapping) else container


def _detect(container: Mapping) -> bool:
    return any(str(k).startswith(_CONVNET) for k in _state(container))


def _convert(container: Mapping, model) -> dict:
    out = {}
    for key, value in _state(container).items():
        if key.startswith(_LANGUAGE):
            continue
        # Anything that is not the convnet is kept under its own name so a strict load
        # reports it as unexpected instead of silently dropping it.
        out['trunk.' + key[len(_CONVNET):] if key.startswith(_CONVNET) else key] = value
    return out


R3M_FORMAT = register_format(CheckpointFormat(
    name='r3m', description="official R3M model.pt (state dict under 'r3m', keys "
                            "'module.convnet.*')",
    detect=_detect, convert=_convert))
