"""Scripted experts solve every task on a handful of seeds (the 100-seed table is the
benchmark, `benchmarks/sim.py --episodes 100`)."""
import numpy as np
import pytest

pytest.importorskip('mujoco')
gym = pytest.importorskip('gymnasium')

import embodied_vision.sim  # noqa: E402, F401
from embodied_vision.sim import TASKS  # noqa: E402


def run_expert(task, seed, domain='sim'):
    env = gym.make(f'embodied_vision/{task}-v0', cameras=(), domain=domain)
    _, info = env.reset(seed=seed)
    stages = [info['stage']]
    texts = {info['stage']: info['stage_text']}
    while True:
        _, _, terminated, truncated, info = env.step(env.unwrapped.expert_action())
        stages.append(info['stage'])
        texts[info['stage']] = info['stage_text']
        if terminated or truncated:
            break
    return info, stages, texts, env.unwrapped.task.templates


@pytest.mark.parametrize('task', sorted(TASKS))
@pytest.mark.parametrize('seed', [0, 1])
def test_expert_succeeds(task, seed):
    info, stages, texts, templates = run_expert(task, seed)
    assert info['success'], f'{task} seed {seed} failed; stages {stages}'
    assert stages[0] == 0 and stages[-1] == templates.num_stages - 1
    for stage, text in texts.items():
        assert text == templates.text(stage)


@pytest.mark.parametrize('task', ['PickPlace', 'TwoStepPickPlace'])
def test_expert_succeeds_in_real_domain(task):
    info, stages, _, _ = run_expert(task, seed=5, domain='real')
    assert info['success'], stages


def test_pick_place_stages_follow_the_script():
    _, stages, _, _ = run_expert('PickPlace', seed=2)
    visited = list(dict.fromkeys(stages))
    assert visited == [0, 1, 2, 3, 4]
    assert np.all(np.diff(stages) >= 0)
