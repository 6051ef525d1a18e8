"""Closed-loop evaluation in the sim suite through each policy's adapter."""
import math

import numpy as np
import pytest
import torch

pytest.importorskip('mujoco')

import gymnasium as gym  # noqa: E402

from embodied_vision.encoders import create_encoder  # noqa: E402
from embodied_vision.policies import ScriptedExpertPolicy, make_policy  # noqa: E402
from embodied_vision.policies.evaluation import evaluate, expert_goal_frame  # noqa: E402
from embodied_vision.policies.lang4sim2real import L4SBCConfig, L4SBCPolicy  # noqa: E402
from embodied_vision.policies.mbs import ActionPool, MbSConfig, MbSPolicy  # noqa: E402
from embodied_vision.sim import EVALUATION_SEED_BASE  # noqa: E402


def _factory(task='Reach', camera='front', domain='sim', steps=None):
    def make():
        kwargs = {'max_episode_steps': steps} if steps else {}
        return gym.make(f'embodied_vision/{task}-v0', cameras=(camera,), image_size=32,
                        depth=False, domain=domain, disable_env_checker=True, **kwargs)
    return make


def test_scripted_expert_succeeds_and_videos_are_recorded():
    results = evaluate(ScriptedExpertPolicy(), _factory(), episodes=3, seed=5, record=1)
    assert results['success_rate'] == 1.0 and results['successes'] == 3
    assert [e['seed'] for e in results['per_episode']] == [5, 6, 7]
    assert results['videos'][0].shape[1:] == (32, 32, 3)
    assert len(results['videos'][0]) == results['per_episode'][0]['steps'] + 1


def test_untrained_policies_run_through_their_adapters():
    encoder = create_encoder('r3m_resnet18')
    bc = make_policy('bc_mlp', embed_dim=512, state_dim=8, action_dim=4, image_size=32)
    result = evaluate(bc, _factory(steps=5), episodes=1, encoder=encoder)
    assert result['per_episode'][0]['steps'] == 5 and result['success_rate'] in (0.0, 1.0)
    l4s = L4SBCPolicy(L4SBCConfig(image_size=32, hidden_dims=(16,)),
                      embedder=_FixedEmbedder())
    assert evaluate(l4s, _factory(steps=4, domain='real'), episodes=1,
                    domain='real')['episodes'] == 1
    with pytest.raises(ValueError, match='encoder'):
        evaluate(bc, _factory(steps=2), episodes=1)


class _FixedEmbedder:
    """A deterministic sentence table for the test (the MiniLM path is tested elsewhere)."""

    def embed(self, sentences):
        return torch.stack([torch.ones(384) * (len(s) % 7) / 7 for s in sentences])


def test_mbs_adapter_sets_a_rendered_goal_per_episode():
    make = _factory(task='Reach', camera='wrist', steps=3)
    goal = expert_goal_frame(_factory(task='Reach', camera='wrist'), seed=0, camera='wrist')
    assert goal.shape == (32, 32, 3)
    directions = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    policy = MbSPolicy(MbSConfig(image_size=32, resize_to=36, proj_dim=8,
                                 dynamics_hidden=()), ActionPool(directions))
    result = evaluate(policy, make, episodes=1, camera='wrist')
    assert result['per_episode'][0]['steps'] == 3 and policy.last_scores.shape == (3,)
    assert math.isfinite(policy.last_distance)
    np.testing.assert_array_equal(policy._goal.shape, (1, 8))


def test_evaluate_command_compares_policies_over_seeds(tmp_path, capsys):
    import json

    from embodied_vision.cli import main
    out, plot = tmp_path / 'eval.json', tmp_path / 'eval.png'
    assert main(['evaluate', 'a=scripted_expert', 'b=scripted_expert', '--task', 'Reach',
                 '--domain', 'real', '--episodes', '2', '--seeds', '0', '1', '--size', '32',
                 '--json', str(out), '--plot', str(plot),
                 '--video', str(tmp_path / 'reach.gif')]) == 0
    printed = capsys.readouterr().out
    assert 'Reach (real), 2 runs x 2 episodes' in printed and printed.count('100.0%') == 2
    results = json.loads(out.read_text())['results']
    runs = results[0]['runs']
    assert [r['seed'] for r in runs] == [0, 1]
    assert runs[1]['per_episode'][0]['seed'] == EVALUATION_SEED_BASE + 1000  # held out
    assert results[0]['mean'] == 1.0 and results[0]['std'] == 0.0
    assert plot.stat().st_size > 0
    assert (tmp_path / 'reach_scripted_expert_seed0.gif').stat().st_size > 0
    assert main(['evaluate', str(tmp_path / 'missing'), '--episodes', '1']) == 2


def test_labelled_policies_are_pooled(tmp_path, capsys):
    import json

    from embodied_vision.cli import main
    out = tmp_path / 'eval.json'
    assert main(['evaluate', 'expert=scripted_expert', 'expert=scripted_expert', '--task',
                 'Reach', '--episodes', '1', '--seeds', '3', '--size', '32',
                 '--json', str(out)]) == 0
    (row,) = json.loads(out.read_text())['results']
    assert row['policy'] == 'expert' and len(row['runs']) == 2 and row['mean'] == 1.0


def test_earlier_tables_are_merged_by_label(tmp_path, capsys):
    import json

    from embodied_vision.cli import main
    first, second, merged = (tmp_path / f'{n}.json' for n in ('first', 'second', 'merged'))
    assert main(['evaluate', 'expert=scripted_expert', '--task', 'Reach', '--episodes', '1',
                 '--seeds', '0', '--size', '32', '--json', str(first)]) == 0
    table = json.loads(first.read_text())
    failed = json.loads(json.dumps(table['results'][0]))  # the same row, its run failed
    failed['runs'][0].update(success_rate=0.0, successes=0)
    second.write_text(json.dumps({'task': 'Reach', 'domain': 'sim', 'results': [
        failed | {'policy': 'expert'}, failed | {'policy': 'other'}]}))
    capsys.readouterr()
    assert main(['evaluate', '--merge', str(first), str(second), '--json', str(merged),
                 '--plot', str(tmp_path / 'merged.png')]) == 0
    assert 'Reach (sim), 1/2 runs x 1 episodes' in capsys.readouterr().out
    rows = {row['policy']: row for row in json.loads(merged.read_text())['results']}
    assert rows['expert']['mean'] == 0.5 and rows['expert']['std'] == 0.5
    assert len(rows['expert']['paths']) == 2 and rows['other']['mean'] == 0.0
    # a table of another task, or a file that is not a table, is refused by name
    assert main(['evaluate', '--merge', str(first), '--task', 'Push']) == 2
    assert 'holds Reach (sim) runs, expected Push (sim)' in capsys.readouterr().err
    for bad in ({'rows': []}, {'task': 'Reach', 'domain': 'sim',
                               'results': [{'policy': 'x', 'kind': 'mbs', 'runs': [{}]}]}):
        (tmp_path / 'bad.json').write_text(json.dumps(bad))
        assert main(['evaluate', '--merge', str(tmp_path / 'bad.json')]) == 2
        assert 'is not an `evaluate --json` output' in capsys.readouterr().err


def test_task_options_reach_the_episodes_and_keep_tables_apart(tmp_path, capsys):
    import json

    from embodied_vision.cli import main
    carrot, random_target = tmp_path / 'carrot.json', tmp_path / 'random.json'
    assert main(['evaluate', 'expert=scripted_expert', '--task', 'PickPlace', '--task-option',
                 'target_object=carrot', '--episodes', '1', '--seeds', '0', '--size', '32',
                 '--json', str(carrot)]) == 0
    assert 'PickPlace (sim, target_object=carrot), 1 runs x 1 episodes' in \
        capsys.readouterr().out
    assert json.loads(carrot.read_text())['task_options'] == {'target_object': 'carrot'}
    # the option is the task's: one it does not have, or a value it does not know, is refused
    assert main(['evaluate', 'scripted_expert', '--task', 'PickPlace', '--task-option',
                 'colour=red', '--episodes', '1', '--seeds', '0', '--size', '32']) == 2
    assert "unknown option(s) ['colour']" in capsys.readouterr().err
    assert main(['evaluate', 'scripted_expert', '--task', 'PickPlace', '--task-option',
                 'target_object=banana', '--episodes', '1', '--seeds', '0', '--size', '32']) == 2
    assert "unknown target_object 'banana'" in capsys.readouterr().err
    for bad in ('carrot', 'target_object=[carrot'):
        assert main(['evaluate', 'scripted_expert', '--task-option', bad]) == 2
        assert f'takes KEY=VALUE with a YAML value, got {bad!r}' in capsys.readouterr().err
    # a table of the random-target task is not pooled with the carrot table
    table = json.loads(carrot.read_text())
    random_target.write_text(json.dumps({k: v for k, v in table.items() if k != 'task_options'}))
    assert main(['evaluate', '--merge', str(carrot), str(random_target)]) == 2
    assert ('holds PickPlace (sim) runs, expected PickPlace (sim, target_object=carrot)'
            in capsys.readouterr().err)


def test_policy_options_replace_config_fields_for_the_evaluation(tmp_path, capsys):
    import json

    from embodied_vision.cli import main
    from embodied_vision.scripts.evaluate import _load
    directions = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    planner = MbSPolicy(MbSConfig(image_size=32, resize_to=36, proj_dim=8, dynamics_hidden=()),
                        ActionPool(directions))
    path = str(planner.save_pretrained(tmp_path / 'planner'))
    out = tmp_path / 'eval.json'
    options = ['--policy-option', 'step_size=0.02', '--policy-option', 'gripper_release=0.5']
    assert main(['evaluate', f'fine={path}', '--task', 'Reach', '--episodes', '1', '--seeds',
                 '0', *options, '--json', str(out)]) == 0
    (row,) = json.loads(out.read_text())['results']
    assert row['policy_options'] == {'step_size': 0.02, 'gripper_release': 0.5}
    assert planner.steps_per_move == 2
    loaded, _ = _load(path, None, None, {'step_size': 0.02})
    assert loaded.config.step_size == 0.02 and loaded.steps_per_move == 1  # 2 cm = one step
    capsys.readouterr()
    for option, message in (('colour=red', 'has no field colour'),
                            ('gripper_release=0.95', 'gripper_release must be in'),
                            ('step_size', 'takes KEY=VALUE')):
        assert main(['evaluate', path, '--task', 'Reach', '--episodes', '1', '--seeds', '0',
                     '--policy-option', option]) == 2
        assert message in capsys.readouterr().err
    assert main(['evaluate', 'scripted_expert', '--policy-option', 'step_size=0.02']) == 2
    assert 'has no config' in capsys.readouterr().err
    # one label never pools runs evaluated with different policy options
    assert main(['evaluate', f'fine={path}', '--task', 'Reach', '--episodes', '1', '--seeds',
                 '0', '--merge', str(out)]) == 2
    assert "label 'fine' would pool runs evaluated with {'policy_options'" in \
        capsys.readouterr().err


def _row(label, rates, episodes=100):
    runs = [{'success_rate': rate, 'successes': round(rate * episodes), 'episodes': episodes}
            for rate in rates]
    return {'policy': label, 'kind': 'l4s_bc', 'runs': runs, 'mean': float(np.mean(rates)),
            'std': float(np.std(rates))}


def test_success_difference_separates_clear_wins_from_noise():
    from embodied_vision.scripts.evaluate import success_difference
    weak, strong = _row('weak', [0.2, 0.25, 0.3]), _row('strong', [0.6, 0.65, 0.7])
    win = success_difference(weak, strong)
    assert win['difference'] == pytest.approx(0.4)
    assert 0.3 < win['low'] < 0.4 < win['high'] < 0.5 and win['probability_ahead'] == 1.0
    assert success_difference(strong, weak)['probability_ahead'] == 0.0
    same = success_difference(weak, _row('again', [0.2, 0.25, 0.3]))
    assert same['low'] < 0 < same['high'] and 0.4 < same['probability_ahead'] < 0.6
    # the spread across runs widens the interval, not only the episode count
    spread = success_difference(weak, _row('spread', [0.45, 0.65, 0.85]))
    assert spread['high'] - spread['low'] > 1.5 * (win['high'] - win['low'])
    few = success_difference(_row('a', [0.2], 10), _row('b', [0.6], 10))
    assert few['low'] < 0.1 and few == success_difference(_row('a', [0.2], 10),
                                                          _row('b', [0.6], 10))


def test_compare_reports_the_difference_of_labelled_rows(tmp_path, capsys):
    import json

    from embodied_vision.cli import main
    table = tmp_path / 'table.json'
    table.write_text(json.dumps({'task': 'Push', 'domain': 'real', 'results': [
        _row('baseline', [0.2, 0.3]), _row('pretrained', [0.5, 0.6])]}))
    out = tmp_path / 'out.json'
    assert main(['evaluate', '--merge', str(table), '--compare', 'baseline', 'pretrained',
                 '--json', str(out)]) == 0
    assert ('pretrained (2 runs) - baseline (2 runs): +30.0 points, 95% interval'
            in capsys.readouterr().out)
    (comparison,) = json.loads(out.read_text())['comparisons']
    assert comparison['policy'] == 'pretrained' and comparison['low'] > 0.1
    assert main(['evaluate', '--merge', str(table), '--compare', 'baseline', 'typo']) == 2
    assert "no row labelled 'typo'; the rows are baseline, pretrained" in capsys.readouterr().err


class _RecordingEmbedder(_FixedEmbedder):
    def __init__(self):
        self.sentences = []

    def embed(self, sentences):
        self.sentences += list(sentences)
        return super().embed(sentences)


def test_the_policy_is_told_the_domain_it_is_evaluated_under():
    embedder = _RecordingEmbedder()
    l4s = L4SBCPolicy(L4SBCConfig(image_size=32, hidden_dims=(16,)), embedder=embedder)
    evaluate(l4s, _factory(steps=2, domain='real'), episodes=1, domain='sim')
    assert embedder.sentences and all(s.startswith('Simulation: ') for s in embedder.sentences)
    embedder.sentences.clear()
    evaluate(l4s, _factory(steps=2, domain='real'), episodes=1, domain='real')
    assert embedder.sentences and all(s.startswith('Real: ') for s in embedder.sentences)


def test_policy_domain_is_recorded_and_kept_apart_when_pooling(tmp_path, capsys):
    import json

    from embodied_vision.cli import main
    path = L4SBCPolicy(L4SBCConfig(image_size=32, hidden_dims=(16,)),
                       embedder=_FixedEmbedder()).save_pretrained(tmp_path / 'l4s')
    told_sim, plain = tmp_path / 'told_sim.json', tmp_path / 'plain.json'
    common = ['--task', 'Reach', '--domain', 'real', '--episodes', '1', '--seeds', '0']
    assert main(['evaluate', f'l4s={path}', *common, '--policy-domain', 'sim',
                 '--json', str(told_sim)]) == 0
    (row,) = json.loads(told_sim.read_text())['results']
    assert row['policy_domain'] == 'sim' and len(row['runs']) == 1
    assert main(['evaluate', f'l4s={path}', *common, '--policy-domain', 'real',
                 '--json', str(plain)]) == 0
    assert 'policy_domain' not in json.loads(plain.read_text())['results'][0]
    capsys.readouterr()
    assert main(['evaluate', '--merge', str(told_sim), str(plain)]) == 2
    assert "label 'l4s' would pool runs evaluated with {'policy_domain': 'sim'}" in \
        capsys.readouterr().err
    # a policy that is not told its domain is refused rather than silently evaluated
    assert main(['evaluate', 'scripted_expert', *common, '--policy-domain', 'sim']) == 2
    assert "'scripted_expert' policy, which is not told its domain" in capsys.readouterr().err
