"""Run by torchrun in test_trainer: two gloo processes train the toy task together."""
import sys

import torch

from embodied_vision.training import Trainer, TrainerConfig
from tests.training.toy_task import ToyRegression

if __name__ == '__main__':
    out = sys.argv[1]
    config = TrainerConfig(out_dir=out, max_steps=40, batch_size=16, device='cpu',
                           progress=False, checkpoint_every=0)
    task = ToyRegression()
    summary = Trainer(config, task, lambda p: torch.optim.SGD(p, lr=0.05)).fit()
    weight = task.model.weight.detach().clone()
    torch.distributed.all_reduce(weight)  # identical replicas -> sum = world_size * weight
    torch.save({'weight': task.model.weight.detach(), 'sum': weight},
               f'{out}/rank{torch.distributed.get_rank()}.pt')
