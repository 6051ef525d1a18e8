"""Official NeRF-MAE checkpoints (https://arxiv.org/abs/2404.01300): detect and remap.

Two layouts, read with `torch.load(weights_only=True)`:

- `nerf_mae`: the pretraining files (`nerf_mae_pretrained.pt`): `{'epoch', 'state_dict',
  'train_args'}`, the whole MAE under `state_dict` (383 keys for swin_s, including the
  `relative_position_index` buffers and the frozen `pos_embed`);
- `nerf_mae_rpn`: the fine-tuned NeRF-RPN files (`front3d_obb_finetuned.pt`, ...):
  `{'epoch', 'backbone_state_dict', 'fcos_state_dict', 'train_args'}`, the encoder under
  `base.` beside the detection neck `fpn_neck.*`.

Keys are our models' own, so the converters only select: an encoder drops the decoder, the
output conv and the mask token; the full MAE takes everything. `train_args` (argparse values)
is checked where it states the architecture (`resolution`, `backbone_type`). Nothing here
knows a model class: the model's own `state_dict()` keys say what it holds.
"""
import argparse
from collections.abc import Mapping

from embodied_vision.checkpoints._format import (
    CheckpointError,
    CheckpointFormat,
    register_format,
    strip_prefix,
)

__all__ = ['NERF_MAE_FORMAT', 'NERF_MAE_RPN_FORMAT']

_PROBE = ('patch_partition.0.weight', 'stages.0.0.attn.qkv.weight')
_MAE_ONLY = ('decoder1.', 'decoder2.', 'decoder3.', 'decoder4.', 'out.', 'mask_token')


def _has_backbone(state) -> bool:
    return isinstance(state, Mapping) and all(k in state for k in _PROBE)


def _detect_pretrain(container: Mapping) -> bool:
    return _has_backbone(container.get('state_dict')) and 'pos_embed' in container['state_dict']


def _detect_rpn(container: Mapping) -> bool:
    state = container.get('backbone_state_dict')
    return isinstance(state, Mapping) and _has_backbone(strip_prefix(state, 'base.'))


def _train_args(container: Mapping) -> dict:
    args = container.get('train_args')
    if isinstance(args, argparse.Namespace):
        return vars(args)
    return dict(args) if isinstance(args, Mapping) else {}


def _check_args(container: Mapping, model) -> None:
    """The architecture `train_args` states must be the model's."""
    args, name = _train_args(container), getattr(model, 'name', type(model).__name__)
    wrong = []
    resolution = getattr(model, 'resolution', None)
    if args.get('resolution') is not None and resolution is not None \
            and int(args['resolution']) != resolution:
        wrong.append(f'resolution: file {args["resolution"]} vs model {resolution}')
    backbone = args.get('backbone_type')
    if isinstance(backbone, str) and backbone.startswith('swin_') \
            and not name.endswith(backbone):
        wrong.append(f'backbone_type: file {backbone!r} vs model {name}')
    if wrong:
        raise CheckpointError(f'the NeRF-MAE file does not match {name}: {"; ".join(wrong)}. '
                              'Create the nerf_mae_*_<backbone> encoder the file was trained '
                              'as, with resolution=<its resolution>.')


def _select(state: Mapping, model) -> dict:
    ours = set(model.state_dict())
    if 'mask_token' not in ours:  # an encoder: the decoder is dropped on purpose
        return {k: v for k, v in state.items() if not k.startswith(_MAE_ONLY)}
    return dict(state)


def _convert_pretrain(container: Mapping, model) -> dict:
    _check_args(container, model)
    return _select(container['state_dict'], model)


def _convert_rpn(container: Mapping, model) -> dict:
    """The backbone (`base.*`); the FPN neck and the FCOS head are not the encoder's."""
    _check_args(container, model)
    return strip_prefix(container['backbone_state_dict'], 'base.')


NERF_MAE_FORMAT = register_format(CheckpointFormat(
    name='nerf_mae',
    description="official NeRF-MAE pretraining .pt ({'epoch', 'state_dict', 'train_args'}; "
                "keys 'patch_partition.*', 'stages.*', 'pos_embed', 'decoder*', 'out.*')",
    detect=_detect_pretrain, convert=_convert_pretrain, safe_globals=(argparse.Namespace,)))

NERF_MAE_RPN_FORMAT = register_format(CheckpointFormat(
    name='nerf_mae_rpn',
    description="official NeRF-MAE fine-tuned NeRF-RPN .pt ({'epoch', 'backbone_state_dict', "
                "'fcos_state_dict', 'train_args'}; backbone keys 'base.*')",
    detect=_detect_rpn, convert=_convert_rpn, safe_globals=(argparse.Namespace,)))
