"""Compiled-artefact cache keyed by everything that changes the artefact.

Following jetson-inference rather than Isaac ROS (which reuses an engine file with no key):
the key covers the weights' checksum, the architecture and its kwargs, the backend and its
options, the input profile and the versions of torch / onnxruntime / torch_tensorrt and the
device, so a stale artefact is never reused. Every new key writes a new artefact (each
fine-tuned checkpoint has new weights), so the cache is kept under a size budget by dropping the
least recently used artefacts; a reuse counts as a use.
"""
import hashlib
import json
import logging
import os
from pathlib import Path

import torch

__all__ = ['default_cache_dir', 'cache_budget_bytes', 'weights_digest', 'artifact_key',
           'mark_used', 'prune_cache']

_logger = logging.getLogger(__name__)

# what the compile path writes: onnxruntime and tensorrt artefacts (temporary files of a write in
# progress end in .tmp.onnx / .tmp.ep and are never pruned)
ARTIFACT_SUFFIXES = ('.onnx', '.ep')
DEFAULT_BUDGET_GB = 4.0


def default_cache_dir() -> Path:
    """`$EMBODIED_VISION_CACHE`, else `~/.cache/embodied_vision/compiled`."""
    root = os.environ.get('EMBODIED_VISION_CACHE')
    return Path(root) if root else Path.home() / '.cache' / 'embodied_vision' / 'compiled'


def cache_budget_bytes() -> int:
    """`$EMBODIED_VISION_CACHE_MAX_GB` (default 4) in bytes; 0 turns pruning off."""
    raw = os.environ.get('EMBODIED_VISION_CACHE_MAX_GB', str(DEFAULT_BUDGET_GB))
    try:
        budget = float(raw)
    except ValueError:
        raise ValueError(f'EMBODIED_VISION_CACHE_MAX_GB={raw!r} is not a number of gigabytes '
                         '(e.g. 4, 0.5; 0 keeps every artefact)') from None
    if budget < 0:
        raise ValueError(f'EMBODIED_VISION_CACHE_MAX_GB={raw!r} is negative; expected >= 0')
    return int(budget * 1024 ** 3)


def mark_used(path: Path) -> None:
    """Record a reuse of the artefact at `path` (its mtime is the last use)."""
    try:
        os.utime(path)
    except OSError:  # read-only cache: the artefact still loads, it just ages
        pass


def _artifacts(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if p.is_file() and p.suffix in ARTIFACT_SUFFIXES
            and not p.name.endswith(tuple('.tmp' + s for s in ARTIFACT_SUFFIXES))]


def prune_cache(cache: Path, max_bytes: int, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used artefacts in `cache` until it holds <= `max_bytes`.

    `keep` (the artefact just built or loaded) is never deleted, even when it alone is over
    the budget. Returns the deleted paths. `max_bytes` 0 deletes nothing.
    """
    cache = Path(cache)
    if max_bytes <= 0 or not cache.is_dir():
        return []
    entries = []
    for path in _artifacts(cache):
        try:
            stat = path.stat()
        except FileNotFoundError:  # pruned by another process meanwhile
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    deleted = []
    for _, size, path in sorted(entries, key=lambda entry: entry[0]):
        if total <= max_bytes:
            break
        if keep is not None and path == Path(keep):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as error:  # read-only cache or a file held elsewhere: keep going
            _logger.warning('could not prune %s from the compile cache: %s', path, error)
            continue
        total -= size
        deleted.append(path)
    if deleted:
        _logger.info('compile cache %s: dropped %d least recently used artefacts to stay under '
                     '%.1f GB (EMBODIED_VISION_CACHE_MAX_GB)', cache, len(deleted),
                     max_bytes / 1024 ** 3)
    return deleted


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
