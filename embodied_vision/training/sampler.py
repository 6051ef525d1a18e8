"""A seeded, resumable, rank-sharded random sampler over an index range.

Epoch e is a permutation drawn from `seed + e`; with several processes (torchrun), each rank
takes every world_size-th index of it. The stream is a pure function of how many indices
came before, so a position is one number: `state_after(consumed)` gives the state once
`consumed` indices of the current iteration have been *used by training*. That is what a
checkpoint must record: DataLoader workers prefetch (`prefetch_factor x num_workers`
batches), so the sampler itself runs ahead of training by an amount that depends on timing.

torchdata's `StatefulDataLoader` solves the general case (any sampler) by snapshotting the
sampler's state and replaying the batches fetched since the snapshot on resume; a stream
that is a function of its position needs neither the snapshots nor the replay.
"""
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ['ResumableSampler']


class ResumableSampler(Sampler[int]):
    """Infinite stream of shuffled indices in `[0, size)`, resumable from any position."""

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if size < 1:
            raise ValueError(f'cannot sample from an empty dataset (size={size})')
        if not 0 <= rank < world_size:
            raise ValueError(f'rank {rank} is outside world size {world_size}')
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch_length = len(range(rank, size, world_size))  # indices of this rank
        self.start = 0  # indices of this rank before the first one an iteration yields

    def _epoch_indices(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.size, generator=generator)
        return order[self.rank::self.world_size].tolist()

    def __iter__(self) -> Iterator[int]:
        epoch, position = divmod(self.start, self.epoch_length)
        while True:
            yield from self._epoch_indices(epoch)[position:]
            epoch, position = epoch + 1, 0

    def state_after(self, consumed: int) -> dict:
        """`{'epoch', 'position'}` once `consumed` indices of an iteration have been used."""
        if consumed < 0:
            raise ValueError(f'consumed must be >= 0, got {consumed}')
        epoch, position = divmod(self.start + consumed, self.epoch_length)
        return {'epoch': epoch, 'position': position}

    def load_state_dict(self, state: dict) -> None:
        """Start the next iteration at `state` (from `state_after`)."""
        self.start = int(state['epoch']) * self.epoch_length + int(state['position'])
