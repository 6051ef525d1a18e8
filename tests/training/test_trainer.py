"""The shared training loop: learning, exact resume, bad steps, metrics, hydra, torchrun."""
import os
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from embodied_vision.training import MetricsLogger, ResumableSampler, Trainer, TrainerConfig
from tests.learning import assert_learned
from tests.training.toy_task import IndexedToyRegression, ToyRegression

ROOT = Path(__file__).resolve().parents[2]


def _sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def _config(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path), max_steps=60, batch_size=16, device='cpu',
                progress=False, log_every=5, checkpoint_every=20, eval_every=30)
    return TrainerConfig(**{**base, **kw})


def test_loss_falls_and_outputs_are_written(tmp_path):
    task = ToyRegression()
    summary = Trainer(_config(tmp_path), task, _sgd).fit()
    assert_learned(summary['final']['eval/mse'] / task.y.var().item(), 0.01, 'mse / variance')
    for name in ('metrics.csv', 'summary.json', 'metrics.png', 'final.pt',
                 'checkpoints/last.pt'):
        assert (tmp_path / name).exists(), name
    steps, losses = MetricsLogger(tmp_path / 'metrics.csv', resume_step=10**9).series('loss')
    assert steps[0] == 5 and steps[-1] == 60 and losses[-1] < 0.1 * losses[0]


def test_resuming_a_run_of_another_model_names_the_checkpoint(tmp_path):
    Trainer(_config(tmp_path, max_steps=20), ToyRegression(), _sgd).fit()
    wider = ToyRegression(dim=5)  # same folder, another config
    with pytest.raises(RuntimeError, match=r'cannot resume from .*last\.pt: it holds a '
                                           r'different model \(size mismatch for weight'):
        Trainer(_config(tmp_path, max_steps=40), wider, _sgd).fit()
    summary = Trainer(_config(tmp_path, max_steps=20, resume=False), wider, _sgd).fit()
    assert summary['final']['eval/mse'] < wider.y.var().item()


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    straight = _seeded(ToyRegression)
    Trainer(_config(tmp_path / 'a', max_steps=50), straight, _sgd).fit()
    interrupted = _seeded(ToyRegression)
    Trainer(_config(tmp_path / 'b', max_steps=20), interrupted, _sgd).fit()
    resumed = _seeded(ToyRegression)  # a fresh process would rebuild the task from scratch
    Trainer(_config(tmp_path / 'b', max_steps=50), resumed, _sgd).fit()
    torch.testing.assert_close(resumed.model.weight, straight.model.weight)
    rows = MetricsLogger(tmp_path / 'b' / 'metrics.csv', resume_step=10**9).series('loss')[0]
    assert rows == sorted(set(rows))  # no duplicated steps after the resume


def _seeded(task_class, **kwargs):
    torch.manual_seed(0)  # the same initial weights, as a fresh process would build
    return task_class(**kwargs)


@pytest.mark.parametrize('workers', [0, 2])
def test_a_resumed_run_continues_with_the_next_unseen_sample(tmp_path, workers):
    # DataLoader workers prefetch ahead of training: the checkpoint must record what training
    # consumed, not what the sampler has handed out.
    config = dict(batch_size=4, num_workers=workers, checkpoint_every=0, eval_every=0)
    straight = _seeded(IndexedToyRegression, n=24)
    Trainer(_config(tmp_path / 'a', max_steps=10, **config), straight, _sgd).fit()
    interrupted = _seeded(IndexedToyRegression, n=24)
    Trainer(_config(tmp_path / 'b', max_steps=4, **config), interrupted, _sgd).fit()
    state = torch.load(tmp_path / 'b' / 'checkpoints' / 'last.pt', weights_only=True)
    assert state['sampler'] == {'epoch': 0, 'position': 16}  # 4 steps x 4 samples
    resumed = _seeded(IndexedToyRegression, n=24)
    Trainer(_config(tmp_path / 'b', max_steps=10, **config), resumed, _sgd).fit()
    assert interrupted.seen + resumed.seen == straight.seen
    torch.testing.assert_close(resumed.model.weight, straight.model.weight)


def test_non_finite_losses_are_skipped_then_stop_the_run(tmp_path):
    summary = Trainer(_config(tmp_path / 'ok', max_steps=30), ToyRegression(nan_every=7),
                      _sgd).fit()
    assert summary['skipped_steps'] >= 4 and summary['steps'] == 30
    assert torch.isfinite(torch.tensor(summary['final']['eval/mse']))
    with pytest.raises(RuntimeError, match='non-finite losses in a row'):
        Trainer(_config(tmp_path / 'bad', max_bad_steps=3), ToyRegression(nan_every=1),
                _sgd).fit()
    assert not (tmp_path / 'bad' / 'checkpoints' / 'last.pt').exists()


def test_sampler_is_seeded_sharded_and_resumable():
    def take(sampler, n):
        iterator = iter(sampler)
        return [next(iterator) for _ in range(n)]
    full = take(ResumableSampler(10, seed=3), 25)
    assert sorted(full[:10]) == list(range(10)) and full[:10] != full[10:20]
    sampler = ResumableSampler(10, seed=3)
    head = take(sampler, 13)
    resumed = ResumableSampler(10, seed=3)
    resumed.load_state_dict(sampler.state_after(13))
    assert head + take(resumed, 12) == full
    again = ResumableSampler(10, seed=3)  # a second resume counts from the first one's start
    again.load_state_dict(resumed.state_after(4))
    assert take(again, 8) == full[17:]
    shards = [take(ResumableSampler(10, seed=3, rank=r, world_size=2), 5) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(10))
    with pytest.raises(ValueError, match='empty dataset'):
        ResumableSampler(0)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match='max_steps'):
        TrainerConfig(max_steps=0)


def test_hydra_entry_point_trains_and_resumes(tmp_path):
    from embodied_vision.cli import main
    args = ['train', 'task.name=toy_regression', '+task.n=128',  # registered by toy_task
            'trainer.max_steps=20', 'trainer.batch_size=8', 'trainer.device=cpu',
            'trainer.progress=false', 'optimizer.lr=0.01', 'name=toy',
            f'hydra.run.dir={tmp_path}']
    assert main(args) == 0
    assert (tmp_path / 'summary.json').exists() and (tmp_path / '.hydra' / 'config.yaml').exists()
    assert main([a.replace('max_steps=20', 'max_steps=30') for a in args]) == 0
    steps = MetricsLogger(tmp_path / 'metrics.csv', resume_step=10**9).series('loss')[0]
    assert steps[-1] == 30 and steps.count(20) == 1


def test_torchrun_two_processes_keep_replicas_identical(tmp_path):
    torchrun = Path(sys.executable).parent / 'torchrun'
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    worker = ROOT / 'tests' / 'training' / 'ddp_worker.py'
    result = subprocess.run(
        [str(torchrun), '--standalone', '--nproc_per_node=2', str(worker), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f'rank{r}.pt') for r in (0, 1)]
    torch.testing.assert_close(ranks[0]['weight'], ranks[1]['weight'])
    torch.testing.assert_close(ranks[0]['sum'], 2 * ranks[0]['weight'])
    assert (tmp_path / 'summary.json').exists()  # written by rank 0 only


def test_grad_clip_works_with_parameter_groups(tmp_path):
    class Grouped(ToyRegression):
        def trainable_parameters(self, model):
            return [{'params': [model.weight], 'weight_decay': 0.0},
                    {'params': [model.bias], 'weight_decay': 0.0}]

    summary = Trainer(_config(tmp_path, max_steps=20, grad_clip=0.5), Grouped(),
                      lambda groups: torch.optim.SGD(groups, lr=0.05)).fit()
    assert summary['steps'] == 20 and torch.isfinite(torch.tensor(summary['final']['eval/mse']))


class _PassesThrough(ToyRegression):
    """w moves from 0 to 1; the evaluation rewards being near 0.5, passed on the way."""

    def __init__(self):
        super().__init__(n=32, dim=1)
        self.x, self.y = torch.ones(32, 1), torch.ones(32, 1)
        with torch.no_grad():
            self.model.weight.zero_()
            self.model.bias.zero_()
        self.model.bias.requires_grad_(False)

    def evaluate(self, model, step):
        w = model.weight.item()
        return {'near_half': -abs(w - 0.5), 'w': w}


def _plain_sgd(params):
    return torch.optim.SGD(params, lr=0.02)


def test_best_metric_exports_the_best_evaluated_weights_across_a_resume(tmp_path):
    config = dict(max_steps=120, eval_every=10, checkpoint_every=10, log_every=10)
    run = Trainer(_config(tmp_path / 'a', **config, best_metric='eval/near_half'),
                  _PassesThrough(), _plain_sgd)
    summary = run.fit()
    steps, w = MetricsLogger(tmp_path / 'a' / 'metrics.csv', resume_step=10**9).series('eval/w')
    best = min(range(len(w)), key=lambda i: abs(w[i] - 0.5))
    assert 0 < best < len(w) - 1  # passed 0.5 on the way, not at the end
    assert summary['best'] == {'step': steps[best], 'value': -abs(w[best] - 0.5),
                               'metric': 'near_half'}
    assert summary['final']['eval/w'] == w[best]
    exported = torch.load(tmp_path / 'a' / 'final.pt')['weight'].item()
    assert exported == pytest.approx(w[best]) and w[-1] > w[best]
    # interrupted after the best and resumed: the same weights are exported
    Trainer(_config(tmp_path / 'b', **{**config, 'max_steps': steps[best] + 20},
                    best_metric='near_half'), _PassesThrough(), _plain_sgd).fit()
    resumed = Trainer(_config(tmp_path / 'b', **config, best_metric='near_half'),
                      _PassesThrough(), _plain_sgd).fit()
    assert resumed['best'] == summary['best']
    assert torch.load(tmp_path / 'b' / 'final.pt')['weight'].item() == pytest.approx(w[best])
    # resumed ranking another metric, the old record (-0.06 'near_half') is not a candidate
    # for the lowest 'w': the one evaluation since the resume is
    other = Trainer(_config(tmp_path / 'b', **{**config, 'max_steps': 130}, best_metric='w',
                            best_mode='min'), _PassesThrough(), _plain_sgd).fit()
    assert other['best']['step'] == 130 and other['best']['metric'] == 'w'
    # without best_metric the last weights are exported
    last = Trainer(_config(tmp_path / 'c', **config), _PassesThrough(), _plain_sgd).fit()
    assert 'best' not in last and torch.load(tmp_path / 'c' / 'final.pt')['weight'].item() \
        == pytest.approx(w[-1])


def test_an_unknown_best_metric_is_named_and_the_last_weights_exported(tmp_path, caplog):
    with caplog.at_level('WARNING'):
        summary = Trainer(_config(tmp_path, max_steps=20, eval_every=10,
                                  best_metric='accuracy'), _PassesThrough(), _plain_sgd).fit()
    assert "best_metric='accuracy' is not among this evaluation's metrics ['near_half', 'w']" \
        in caplog.text
    assert 'best' not in summary
    assert torch.load(tmp_path / 'final.pt')['weight'].item() == \
        pytest.approx(summary['final']['eval/w'])
    with pytest.raises(ValueError, match='best_mode'):
        TrainerConfig(best_mode='highest')
