"""`embodied-vision train experiment=<name> [key=value ...]`: the one training entry point.

Composes `embodied_vision/configs/train.yaml` with an experiment file from
`configs/experiment/`, instantiates its `task`, optimiser and scheduler, and runs the shared
`Trainer`. The run folder is `runs/<name>` (override `hydra.run.dir=...`): running the same
command again resumes from its last checkpoint. Multi-GPU / multi-node:
`torchrun --nproc_per_node=N -m embodied_vision.scripts.train experiment=...`.
"""
import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from embodied_vision.training import Trainer, TrainerConfig

__all__ = ['train', 'main']

_logger = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Build the task from `cfg` and train it; returns the run summary."""
    if cfg.get('task') is None:
        raise ValueError('no task: pick an experiment, e.g. `embodied-vision train '
                         'experiment=lang4sim2real_pretrain`')
    trainer_fields = OmegaConf.to_container(cfg.trainer, resolve=True)
    if not trainer_fields.get('out_dir'):
        trainer_fields['out_dir'] = HydraConfig.get().runtime.output_dir
    trainer_cfg = TrainerConfig(seed=cfg.seed, **trainer_fields)
    task = hydra.utils.instantiate(cfg.task, _convert_='all')
    optimizer = hydra.utils.instantiate(cfg.optimizer)
    scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.get('scheduler') else None
    summary = Trainer(trainer_cfg, task, optimizer, scheduler).fit()
    if summary:
        _logger.info('finished %s: %s', cfg.name, summary.get('final'))
    return summary


@hydra.main(version_base='1.3', config_path='pkg://embodied_vision.configs',
            config_name='train')
def _hydra_main(cfg: DictConfig) -> None:
    train(cfg)


def main(argv: list[str] | None = None) -> int:
    """Run with hydra's command line (overrides, --cfg job, --multirun, ...)."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    _hydra_main()
    return 0


if __name__ == '__main__':
    sys.exit(main())
