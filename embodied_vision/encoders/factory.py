"""Build registered encoders and load their weights: the one module that sees both sides.

As timm's `_factory.py`: the registry (`_registry.py`) knows no checkpoints, the checkpoint
readers (`embodied_vision.checkpoints`) know no models, and the factory joins them: it builds
an architecture from the registry and hands the model, with the weight sources registered
for it, to the loader. Weights are never downloaded: `checkpoint=` is a user path.
"""
import os
import warnings

import torch

from embodied_vision.checkpoints._format import CheckpointError
from embodied_vision.checkpoints.artifact import FORMAT_NAME
from embodied_vision.checkpoints.loader import load_checkpoint, read_checkpoint
from embodied_vision.encoders._registry import (
    encoder_entrypoint,
    get_pretrained_cfg,
    get_pretrained_cfgs,
    split_name,
)

__all__ = ['RANDOM_WEIGHTS_SEED', 'create_encoder', 'encoder_for_inference', 'load_encoder',
           'load_pretrained']

#: The seed of the random weights `encoder_for_inference` gives when no checkpoint is named.
RANDOM_WEIGHTS_SEED = 0
_warned_random: set[str] = set()


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


def load_encoder(path: str | os.PathLike, found=None):
    """Rebuild an encoder from a checkpoint in our format (architecture from its config);
    `found` is `read_checkpoint(path)` when the caller has read it already."""
    found = found or read_checkpoint(path)
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


def encoder_for_inference(name: str, checkpoint: str | os.PathLike | None = None,
                          **overrides):
    """`create_encoder` for the commands and nodes that run a model on data (`encode`,
    `export`, `replay`, the encoder nodes).

    Without a checkpoint (None or '') the weights are random: that is warned once per
    process and name, the weights are seeded (`RANDOM_WEIGHTS_SEED`, so two runs give the
    same embeddings) and the model is marked `random_weights`, so `deploy.compile` keeps no
    artefact of it in its cache. Our own exports rebuild the architecture they record.
    """
    if checkpoint is not None and str(checkpoint) != '':
        found = read_checkpoint(checkpoint)
        if found[0] == FORMAT_NAME and not overrides:  # our export records its architecture
            model = load_encoder(checkpoint, found)
            if model.name != split_name(name)[0]:
                raise CheckpointError(f'{checkpoint} holds a {model.name} encoder, not {name}')
        else:
            model = create_encoder(name, **overrides)
            load_checkpoint(model, checkpoint, get_pretrained_cfgs(model.name), found)
        model.random_weights = False
        return model
    if name not in _warned_random:
        _warned_random.add(name)
        warnings.warn(f'{name} has random weights (no checkpoint given): its embeddings carry '
                      'no pretrained knowledge; seeded with '
                      f'{RANDOM_WEIGHTS_SEED} so runs agree. Pass a checkpoint for real '
                      'features.', UserWarning, stacklevel=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = create_encoder(name, **overrides)
    model.random_weights = True
    return model
