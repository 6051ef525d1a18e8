"""The parameters of a node that runs a compiled encoder (`encoder_node`, `voxel_node`, ...).

One table, so every such node names, documents and checks them alike: which encoder and
weights, the runtime (`deploy.compile` backends), device, precision, artefact cache, parity
check and threads; and how they resolve and compile (no ROS graph).
"""
import functools
import re

from embodied_vision.ros_nodes.parameters import ParamSpec

__all__ = ['BACKEND_CHOICES', 'DEVICE_PATTERN', 'check_runtime_parameter',
           'compile_node_encoder', 'encoder_runtime_params', 'resolve_runtime']

BACKEND_CHOICES = ('auto', 'eager', 'onnxruntime', 'inductor', 'tensorrt')
DEVICE_PATTERN = re.compile(r'^(|cpu|cuda(:\d+)?)$')  # '' = cuda when available


def encoder_runtime_params(encoder_default: str, encoder_help: str,
                           checkpoint_help: str) -> tuple[ParamSpec, ...]:
    """`encoder_name`, `checkpoint_path`, `backend`, `device`, `precision`,
    `engine_cache_dir`, `force_engine_update`, `check_parity`, `num_threads` (all read-only:
    they decide the compiled engine)."""
    return (
        ParamSpec('encoder_name', encoder_default, encoder_help, read_only=True),
        ParamSpec('checkpoint_path', '', checkpoint_help, read_only=True),
        ParamSpec('backend', 'auto', 'runtime; auto = tensorrt on CUDA, else onnxruntime, '
                  'else eager', choices=BACKEND_CHOICES, read_only=True),
        ParamSpec('device', '', "'cpu', 'cuda' or 'cuda:N'; empty = cuda when available",
                  read_only=True),
        ParamSpec('precision', 'fp32', 'inference precision (fp16/bf16 need CUDA)',
                  choices=('fp32', 'fp16', 'bf16'), read_only=True),
        ParamSpec('engine_cache_dir', '', 'where compiled artefacts (ONNX, TensorRT) are '
                  'cached; empty = the default cache', read_only=True),
        ParamSpec('force_engine_update', False, 'rebuild the compiled artefact even when a '
                  'cached one matches', read_only=True),
        ParamSpec('check_parity', True, 'compare the compiled runtime with eager fp32 at '
                  'configure and fail on drift', read_only=True),
        ParamSpec('num_threads', 0, 'CPU threads for inference (onnxruntime intra-op, torch '
                  'for eager/inductor); 0 = the runtime default', low=0, high=1024,
                  read_only=True),
    )


@functools.cache
def encoders_of(modality: str | None) -> tuple[str, ...]:
    """Registered architectures whose input contract has `modality` (None: all)."""
    import torch

    from embodied_vision.encoders import create_encoder, list_encoders
    if modality is None:
        return tuple(list_encoders())
    with torch.device('meta'):  # contracts only: no memory, no init time
        return tuple(name for name in list_encoders()
                     if create_encoder(name).input_contract.modality == modality)


def check_runtime_parameter(name: str, value, modality: str | None = None) -> str:
    """The on-set check of these parameters: '' when `value` is allowed, else why not;
    `modality` restricts `encoder_name` to the encoders a node can feed."""
    if name == 'device' and not DEVICE_PATTERN.match(str(value)):
        return f"device={value!r} is not allowed; use '', 'cpu', 'cuda' or 'cuda:N'"
    if name == 'encoder_name':
        from embodied_vision.encoders._registry import split_name
        allowed = encoders_of(modality)
        arch = split_name(str(value))[0]
        if arch not in allowed:
            what = 'unknown' if arch not in encoders_of(None) else \
                f'not an encoder of {modality} input'
            return f'encoder_name={value!r} is {what}; allowed: {", ".join(allowed)}'
    return ''


def resolve_runtime(node, **options) -> tuple[str, str, dict]:
    """`(device, backend, compile options)` from a node's runtime parameters; `num_threads`
    goes to ONNX Runtime's sessions, else to torch. `options` are extra compile options for
    ONNX Runtime (e.g. `spinning`)."""
    import torch

    from embodied_vision import deploy
    device = node.param('device') or ('cuda' if torch.cuda.is_available() else 'cpu')
    backend = deploy.resolve_backend(node.param('backend'), device)
    options = dict(options) if backend == 'onnxruntime' else {}
    threads = node.param('num_threads')
    if threads and backend == 'onnxruntime':
        options['threads'] = threads
    elif threads:
        torch.set_num_threads(threads)
    return device, backend, options


def compile_node_encoder(node, encoder, device: str, backend: str, input_size, input_dtype,
                         options: dict):
    """`deploy.compile` with the node's precision, parity, cache parameters."""
    from embodied_vision import deploy
    return deploy.compile(
        encoder, backend, device=device, precision=node.param('precision'),
        input_size=input_size, input_dtype=input_dtype,
        check_parity=node.param('check_parity'),
        cache_dir=node.param('engine_cache_dir') or None,
        use_cache=not node.param('force_engine_update'), **options)
