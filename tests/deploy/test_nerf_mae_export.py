"""The NeRF-MAE encoder through torch.export, ONNX Runtime and (on a GPU) Torch-TensorRT."""
import copy

import pytest
import torch

from embodied_vision import create_encoder, deploy
from embodied_vision.utils import is_available
from tests.numerics import assert_fp32_close, fp32_tolerance, network_size


@pytest.fixture(scope='module')
def encoder():
    torch.manual_seed(0)
    return create_encoder('nerf_mae_swin_micro')


def test_torch_export_with_dynamic_batch_matches_eager_and_float64(encoder):
    program = deploy.export_encoder(encoder, encoder.example_inputs(2), max_batch=8)
    module = program.module()
    exact_model = copy.deepcopy(encoder).double()
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        (grid,) = encoder.example_inputs(batch, generator=generator)
        with torch.inference_mode():
            out, expected, exact = module(grid), encoder(grid), exact_model(grid.double())
        assert out.shape == (batch, encoder.embed_dim)
        assert_fp32_close(out, exact, encoder, exact=True, what='exported vs float64')
        assert_fp32_close(out, expected, encoder, what='exported vs eager')


@pytest.mark.skipif(not is_available('onnxruntime'), reason='needs onnxruntime')
def test_onnxruntime_matches_eager_through_the_shared_export_path(encoder, cache_dir):
    import onnx
    compiled = deploy.compile(encoder, 'onnxruntime', device='cpu', max_batch=4,
                              cache_dir=cache_dir)
    assert compiled.parity.passed and compiled.parity.max_abs_error <= fp32_tolerance(
        compiled.parity.reference_max, *network_size(encoder))
    graph = onnx.load(str(compiled.artifact)).graph
    assert [i.name for i in graph.input] == ['input'] and graph.output[0].name == 'embedding'
    assert not {node.op_type for node in graph.node} & {'If', 'Loop'}
    generator = torch.Generator().manual_seed(2)
    for batch in (1, 3):
        (grid,) = encoder.example_inputs(batch, generator=generator)
        with torch.inference_mode():
            expected = encoder(grid)
        assert_fp32_close(compiled(grid), expected, encoder, what='onnxruntime vs eager')


@pytest.mark.gpu
@pytest.mark.parametrize('backend,precision', [('eager', 'fp16'), ('eager', 'bf16'),
                                               ('inductor', 'fp32')])
def test_gpu_runtimes_pass_parity(encoder, backend, precision, cache_dir):
    compiled = deploy.compile(encoder, backend, device='cuda', precision=precision,
                              max_batch=4, cache_dir=cache_dir)
    assert compiled.parity.passed, compiled.parity


@pytest.mark.gpu
@pytest.mark.skipif(not is_available('torch_tensorrt'), reason='needs torch_tensorrt')
@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_tensorrt_engine_passes_parity(encoder, precision, cache_dir):
    compiled = deploy.compile(encoder, 'tensorrt', device='cuda', precision=precision,
                              max_batch=4, cache_dir=cache_dir)
    assert compiled.parity.passed and compiled.artifact.exists()
