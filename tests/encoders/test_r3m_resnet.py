"""R3M semantics: 0-255 input normalised inside the model, embedding sizes, input errors."""
import copy

import pytest
import torch
import torchvision

from embodied_vision.encoders import create_encoder
from embodied_vision.encoders.r3m_resnet import IMAGENET_MEAN, IMAGENET_STD
from tests.conftest import TINY
from tests.numerics import assert_fp32_close


@pytest.mark.parametrize('name,dim', [('r3m_resnet18', 512), ('r3m_resnet34', 512),
                                      ('r3m_resnet50', 2048)])
def test_embedding_sizes(name, dim):
    encoder = create_encoder(name)
    assert encoder.embed_dim == dim
    with torch.inference_mode():
        assert encoder(torch.zeros(2, 3, *TINY, dtype=torch.uint8)).shape == (2, dim)


def test_uint8_and_float_0_255_give_the_same_embedding():
    encoder = create_encoder('r3m_resnet18')
    frames = torch.randint(0, 256, (2, 3, *TINY), dtype=torch.uint8)
    with torch.inference_mode():
        torch.testing.assert_close(encoder(frames), encoder(frames.float()))


def test_preprocessing_matches_r3m_formula():
    encoder = create_encoder('r3m_resnet18')
    x = torch.rand(2, 3, *TINY) * 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(encoder.preprocess(x), (x / 255.0 - mean) / std,
                               rtol=1e-5, atol=1e-5)


def test_normalisation_buffers_are_not_in_the_state_dict():
    keys = create_encoder('r3m_resnet18').state_dict().keys()
    assert all(k.startswith('trunk.') for k in keys)
    assert not any('fc.' in k for k in keys)


def test_same_as_torchvision_resnet_with_identity_fc():
    torch.manual_seed(0)
    reference = torchvision.models.resnet34(weights=None)
    reference.fc = torch.nn.Identity()
    reference.eval()
    encoder = create_encoder('r3m_resnet34')
    encoder.trunk.load_state_dict(
        {k: v for k, v in reference.state_dict().items() if not k.startswith('fc.')})
    x = torch.rand(2, 3, *TINY) * 255
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    with torch.inference_mode():
        ours = encoder(x)
        theirs = reference((x / 255 - mean.float()) / std.float())
        exact = copy.deepcopy(reference).double()((x.double() / 255 - mean) / std)
    # Both fp32 paths against the float64 truth, then against each other.
    assert_fp32_close(ours, exact, reference, exact=True, what='ours vs float64')
    assert_fp32_close(theirs, exact, reference, exact=True, what='torchvision vs float64')
    assert_fp32_close(ours, theirs, reference, what='ours vs torchvision')


@pytest.mark.parametrize('bad,match', [
    (torch.zeros(3, 64, 64), r'\(B,3,H,W\)'),
    (torch.zeros(1, 1, 64, 64), r'\(B,3,H,W\)'),
])
def test_wrong_shapes_are_named(bad, match):
    encoder = create_encoder('r3m_resnet18')
    with pytest.raises(ValueError, match=match):
        encoder(bad)
    with pytest.raises(ValueError):
        encoder.check_input(bad)


def test_check_input_rejects_dtype_and_tiny_images():
    encoder = create_encoder('r3m_resnet18')
    with pytest.raises(TypeError, match='dtype'):
        encoder.check_input(torch.zeros(1, 3, 64, 64, dtype=torch.int64))
    with pytest.raises(ValueError, match='>= 32'):
        encoder.check_input(torch.zeros(1, 3, 16, 64))


def test_forward_intermediates_reports_stages():
    encoder = create_encoder('r3m_resnet18')
    x = torch.zeros(1, 3, *TINY)
    with torch.inference_mode():
        stages = encoder.forward_intermediates(x, indices=4, intermediates_only=True)
    channels = [info['num_chs'] for info in encoder.feature_info[-4:]]
    assert [s.shape[1] for s in stages] == channels
