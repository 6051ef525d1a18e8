"""A seeded, resumable, rank-sharded random sampler over an index range.

Epoch e is a permutation drawn from `seed + e`; with several processes (torchrun), each rank
takes every world_size-th index of it. `state_dict()` records the position, so a resumed run
continues with exactly the batches the interrupted run would have seen.
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
        self.epoch = 0
        self.position = 0  # indices of this rank already yielded in the current epoch

    def _epoch_indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        return order[self.rank::self.world_size].tolist()

    def __iter__(self) -> Iterator[int]:
        while True:
            indices = self._epoch_indices()
            while self.position < len(indices):
                index = indices[self.position]
                self.position += 1
                yield index
            self.epoch += 1
            self.position = 0

    def state_dict(self) -> dict:
        return {'epoch': self.epoch, 'position': self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state['epoch']), int(state['position'])
