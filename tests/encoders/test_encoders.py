"""Every registered encoder: contract, shapes, input checks and torch.export."""
import pytest
import torch

from embodied_vision.deploy import export_encoder
from embodied_vision.encoders import Encoder, create_encoder, list_encoders
from embodied_vision.encoders.i2p_mae import PRESETS as I2P_PRESETS
from tests.conftest import TINY
from tests.numerics import assert_fp32_close

ENCODERS = list_encoders()
# Voxel models pad every grid to their resolution (160^3 for the released ones: tens of
# seconds per CPU forward); the same architectures at 32^3 test the same code. Point models
# run the released layer structure at test widths on 256 points.
SMALL = {'voxels': {'resolution': 32}, 'points': dict(I2P_PRESETS['tiny'])}


@pytest.fixture(scope='module', params=ENCODERS)
def encoder(request):
    torch.manual_seed(0)
    with torch.device('meta'):
        modality = create_encoder(request.param).input_contract.modality
    torch.manual_seed(0)
    return create_encoder(request.param, **SMALL.get(modality, {}))


def _size(encoder):
    """TINY for images; a voxel or point model's own (small) size."""
    return None if encoder.input_contract.modality in ('voxels', 'points') else TINY


def test_contract_is_declared(encoder):
    assert isinstance(encoder, Encoder)
    contract = encoder.input_contract
    assert contract.modality in ('image', 'image_pair', 'points', 'voxels')
    assert encoder.embed_dim > 0
    assert contract.default_size


@pytest.mark.parametrize('batch', [1, 3])
def test_forward_shapes_and_finite(encoder, batch):
    (x,) = encoder.example_inputs(batch_size=batch, size=_size(encoder))
    with torch.inference_mode():
        features = encoder.forward_features(x)
        embedding = encoder(x)
    assert embedding.shape == (batch, encoder.embed_dim)
    assert features.shape[0] == batch and features.ndim >= 3
    assert torch.isfinite(embedding).all()
    assert torch.equal(encoder.forward_head(features), embedding)


def test_example_inputs_pass_check_input(encoder):
    for x in encoder.example_inputs(batch_size=2, size=_size(encoder)):
        encoder.check_input(x)


def test_torch_export_with_dynamic_batch(encoder):
    example = encoder.example_inputs(batch_size=2, size=_size(encoder))
    program = export_encoder(encoder, example, max_batch=64)
    module = program.module()
    for batch in (1, 5):
        inputs = encoder.example_inputs(batch_size=batch, size=_size(encoder))
        with torch.inference_mode():
            assert_fp32_close(module(*inputs), encoder(*inputs), encoder,
                              what='exported vs eager')
