"""Checkpoint formats: a named detector + converter pair, dispatched from a table."""
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

__all__ = ['CheckpointError', 'CheckpointFormat', 'FORMATS', 'register_format',
           'strip_prefix', 'unwrap']


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model it is loaded into."""


@dataclass(frozen=True)
class CheckpointFormat:
    """One upstream checkpoint layout.

    Args:
        name: short id used in `PretrainedCfg.formats`.
        description: what a user would call the file ("official R3M model.pt").
        detect: True when a loaded container has this layout.
        convert: `(container, model) -> state dict with the model's own key names`.
        safe_globals: plain container classes its files pickle besides tensors (e.g.
            `argparse.Namespace` in training-script files), allowed only while our own
            `torch.load(weights_only=True)` reads a checkpoint.
    """

    name: str
    description: str
    detect: Callable[[Mapping], bool]
    convert: Callable[[Mapping, torch.nn.Module], dict]
    safe_globals: tuple = ()


FORMATS: dict[str, CheckpointFormat] = {}


def allowed_globals() -> list:
    """Every registered format's `safe_globals`, for the scope of one checkpoint load."""
    return list(dict.fromkeys(g for fmt in FORMATS.values() for g in fmt.safe_globals))


def register_format(fmt: CheckpointFormat) -> CheckpointFormat:
    FORMATS[fmt.name] = fmt
    return fmt


def unwrap(container: Mapping, keys=('state_dict', 'model', 'module')) -> Mapping:
    """Descend through the usual wrappers (`state_dict`, `model`) to a flat tensor dict."""
    while True:
        nested = [k for k in keys if isinstance(container.get(k), Mapping)]
        if not nested:
            return container
        container = container[nested[0]]


def strip_prefix(state: Mapping, prefix: str) -> dict:
    """Keys starting with `prefix`, with it removed; other keys are dropped."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
