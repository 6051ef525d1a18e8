"""`make demo`'s closed loop: a learned policy through sim_node, encoder_node and policy_node,
and the report it writes."""
import json
import os

import pytest

pytest.importorskip('mujoco')
pytest.importorskip('rclpy')
os.environ.setdefault('MUJOCO_GL', 'egl')


def test_closed_loop_runs_a_learned_policy_through_the_nodes(tmp_path, capsys):
    from embodied_vision.demo import closed_loop
    from tests.policies.e2e_run import train_tiny_e2e
    run = train_tiny_e2e(tmp_path, size=64, steps=2)
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
