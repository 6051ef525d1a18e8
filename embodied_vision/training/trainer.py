"""One training loop for every experiment: seeded, resumable, DDP under torchrun, metrics.

A *task* object (created by name: `embodied_vision.training.registry`) supplies what is
specific to an experiment:

    task.model                          nn.Module to train
    task.train_dataset()                map-style torch Dataset
    task.collate(samples)               optional; default torch's default_collate
    task.loss(model, batch)             -> (loss tensor, {name: float}) for logging
    task.trainable_parameters(model)    optional; default all parameters with requires_grad
                                        (timm.optim.param_groups_weight_decay for decay groups)
    task.evaluate(model, step)          optional; -> {name: float}, run on rank 0
    task.export(model, out_dir)         optional; writes the final artefact

The loop keeps `checkpoints/last.pt` (model, optimiser, scheduler, sampler position, RNG
states, step) and resumes from it; writes `metrics.csv`, `summary.json` and `metrics.png`.
With `best_metric`, the weights of the best evaluation so far are kept in
`checkpoints/best.pt` and are the ones exported at the end (the official Lang4Sim2Real
pretraining keeps its best-validation checkpoint).
A non-finite loss skips that step (counted and logged) instead of killing the run; too many
in a row stop it with an error.
"""
from collections.abc import Callable
from dataclasses import asdict, dataclass
import logging
import os
from pathlib import Path
import random
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate
from tqdm.auto import tqdm

from embodied_vision.training.metrics import MetricsLogger, plot_metrics
from embodied_vision.training.sampler import ResumableSampler

__all__ = ['TrainerConfig', 'Trainer', 'distributed_context', 'parameter_groups',
           'seed_everything']

_logger = logging.getLogger(__name__)


@dataclass
class TrainerConfig:
    """Loop settings.

    Args:
        out_dir: run folder (checkpoints/, metrics.csv, summary.json, metrics.png).
        max_steps: optimiser steps in total (a resumed run stops at the same step).
        batch_size: samples per step per process.
        seed: seeds Python, NumPy, torch and the sampler.
        device: 'cpu', 'cuda' or 'auto'.
        num_workers: DataLoader worker processes.
        log_every / eval_every / checkpoint_every: in steps (0 disables eval/checkpoints
            until the end).
        grad_clip: max gradient norm (0 disables).
        resume: continue from out_dir/checkpoints/last.pt when it exists.
        max_bad_steps: consecutive non-finite losses tolerated before stopping.
        progress: show a tqdm bar (rank 0 only).
        best_metric: a metric of `task.evaluate` (e.g. 'stage_retrieval') whose best value,
            over every evaluation including the final one, picks the weights to export;
            None, or a metric no evaluation reported (warned), exports the last weights.
        best_mode: 'max' or 'min': which way `best_metric` improves.
    """

    out_dir: str = 'runs/default'
    max_steps: int = 1000
    batch_size: int = 32
    seed: int = 0
    device: str = 'auto'
    num_workers: int = 0
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 200
    grad_clip: float = 0.0
    resume: bool = True
    max_bad_steps: int = 20
    progress: bool = True
    best_metric: str | None = None
    best_mode: str = 'max'

    def __post_init__(self):
        if self.best_mode not in ('max', 'min'):
            raise ValueError(f"best_mode must be 'max' or 'min', got {self.best_mode!r}")
        if self.best_metric is not None:
            self.best_metric = self.best_metric.removeprefix('eval/')
        for field in ('max_steps', 'batch_size', 'log_every'):
            if getattr(self, field) < 1:
                raise ValueError(f'{field} must be >= 1, got {getattr(self, field)}')
        for field in ('eval_every', 'checkpoint_every', 'num_workers', 'max_bad_steps'):
            if getattr(self, field) < 0:
                raise ValueError(f'{field} must be >= 0, got {getattr(self, field)}')


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_context(device: str) -> DistributedContext:
    """Join the process group torchrun set up (env WORLD_SIZE > 1), else single process."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    if world_size <= 1:
        return DistributedContext()
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group('nccl' if device.startswith('cuda') else 'gloo')
    return DistributedContext(dist.get_rank(), dist.get_world_size(),
                              int(os.environ.get('LOCAL_RANK', '0')))


def parameter_groups(task, model: torch.nn.Module) -> list:
    """What the optimiser is built with: `task.trainable_parameters(model)` (parameters or
    parameter-group dicts), else every parameter with `requires_grad`, in module order."""
    if hasattr(task, 'trainable_parameters'):
        return list(task.trainable_parameters(model))
    return [p for p in model.parameters() if p.requires_grad]


class Trainer:
    """Run a task's training to `max_steps`, resuming and logging as it goes."""

    def __init__(self, config: TrainerConfig, task,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., object] | None = None):
        self.config = config
        self.task = task
        self.make_optimizer = optimizer
        self.make_scheduler = scheduler
        device = config.device
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        self.dist = distributed_context(device)
        if device == 'cuda' and self.dist.world_size > 1:
            device = f'cuda:{self.dist.local_rank}'
        self.device = torch.device(device)
        self.out_dir = Path(config.out_dir)
        self.checkpoint_path = self.out_dir / 'checkpoints' / 'last.pt'
        self.best_path = self.out_dir / 'checkpoints' / 'best.pt'
        self.best: dict | None = None  # step, value and evaluation of best.pt

    # ------------------------------------------------------------------ checkpoints
    def _save(self, model, optimizer, scheduler, sampler_state: dict, step: int) -> None:
        if not self.dist.is_main:
            return
        state = {
            'step': step, 'model': _unwrap(model).state_dict(),
            'optimizer': optimizer.state_dict(),
            'scheduler': scheduler.state_dict() if scheduler is not None else None,
            'sampler': sampler_state, 'torch_rng': torch.get_rng_state(),
            'config': asdict(self.config), 'best': self.best,
        }
        _atomic_save(state, self.checkpoint_path)

    def _load(self, model, optimizer, scheduler, sampler) -> int:
        if not (self.config.resume and self.checkpoint_path.exists()):
            return 0
        state = torch.load(self.checkpoint_path, map_location='cpu', weights_only=True)
        try:
            _unwrap(model).load_state_dict(state['model'])
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            raise RuntimeError(
                f'cannot resume from {self.checkpoint_path}: it holds a different model '
                f'({first[1].strip() if len(first) > 1 else first[0]}). Resume with the '
                'config that run was made with, or train into another folder '
                '(hydra.run.dir=...) or from scratch (trainer.resume=false).') from err
        optimizer.load_state_dict(state['optimizer'])
        if scheduler is not None and state.get('scheduler') is not None:
            scheduler.load_state_dict(state['scheduler'])
        sampler.load_state_dict(state['sampler'])
        torch.set_rng_state(state['torch_rng'])
        self.best = self._resumed_best(state.get('best'))
        _logger.info('resumed from %s at step %d', self.checkpoint_path, state['step'])
        return int(state['step'])

    def _resumed_best(self, best: dict | None) -> dict | None:
        """The best record of last.pt, if it ranks the same metric the same way and best.pt
        still holds those weights (a run stopped between writing best.pt and last.pt left
        best.pt ahead of the resumed step)."""
        if best is None or not self.best_path.exists():
            return None
        wanted = self.config.best_metric, self.config.best_mode
        if (best.get('metric'), best.get('mode')) != wanted:  # resumed with another choice
            return None
        saved = torch.load(self.best_path, map_location='cpu', weights_only=True,
                           mmap=True)['step']  # the step only: the weights stay on disk
        if saved != best['step']:
            _logger.warning('%s holds step %d, not the best step %d recorded in %s; the best '
                            'is searched again from here', self.best_path, saved, best['step'],
                            self.checkpoint_path)
            return None
        return best

    # ------------------------------------------------------------------------ loop
    def fit(self) -> dict:
        """Train to `max_steps`; returns the summary written to summary.json."""
        config, task = self.config, self.task
        seed_everything(config.seed + self.dist.rank)
        model = task.model.to(self.device)
        optimizer = self.make_optimizer(parameter_groups(task, model))
        scheduler = self.make_scheduler(optimizer) if self.make_scheduler else None
        dataset = task.train_dataset()
        sampler = ResumableSampler(len(dataset), config.seed, self.dist.rank,
                                   self.dist.world_size)
        start = self._load(model, optimizer, scheduler, sampler)
        train_model = model
        if self.dist.world_size > 1:
            train_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == 'cuda' else None)
        loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler,
                            num_workers=config.num_workers,
                            collate_fn=getattr(task, 'collate', default_collate),
                            pin_memory=self.device.type == 'cuda',
                            persistent_workers=config.num_workers > 0)
        metrics = MetricsLogger(self.out_dir / 'metrics.csv', resume_step=start) \
            if self.dist.is_main else None
        bar = tqdm(total=config.max_steps, initial=start, desc='train', dynamic_ncols=True,
                   disable=not (config.progress and self.dist.is_main))
        batches = iter(loader)
        step, bad_in_a_row, skipped, begin = start, 0, 0, time.perf_counter()
        consumed = 0  # samples training has taken from `batches` (workers prefetch more)
        model.train()
        while step < config.max_steps:
            batch = _to_device(next(batches), self.device)
            consumed += config.batch_size
            loss, logs = task.loss(train_model, batch)
            if not torch.isfinite(loss):
                bad_in_a_row += 1
                skipped += 1
                _logger.warning('step %d: non-finite loss %s, batch skipped', step, loss.item())
                if bad_in_a_row > config.max_bad_steps:
                    raise RuntimeError(f'{bad_in_a_row} non-finite losses in a row at step '
                                       f'{step}; stopping (last checkpoint kept)')
                optimizer.zero_grad(set_to_none=True)
                continue
            bad_in_a_row = 0
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for group in optimizer.param_groups for p in group['params']],
                    config.grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            bar.update(1)
            if metrics is not None and (step % config.log_every == 0 or step == config.max_steps):
                seen = (step - start) * config.batch_size * self.dist.world_size
                values = {'loss': loss.item(), **logs, 'lr': optimizer.param_groups[0]['lr'],
                          'samples_per_s': seen / max(1e-9, time.perf_counter() - begin)}
                metrics.log(step, **values)
                bar.set_postfix(loss=f'{loss.item():.4g}')
            if config.eval_every and step % config.eval_every == 0 and step < config.max_steps:
                self._evaluate(model, step, metrics)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                self._save(model, optimizer, scheduler, sampler.state_after(consumed), step)
        bar.close()
        self._save(model, optimizer, scheduler, sampler.state_after(consumed), step)
        if not self.dist.is_main:
            return {}
        final = self._evaluate(model, step, metrics)
        best = self._restore_best(model, step)
        if best is not None:
            final = best['results']
        if hasattr(task, 'export'):
            task.export(model, self.out_dir)
        extra = {'best': {k: best[k] for k in ('step', 'value', 'metric')}} \
            if best is not None else {}
        summary = metrics.write_summary(self.out_dir / 'summary.json', final=final, **extra,
                                        steps=step, skipped_steps=skipped,
                                        seconds=time.perf_counter() - begin,
                                        config=asdict(config))
        if metrics.rows:
            plot_metrics(metrics, self.out_dir / 'metrics.png')
        return summary

    def _evaluate(self, model, step: int, metrics: MetricsLogger | None) -> dict:
        if not (self.dist.is_main and hasattr(self.task, 'evaluate')):
            return {}
        model.eval()
        with torch.no_grad():
            results = {f'eval/{k}': float(v) for k, v in self.task.evaluate(model, step).items()}
        model.train()
        if metrics is not None and results:
            metrics.log(step, **results)
        _logger.info('step %d eval: %s', step, results)
        self._keep_if_best(model, step, results)
        return results

    def _keep_if_best(self, model, step: int, results: dict) -> None:
        name = self.config.best_metric
        if name is None or not results:
            return
        if f'eval/{name}' not in results:  # a typo, or a metric this evaluation could not
            # compute (e.g. no sentence shared by both held-out domains): keep training
            _logger.warning("best_metric=%r is not among this evaluation's metrics %s; step "
                            '%d is not a candidate for export', name,
                            sorted(k.removeprefix('eval/') for k in results), step)
            return
        value = results[f'eval/{name}']
        if self.best is not None:
            better = value > self.best['value'] if self.config.best_mode == 'max' \
                else value < self.best['value']
            if not better:
                return
        self.best = {'step': step, 'value': value, 'results': results, 'metric': name,
                     'mode': self.config.best_mode}
        _atomic_save({'step': step, 'model': _unwrap(model).state_dict()}, self.best_path)
        _logger.info('best %s so far: %.6g at step %d', name, value, step)

    def _restore_best(self, model, step: int) -> dict | None:
        """Load best.pt into `model` when it is not the last step's weights."""
        if self.best is None:
            return None
        if self.best['step'] != step:
            state = torch.load(self.best_path, map_location='cpu', weights_only=True)
            _unwrap(model).load_state_dict(state['model'])
            _logger.info('exporting the weights of step %d (best %s %.6g)', self.best['step'],
                         self.config.best_metric, self.best['value'])
        return self.best


def _atomic_save(state: dict, path: Path) -> None:
    """An interrupted save never corrupts the file at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.tmp')
    torch.save(state, tmp)
    os.replace(tmp, path)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) \
        else model


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch
