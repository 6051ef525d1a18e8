"""Training tasks by name: the naming rule, lazy discovery, errors, experiments, --help."""
from importlib import resources
import inspect
import subprocess
import sys

import pytest

from embodied_vision.training import create_task, get_task, list_tasks, register_task, registry
from embodied_vision.training.registry import task_module

PACKAGE_TASKS = {
    'bc_mlp': 'embodied_vision.policies.bc.training_bc_mlp',
    'bc_mlp_e2e': 'embodied_vision.policies.bc.training_bc_mlp_e2e',
    'croco_geometry': 'embodied_vision.downstream.training_croco_geometry',
    'croco_pretrain': 'embodied_vision.pretrain.training_croco_pretrain',
    'l4s_bc': 'embodied_vision.policies.lang4sim2real.training_l4s_bc',
    'lang4sim2real_pretrain': 'embodied_vision.pretrain.training_lang4sim2real_pretrain',
    'mbs': 'embodied_vision.policies.mbs.training_mbs',
    'nerf_mae_pretrain': 'embodied_vision.pretrain.training_nerf_mae_pretrain',
    'nerf_mae_semantics': 'embodied_vision.downstream.training_nerf_mae_semantics',
}
EXPERIMENTS = sorted(e.name.removesuffix('.yaml') for e in (
    resources.files('embodied_vision.configs') / 'experiment').iterdir()
    if e.name.endswith('.yaml'))


def test_every_task_follows_the_naming_rule():
    assert set(PACKAGE_TASKS) <= set(list_tasks())
    for name, module in PACKAGE_TASKS.items():
        assert task_module(name) == module
        cls = get_task(name)
        assert cls.__module__ == module and cls.__name__.endswith('Task'), cls
        assert module.rsplit('.', 1)[1] == f'training_{name}'
    assert list_tasks('croco') == ['croco_geometry', 'croco_pretrain']


def test_listing_imports_no_task_module():
    code = ('import sys; from embodied_vision.training import list_tasks; '
            'names = list_tasks(); '
            'loaded = [m for m in sys.modules if ".training_" in m or '
            'm.startswith("embodied_vision.policies")]; '
            'assert "mbs" in names and not loaded, loaded')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_unknown_names_and_arguments_are_named():
    with pytest.raises(ValueError, match=r"unknown training task 'croco_pretrian'\. Did you "
                                         r"mean \['croco_pretrain'"):
        create_task('croco_pretrian')
    with pytest.raises(TypeError, match=r"takes no argument \['jiter'\]\. 'jiter': did you "
                                        r"mean 'jitter'\?"):
        create_task('croco_pretrain', pairs=['x.hdf5'], jiter=0.2)
    with pytest.raises(TypeError, match=r"needs \['pairs'\] \(e\.g\. task\.pairs=\.\.\.\)"):
        create_task('croco_pretrain')


def test_register_task_checks_names_and_duplicates():
    with pytest.raises(ValueError, match='lower_snake_case'):
        register_task('CroCo')

    @register_task('registry_test_task')
    class RegistryTestTask:
        def __init__(self, size: int = 1):
            self.size = size

    assert 'registry_test_task' in list_tasks()
    assert create_task('registry_test_task', size=3).size == 3
    with pytest.raises(ValueError, match='already registered'):
        register_task('registry_test_task')(type('Other', (), {}))
    registry._TASKS.pop('registry_test_task')


def test_a_module_must_register_its_own_name(tmp_path, monkeypatch):
    package = tmp_path / 'fake_tasks'
    package.mkdir()
    (package / '__init__.py').write_text('')
    (package / 'training_lonely.py').write_text('class LonelyTask:\n    pass\n')
    (package / 'sub').mkdir()
    (package / 'sub' / '__init__.py').write_text('')
    (package / 'sub' / 'training_lonely.py').write_text('')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, 'TASK_PACKAGES', ('fake_tasks',))
    with pytest.raises(ValueError, match='two modules define training task'):
        list_tasks()
    (package / 'sub' / 'training_lonely.py').unlink()
    with pytest.raises(ValueError, match=r"registers no task 'lonely': decorate"):
        get_task('lonely')


@pytest.mark.parametrize('experiment', EXPERIMENTS)
def test_every_experiment_names_a_task_that_takes_its_arguments(experiment):
    from embodied_vision.configs import compose_config
    cfg = compose_config('train', [f'experiment={experiment}'])
    assert cfg.task._target_ == 'embodied_vision.training.create_task'
    arguments = set(cfg.task) - {'_target_', 'name'}
    parameters = inspect.signature(get_task(cfg.task.name)).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        assert arguments <= set(parameters), arguments - set(parameters)


def test_train_help_lists_experiments_and_tasks(capsys):
    from embodied_vision.cli import main
    assert main(['train', '--help']) == 0
    text = capsys.readouterr().out
    for name in [*EXPERIMENTS, *PACKAGE_TASKS, *PACKAGE_TASKS.values()]:
        assert name in text, name
    assert 'croco_stereo_depth' in text and 'task croco_geometry' in text


def test_train_without_an_experiment_says_how_to_pick_one(tmp_path):
    from embodied_vision.configs import compose_config
    from embodied_vision.scripts.train import train
    with pytest.raises(ValueError, match='no task: pick an experiment'):
        train(compose_config('train', [f'hydra.run.dir={tmp_path}']))


def test_train_seeds_the_model_the_task_builds(tmp_path):
    """`seed` decides the task's initial weights, not only the batches (a random-init arm
    with three seeds must be three initialisations)."""
    import torch

    from embodied_vision.configs import compose_config
    from embodied_vision.scripts.train import train
    from embodied_vision.training import register_task, registry

    built = []

    @register_task('seed_probe')
    class SeedProbeTask:
        def __init__(self):
            self.model = torch.nn.Linear(3, 1)
            built.append(self.model.weight.detach().clone())

        def train_dataset(self):
            return torch.utils.data.TensorDataset(torch.zeros(4, 3))

        def loss(self, model, batch):
            return model(batch[0]).square().mean(), {}

    try:
        for run, seed in enumerate((0, 0, 1)):
            train(compose_config('train', [
                'task.name=seed_probe', f'seed={seed}', 'trainer.max_steps=1',
                'trainer.batch_size=2', 'trainer.progress=false', 'trainer.resume=false',
                f'trainer.out_dir={tmp_path / str(run)}',
                f'hydra.run.dir={tmp_path / str(run)}']))
    finally:
        registry._TASKS.pop('seed_probe', None)  # leave the registry as the package has it
    assert torch.equal(built[0], built[1]) and not torch.equal(built[0], built[2])
