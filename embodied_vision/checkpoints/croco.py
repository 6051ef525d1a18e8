"""Reader for official CroCo / CroCo v2 checkpoints (https://github.com/naver/croco).

Layouts (the state dict under `'model'` in all of them; key names equal our module names):

- released v1 `CroCo.pth`: `{'model'}` only, so the constructor defaults (the v1 model:
  ViT-B, small decoder, cosine positions) apply; holds `enc_pos_embed`/`dec_pos_embed`;
- released v2 `CroCo_V2_ViTBase_SmallDecoder.pth`, `CroCo_V2_ViTBase_BaseDecoder.pth`,
  `CroCo_V2_ViTLarge_BaseDecoder.pth`: `{'model', 'croco_kwargs'}`, the constructor keyword
  arguments (RoPE100, no position buffers);
- files written by upstream `pretrain.py`: `{'model', 'optimizer', 'scaler', 'args',
  'epoch'[, 'best_so_far']}` where `args` is an `argparse.Namespace` and the architecture
  exists only as the string `args.model`, e.g. `"CroCoNet(enc_embed_dim=1024, ...)"`.

The architecture is read from `croco_kwargs`, else parsed from `args.model` (with `ast`,
literal keyword values only, nothing evaluated), else taken as the v1 defaults, and checked
against the model it is loaded into (`model.croco_kwargs()`, the model's own statement of its
architecture), so a v2 file never loads silently into a v1 model. The releases' architectures
are the table in `checkpoints.croco_archs`.

Reading is `torch.load(weights_only=True)` throughout. `argparse.Namespace`, which the
weights-only unpickler refuses by default, is allowed only inside
`torch.serialization.safe_globals([argparse.Namespace])` around our own `torch.load` calls
(`read_croco_checkpoint`, and the generic reader through `CROCO_FORMAT.safe_globals`); no
other class is ever unpickled, so `pretrain.py` files also load with
`create_encoder(name, checkpoint=path)`. `encoders.croco.croco_from_checkpoint` builds the
model a file describes.

Weights licence: CC BY-NC-SA 4.0 (non-commercial); loading warns. Files are never bundled
or downloaded: users pass a path.
"""
import argparse
import ast
from collections.abc import Mapping
import logging
import os
from pathlib import Path

import torch

from embodied_vision.checkpoints._format import CheckpointError, CheckpointFormat, register_format
from embodied_vision.checkpoints.croco_archs import (
    DECODER_KEYS,
    ENCODER_KEYS,
    LICENSE,
    UPSTREAM_DEFAULTS,
    match_release,
)
from embodied_vision.checkpoints.licence import warn_licence
from embodied_vision.checkpoints.loader import load_state_strict
from embodied_vision.layers import resample_pos_embed_2d

__all__ = ['CROCO_FORMAT', 'croco_architecture', 'load_croco_checkpoint', 'parse_model_string',
           'read_croco_checkpoint']

_logger = logging.getLogger(__name__)
_DECODER_PREFIXES = ('decoder_embed.', 'dec_blocks.', 'dec_norm.', 'prediction_head.')
_DECODER_KEYS = ('mask_token', 'dec_pos_embed')
_POS_TABLES = ('enc_pos_embed', 'dec_pos_embed')


# ----------------------------------------------------------------------- reading
def read_croco_checkpoint(path: str | os.PathLike) -> Mapping:
    """`torch.load(weights_only=True)` of a CroCo file, `argparse.Namespace` allowed in scope."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f'checkpoint {path} does not exist')
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises several types for truncated/foreign files
        first = str(err).splitlines()[0] if str(err) else ''
        raise CheckpointError(
            f'{path}: cannot be read with weights_only=True ({type(err).__name__}: {first}). '
            f'Expected {CROCO_FORMAT.description}') from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(f'{path}: holds a {type(obj).__name__}, expected a dict with '
                              "the state dict under 'model'")
    return obj


def _state(container: Mapping) -> Mapping:
    model = container.get('model')
    return model if isinstance(model, Mapping) else container


def _detect(container: Mapping) -> bool:
    state = _state(container)
    return 'patch_embed.proj.weight' in state and 'enc_blocks.0.attn.qkv.weight' in state


def parse_model_string(text: str) -> dict:
    """`"CroCoNet(enc_depth=24, pos_embed='RoPE100')"` -> keyword dict, without eval.

    Only a call with literal keyword arguments is accepted; anything else raises
    CheckpointError.
    """
    try:
        node = ast.parse(text.strip(), mode='eval').body
    except SyntaxError as err:
        raise CheckpointError(f'args.model={text!r} is not a Python call expression') from err
    if not isinstance(node, ast.Call) or node.args:
        raise CheckpointError(f"args.model={text!r} is not of the form 'CroCoNet(key=value, "
                              "...)' with keyword arguments only")
    name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, 'attr', '')
    if name != 'CroCoNet':
        raise CheckpointError(f'args.model={text!r} builds {name or "?"}, not CroCoNet (the '
                              'pretraining model this reader supports)')
    kwargs = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise CheckpointError(f'args.model={text!r}: **kwargs cannot be read')
        try:
            kwargs[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError as err:
            raise CheckpointError(f'args.model={text!r}: {keyword.arg} is not a literal '
                                  'value') from err
    return kwargs


def croco_architecture(container: Mapping) -> tuple[dict, str]:
    """`(kwargs over the v1 defaults, where they came from)` for a loaded CroCo container."""
    if isinstance(container.get('croco_kwargs'), Mapping):
        return {**UPSTREAM_DEFAULTS, **container['croco_kwargs']}, 'croco_kwargs'
    args = container.get('args')
    if isinstance(args, Mapping):
        args = argparse.Namespace(**args)
    if isinstance(getattr(args, 'croco_args', None), Mapping):  # stereo/flow files
        return {**UPSTREAM_DEFAULTS, **args.croco_args}, 'args.croco_args'
    if isinstance(getattr(args, 'model', None), str):
        return {**UPSTREAM_DEFAULTS, **parse_model_string(args.model)}, 'args.model'
    return dict(UPSTREAM_DEFAULTS), 'v1 defaults (no croco_kwargs or args.model in the file)'


# --------------------------------------------------------------------- converting


def _grid_of(kwargs: dict, tokens: int, patch: int) -> tuple[int, int]:
    size = kwargs.get('img_size', 224)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if (height // patch) * (width // patch) == tokens:
        return height // patch, width // patch
    side = round(tokens ** 0.5)
    if side * side != tokens:
        raise CheckpointError(f'position table of {tokens} tokens does not fit img_size={size}')
    return side, side


def _convert(container: Mapping, model) -> dict:
    """The file's state dict for `model`, whose `croco_kwargs()` states its architecture."""
    kwargs, source = croco_architecture(container)
    if not callable(getattr(model, 'croco_kwargs', None)):
        raise CheckpointError(f'{getattr(model, "name", type(model).__name__)} is not a CroCo '
                              'model (it has no croco_kwargs() stating its architecture); '
                              'a CroCo file loads into the croco_* encoders only')
    expected = model.croco_kwargs()
    wrong = {k: (kwargs.get(k), v) for k, v in expected.items() if kwargs.get(k) != v}
    if wrong:
        details = ', '.join(f'{k}: file {f!r} vs model {m!r}' for k, (f, m) in wrong.items())
        hint = _suggest(kwargs, encoder_only='dec_embed_dim' not in expected)
        raise CheckpointError(f'the CroCo file (architecture from {source}) does not match '
                              f'{getattr(model, "name", type(model).__name__)}: {details}.'
                              f'{hint}')
    state = dict(_state(container))
    if 'dec_embed_dim' not in expected:  # encoder-only: the decoder is dropped on purpose
        state = {k: v for k, v in state.items()
                 if not (k.startswith(_DECODER_PREFIXES) or k in _DECODER_KEYS)}
    # Fixed sin-cos tables stored at another img_size: resample as upstream does.
    for key in _POS_TABLES:
        ours = getattr(model, key, None)
        if ours is not None and key in state and state[key].shape != ours.shape \
                and state[key].ndim == 2 and state[key].shape[1] == ours.shape[1]:
            grid = _grid_of(kwargs, state[key].shape[0], model.patch_size)
            state[key] = resample_pos_embed_2d(state[key], grid, model.grid_size)
    return state


def _suggest(kwargs: dict, encoder_only: bool) -> str:
    release = match_release(kwargs)
    if release is not None:
        name = release.encoder if encoder_only else release.pair
        return f' It has the architecture of {release.file}: use {name}.'
    return (' Build it with croco_from_checkpoint(path) or pass the architecture as '
            'create_encoder overrides: '
            + ', '.join(f'{k}={kwargs.get(k)!r}' for k in ENCODER_KEYS + DECODER_KEYS))


CROCO_FORMAT = register_format(CheckpointFormat(
    name='croco',
    description="official CroCo/CroCo v2 .pth (state dict under 'model', keys "
                "'patch_embed.*', 'enc_blocks.*', 'dec_blocks.*'; architecture in "
                "'croco_kwargs', 'args.model' or the v1 defaults)",
    detect=_detect, convert=_convert, safe_globals=(argparse.Namespace,)))


# ------------------------------------------------------------------------ loading
def load_croco_checkpoint(model, path: str | os.PathLike) -> None:
    """Load an official CroCo file (releases and `pretrain.py` files) into `model`, strictly."""
    container = read_croco_checkpoint(path)
    if not _detect(container):
        keys = [str(k) for k in list(_state(container))[:8]]
        raise CheckpointError(f'{path}: not a CroCo checkpoint (first keys {keys}); expected '
                              f'{CROCO_FORMAT.description}')
    state = _convert(container, model)
    load_state_strict(model, state, f'{path} ({CROCO_FORMAT.description})')
    cfg = getattr(model, 'pretrained_cfg', None)
    if cfg is None or cfg.non_commercial:
        warn_licence(f'{getattr(model, "name", "CroCo")} weights from {path}', LICENSE)
    _logger.info('loaded CroCo weights into %s from %s', getattr(model, 'name', 'model'), path)
