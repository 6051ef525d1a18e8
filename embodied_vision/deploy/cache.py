"""Compiled-artefact cache keyed by everything that changes the artefact.

Following jetson-inference rather than Isaac ROS (which reuses an engine file with no key):
the key covers the weights' checksum, the architecture and its kwargs, the backend and its
options, the input profile and the versions of torch / onnxruntime / torch_tensorrt and the
device, so a stale artefact is never reused.
"""
import hashlib
import json
import os
from pathlib import Path

import torch

__all__ = ['default_cache_dir', 'weights_digest', 'artifact_key']


def default_cache_dir() -> Path:
    """`$EMBODIED_VISION_CACHE`, else `~/.cache/embodied_vision/compiled`."""
    root = os.environ.get('EMBODIED_VISION_CACHE')
    return Path(root) if root else Path.home() / '.cache' / 'embodied_vision' / 'compiled'


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f'{name}|{tensor.dtype}|{tuple(tensor.shape)}'.encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    found = {'torch': torch.__version__}
    for dist in ('onnxruntime', 'onnx', 'torch-tensorrt', 'tensorrt'):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


def artifact_key(encoder: torch.nn.Module, backend: str, options: dict) -> str:
    """A short hex key for the compiled artefact of `encoder` under `backend` + `options`."""
    device = options.get('device', 'cpu')
    gpu = torch.cuda.get_device_name(device) if str(device).startswith('cuda') else 'cpu'
    payload = {
        'name': getattr(encoder, 'name', type(encoder).__name__),
        'kwargs': getattr(encoder, 'init_kwargs', {}),
        'weights': weights_digest(encoder),
        'backend': backend,
        'options': {k: str(v) for k, v in sorted(options.items())},
        'versions': _versions(),
        'gpu': gpu,
    }
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]
