"""Read any supported checkpoint file, detect its format, and load it strictly.

Official formats are read with `torch.load(weights_only=True)` (never arbitrary pickles),
detected from their keys, remapped by their converter and loaded with strict key and shape
checks. Every failure raises `CheckpointError` naming the file, the format expected and the
keys that are missing or unexpected.
"""
from collections.abc import Mapping
import logging
import os
from pathlib import Path
import warnings

import torch

from embodied_vision.checkpoints import native
from embodied_vision.checkpoints._format import FORMATS, CheckpointError, allowed_globals

__all__ = ['read_checkpoint', 'load_pretrained', 'load_encoder', 'load_state_strict']

_logger = logging.getLogger(__name__)
_SHOW = 8  # how many keys to list in an error


def _torch_load(path: Path) -> Mapping:
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            obj = torch.load(str(path), map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises several types for truncated/foreign files
        raise CheckpointError(
            f'{path}: cannot be read as a PyTorch checkpoint with weights_only=True '
            f'({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}). '
            'Expected a torch.save() file of tensors (official formats: '
            f'{", ".join(f.description for f in FORMATS.values())}) or a .safetensors '
            'checkpoint in our format.') from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(f'{path}: holds a {type(obj).__name__}, expected a dict of '
                              'tensors (a state dict or a container of one)')
    return obj


def read_checkpoint(path: str | os.PathLike) -> tuple[str, Mapping, dict]:
    """Return `(format_name, container, config)`; config is empty for official formats."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f'checkpoint {path} does not exist')
    if native.is_native(path):
        try:
            config, state = native.read_native(path)
        except Exception as err:
            raise CheckpointError(f'{path}: not a valid embodied_vision checkpoint '
                                  f'(safetensors + config.json): {err}') from err
        return native.FORMAT_NAME, state, config
    container = _torch_load(path)
    for fmt in FORMATS.values():
        if fmt.detect(container):
            return fmt.name, container, {}
    keys = [str(k) for k in list(container)[:_SHOW]]
    raise CheckpointError(
        f'{path}: unknown checkpoint layout (first keys: {keys}). Known formats: '
        + '; '.join(f'{f.name}: {f.description}' for f in FORMATS.values()))


def _listing(keys: list[str]) -> str:
    more = f' ... (+{len(keys) - _SHOW} more)' if len(keys) > _SHOW else ''
    return f'{keys[:_SHOW]}{more}'


def load_state_strict(model: torch.nn.Module, state: Mapping, source: str) -> None:
    """Load `state` into `model`, raising CheckpointError on any key or shape mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}'
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = [f'{source} does not fit {getattr(model, "name", type(model).__name__)}:']
        if missing:
            parts.append(f'missing keys ({len(missing)}): {_listing(missing)}')
        if unexpected:
            parts.append(f'unexpected keys ({len(unexpected)}): {_listing(unexpected)}')
        if mismatched:
            parts.append(f'shape mismatches ({len(mismatched)}): {_listing(mismatched)}')
        raise CheckpointError('\n  '.join(parts))
    model.load_state_dict(state, strict=True)


def _accepted_formats(model) -> dict[str, object]:
    from embodied_vision.encoders import get_pretrained_cfgs
    accepted = {}
    for cfg in get_pretrained_cfgs(model.name):
        for fmt in cfg.formats:
            accepted.setdefault(fmt, cfg)
    return accepted


def load_pretrained(model, path: str | os.PathLike) -> None:
    """Load weights from `path` (any supported format) into a registered encoder, strictly."""
    fmt_name, container, config = read_checkpoint(path)
    accepted = _accepted_formats(model)
    chosen = getattr(model, 'pretrained_cfg', None)
    names = {f: (FORMATS[f].description if f in FORMATS else 'embodied_vision safetensors')
             for f in accepted}
    if fmt_name not in accepted:
        raise CheckpointError(f'{path} is a {fmt_name!r} checkpoint, but {model.name} loads '
                              f'only: {names}')
    if chosen is not None and fmt_name not in chosen.formats:
        raise CheckpointError(
            f'{path} is a {fmt_name!r} checkpoint, but {model.name}.{chosen.tag} expects '
            f'{chosen.formats}; create {model.name}.{accepted[fmt_name].tag} instead')
    cfg = chosen if chosen is not None else accepted[fmt_name]
    if fmt_name == native.FORMAT_NAME:
        # Our format says where its weights came from: a published source's tag, or none
        # (trained here), whatever tag the caller built the architecture with.
        from embodied_vision.encoders import get_pretrained_cfgs
        by_tag = {c.tag: c for c in get_pretrained_cfgs(model.name)}
        cfg = by_tag.get(config.get('tag') or '')
        if config.get('name') != model.name or config.get('kwargs', {}) != model.init_kwargs:
            raise CheckpointError(
                f'{path} was saved from {config.get("name")} with kwargs '
                f'{config.get("kwargs")}, not {model.name} with {model.init_kwargs}; '
                'rebuild it with embodied_vision.checkpoints.load_encoder(path)')
        state = dict(container)
        description = 'embodied_vision checkpoint'
    else:
        state = FORMATS[fmt_name].convert(container, model)
        description = FORMATS[fmt_name].description
    load_state_strict(model, state, f'{path} ({description})')
    model.pretrained_cfg = cfg
    if cfg is not None and cfg.non_commercial:
        warnings.warn(f'{model.name}.{cfg.tag} weights are licensed {cfg.license} '
                      '(non-commercial use only)', stacklevel=3)
    _logger.info('loaded %s into %s from %s', description, model.name, path)


def load_encoder(path: str | os.PathLike):
    """Rebuild an encoder from a checkpoint in our format (architecture from its config)."""
    from embodied_vision.encoders import create_encoder
    fmt_name, _, config = read_checkpoint(path)
    if fmt_name != native.FORMAT_NAME:
        raise CheckpointError(
            f'{path} is an official {fmt_name!r} checkpoint, which does not record its '
            "architecture: use create_encoder('<name>', checkpoint=path)")
    name = config['name'] + (f".{config['tag']}" if config.get('tag') else '')
    return create_encoder(name, checkpoint=path, **config.get('kwargs', {}))
