"""Official I2P-MAE / Point-M2AE checkpoints (https://arxiv.org/abs/2212.06785): detect, remap.

The pretraining file `pre-train.pth` is `{'base_model', 'optimizer', 'epoch', 'metrics',
'best_metrics'}`, `base_model` a flat state dict of the whole pretraining model. Single-GPU
runs save it through DataParallel, so keys may start with `module.`; that prefix is stripped.
The frozen CLIP (`clip_model.*`) is not ours and is dropped. An encoder keeps `h_encoder.*`
(strictly: every key of it must be there, with its shape); the full pretraining model also
takes the decoder and the heads. Upstream's `mask_token` is stored with extra unit axes on
some versions; it is reshaped when its size matches.

Nothing here knows a model class: the model's own `state_dict()` keys say what it holds.
"""
from collections.abc import Mapping

from embodied_vision.checkpoints._format import CheckpointFormat, register_format

__all__ = ['I2P_MAE_FORMAT']

_PROBE = 'h_encoder.token_embed.0.first_conv.0.weight'
_DATA_PARALLEL = 'module.'
_FOREIGN = ('clip_model.',)  # the frozen 2D model of pretraining: not part of our models


def _base_model(container: Mapping) -> dict | None:
    state = container.get('base_model')
    if not isinstance(state, Mapping):
        return None
    return {(k[len(_DATA_PARALLEL):] if k.startswith(_DATA_PARALLEL) else k): v
            for k, v in state.items()}


def _detect(container: Mapping) -> bool:
    state = _base_model(container)
    return state is not None and _PROBE in state


def _convert(container: Mapping, model) -> dict:
    state = {k: v for k, v in _base_model(container).items() if not k.startswith(_FOREIGN)}
    ours = model.state_dict()
    if 'mask_token' not in ours:  # an encoder: the decoder and heads are dropped on purpose
        state = {k: v for k, v in state.items() if k.startswith('h_encoder.')}
    token = state.get('mask_token')
    if token is not None and 'mask_token' in ours and token.numel() == ours['mask_token'].numel():
        state['mask_token'] = token.reshape(ours['mask_token'].shape)
    return state


I2P_MAE_FORMAT = register_format(CheckpointFormat(
    name='i2p_mae',
    description="official I2P-MAE / Point-M2AE pretraining .pth ({'base_model', 'optimizer', "
                "'epoch', 'metrics', 'best_metrics'}; keys '[module.]h_encoder.*', "
                "'h_decoder.*', 'rec_head_3d.*', 'clip_model.*')",
    detect=_detect, convert=_convert))
