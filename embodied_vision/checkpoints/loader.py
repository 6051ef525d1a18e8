"""Read any supported checkpoint file, detect its format, and load it strictly.

Official formats are read with `torch.load(weights_only=True)` (never arbitrary pickles),
detected from their keys, remapped by their converter and loaded with strict key and shape
checks. Every failure raises `CheckpointError` naming the file, the format expected and the
keys that are missing or unexpected.

Nothing here knows a model: `load_checkpoint` is given the model and the weight sources
(`PretrainedCfg`s) it may match; `embodied_vision.encoders.factory` looks them up.
"""
from collections.abc import Mapping, Sequence
import logging
import os
from pathlib import Path

import torch

from embodied_vision.checkpoints import artifact
from embodied_vision.checkpoints._format import FORMATS, CheckpointError, allowed_globals
from embodied_vision.checkpoints.licence import warn_licence

__all__ = ['read_checkpoint', 'load_checkpoint', 'load_state_strict']

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
    """Return `(format_name, container, config)`.

    The config is empty for official formats; for our own artefacts it holds `kind`, `name`,
    `license`, `non_commercial` and the kind's own fields (an encoder's `tag`, `kwargs`).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f'checkpoint {path} does not exist')
    if artifact.is_artifact(path):
        found = artifact.read_artifact(path)
        config = {'kind': found.kind, 'name': found.name, 'license': found.license,
                  'non_commercial': found.non_commercial, **found.config}
        return artifact.FORMAT_NAME, found.state, config
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


def load_head(directory, name: str, build, writer: str,
              map_location: str | torch.device = 'cpu') -> torch.nn.Module:
    """A downstream model from its `head` artefact `name` (eval mode, on `map_location`).

    `build(config)` makes the model from the artefact's config; its weights are loaded
    strictly, and `backbone_source` and the licence (warned about when non-commercial) are
    restored. `writer` names the function that writes such artefacts, for the error.
    """
    try:
        found = artifact.read_artifact(directory, kind='head', name=name)
    except CheckpointError as err:
        raise CheckpointError(f'{err} (expected what {writer} writes)') from None
    model = build(found.config)
    load_state_strict(model, found.state, f'{found.path} ({name} model)')
    model.backbone_source = found.config.get('backbone_source', '')
    model.weights_license, model.non_commercial = found.license, found.non_commercial
    return model.to(map_location).eval()


def _accepted_formats(pretrained_cfgs: Sequence) -> dict[str, object]:
    """Format -> the weight source it carries; our own artefacts load into any model."""
    accepted = {artifact.FORMAT_NAME: None}
    for cfg in pretrained_cfgs:
        for fmt in cfg.formats:
            accepted.setdefault(fmt, cfg)
    return accepted


def _own_source(model, path, config: dict, pretrained_cfgs: Sequence):
    """The source of the weights of one of our artefacts (None: trained here), after checking
    that it holds the architecture and keyword arguments `model` was built with."""
    if config.get('kind') != 'encoder':
        raise CheckpointError(f'{path} holds {config.get("kind")} {config.get("name")!r}, not '
                              f'an encoder; {model.name} loads encoder artefacts only')
    if config.get('name') != model.name or config.get('kwargs', {}) != model.init_kwargs:
        raise CheckpointError(
            f'{path} was saved from {config.get("name")} with kwargs '
            f'{config.get("kwargs")}, not {model.name} with {model.init_kwargs}; '
            'rebuild it with embodied_vision.load_encoder(path)')
    # Our format says where its weights came from: a published source's tag, or none
    # (trained here), whatever tag the caller built the architecture with.
    by_tag = {c.tag: c for c in pretrained_cfgs}
    return by_tag.get(config.get('tag') or '')


def load_checkpoint(model, path: str | os.PathLike, pretrained_cfgs: Sequence,
                    found: tuple[str, Mapping, dict] | None = None) -> None:
    """Load weights from `path` (any supported format) into `model`, strictly.

    Args:
        model: a model built by `embodied_vision.create_encoder`: its `name`, `init_kwargs`
            and `pretrained_cfg` (the tag it was built with, or None) are read; on success
            `pretrained_cfg` names the source of the weights loaded (None: trained here).
        path: the checkpoint file or artefact directory.
        pretrained_cfgs: the weight sources the architecture can hold, each with the
            `formats` that carry it (the first per format is the one assumed).
        found: `read_checkpoint(path)` when the caller has read it already.
    """
    fmt_name, container, config = read_checkpoint(path) if found is None else found
    accepted = _accepted_formats(pretrained_cfgs)
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
    warned = False
    if fmt_name == artifact.FORMAT_NAME:
        cfg = _own_source(model, path, config, pretrained_cfgs)
        state = dict(container)
        description = 'embodied_vision checkpoint'
        warned = bool(config.get('non_commercial'))  # read_artifact has warned already
    else:
        state = FORMATS[fmt_name].convert(container, model)
        description = FORMATS[fmt_name].description
    load_state_strict(model, state, f'{path} ({description})')
    model.pretrained_cfg = cfg
    if cfg is not None and cfg.non_commercial and not warned:
        warn_licence(f'{path} ({model.name}.{cfg.tag})', cfg.license, stacklevel=3)
    _logger.info('loaded %s into %s from %s', description, model.name, path)
