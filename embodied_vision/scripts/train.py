"""`embodied-vision train experiment=<name> [key=value ...]`: the one training entry point.

Composes `embodied_vision/configs/train.yaml` with an experiment file from
`configs/experiment/`, creates its `task` by name (`embodied_vision.training.create_task`),
its optimiser and scheduler, and runs the shared `Trainer`. The run folder is `runs/<name>`
(override `hydra.run.dir=...`): running the same command again resumes from its last
checkpoint. Multi-GPU / multi-node:
`torchrun --nproc_per_node=N -m embodied_vision.scripts.train experiment=...`.
`embodied-vision train --help` lists the experiments and the registered tasks.
"""
from importlib import resources
import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from embodied_vision.training import (
    Trainer,
    TrainerConfig,
    get_task,
    list_tasks,
    seed_everything,
)
from embodied_vision.training.registry import task_module

__all__ = ['train', 'train_help', 'main']

_logger = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Build the task from `cfg` and train it; returns the run summary."""
    if cfg.get('task') is None or OmegaConf.is_missing(cfg.task, 'name'):
        raise ConfigError('no task: pick an experiment, e.g. `embodied-vision train '
                         'experiment=lang4sim2real_pretrain` (`embodied-vision train --help` '
                         'lists them)')
    trainer_fields = OmegaConf.to_container(cfg.trainer, resolve=True)
    if not trainer_fields.get('out_dir'):
        trainer_fields['out_dir'] = HydraConfig.get().runtime.output_dir
    trainer_cfg = TrainerConfig(seed=cfg.seed, **trainer_fields)
    seed_everything(cfg.seed)  # the task builds its model: its initialisation follows `seed`
    try:
        task = hydra.utils.instantiate(cfg.task, _convert_='all')
        optimizer = hydra.utils.instantiate(cfg.optimizer)
        scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.get('scheduler') else None
    except (InstantiationException, OmegaConfBaseException) as err:
        raise ConfigError(_config_reason(err)) from err
    summary = Trainer(trainer_cfg, task, optimizer, scheduler).fit()
    if summary:
        _logger.info('finished %s: %s', cfg.name, summary.get('final'))
    return summary


class ConfigError(ValueError):
    """The experiment's config does not build its task (a missing or bad value, a missing
    file or extra): reported in one line before any training."""


def _config_reason(err: Exception) -> str:
    """One line for a config error: the cause hydra wraps, or omegaconf's first line."""
    from embodied_vision.utils import missing_extra_message
    cause = err
    while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, ModuleNotFoundError):
        return missing_extra_message(cause, 'this experiment')
    if isinstance(cause, MissingMandatoryValue):
        key = getattr(cause, 'full_key', '') or str(cause).splitlines()[0]
        return f'{key} is required: set it on the command line ({key}=...)'
    text = str(cause).splitlines()[0] if str(cause) else ''
    if isinstance(cause, (ValueError, OSError)):
        return text
    return f'{type(cause).__name__}: {text} (HYDRA_FULL_ERROR=1 prints the traceback)'


def _experiments() -> dict[str, str]:
    """`{experiment: its task name}` of the packaged experiment files."""
    folder = resources.files('embodied_vision.configs') / 'experiment'
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith('.yaml'):
            task = OmegaConf.create(entry.read_text()).get('task') or {}
            found[entry.name.removesuffix('.yaml')] = task.get('name', '?')
    return found


def _summary(name: str) -> str:
    """First docstring line of a task, or why its module cannot be imported (e.g. an
    optional dependency is missing)."""
    try:
        doc = (get_task(name).__doc__ or '').strip()
    except Exception as err:  # noqa: BLE001 - a help listing names a broken module, never dies
        return f'(cannot import here: {type(err).__name__}: {err})'
    return doc.splitlines()[0] if doc else ''


def train_help() -> str:
    """The text of `embodied-vision train --help`: usage, experiments, registered tasks."""
    experiments = _experiments()
    tasks = list_tasks()
    width = max(len(n) for n in [*experiments, *tasks, 'experiment'])
    lines = ['usage: embodied-vision train experiment=NAME [KEY=VALUE ...]', '',
             'Hydra overrides of embodied_vision/configs/train.yaml; re-running a command',
             'resumes its run (runs/<name>/checkpoints/last.pt). --cfg job prints the composed',
             "config, --multirun sweeps, --hydra-help shows hydra's own flags.", '',
             'experiments (experiment=NAME, embodied_vision/configs/experiment/):']
    lines += [f'  {n:<{width}}  task {t}' for n, t in experiments.items()]
    lines += ['', 'training tasks (task.name=NAME; module training_<NAME>.py, '
              'embodied_vision.training.list_tasks()):']
    for name in tasks:
        lines += [f'  {name:<{width}}  {_summary(name)}', f'  {"":<{width}}  {task_module(name)}']
    return '\n'.join(lines) + '\n'


@hydra.main(version_base='1.3', config_path='pkg://embodied_vision.configs',
            config_name='train')
def _hydra_main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except ConfigError as err:
        if os.environ.get('HYDRA_FULL_ERROR') == '1':
            raise
        print(f'embodied-vision train: error: {err}', file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    """Run with hydra's command line (overrides, --cfg job, --multirun, ...); `-h`/`--help`
    prints `train_help()`."""
    args = sys.argv[1:] if argv is None else list(argv)
    if '-h' in args or '--help' in args:
        sys.stdout.write(train_help())
        return 0
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    _hydra_main()
    return 0


if __name__ == '__main__':
    sys.exit(main())
