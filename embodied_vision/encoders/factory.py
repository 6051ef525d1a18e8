"""Build registered encoders and load their weights: the one module that sees both sides.

As timm's `_factory.py`: the registry (`_registry.py`) knows no checkpoints, the checkpoint
readers (`embodied_vision.checkpoints`) know no models, and the factory joins them: it builds
an architecture from the registry and hands the model, with the weight sources registered
for it, to the loader. Weights are never downloaded: `checkpoint=` is a user path.
"""
import os

from embodied_vision.checkpoints._format import CheckpointError
from embodied_vision.checkpoints.artifact import FORMAT_NAME
from embodied_vision.checkpoints.loader import load_checkpoint, read_checkpoint
from embodied_vision.encoders._registry import (
    encoder_entrypoint,
    get_pretrained_cfg,
    get_pretrained_cfgs,
    split_name,
)

__all__ = ['create_encoder', 'load_encoder', 'load_pretrained']


def create_encoder(name: str, checkpoint: str | os.PathLike | None = None, **overrides):
    """Build a registered encoder, optionally loading weights from a user-supplied file.

    Args:
        name: `arch` or `arch.tag` (see `list_encoders(with_tags=True)`).
        checkpoint: path to an official checkpoint or one in our own format (a directory or
            `.safetensors` file with its JSON config). The format is detected from the keys.
        **overrides: keyword arguments of the architecture (e.g. `image_size`).

    Returns:
        The encoder in eval mode.
    """
    arch, _ = split_name(name)
    entrypoint = encoder_entrypoint(arch)
    pretrained_cfg = get_pretrained_cfg(name)
    model = entrypoint(**overrides)
    model.name = arch
    model.init_kwargs = dict(overrides)
    # Which published weights the model holds: set by a tag, or by loading a checkpoint of a
    # known source; None for random init and for weights trained here.
    model.pretrained_cfg = pretrained_cfg
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, get_pretrained_cfgs(arch))
    return model.eval()


def load_pretrained(model, path: str | os.PathLike) -> None:
    """Load weights from `path` (any supported format) into a registered encoder, strictly."""
    load_checkpoint(model, path, get_pretrained_cfgs(model.name))


def load_encoder(path: str | os.PathLike):
    """Rebuild an encoder from a checkpoint in our format (architecture from its config)."""
    found = read_checkpoint(path)
    fmt_name, _, config = found
    if fmt_name != FORMAT_NAME:
        raise CheckpointError(
            f'{path} is an official {fmt_name!r} checkpoint, which does not record its '
            "architecture: use create_encoder('<name>', checkpoint=path)")
    if config.get('kind') != 'encoder':
        raise CheckpointError(f'{path} holds {config.get("kind")} {config.get("name")!r}, not '
                              'an encoder')
    name = config['name'] + (f".{config['tag']}" if config.get('tag') else '')
    model = create_encoder(name, **config.get('kwargs', {}))
    load_checkpoint(model, path, get_pretrained_cfgs(model.name), found)
    return model
