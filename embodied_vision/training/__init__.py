"""The shared training loop, resumable sampler and on-disk metrics."""
from embodied_vision.training.metrics import MetricsLogger, plot_metrics
from embodied_vision.training.sampler import ResumableSampler
from embodied_vision.training.trainer import Trainer, TrainerConfig, seed_everything

__all__ = ['MetricsLogger', 'ResumableSampler', 'Trainer', 'TrainerConfig', 'plot_metrics',
           'seed_everything']
