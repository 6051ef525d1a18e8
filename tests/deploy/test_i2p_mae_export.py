"""The I2P-MAE encoder through ONNX Runtime and (on a GPU) Torch-TensorRT: the first scale's
FPS runs before the exported graph, kNN and everything after it inside."""
import pytest
import torch

from embodied_vision import create_encoder, deploy
from embodied_vision.layers.point_ops import farthest_point_sample
from embodied_vision.utils import is_available
from tests.numerics import assert_fp32_close, fp32_tolerance, network_size


@pytest.fixture(scope='module')
def encoder():
    torch.manual_seed(0)
    return create_encoder('i2p_mae_tiny')


def test_the_graph_takes_the_fps_indices_and_matches_eager(encoder):
    graph, prepare = encoder.export_graph()
    (points,) = encoder.example_inputs(3)
    prepared = prepare(points)
    assert torch.equal(prepared[1], farthest_point_sample(points, 64))
    with torch.inference_mode():
        assert torch.equal(graph(*prepared), encoder(points))
    program = torch.export.export(graph, graph.example_inputs(2),
                                  dynamic_shapes=graph.dynamic_shapes(2, 8), strict=False)
    with torch.inference_mode():
        assert_fp32_close(program.module()(*prepared), encoder(points), encoder,
                          what='exported graph vs eager')


@pytest.mark.skipif(not is_available('onnxruntime'), reason='needs onnxruntime')
def test_onnxruntime_matches_eager_with_fps_before_the_graph(encoder, cache_dir):
    import onnx
    compiled = deploy.compile(encoder, 'onnxruntime', device='cpu', max_batch=4,
                              cache_dir=cache_dir)
    assert compiled.parity.passed and compiled.parity.max_abs_error <= fp32_tolerance(
        compiled.parity.reference_max, *network_size(encoder))
    graph = onnx.load(str(compiled.artifact)).graph
    assert [i.name for i in graph.input] == ['points', 'centers_index']
    assert graph.output[0].name == 'embedding'
    ops = {node.op_type for node in graph.node}
    assert 'TopK' in ops and not ops & {'If', 'Loop'}  # kNN inside, no sampling loop
    generator = torch.Generator().manual_seed(2)
    for batch in (1, 3):
        (points,) = encoder.example_inputs(batch, generator=generator)
        with torch.inference_mode():
            expected = encoder(points)
        assert_fp32_close(compiled(points), expected, encoder, what='onnxruntime vs eager')
    with pytest.raises(ValueError, match=r'expects points \(B,N,3\)'):
        compiled(torch.zeros(1, 256, 4))


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
