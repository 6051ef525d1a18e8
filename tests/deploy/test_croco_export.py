"""CroCo v1 (sin-cos) and v2 (RoPE) through torch.export and ONNX Runtime, tiny sizes."""
import copy

import pytest
import torch

from embodied_vision import create_encoder, deploy
from embodied_vision.utils import is_available
from tests.numerics import assert_fp32_close, fp32_tolerance, network_size

TINY = {'enc_embed_dim': 32, 'enc_depth': 2, 'enc_num_heads': 2, 'img_size': 32}
DEC = {'dec_embed_dim': 32, 'dec_depth': 1, 'dec_num_heads': 2}
MODELS = {
    'v1_pair': ('croco_pair_vit_base', {**TINY, **DEC}),
    'v2_pair': ('croco_v2_pair_vit_base_smalldec', {**TINY, **DEC}),
    'v1_encoder': ('croco_vit_base', TINY),
    'v2_encoder': ('croco_v2_vit_base', TINY),
}
SIZE = (32, 48)  # non-square, and not the cosine tables' native 32x32


def _model(key):
    torch.manual_seed(0)
    name, kwargs = MODELS[key]
    return create_encoder(name, **kwargs)


@pytest.mark.parametrize('key', list(MODELS))
def test_torch_export_with_dynamic_batch_matches_eager(key):
    model = _model(key)
    program = deploy.export_encoder(model, model.example_inputs(2, SIZE), max_batch=16)
    module = program.module()
    exact_model = copy.deepcopy(model).double()
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 5):
        inputs = model.example_inputs(batch, SIZE, generator=generator)
        with torch.inference_mode():
            out, expected = module(*inputs), model(*inputs)
            exact = exact_model(*(x.double() for x in inputs))
        assert_fp32_close(out, exact, model, exact=True, what='exported vs float64')
        assert_fp32_close(expected, exact, model, exact=True, what='eager vs float64')
        assert_fp32_close(out, expected, model, what='exported vs eager')
    # exporting did not leave traced tensors in the RoPE cache: eager autograd still works
    model.train()
    model(*model.example_inputs(1, SIZE)).sum().backward()


@pytest.mark.skipif(not is_available('onnxruntime'), reason='needs onnxruntime')
@pytest.mark.parametrize('key', ['v1_pair', 'v2_pair', 'v2_encoder'])
def test_onnxruntime_matches_eager(key, cache_dir):
    import onnx
    model = _model(key)
    compiled = deploy.compile(model, 'onnxruntime', device='cpu', input_size=SIZE,
                              max_batch=8, cache_dir=cache_dir)
    assert compiled.parity.passed and compiled.parity.max_abs_error <= fp32_tolerance(
        compiled.parity.reference_max, *network_size(model))
    ops = {node.op_type for node in onnx.load(str(compiled.artifact)).graph.node}
    assert not ops & {'If', 'Loop'}  # positions are constants, no data-dependent branches
    exact_model = copy.deepcopy(model).double()
    generator = torch.Generator().manual_seed(2)
    for batch in (1, 4):
        inputs = model.example_inputs(batch, SIZE, generator=generator)
        with torch.inference_mode():
            expected = model(*inputs)
            exact = exact_model(*(x.double() for x in inputs))
        out = compiled(*inputs)
        assert_fp32_close(out, exact, model, exact=True, what='onnxruntime vs float64')
        assert_fp32_close(expected, exact, model, exact=True, what='eager vs float64')
        assert_fp32_close(out, expected, model, what='onnxruntime vs eager')
