"""`make demo`'s closed loop: a learned policy through sim_node, encoder_node and policy_node,
and the report it writes."""
import json
import os

import pytest

pytest.importorskip('mujoco')
pytest.importorskip('rclpy')
os.environ.setdefault('MUJOCO_GL', 'egl')


def test_closed_loop_runs_a_learned_policy_through_the_nodes(tmp_path, capsys):
    from embodied_vision.cli import main
    from embodied_vision.demo import closed_loop
    from embodied_vision.sim.collect import main as collect
    demos = tmp_path / 'demos.hdf5'
    assert collect(['task=Reach', 'n=2', 'size=64', 'cameras=[front]', 'depth=false',
                    'progress=false', f'out={demos}']) == 0
    run = tmp_path / 'run'
    assert main(['train', 'experiment=bc_mlp_e2e', f'task.episodes=[{demos}]',
                 'trainer.max_steps=2', 'trainer.batch_size=8', 'trainer.device=cpu',
                 'trainer.progress=false', f'hydra.run.dir={run}']) == 0
    out = tmp_path / 'demo'
    assert closed_loop(out, policy=str(run / 'policy'), episodes=1) == 0
    printed = capsys.readouterr().out
    assert 'learned policy (lang4sim2real_resnet18 + bc_mlp)' in printed
    assert '[demo] success ' in printed and '95 % interval' in printed
    summary = json.loads((out / 'summary.json').read_text())
    nodes = summary['nodes']
    assert len(nodes['sim_node']['episodes']) == 1
    assert nodes['policy_node']['counts']['published'] >= 1  # the policy acted, not the expert
    assert nodes['encoder_node']['latency_ms']['inference']['count'] >= 1
    for name in ('index.html', 'success.png', 'latency.png', 'episode.gif'):
        assert (out / name).stat().st_size > 0, name
