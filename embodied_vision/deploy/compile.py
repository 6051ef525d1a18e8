"""`compile(encoder, backend=...)`: one entry point for every runtime, with a parity gate.

Backends: `eager`, `inductor` (torch.compile), `onnxruntime` (dynamo ONNX export, dynamic
batch) and `tensorrt` (Torch-TensorRT dynamo AOT). `auto` picks tensorrt on CUDA when
torch_tensorrt imports, otherwise onnxruntime (on CUDA only with its CUDA provider),
otherwise eager. The result takes the same inputs and returns the same outputs as the eager
module, and carries the parity report measured against eager fp32 on a probe batch; a
runtime past its tolerance raises `ParityError` instead of being returned.
"""
from dataclasses import dataclass, field
import logging
from pathlib import Path
import tempfile
import time

import torch

from embodied_vision.deploy import inductor, onnx_runtime, tensorrt
from embodied_vision.deploy.cache import (
    artifact_key,
    cache_budget_bytes,
    default_cache_dir,
    mark_used,
    prune_cache,
)
from embodied_vision.deploy.parity import ParityError, ParityReport, measure_parity
from embodied_vision.utils import is_available

__all__ = ['BACKENDS', 'CompiledEncoder', 'available_backends', 'compile', 'resolve_backend']

_logger = logging.getLogger(__name__)

BACKENDS = ('eager', 'inductor', 'onnxruntime', 'tensorrt')
PRECISIONS = ('fp32', 'fp16', 'bf16')


def available_backends(device: str = 'cpu') -> list[str]:
    """Backends that can run here on `device`."""
    found = ['eager', 'inductor']
    if is_available('onnxruntime'):
        if not str(device).startswith('cuda'):
            found.append('onnxruntime')
        else:
            import onnxruntime
            if 'CUDAExecutionProvider' in onnxruntime.get_available_providers():
                found.append('onnxruntime')
    if str(device).startswith('cuda') and torch.cuda.is_available() \
            and is_available('torch_tensorrt'):
        found.append('tensorrt')
    return found


def resolve_backend(backend: str, device: str) -> str:
    """Turn `auto` into a concrete backend; validate explicit names."""
    if backend == 'auto':
        found = available_backends(device)
        for choice in ('tensorrt', 'onnxruntime', 'eager'):
            if choice in found:
                return choice
    if backend not in BACKENDS:
        raise ValueError(f'backend={backend!r} is not one of {("auto",) + BACKENDS}')
    return backend


@dataclass
class CompiledEncoder:
    """A compiled encoder: call it like the eager module.

    Attributes:
        backend: the runtime that executes it.
        encoder: the eager module it was built from (name, contract, embed_dim).
        parity: the parity report against eager fp32 (None when not checked).
        build_seconds: time to build or load the artefact.
        artifact: path of the cached artefact, if the backend writes one.
    """

    backend: str
    encoder: torch.nn.Module
    runner: object = field(repr=False)
    device: str = 'cpu'
    precision: str = 'fp32'
    parity: ParityReport | None = None
    build_seconds: float = 0.0
    artifact: Path | None = None

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    @property
    def input_contract(self):
        return self.encoder.input_contract

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The encoder's output; raises TypeError/ValueError naming the input contract when
        the input breaks it (wrong dtype, layout, channels or size), before any runtime
        sees it."""
        if not inputs:
            raise TypeError(f'{self.name} needs an input: {self.input_contract.modality} '
                            f'tensor(s), see its input_contract')
        self.encoder.check_input(inputs[0])
        inputs = tuple(x.to(self.device, non_blocking=True) for x in inputs)
        if self.backend == 'tensorrt':  # engines are built for float32 inputs
            inputs = tuple(x.float() for x in inputs)
        elif self.precision != 'fp32':  # a half-precision torch module takes its dtype
            inputs = tuple(x if x.dtype == torch.uint8 else x.to(_DTYPE[self.precision])
                           for x in inputs)
        with torch.inference_mode():
            return self.runner(*inputs)


_DTYPE = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def _probe_inputs(encoder, probe_batch: int, size) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    return encoder.example_inputs(batch_size=probe_batch, size=size, generator=generator)


def compile(encoder, backend: str = 'auto', *, device: str | None = None,  # noqa: A001
            precision: str = 'fp32', input_size: tuple[int, ...] | None = None,
            input_dtype: torch.dtype | None = None, max_batch: int = 32,
            check_parity: bool = True, atol: float | None = None,
            rtol: float | None = None, cache_dir: str | Path | None = None,
            use_cache: bool = True, **backend_options) -> CompiledEncoder:
    """Compile `encoder` for `backend` and check it against eager fp32.

    Args:
        encoder: a registered encoder (see `create_encoder`).
        backend: 'auto', 'eager', 'inductor', 'onnxruntime' or 'tensorrt'.
        device: 'cpu' or 'cuda[:i]'; default cuda when available.
        precision: 'fp32', 'fp16' or 'bf16' (reduced precision needs CUDA).
        input_size: spatial size the artefact is built and checked at (default: the
            encoder's `input_contract.default_size`). The batch axis is dynamic.
        input_dtype: the dtype the caller will feed (e.g. `torch.uint8` camera frames):
            checked against the encoder's input contract before anything is built. Every
            call is checked against the contract in any case.
        max_batch: largest batch the artefact accepts (tensorrt/onnx profiles).
        check_parity: run the probe batch through both and refuse a drifting runtime.
        atol, rtol: override the precision's default tolerance.
        cache_dir: where exported artefacts are kept (keyed by weights, options, versions).
        use_cache: reuse a cached artefact with the same key.
        **backend_options: passed to the backend (e.g. `mode` for inductor, `threads` and
            `spinning` (intra-op threads busy-wait between ops; a session setting, not part
            of the cache key) for onnxruntime, `min_block_size` / `opt_batch` for tensorrt).
    """
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if precision not in PRECISIONS:
        raise ValueError(f'precision={precision!r} is not one of {PRECISIONS}')
    if precision != 'fp32' and not str(device).startswith('cuda'):
        raise ValueError(f'precision={precision!r} needs a CUDA device; got device={device!r}')
    backend = resolve_backend(backend, device)
    size = tuple(input_size or encoder.input_contract.default_size)
    if input_dtype is not None:  # the caller's input form, refused before any export
        encoder.check_input(encoder.example_inputs(1, size)[0].to(input_dtype))
    encoder = encoder.eval()
    reference = encoder.to('cpu')
    # The probe has a batch size other than the export example, so it also checks that the
    # batch axis really is dynamic.
    probe = _probe_inputs(reference, 3, size)
    with torch.inference_mode():
        expected = reference(*probe).float()
    start = time.perf_counter()
    runner, artifact = _build(encoder, backend, device, precision, size, max_batch,
                              cache_dir, use_cache, backend_options)
    compiled = CompiledEncoder(backend=backend, encoder=encoder, runner=runner, device=device,
                               precision=precision, artifact=artifact)
    if check_parity:
        compiled.parity = measure_parity(lambda *_: expected, compiled, probe,
                                         precision=precision, atol=atol, rtol=rtol)
        if not compiled.parity.passed:
            raise ParityError(f'{backend} runtime of {encoder.name} ({precision}) drifts from '
                              f'eager fp32: {compiled.parity}')
    compiled.build_seconds = time.perf_counter() - start
    _logger.info('compiled %s with %s in %.1f s; parity: %s', encoder.name, backend,
                 compiled.build_seconds, compiled.parity)
    return compiled


# onnxruntime session settings that do not change the exported artefact
_SESSION_OPTIONS = ('spinning',)


def _build(encoder, backend, device, precision, size, max_batch, cache_dir, use_cache, options):
    if backend == 'eager':
        model = encoder.to(device)
        if precision != 'fp32':
            model = model.to(_DTYPE[precision])
        return model, None
    if backend == 'inductor':
        model = encoder.to(device)
        if precision != 'fp32':
            model = model.to(_DTYPE[precision])
        return inductor.compile_inductor(model, **options), None
    example = tuple(x.float() for x in _probe_inputs(encoder, 2, size))
    # An encoder with a data-dependent step (I2P-MAE's FPS) exports the graph after it and
    # runs `prepare` before every call.
    graph, prepare = encoder.export_graph() if hasattr(encoder, 'export_graph') \
        else (encoder, None)
    if prepare is not None:
        with torch.inference_mode():
            example = tuple(prepare(*example))
    key_options = {'device': device, 'precision': precision, 'size': size,
                   'max_batch': max_batch,
                   **{k: v for k, v in options.items() if k not in _SESSION_OPTIONS}}
    # Random weights (`encoder_for_inference` without a checkpoint): nothing worth keeping,
    # so the artefact is built in a folder removed once it is loaded.
    scratch = tempfile.TemporaryDirectory(prefix='embodied_vision_random_') \
        if getattr(encoder, 'random_weights', False) else None
    cache = Path(scratch.name) if scratch else Path(cache_dir) if cache_dir \
        else default_cache_dir()
    budget = cache_budget_bytes()
    key = artifact_key(encoder, backend, key_options)
    path = cache / f'{encoder.name}-{key}.{"onnx" if backend == "onnxruntime" else "ep"}'
    reuse = use_cache and scratch is None and path.exists()
    if reuse:
        mark_used(path)
    elif backend == 'onnxruntime':
        onnx_runtime.export_onnx(graph.to('cpu'), path, example, max_batch=max_batch)
    if backend == 'onnxruntime':
        runner = onnx_runtime.OnnxRuntimeModule(
            path, device=device, threads=options.get('threads', 0),
            allow_spinning=options.get('spinning', True))
    elif reuse:
        runner = tensorrt.load_tensorrt(path, device=device)
    else:
        runner = tensorrt.compile_tensorrt(graph, example, path, precision=precision,
                                           max_batch=max_batch, device=device, **options)
    runner = runner if prepare is None else _Prepared(runner, prepare)
    if scratch is not None:
        scratch.cleanup()
        return runner, None
    prune_cache(cache, budget, keep=path)
    return runner, path


class _Prepared:
    """`runner(*prepare(*inputs))`: the eager step before an exported graph."""

    def __init__(self, runner, prepare):
        self.runner, self.prepare = runner, prepare

    def __call__(self, *inputs: torch.Tensor):
        return self.runner(*self.prepare(*inputs))
