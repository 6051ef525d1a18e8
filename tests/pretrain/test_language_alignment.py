"""Lang4Sim2Real objectives: loss values on known cases, and they train an encoder."""
import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from embodied_vision.encoders import create_encoder
from embodied_vision.pretrain import (
    LanguageRegressionHead,
    language_accuracy,
    language_distance_loss,
    language_regression_loss,
    pad_random_crop,
    similarity_f1,
)
from tests.learning import assert_learned


def test_regression_loss_is_the_unsquared_l2_summed_over_domains():
    a = torch.tensor([[1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0]])
    assert language_regression_loss([a], [a]).item() == pytest.approx(0.0)
    assert language_regression_loss([a], [b]).item() == pytest.approx(math.sqrt(2))
    assert language_regression_loss([a, a], [b, b]).item() == pytest.approx(2 * math.sqrt(2))
    with pytest.raises(ValueError, match='one sentence batch per domain'):
        language_regression_loss([a], [])


def test_distance_loss_is_scaled_mse_of_cosines():
    sim = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    real = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    cosine = torch.tensor([[1.0, 1 / math.sqrt(2)], [0.0, 1 / math.sqrt(2)]])
    target = torch.tensor([[1.0, 0.5], [0.0, 0.5]])
    expected = F.mse_loss(40 * cosine, 40 * target).item()
    assert language_distance_loss(sim, real, target).item() == pytest.approx(expected)
    assert language_distance_loss(sim, real, cosine).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r'\(2, 2\)'):
        language_distance_loss(sim, real, torch.zeros(3, 2))


def test_pad_random_crop_shifts_within_pad():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = pad_random_crop(images, 2, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype
    # An interior pixel's value appears within +-pad of its position.
    for b in range(2):
        value = images[b, 0, 4, 4]
        rows, cols = torch.nonzero(out[b, 0] == value, as_tuple=True)
        if len(rows):
            assert (rows - 4).abs().max() <= 2 and (cols - 4).abs().max() <= 2
    shifted = pad_random_crop(torch.randint(0, 255, (16, 3, 8, 8), dtype=torch.uint8), 3)
    assert shifted.dtype == torch.uint8
    assert pad_random_crop(images, 0) is images


def test_metrics():
    templates = torch.eye(3)
    predicted = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]])
    assert language_accuracy(predicted, templates, torch.tensor([0, 2])) == 1.0
    assert language_accuracy(predicted, templates, torch.tensor([1, 2])) == 0.5
    target = torch.tensor([[0.9, 0.1], [0.2, 0.95]])
    assert similarity_f1(target, target, 0.5) == 1.0
    assert similarity_f1(torch.zeros(2, 2), target, 0.5) == 0.0


@pytest.mark.parametrize('objective', ['regression', 'distance'])
def test_objectives_train_the_encoder(objective):
    """Two 'domains' of coloured frames with stage sentences: the loss must fall."""
    torch.manual_seed(0)
    encoder = create_encoder('lang4sim2real_resnet18').train()
    stages = torch.arange(4).repeat(4)  # 16 frames per domain, 4 stages
    colours = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]])
    sim = colours[stages][:, :, None, None].expand(-1, -1, 16, 16).float()
    real = (0.7 * sim + 40).clamp(0, 255)  # another "look" of the same stages
    sentences = F.normalize(torch.randn(4, 384), dim=-1)
    head = LanguageRegressionHead(encoder.embed_dim)
    params = list(encoder.parameters()) + list(head.parameters())
    optimiser = torch.optim.Adadelta(params, lr=0.04 * 25)
    target_similarity = (sentences @ sentences.T).clamp(0, 1)[stages][:, stages]

    def loss_fn():
        f_sim, f_real = encoder(sim), encoder(real)
        if objective == 'regression':
            return language_regression_loss([head(f_sim), head(f_real)],
                                            [sentences[stages], sentences[stages]])
        return language_distance_loss(f_sim, f_real, target_similarity)

    first = loss_fn().item()
    for _ in range(20):
        loss = loss_fn()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert_learned(loss_fn().item() / first, 0.5, f'{objective} loss')
