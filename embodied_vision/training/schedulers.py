"""Learning-rate schedules built from torch's schedulers (stepped once per optimiser step)."""
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

__all__ = ['warmup_cosine']


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                  min_lr_ratio: float = 0.0) -> LRScheduler:
    """Linear warm-up then half-cosine decay to `min_lr_ratio * lr`, per step (CroCo's).

    Step `s` (0-based) trains at `lr * (s + 1) / warmup_steps` while `s < warmup_steps`, then
    at `lr * (m + (1 - m) * (1 + cos(pi * (s - warmup_steps) / (total_steps - warmup_steps)))
    / 2)` with `m = min_lr_ratio`: `LinearLR`, then `CosineAnnealingLR`, in a `SequentialLR`.
    Use as the trainer's `scheduler` partial: `{_target_: embodied_vision.training.
    warmup_cosine, _partial_: true, total_steps: ..., warmup_steps: ...}`.
    """
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(f'need total_steps >= 1 and warmup_steps >= 0, got {total_steps}, '
                         f'{warmup_steps}')
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f'min_lr_ratio must be in [0, 1], got {min_lr_ratio}')
    base = [group.get('initial_lr', group['lr']) for group in optimizer.param_groups]
    if len(set(base)) > 1 and min_lr_ratio > 0:
        raise ValueError('min_lr_ratio > 0 needs one learning rate for every parameter group '
                         f'(CosineAnnealingLR has one eta_min), got {base}')
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps),
                               eta_min=min_lr_ratio * base[0])
    if warmup_steps == 0:
        return cosine
    # (s + 1) / W for s = 0 .. W - 1; one constant step when W = 1 (total_iters must be >= 1)
    warmup = LinearLR(optimizer, start_factor=1.0 / warmup_steps, end_factor=1.0,
                      total_iters=max(1, warmup_steps - 1))
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])
