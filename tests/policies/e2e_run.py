"""A tiny `bc_mlp_e2e` run on freshly collected Reach demos, for the tests that need a trained
encoder + policy export (sim required)."""
from pathlib import Path


def train_tiny_e2e(tmp_path: Path, size: int, steps: int) -> Path:
    """Collect 2 Reach episodes at `size` px, train `steps` steps; returns the run folder
    (`encoder/`, `policy/`)."""
    from embodied_vision.cli import main
    from embodied_vision.sim.collect import main as collect
    demos = tmp_path / 'demos.hdf5'
    assert collect(['task=Reach', 'n=2', f'size={size}', 'cameras=[front]', 'depth=false',
                    'progress=false', f'out={demos}']) == 0
    run = tmp_path / 'run'
    assert main(['train', 'experiment=bc_mlp_e2e', f'task.episodes=[{demos}]',
                 f'task.image_size={size}', f'trainer.max_steps={steps}',
                 'trainer.batch_size=8', 'trainer.device=cpu', 'trainer.progress=false',
                 f'hydra.run.dir={run}']) == 0
    return run
