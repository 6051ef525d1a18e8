"""ONNX Runtime backend: dynamo ONNX export with a dynamic batch, cached on disk.

The one ONNX export path of the package: names and dynamic axes come from the module's
export contract, so encoders and heads of every modality go through `export_onnx`.

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


def export_onnx(module, path: str | os.PathLike,
                example_inputs: tuple[torch.Tensor, ...] | None = None,
                max_batch: int = 256, size: tuple[int, ...] | None = None) -> Path:
    """Write `module` to an ONNX file with the torch.onnx dynamo exporter.

    The module's contract says how: `example_inputs(batch, size)` (used when
    `example_inputs` is None), `dynamic_shapes(n_inputs, max_batch)` (the dynamic axes) and
    `export_names(n_inputs)` (input and output names). Encoders, downstream heads and any
    model of another modality (voxel grids, point clouds) export through here.
    """
    missing = [m for m in ('example_inputs', 'dynamic_shapes', 'export_names')
               if not callable(getattr(module, m, None))]
    if missing:
        raise TypeError(f'{type(module).__name__} cannot be exported: it lacks {missing} '
                        '(the export contract of embodied_vision.encoders.Encoder)')
    require_package('onnxscript', 'core', 'ONNX export')
    if example_inputs is None:
        example_inputs = tuple(x.float() for x in module.example_inputs(2, size))
    example_inputs = tuple(example_inputs)
    input_names, output_names = module.export_names(len(example_inputs))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = module.dynamic_shapes(n_inputs=len(example_inputs), max_batch=max_batch)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        program = torch.onnx.export(module.eval(), example_inputs, dynamo=True,
                                    dynamic_shapes=dynamic, input_names=list(input_names),
                                    output_names=list(output_names), optimize=True,
                                    verbose=False)
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
        outs = [torch.from_numpy(out).to(self.device) for out in self.session.run(None, feeds)]
        return outs[0] if len(outs) == 1 else tuple(outs)


_ORT_DTYPES = {'tensor(float)': np.float32, 'tensor(float16)': np.float16,
               'tensor(uint8)': np.uint8, 'tensor(double)': np.float64,
               'tensor(int64)': np.int64}


def _to_numpy(x: torch.Tensor, dtype) -> np.ndarray:
    array = x.detach().cpu().numpy()
    return array if array.dtype == dtype else array.astype(dtype)
