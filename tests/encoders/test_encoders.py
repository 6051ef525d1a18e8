"""Every registered encoder: contract, shapes, input checks and torch.export."""
import pytest
import torch

from embodied_vision.deploy import export_encoder
from embodied_vision.encoders import Encoder, create_encoder, list_encoders
from tests.conftest import TINY
from tests.numerics import assert_fp32_close

ENCODERS = list_encoders()


@pytest.fixture(scope='module', params=ENCODERS)
def encoder(request):
    torch.manual_seed(0)
    return create_encoder(request.param)


def test_contract_is_declared(encoder):
    assert isinstance(encoder, Encoder)
    contract = encoder.input_contract
    assert contract.modality in ('image', 'image_pair', 'points', 'voxels')
    assert encoder.embed_dim > 0
    assert contract.default_size


@pytest.mark.parametrize('batch', [1, 3])
def test_forward_shapes_and_finite(encoder, batch):
    (x,) = encoder.example_inputs(batch_size=batch, size=TINY)
    with torch.inference_mode():
        features = encoder.forward_features(x)
        embedding = encoder(x)
    assert embedding.shape == (batch, encoder.embed_dim)
    assert features.shape[0] == batch and features.ndim >= 3
    assert torch.isfinite(embedding).all()
    assert torch.equal(encoder.forward_head(features), embedding)


def test_example_inputs_pass_check_input(encoder):
    for x in encoder.example_inputs(batch_size=2, size=TINY):
        encoder.check_input(x)


def test_torch_export_with_dynamic_batch(encoder):
    example = encoder.example_inputs(batch_size=2, size=TINY)
    program = export_encoder(encoder, example, max_batch=64)
    module = program.module()
    for batch in (1, 5):
        inputs = encoder.example_inputs(batch_size=batch, size=TINY)
        with torch.inference_mode():
            assert_fp32_close(module(*inputs), encoder(*inputs), encoder,
                              what='exported vs eager')
