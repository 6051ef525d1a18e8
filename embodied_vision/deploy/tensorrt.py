"""Torch-TensorRT backend (dynamo / ahead-of-time path), imported lazily.

Compiles with `torch_tensorrt.compile(ir='dynamo')`, which traces with `torch.export`, over a
batch profile (min/opt/max) at a fixed spatial size, and saves the result as an exported
program in our keyed cache so the next start deserialises it instead of rebuilding (first
builds take minutes on Jetson).

Precision follows the installed version (reference/deploy_tensorrt.md §1): up to 2.12 the
dynamo compiler takes `enabled_precisions`; 2.13 removed it, so there fp16/bf16 use
`enable_autocast` with `autocast_low_precision_type`. The parity gate in `deploy.compile`
checks every engine against eager fp32 (fp16 ViTs are a known TensorRT risk).
"""
import logging
import os
from pathlib import Path

import torch

from embodied_vision.utils import require_package

__all__ = ['compile_tensorrt', 'load_tensorrt', 'precision_kwargs']

_logger = logging.getLogger(__name__)
_DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def _version(text: str) -> tuple[int, int]:
    digits = [int(''.join(c for c in part if c.isdigit()) or 0)
              for part in text.split('+')[0].split('.')[:2]]
    return digits[0], digits[1] if len(digits) > 1 else 0


def precision_kwargs(version: str, precision: str) -> dict:
    """Compile kwargs that select `precision` on Torch-TensorRT `version`."""
    if precision not in _DTYPES:
        raise ValueError(f'precision={precision!r} is not one of {sorted(_DTYPES)}')
    if _version(version) <= (2, 12):
        return {'enabled_precisions': {_DTYPES[precision]}}
    if precision == 'fp32':
        return {}
    return {'enable_autocast': True, 'autocast_low_precision_type': _DTYPES[precision]}


def _require_cuda():
    trt = require_package('torch_tensorrt', 'tensorrt', 'the tensorrt backend')
    if not torch.cuda.is_available():
        raise RuntimeError('the tensorrt backend needs a CUDA GPU; none is visible '
                           '(use backend="onnxruntime" or "eager" on CPU)')
    return trt


def compile_tensorrt(encoder, example_inputs: tuple[torch.Tensor, ...], path: Path,
                     precision: str = 'fp32', min_batch: int = 1, opt_batch: int = 1,
                     max_batch: int = 8, device: str = 'cuda', workspace_size: int = 1 << 30,
                     min_block_size: int = 5):
    """Build a TensorRT-backed module for `encoder` and save it to `path` (.ep)."""
    trt = _require_cuda()
    model = encoder.to(device).eval()
    inputs = [trt.Input(min_shape=(min_batch, *x.shape[1:]), opt_shape=(opt_batch, *x.shape[1:]),
                        max_shape=(max_batch, *x.shape[1:]), dtype=_input_dtype(x))
              for x in example_inputs]
    _logger.warning('building a TensorRT engine for %s (%s, batch %d-%d); this can take '
                    'minutes on Jetson', getattr(encoder, 'name', '?'), precision, min_batch,
                    max_batch)
    compiled = trt.compile(
        model, ir='dynamo', arg_inputs=inputs, min_block_size=min_block_size,
        workspace_size=workspace_size, **precision_kwargs(trt.__version__, precision))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.tmp.ep')
    trt.save(compiled, str(tmp), output_format='exported_program', arg_inputs=[
        x.to(device, _input_dtype(x))[:opt_batch] for x in example_inputs])
    os.replace(tmp, path)
    return compiled


def _input_dtype(x: torch.Tensor) -> torch.dtype:
    """Engines take float32 data; index inputs (I2P-MAE's FPS centers) keep their dtype."""
    return torch.float32 if x.is_floating_point() else x.dtype


def load_tensorrt(path: Path, device: str = 'cuda'):
    """Deserialise a saved TensorRT exported program (built on this GPU and version)."""
    trt = _require_cuda()
    return trt.load(str(path)).module().to(device)
