"""ONNX Runtime backend: dynamo ONNX export with a dynamic batch, cached on disk.

The exported graph includes the encoder's in-model preprocessing, so it takes the same raw
input as the eager module. Inputs of another dtype (uint8 frames) are cast to the export
dtype on the way in.
"""
import logging
import os
from pathlib import Path
import warnings

import numpy as np
import torch

from embodied_vision.utils import require_package

__all__ = ['export_onnx', 'OnnxRuntimeModule']

_logger = logging.getLogger(__name__)


def export_onnx(encoder, path: str | os.PathLike, example_inputs: tuple[torch.Tensor, ...],
                max_batch: int = 256) -> Path:
    """Write `encoder` to an ONNX file with the torch.onnx dynamo exporter."""
    require_package('onnxscript', 'core', 'ONNX export')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = encoder.dynamic_shapes(n_inputs=len(example_inputs), max_batch=max_batch)
    names = [f'input_{i}' for i in range(len(example_inputs))] if len(example_inputs) > 1 \
        else ['input']
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        program = torch.onnx.export(encoder.eval(), tuple(example_inputs), dynamo=True,
                                    dynamic_shapes=dynamic, input_names=names,
                                    output_names=['embedding'], optimize=True, verbose=False)
    tmp = path.with_suffix('.tmp.onnx')
    program.save(str(tmp))
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return path


class OnnxRuntimeModule:
    """A torch-in/torch-out callable over an onnxruntime InferenceSession.

    Args:
        threads: intra-op threads; 0 = one per CPU.
        allow_spinning: let the intra-op threads busy-wait for work between and after runs
            (onnxruntime's default: lowest latency on an idle machine). False makes them
            sleep, which frees the cores for other threads of the process (a ROS executor,
            DDS) and for other processes when the CPUs are shared.
    """

    def __init__(self, path: str | os.PathLike, device: str = 'cpu', threads: int = 0,
                 allow_spinning: bool = True):
        ort = require_package('onnxruntime', 'core', 'the onnxruntime backend')
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.log_severity_level = 3
        spin = '1' if allow_spinning else '0'
        options.add_session_config_entry('session.intra_op.allow_spinning', spin)
        options.add_session_config_entry('session.inter_op.allow_spinning', spin)
        self.allow_spinning = bool(allow_spinning)
        providers = ['CPUExecutionProvider']
        if str(device).startswith('cuda'):
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                raise RuntimeError('onnxruntime here has no CUDAExecutionProvider; install '
                                   'onnxruntime-gpu or use device="cpu"')
            providers.insert(0, 'CUDAExecutionProvider')
        self.path = Path(path)
        self.device = torch.device(device)
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_dtypes = [_ORT_DTYPES[i.type] for i in self.session.get_inputs()]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.input_names):
            raise ValueError(f'expected {len(self.input_names)} inputs, got {len(inputs)}')
        feeds = {name: _to_numpy(x, dtype)
                 for name, x, dtype in zip(self.input_names, inputs, self.input_dtypes)}
        out = self.session.run(None, feeds)[0]
        return torch.from_numpy(out).to(self.device)


_ORT_DTYPES = {'tensor(float)': np.float32, 'tensor(float16)': np.float16,
               'tensor(uint8)': np.uint8, 'tensor(double)': np.float64}


def _to_numpy(x: torch.Tensor, dtype) -> np.ndarray:
    array = x.detach().cpu().numpy()
    return array if array.dtype == dtype else array.astype(dtype)
