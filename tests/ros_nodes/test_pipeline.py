"""`embodied-vision pipeline`: the in-process closed loop, its config checks and failures."""
import json
import os
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('mujoco')
os.environ.setdefault('MUJOCO_GL', 'egl')
from embodied_vision.ros_nodes.pipeline import (  # noqa: E402
    main,
    node_class_for,
    parse_overrides,
    read_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / 'launch' / 'config'
DEMO = CONFIGS / 'demo.yaml'


def _config(tmp_path, **encoder):
    demo = yaml.safe_load(DEMO.read_text())
    demo['sim_node']['ros__parameters'].update(task='Reach', max_episodes=5)
    demo['encoder_node']['ros__parameters'].update(backend='eager', **encoder)
    path = tmp_path / 'pipeline.yaml'
    path.write_text(yaml.safe_dump(demo))
    return path


def test_closed_loop_runs_episodes_and_reports(tmp_path, capsys):
    import imageio.v3 as iio
    summary = tmp_path / 'summary.json'
    assert main([str(_config(tmp_path)), '--episodes', '2', '--timeout', '120',
                 '--json', str(summary), '--video', str(tmp_path / 'run.gif')]) == 0
    out = capsys.readouterr().out
    assert 'success rate 100%' in out and 'inference' in out
    frames = iio.imread(tmp_path / 'run.gif', index=None)  # the sim's frames, as published
    assert frames.shape[0] >= 2 and frames.shape[1:3] == (64, 64)
    assert f'{frames.shape[0]} frames of /front/image_raw' in out
    nodes = json.loads(summary.read_text())['nodes']
    assert len(nodes['sim_node']['episodes']) == 2 and nodes['sim_node']['success_rate'] == 1.0
    assert set(nodes['encoder_node']['latency_ms']) >= {'convert', 'preprocess', 'inference',
                                                       'publish'}
    assert nodes['policy_node']['counts']['published'] >= 2
    assert nodes['encoder_node']['counts']['rejected'] == 0


def test_configure_failure_exits_cleanly(tmp_path, capsys):
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'garbage')
    assert main([str(_config(tmp_path, checkpoint_path=str(bad))), '--timeout', '30']) == 1
    assert 'encoder_node: configure failed' in capsys.readouterr().err


def test_config_is_checked(tmp_path):
    path = tmp_path / 'x.yaml'
    path.write_text(yaml.safe_dump({'camera_driver': {'ros__parameters': {}}}))
    with pytest.raises(ValueError, match='encoder_node'):
        for name in read_config(path):
            node_class_for(name)
    path.write_text(yaml.safe_dump({'sim_node': {'task': 'Reach'}}))
    with pytest.raises(ValueError, match='ros__parameters'):
        read_config(path)
    assert node_class_for('wrist_encoder_node')[0] == 'encoder_node'


def test_packaged_configs_are_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the checkout: `launch/config/demo.yaml` is not here
    expected = read_config(DEMO)
    for name in ('demo', 'demo.yaml', 'launch/config/demo.yaml'):
        assert read_config(name) == expected
    # a pip install's share/embodied_vision is searched first
    share = tmp_path / 'prefix' / 'share' / 'embodied_vision' / 'launch' / 'config'
    share.mkdir(parents=True)
    (share / 'demo.yaml').write_text(yaml.safe_dump({'sim_node': {'ros__parameters': {}}}))
    monkeypatch.setattr('sys.prefix', str(tmp_path / 'prefix'))
    assert set(read_config('demo')) == {'sim_node'}
    with pytest.raises(FileNotFoundError, match='packaged: .*demo'):
        read_config('nonesuch.yaml')


def test_the_pipeline_runs_a_packaged_config_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(['demo', '--episodes', '1', '--timeout', '120', '--set', 'sim_node.task=Reach',
                 '--set', 'encoder_node.backend=eager']) == 0
    assert 'episodes 1, success rate 100%' in capsys.readouterr().out


def test_lang4sim2real_policy_closes_the_loop(tmp_path, capsys):
    """A saved l4s_bc policy drives the real-domain sim through policy_node (no encoder)."""
    import torch

    from embodied_vision.policies.lang4sim2real import L4SBCConfig, L4SBCPolicy
    torch.manual_seed(0)
    policy = L4SBCPolicy(L4SBCConfig(image_size=32, hidden_dims=(16,), pad=0,
                                     freeze_pretrained=False))
    path = policy.save_pretrained(tmp_path / 'policy')
    summary = tmp_path / 'summary.json'
    config = CONFIGS / 'lang4sim2real.yaml'
    assert main([str(config), '--episodes', '1', '--timeout', '300', '--json', str(summary),
                 '--set', f'policy_node.policy_path={path}', '--set', 'sim_node.task=Reach',
                 '--set', 'sim_node.max_episode_steps=12', '--set', 'sim_node.image_width=32',
                 '--set', 'sim_node.image_height=32']) == 0
    nodes = json.loads(summary.read_text())['nodes']
    (episode,) = nodes['sim_node']['episodes']
    assert episode['steps'] == 12
    counts = nodes['policy_node']['counts']
    assert counts['published'] >= 12 and counts['rejected'] == 0


def test_point_cloud_config_embeds_the_sims_points(tmp_path, capsys):
    """launch/config/point_cloud.yaml: sim_node's front/points feed point_cloud_node."""
    summary = tmp_path / 'summary.json'
    assert main([str(CONFIGS / 'point_cloud.yaml'), '--episodes', '1', '--timeout', '120',
                 '--json', str(summary), '--set', 'point_cloud_node.encoder_name=i2p_mae_tiny',
                 '--set', 'sim_node.task=Reach', '--set', 'sim_node.max_episode_steps=8']) == 0
    nodes = json.loads(summary.read_text())['nodes']
    counts = nodes['point_cloud_node']['counts']
    assert counts['published'] >= 1 and counts['rejected'] == 0, counts
    assert set(nodes['point_cloud_node']['latency_ms']) >= {
        'convert', 'preprocess', 'sample', 'inference', 'publish', 'total'}


def test_overrides_are_parsed_and_checked():
    nodes = {'sim_node': {}, 'policy_node': {}}
    assert parse_overrides(['sim_node.max_episodes=3', 'policy_node.policy_path=a/b',
                            'sim_node.cameras=[front, wrist]'], nodes) == {
        'sim_node': {'max_episodes': 3, 'cameras': ['front', 'wrist']},
        'policy_node': {'policy_path': 'a/b'}}
    with pytest.raises(ValueError, match='NODE.PARAM=VALUE'):
        parse_overrides(['max_episodes=3'], nodes)
    with pytest.raises(ValueError, match='encoder_node'):
        parse_overrides(['encoder_node.backend=eager'], nodes)
