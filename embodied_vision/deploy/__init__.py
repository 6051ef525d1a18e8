"""Runtimes for encoders: eager, inductor, onnxruntime and Torch-TensorRT, with parity gates.

    >>> fast = embodied_vision.deploy.compile(encoder, backend='auto')
    >>> fast.parity.max_abs_error, fast.backend
"""
from embodied_vision.deploy.compile import (
    BACKENDS,
    CompiledEncoder,
    available_backends,
    compile,
    resolve_backend,
)
from embodied_vision.deploy.export import export_encoder
from embodied_vision.deploy.onnx_runtime import export_onnx
from embodied_vision.deploy.parity import ParityError, ParityReport, measure_parity

__all__ = ['BACKENDS', 'CompiledEncoder', 'ParityError', 'ParityReport', 'available_backends',
           'compile', 'export_encoder', 'export_onnx', 'measure_parity', 'resolve_backend']
