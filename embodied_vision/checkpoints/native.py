"""Our own checkpoint format: safetensors weights + a JSON config.

A checkpoint is a directory holding `model.safetensors` and `config.json`. The config is also
stored in the safetensors header metadata, so a lone `.safetensors` file is self-contained.

config.json:
    format          "embodied_vision"
    format_version  1
    name            registered architecture (e.g. "r3m_resnet18")
    tag             weights tag it was created with, or ""
    kwargs          keyword arguments passed to the architecture
    embed_dim       embedding size
    input_contract  modality, value range, dtypes, normalisation, sizes
    versions        embodied_vision and torch versions that wrote it
"""
import json
import os
from pathlib import Path

import safetensors
import safetensors.torch
import torch

__all__ = ['FORMAT_NAME', 'FORMAT_VERSION', 'save_encoder', 'read_native', 'is_native']

FORMAT_NAME = 'embodied_vision'
FORMAT_VERSION = 1
WEIGHTS_FILE = 'model.safetensors'
CONFIG_FILE = 'config.json'
_META_KEY = 'embodied_vision_config'


def encoder_config(encoder) -> dict:
    """The JSON config that rebuilds `encoder` with `create_encoder`."""
    from embodied_vision import __version__
    cfg = getattr(encoder, 'pretrained_cfg', None)
    return {
        'format': FORMAT_NAME,
        'format_version': FORMAT_VERSION,
        'name': encoder.name,
        'tag': cfg.tag if cfg else '',
        'kwargs': encoder.init_kwargs,
        'embed_dim': encoder.embed_dim,
        'input_contract': encoder.input_contract.to_dict(),
        'versions': {'embodied_vision': __version__, 'torch': torch.__version__},
    }


def save_encoder(encoder, path: str | os.PathLike) -> Path:
    """Write `encoder` to directory `path` (created) in our format; returns the directory."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = encoder_config(encoder)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    safetensors.torch.save_file(state, str(path / WEIGHTS_FILE),
                                metadata={_META_KEY: json.dumps(config)})
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + '\n')
    return path


def is_native(path: Path) -> bool:
    """True for a directory with our weights file, or a `.safetensors` file."""
    return (path.is_dir() and (path / WEIGHTS_FILE).exists()) or path.suffix == '.safetensors'


def read_native(path: Path) -> tuple[dict, dict]:
    """Return `(config, state_dict)` of a checkpoint in our format."""
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    with safetensors.safe_open(str(weights), framework='pt') as handle:
        metadata = handle.metadata() or {}
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    sidecar = weights.parent / CONFIG_FILE
    if sidecar.exists():
        config = json.loads(sidecar.read_text())
    elif _META_KEY in metadata:
        config = json.loads(metadata[_META_KEY])
    else:
        raise ValueError(f'{weights} has no {CONFIG_FILE} beside it and no config in its '
                         'metadata; it was not written by embodied_vision.save_encoder')
    return config, state
