"""Policy checkpoints on disk: `model.safetensors` + `config.json` in one directory.

The config (a JSON object with the policy `type`) is also stored in the safetensors header,
so the weights file alone says what it holds. Every policy's `save_pretrained` /
`from_pretrained` goes through these two functions.
"""
import json
import os
from pathlib import Path

import safetensors.torch
import torch

__all__ = ['CONFIG_FILE', 'WEIGHTS_FILE', 'read_policy_files', 'write_policy_files']

WEIGHTS_FILE = 'model.safetensors'
CONFIG_FILE = 'config.json'


def write_policy_files(path: str | os.PathLike, module: torch.nn.Module, config: dict) -> Path:
    """Write `module`'s state dict and `config` into directory `path` (created)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    safetensors.torch.save_file(state, str(path / WEIGHTS_FILE),
                                metadata={'config': json.dumps(config)})
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + '\n')
    return path


def read_policy_files(path: str | os.PathLike, kind: str) -> tuple[dict, dict]:
    """`(config, state_dict)` of a `kind` policy directory; clear errors otherwise."""
    path = Path(path).expanduser()
    weights, config_file = path / WEIGHTS_FILE, path / CONFIG_FILE
    if not weights.exists() or not config_file.exists():
        raise FileNotFoundError(f'{path} is not a {kind} checkpoint: expected {WEIGHTS_FILE} '
                                f'and {CONFIG_FILE} in it')
    config = json.loads(config_file.read_text())
    if config.get('type', kind) != kind:
        raise ValueError(f'{config_file} holds a {config.get("type")!r} policy, not {kind!r}')
    return config, safetensors.torch.load_file(str(weights))
