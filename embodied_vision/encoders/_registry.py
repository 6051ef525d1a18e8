"""Encoder registry in the timm style: `arch.tag` names, decorated entrypoints.

`arch` names a model architecture (`r3m_resnet50`); the optional `tag` names the weights it
expects (`r3m_resnet50.ego4d`). A leaf: it knows no checkpoint readers; `factory.py` builds
encoders from it and loads their weights.
"""
from collections.abc import Callable
from dataclasses import dataclass, field
import difflib
import logging
import warnings

__all__ = ['PretrainedCfg', 'encoder_entrypoint', 'get_pretrained_cfg', 'get_pretrained_cfgs',
           'list_encoders', 'register_encoder', 'split_name']

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainedCfg:
    """Where a set of weights comes from and how to read it. Never downloaded by us.

    Args:
        tag: weights tag used in `arch.tag` names.
        formats: checkpoint formats (see `embodied_vision.checkpoints`) that carry them.
        license: licence of the weights; non-commercial ones are warned about on load.
        origin_url: the page users obtain the file from themselves.
        paper: arXiv id or paper URL.
        notes: anything a user must know (expected file name, container key).
    """

    tag: str
    formats: tuple[str, ...]
    license: str
    origin_url: str = ''
    paper: str = ''
    notes: str = ''
    non_commercial: bool = field(default=False)


_ENTRYPOINTS: dict[str, Callable] = {}
_PRETRAINED: dict[str, list[PretrainedCfg]] = {}


def register_encoder(*pretrained: PretrainedCfg) -> Callable:
    """Decorator: register an encoder entrypoint under its function name."""
    def wrap(fn: Callable) -> Callable:
        name = fn.__name__
        if name in _ENTRYPOINTS:
            warnings.warn(f'encoder {name!r} registered twice; the last one wins',
                          stacklevel=2)
        _ENTRYPOINTS[name] = fn
        _PRETRAINED[name] = list(pretrained)
        return fn
    return wrap


def split_name(name: str) -> tuple[str, str]:
    """`'r3m_resnet50.ego4d'` -> `('r3m_resnet50', 'ego4d')`; no tag -> `''`."""
    arch, _, tag = name.partition('.')
    return arch, tag


def _unknown(kind: str, value: str, known: list[str]) -> ValueError:
    close = difflib.get_close_matches(value, known, n=3, cutoff=0.5)
    hint = f' Did you mean {close}?' if close else ''
    return ValueError(f'unknown {kind} {value!r}.{hint} Known: {sorted(known)}')


def list_encoders(pattern: str = '', with_tags: bool = False) -> list[str]:
    """Registered encoder names containing `pattern`; `with_tags` adds `arch.tag` names."""
    names = []
    for arch in sorted(_ENTRYPOINTS):
        if with_tags and _PRETRAINED[arch]:
            names += [f'{arch}.{cfg.tag}' for cfg in _PRETRAINED[arch]]
        else:
            names.append(arch)
    return [n for n in names if pattern in n]


def get_pretrained_cfgs(arch: str) -> list[PretrainedCfg]:
    """The weight sources known for an architecture (first = default tag)."""
    if arch not in _ENTRYPOINTS:
        raise _unknown('encoder', arch, list(_ENTRYPOINTS))
    return list(_PRETRAINED[arch])


def encoder_entrypoint(arch: str) -> Callable:
    """The registered function that builds architecture `arch`."""
    if arch not in _ENTRYPOINTS:
        raise _unknown('encoder', arch, list(_ENTRYPOINTS))
    return _ENTRYPOINTS[arch]


def get_pretrained_cfg(name: str) -> PretrainedCfg | None:
    """The weight source that tag of `arch.tag` names; None for a bare `arch`."""
    arch, tag = split_name(name)
    cfgs = get_pretrained_cfgs(arch)
    if not tag:
        return None
    by_tag = {cfg.tag: cfg for cfg in cfgs}
    if tag not in by_tag:
        raise _unknown(f'weights tag for {arch}', tag, list(by_tag))
    return by_tag[tag]
