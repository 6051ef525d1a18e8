"""A small regression task for exercising the training loop (test helper)."""
import torch
from torch.utils.data import TensorDataset

from embodied_vision.training import register_task


@register_task('toy_regression')
class ToyRegression:
    """Fit y = x @ w_true with a linear layer; loss must fall to ~0."""

    def __init__(self, n: int = 256, dim: int = 8, nan_every: int = 0):
        generator = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, dim, generator=generator)
        self.y = self.x @ torch.randn(dim, 1, generator=generator)
        self.model = torch.nn.Linear(dim, 1)
        self.nan_every = nan_every
        self.calls = 0

    def train_dataset(self):
        return TensorDataset(self.x, self.y)

    def loss(self, model, batch):
        self.calls += 1
        x, y = batch
        loss = torch.nn.functional.mse_loss(model(x), y)
        if self.nan_every and self.calls % self.nan_every == 0:
            loss = loss * float('nan')
        return loss, {'abs_err': (model(x) - y).abs().mean().item()}

    def evaluate(self, model, step):
        return {'mse': torch.nn.functional.mse_loss(model(self.x), self.y).item()}

    def export(self, model, out_dir):
        torch.save(model.state_dict(), out_dir / 'final.pt')


class IndexedToyRegression(ToyRegression):
    """ToyRegression whose batches carry their sample indices, recorded in `seen`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: list[int] = []

    def train_dataset(self):
        return TensorDataset(self.x, self.y, torch.arange(len(self.x)))

    def loss(self, model, batch):
        x, y, index = batch
        self.seen += index.tolist()
        return super().loss(model, (x, y))
