"""Every command in the README's bash blocks still matches the code, so none drifts again.

Each command is checked as far as it can be without its data: `embodied-vision` commands
with an argparse line are parsed by their own parser (stopped right after parsing), hydra
commands are composed with their overrides (an unknown key or experiment, a missing `+`
fails), `make` targets must exist, `pip install` extras must be declared, `ros2 launch`
files exist (their arguments are checked in tests/launch). Commands that need nothing but
the repository run for real. A command of a kind not covered here fails the first test.
"""
import argparse
from pathlib import Path
import re
import shlex

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Commands that run for real: they need only the repository.
RUN_FOR_REAL = ('embodied-vision list', 'embodied-vision train --help',
                'embodied-vision evaluate --merge results/')
HYDRA_COMMANDS = {'train': 'embodied_vision.configs', 'collect': 'embodied_vision.sim.collect',
                  'view-pairs': 'embodied_vision.sim.view_pairs',
                  'grids': 'embodied_vision.sim.radiance_grids',
                  'shapes': 'embodied_vision.sim.shapes'}


def readme_commands() -> list[str]:
    text = (ROOT / 'README.md').read_text()
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            line = re.sub(r'\s+#.*$', '', line).strip()
            if line and not line.startswith('#'):
                commands.append(' '.join(line.split()))
    return commands


COMMANDS = readme_commands()


class _ParsedError(Exception):
    """Raised right after an argparse parser accepted the command line."""


def _parse_only(monkeypatch) -> None:
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        raise _ParsedError(original(self, args, namespace))
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', parse_and_stop)


def _argv(command: str) -> list[str]:
    return shlex.split(command.replace('[...]', '[x.hdf5]'))[1:]


def _kind(command: str) -> str:
    words = command.split()
    if words[0] == 'make':
        return 'make'
    if words[:2] == ['pip', 'install']:
        return 'pip'
    if words[:2] == ['ros2', 'launch']:
        return 'ros2 launch'
    if words[0] == 'embodied-vision':
        if command.startswith(RUN_FOR_REAL):
            return 'run'
        return 'hydra' if words[1] in HYDRA_COMMANDS else 'argparse'
    return ''


def test_every_readme_command_is_covered():
    assert len(COMMANDS) >= 30
    uncovered = [c for c in COMMANDS if not _kind(c)]
    assert not uncovered, f'README commands no test checks: {uncovered}'


@pytest.mark.parametrize('command', [c for c in COMMANDS if _kind(c) == 'argparse'])
def test_argparse_commands_parse(command, monkeypatch):
    from embodied_vision.cli import main
    _parse_only(monkeypatch)
    with pytest.raises(_ParsedError):
        main(_argv(command))


@pytest.mark.parametrize('command', [c for c in COMMANDS if _kind(c) == 'hydra'])
def test_hydra_commands_compose(command):
    import importlib
    argv = _argv(command)
    if argv[1:] == ['--help']:
        return
    overrides = [a for a in argv[1:] if '=' in a]
    if argv[0] == 'train':
        from embodied_vision.configs import compose_config
        cfg = compose_config('train', overrides)
        assert cfg.task.name, command
    else:
        if argv[0] != 'shapes':  # shapes has no mujoco-free compose
            pytest.importorskip('mujoco')
        module = importlib.import_module(HYDRA_COMMANDS[argv[0]])
        module.compose_config(overrides)


@pytest.mark.parametrize('command', [c for c in COMMANDS if _kind(c) == 'run'])
def test_repository_only_commands_run(command, monkeypatch, capsys):
    import glob

    from embodied_vision.cli import main
    monkeypatch.chdir(ROOT)
    argv = [m for a in _argv(command) for m in (sorted(glob.glob(a)) or [a])]  # as bash does
    assert main(argv) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip()


def test_make_targets_pip_extras_and_launch_files_exist():
    makefile = (ROOT / 'Makefile').read_text()
    targets = set(re.findall(r'^([\w-]+):', makefile, re.M))
    extras = set(re.findall(r"^    '([\w]+)': \[", (ROOT / 'setup.py').read_text(), re.M))
    for command in COMMANDS:
        words = shlex.split(command)
        if words[0] == 'make':
            assert words[1] in targets, command
        elif words[:2] == ['pip', 'install']:
            for extra in re.findall(r'\[([\w,]+)\]', command):
                assert set(extra.split(',')) <= extras, command
        elif words[:2] == ['ros2', 'launch']:
            assert (ROOT / 'launch' / words[3]).is_file(), command
