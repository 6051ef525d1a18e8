"""warmup_cosine from torch's schedulers: the per-step learning rates of the former formula."""
import math

import pytest
import torch

from embodied_vision.training import warmup_cosine


def _former_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """The LambdaLR factor this package used before torch's schedulers."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _rates(optimizer, scheduler, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    return rates


def _sgd(lr: float = 3.75e-5, groups: int = 1):
    return torch.optim.SGD([{'params': [torch.nn.Parameter(torch.zeros(1))]}
                            for _ in range(groups)], lr=lr)


@pytest.mark.filterwarnings('error')  # no scheduler warnings (e.g. a deprecated epoch argument)
@pytest.mark.parametrize('total, warmup, min_ratio', [
    (20000, 500, 0.0), (1000, 100, 0.2), (30, 0, 0.1), (5, 1, 0.0), (4, 4, 0.0), (1, 0, 0.0),
    (10, 2, 0.0)])
def test_rates_equal_the_former_formula_at_every_step(total, warmup, min_ratio):
    lr = 3.75e-5
    optimizer = _sgd(lr, groups=2)
    rates = _rates(optimizer, warmup_cosine(optimizer, total, warmup, min_ratio), total)
    expected = [lr * _former_factor(s, total, warmup, min_ratio) for s in range(total)]
    # one float64 cosine recursion per step: rounding of a few ulp of lr per 1e4 steps
    assert max(abs(a - b) for a, b in zip(rates, expected)) <= 1e-12 * lr
    assert optimizer.param_groups[1]['lr'] == optimizer.param_groups[0]['lr']


def test_a_resumed_schedule_continues_with_the_same_rates():
    total, warmup, cut = 60, 10, 25
    optimizer = _sgd()
    full = _rates(optimizer, warmup_cosine(optimizer, total, warmup), total)
    first = _sgd()
    scheduler = warmup_cosine(first, total, warmup)
    head = _rates(first, scheduler, cut)
    resumed = _sgd()
    again = warmup_cosine(resumed, total, warmup)
    resumed.load_state_dict(first.state_dict())   # the trainer's order: optimiser, scheduler
    again.load_state_dict(scheduler.state_dict())
    assert head + _rates(resumed, again, total - cut) == pytest.approx(full, rel=1e-12)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='total_steps >= 1'):
        warmup_cosine(_sgd(), 0)
    with pytest.raises(ValueError, match='min_lr_ratio'):
        warmup_cosine(_sgd(), 10, min_lr_ratio=1.5)
    uneven = torch.optim.SGD([{'params': [torch.nn.Parameter(torch.zeros(1))], 'lr': 1.0},
                              {'params': [torch.nn.Parameter(torch.zeros(1))], 'lr': 0.1}])
    with pytest.raises(ValueError, match='one learning rate'):
        warmup_cosine(uneven, 10, min_lr_ratio=0.1)
