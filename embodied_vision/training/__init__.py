"""The shared training loop, task registry, schedules, resumable sampler and on-disk metrics."""
from embodied_vision.training.metrics import MetricsLogger, plot_metrics
from embodied_vision.training.registry import create_task, get_task, list_tasks, register_task
from embodied_vision.training.runs import compare_runs, format_runs_table
from embodied_vision.training.sampler import ResumableSampler
from embodied_vision.training.schedulers import warmup_cosine
from embodied_vision.training.trainer import (
    Trainer,
    TrainerConfig,
    parameter_groups,
    seed_everything,
)

__all__ = ['MetricsLogger', 'ResumableSampler', 'Trainer', 'TrainerConfig', 'compare_runs',
           'create_task', 'format_runs_table', 'get_task', 'list_tasks', 'parameter_groups',
           'plot_metrics', 'register_task', 'seed_everything', 'warmup_cosine']
