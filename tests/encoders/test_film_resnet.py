"""Lang4Sim2Real's narrow FiLM-ResNet-18."""
import pytest
import torch

from embodied_vision.encoders import create_encoder


@pytest.fixture(scope='module')
def encoder():
    torch.manual_seed(0)
    return create_encoder('lang4sim2real_resnet18')


def test_shapes_follow_the_paper(encoder):
    frames = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    with torch.inference_mode():
        features = encoder.forward_features(frames)
    assert features.shape == (2, 128, 16, 16)
    assert encoder.embed_dim == 128
    widths = [encoder.layers[i][0].conv1.out_channels for i in range(4)]
    assert widths == [16, 32, 64, 128]
    assert sum(p.numel() for p in encoder.parameters() if p not in set(
        encoder.film_parameters())) < 1_000_000  # narrow: ~0.7M without FiLM


def test_film_is_near_identity_at_init_and_conditions_after_training(encoder):
    frames = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    cond = torch.randn(2, 384)
    with torch.inference_mode():
        plain, conditioned = encoder(frames), encoder(frames, cond)
    assert (plain - conditioned).abs().max() < 0.05 * plain.abs().max()
    model = create_encoder('lang4sim2real_resnet18').train()
    optimiser = torch.optim.SGD(model.film_parameters(), lr=0.5)
    target = torch.zeros(2, 128)
    for _ in range(5):
        loss = (model(frames, cond) - target).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.inference_mode():
        assert (model(frames, cond) - model(frames)).abs().max() > 1e-3


def test_bad_conditioning_is_named(encoder):
    with pytest.raises(ValueError, match=r'\(B, 384\)'):
        encoder(torch.zeros(1, 3, 64, 64), torch.zeros(1, 10))
