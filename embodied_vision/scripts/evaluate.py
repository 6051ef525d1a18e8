"""`embodied-vision evaluate POLICY [POLICY ...]`: closed-loop success in the sim suite.

Every policy runs `--episodes` episodes for each of `--seeds` (episode seeds
EVALUATION_SEED_BASE + 1000*s + k: the same for every policy, so they face the same scenes,
and never the initial states of collected demos) in the `sim` or `real` domain. Prints a
table of success mean and spread across seeds, and optionally writes the per-episode JSON, a
bar plot with the spread, and one video per policy and seed.

    embodied-vision evaluate runs/mbs/policy runs/bc/policy --task PickPlace \\
        --episodes 50 --seeds 0 1 2 --plot mbs_vs_bc.png --json eval.json --video eval.gif

A policy may be given as `LABEL=PATH`; policies sharing a label (e.g. one per training seed)
are pooled into one row, whose spread is then across all their runs. `--merge` adds the rows
of earlier `--json` outputs of the same task and domain (runs evaluated one at a time, e.g. as
each training seed finishes), pooled by label with the rest:

    embodied-vision evaluate --merge seed0.json seed1.json seed2.json --plot table.png

`--task-option KEY=VALUE` sets a task option for every episode (e.g. `target_object=carrot`
for PickPlace, whose target is otherwise drawn per episode); the options go into the JSON, and
`--merge` pools only tables of the same task, domain and options. `--policy-option KEY=VALUE`
replaces a field of every policy's config for the evaluation (e.g. the planner's
`gripper_release=0.5` or `step_size=0.02`), recorded per row; a label pools only runs with the
same policy options. `--policy-domain sim` tells a domain-conditioned policy (l4s_bc, whose
instruction starts with its domain) that it is in sim while it sees `--domain real` frames:
whether its sim behaviour transfers; recorded per row like the policy options.

`--compare BASELINE POLICY` (repeatable) reports POLICY's success minus BASELINE's, by label,
with a 95 % interval from a two-level bootstrap (training runs of each row drawn with
replacement, then each drawn run's episodes) and the fraction of resamples in which POLICY
is ahead:

    embodied-vision evaluate --merge results/*.json --compare target_only distance_ft

With few runs per row (3) the interval is narrower than the truth, as bootstraps over few
samples are; read it as a lower bound on the uncertainty.
"""
import argparse
import dataclasses
import json
from pathlib import Path
import sys

import numpy as np

__all__ = ['main', 'evaluate_policy_path', 'success_difference']


def _load(path: str, encoder_name: str | None, checkpoint: str | None,
          policy_options: dict | None = None):
    from embodied_vision.policies import ScriptedExpertPolicy, load_policy
    policy = ScriptedExpertPolicy() if path == 'scripted_expert' else load_policy(path)
    if policy_options:
        _set_policy_options(policy, path, policy_options)
    encoder = policy.processor_class.frozen_encoder(policy, encoder_name, checkpoint)
    return policy, encoder


def _set_policy_options(policy, path: str, options: dict) -> None:
    """Replace fields of `policy.config` (validated as the config class does)."""
    config = getattr(policy, 'config', None)
    if config is None or not dataclasses.is_dataclass(config):
        raise ValueError(f'--policy-option: {path} has no config to set options on')
    known = {field.name for field in dataclasses.fields(config)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f'--policy-option: {type(config).__name__} of {path} has no field '
                         f'{", ".join(unknown)}; fields: {", ".join(sorted(known))}')
    try:
        policy.config = dataclasses.replace(config, **options)
    except (TypeError, ValueError) as err:
        raise ValueError(f'--policy-option for {path}: {err}') from None


def evaluate_policy_path(path: str, args) -> dict:
    """Evaluate one saved policy over `args.seeds`; returns its runs and summary."""
    import gymnasium as gym

    from embodied_vision.policies.evaluation import evaluate
    from embodied_vision.sim import EVALUATION_SEED_BASE  # registers the gymnasium ids
    options = getattr(args, 'policy_options', {})
    policy, encoder = _load(path, args.encoder, args.checkpoint, options)
    config = getattr(policy, 'config', None)
    processor_class = policy.processor_class
    camera = args.camera or getattr(config, 'camera', None) or processor_class.default_camera
    size = args.size or getattr(config, 'image_size', None) or 128
    policy_domain = getattr(args, 'policy_domain', None) or args.domain
    if policy_domain != args.domain and not processor_class.domain_conditioned:
        raise ValueError(f'--policy-domain: {path} is a {policy.name!r} policy, which is not '
                         'told its domain (only domain-conditioned policies, e.g. l4s_bc, are)')

    def make_env():
        return gym.make(f'embodied_vision/{args.task}-v0', cameras=(camera,), image_size=size,
                        depth=False, domain=args.domain, task_kwargs=args.task_options,
                        disable_env_checker=True)

    runs = []
    for run_seed in args.seeds:
        result = evaluate(policy, make_env, episodes=args.episodes,
                          seed=EVALUATION_SEED_BASE + 1000 * run_seed,
                          camera=camera, domain=policy_domain, encoder=encoder,
                          record=1 if args.video else 0)
        if args.video and result['videos']:
            from embodied_vision.data.video import write_video
            target = Path(args.video)
            name = Path(path).parent.name if path != 'scripted_expert' else path
            write_video(result['videos'][0],
                        target.with_name(f'{target.stem}_{name}_seed{run_seed}{target.suffix}'))
        runs.append({k: v for k, v in result.items() if k != 'videos'} | {'seed': run_seed})
    rates = [r['success_rate'] for r in runs]
    return {'policy': path, 'kind': getattr(policy, 'name', ''), 'runs': runs,
            **({'policy_options': options} if options else {}),
            **({'policy_domain': policy_domain} if policy_domain != args.domain else {}),
            'mean': float(np.mean(rates)), 'std': float(np.std(rates))}


def _setting(result: dict) -> dict:
    """What a row was evaluated with besides the policy: its policy options and domain."""
    return {key: result[key] for key in ('policy_options', 'policy_domain') if result.get(key)}


def _pooled(labelled: list[tuple[str, dict]]) -> list[dict]:
    """One row per label: runs of every policy with that label pooled (only runs evaluated
    with the same policy options and policy domain)."""
    rows: dict[str, dict] = {}
    for label, result in labelled:
        setting = _setting(result)
        row = rows.setdefault(label, {'policy': label, 'kind': result['kind'], 'runs': [],
                                      'paths': [], **setting})
        if _setting(row) != setting:
            raise ValueError(f'label {label!r} would pool runs evaluated with '
                             f'{_setting(row) or "no options"} and {setting or "no options"}; '
                             'give them different labels')
        row['runs'] += result['runs']
        row['paths'] += result.get('paths', [result['policy']])
    for row in rows.values():
        rates = [run['success_rate'] for run in row['runs']]
        row['mean'], row['std'] = float(np.mean(rates)), float(np.std(rates))
    return list(rows.values())


def _key_values(pairs: list[str], flag: str) -> dict:
    """`['target_object=carrot', 'n=2']` -> `{'target_object': 'carrot', 'n': 2}` (YAML values)."""
    import yaml
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        error = ValueError(f'{flag} takes KEY=VALUE with a YAML value, got {pair!r}')
        if not sep or not key:
            raise error
        try:
            options[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise error from None
    return options


def _describe(task: str, domain: str, options: dict) -> str:
    """`PickPlace (sim)`, or `PickPlace (sim, target_object=carrot)` with task options."""
    return f'{task} ({domain}{"".join(f", {k}={v}" for k, v in options.items())})'


def _merged(paths: list[str], task: str | None, domain: str | None, options: dict | None
            ) -> tuple[str, str, dict, list[tuple[str, dict]]]:
    """The labelled rows of earlier `--json` outputs; all must share one task, domain and set
    of task options (tables written before options were recorded count as none)."""
    labelled = []
    for path in paths:
        try:
            table = json.loads(Path(path).read_text())
            rows = [(row['policy'], row) for row in table['results']]
            found = table['task'], table['domain'], table.get('task_options', {})
            for label, row in rows:  # every field the table and plot read
                if 'kind' not in row or not all({'success_rate', 'episodes'} <= set(run)
                                                for run in row['runs']):
                    raise KeyError(f'row {label!r} lacks kind, or runs with success_rate '
                                   'and episodes')
        except FileNotFoundError:
            raise FileNotFoundError(f'--merge: no such file {path}') from None
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f'--merge: {path} is not an `evaluate --json` output (expected '
                             f'task, domain and results with policy and runs): {err}') from None
        expected = task or found[0], domain or found[1], found[2] if options is None else options
        if expected != found:
            raise ValueError(f'--merge: {path} holds {_describe(*found)} runs, expected '
                             f'{_describe(*expected)}')
        task, domain, options = found
        labelled += rows
    return task, domain, options, labelled


def success_difference(baseline: dict, policy: dict, resamples: int = 20000,
                       seed: int = 0) -> dict:
    """`policy`'s mean success minus `baseline`'s (two table rows), with its 95 % bootstrap
    interval and the fraction of resamples where `policy` is ahead (ties count half).

    Each resample draws a row's runs with replacement, then each drawn run's episodes (a
    binomial draw at the run's success rate), so both the spread across training runs and the
    finite number of episodes count.
    """
    rng = np.random.default_rng(seed)

    def resampled_means(row: dict) -> np.ndarray:
        rates = np.array([run['success_rate'] for run in row['runs']], float)
        episodes = np.array([run['episodes'] for run in row['runs']])
        picked = rng.integers(len(rates), size=(resamples, len(rates)))
        return (rng.binomial(episodes[picked], rates[picked]) / episodes[picked]).mean(axis=1)

    differences = resampled_means(policy) - resampled_means(baseline)
    low, high = np.percentile(differences, [2.5, 97.5])
    ahead = float(np.mean(differences > 0) + 0.5 * np.mean(differences == 0))
    return {'baseline': baseline['policy'], 'policy': policy['policy'],
            'difference': policy['mean'] - baseline['mean'], 'low': float(low),
            'high': float(high), 'probability_ahead': ahead, 'resamples': resamples}


def _comparisons(results: list[dict], pairs: list[list[str]]) -> list[dict]:
    rows = {r['policy']: r for r in results}
    for pair in pairs:
        missing = [label for label in pair if label not in rows]
        if missing:
            raise ValueError(f'--compare: no row labelled {missing[0]!r}; the rows are '
                             f'{", ".join(sorted(rows))}')
    return [success_difference(rows[baseline], rows[policy]) for baseline, policy in pairs]


def _plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    labels = [f'{r["kind"]}\n{r["policy"]}' if len(r['policy']) < 24 else r['kind']
              for r in results]
    figure, axis = plt.subplots(figsize=(1.8 + 1.6 * len(results), 3.2))
    axis.bar(labels, [100 * r['mean'] for r in results],
             yerr=[100 * r['std'] for r in results], capsize=6, color='tab:blue')
    for x, r in enumerate(results):
        axis.scatter([x] * len(r['runs']), [100 * run['success_rate'] for run in r['runs']],
                     color='black', s=12, zorder=3)
    axis.set_ylabel('success (%)')
    axis.set_ylim(0, 105)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='embodied-vision evaluate', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('policies', nargs='*', help='saved policy directories or scripted_expert')
    parser.add_argument('--task', default=None, help='default: PickPlace, or that of --merge')
    parser.add_argument('--domain', default=None, choices=['sim', 'real'],
                        help='default: sim, or that of --merge')
    parser.add_argument('--task-option', action='append', default=[], metavar='KEY=VALUE',
                        help='a task option for every episode, e.g. target_object=carrot '
                             '(repeatable)')
    parser.add_argument('--policy-option', action='append', default=[], metavar='KEY=VALUE',
                        help="replace a field of every policy's config for this evaluation, "
                             'e.g. gripper_release=0.5 for an mbs planner (repeatable)')
    parser.add_argument('--policy-domain', default=None, choices=['sim', 'real'],
                        help="the domain a domain-conditioned policy (l4s_bc) is told it is "
                             "in; default: the env's --domain (an ablation: real frames, "
                             'sim behaviour)')
    parser.add_argument('--episodes', type=int, default=50)
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--camera', default=None, help="default: the policy's camera")
    parser.add_argument('--size', type=int, default=None, help="default: the policy's size")
    parser.add_argument('--encoder', default=None, help='frozen encoder of bc_mlp policies')
    parser.add_argument('--checkpoint', default=None, help='weights of that encoder')
    parser.add_argument('--video', default=None, help='first episode per policy and seed')
    parser.add_argument('--plot', default=None, help='bar plot of success with the spread')
    parser.add_argument('--merge', nargs='+', default=[], metavar='JSON',
                        help='pool in the rows of earlier --json outputs (same task and domain)')
    parser.add_argument('--compare', nargs=2, action='append', default=[],
                        metavar=('BASELINE', 'POLICY'),
                        help="POLICY's success minus BASELINE's (row labels) with a 95%% "
                             'bootstrap interval (repeatable)')
    parser.add_argument('--json', default=None)
    args = parser.parse_args(argv)
    if not args.policies and not args.merge:
        parser.error('give policies to evaluate, or --merge earlier --json outputs')
    try:
        labelled = []
        args.task_options = _key_values(args.task_option, '--task-option') \
            if args.task_option else None
        args.policy_options = _key_values(args.policy_option, '--policy-option')
        if args.merge:
            args.task, args.domain, args.task_options, labelled = _merged(
                args.merge, args.task, args.domain, args.task_options)
        args.task, args.domain = args.task or 'PickPlace', args.domain or 'sim'
        from embodied_vision.sim import TASKS
        if args.policies and args.task not in TASKS:
            raise ValueError(f'--task {args.task!r} is not one of {sorted(TASKS)}')
        args.task_options = args.task_options or {}
        labelled += [(spec.partition('=')[0] if '=' in spec else spec,
                      evaluate_policy_path(spec.partition('=')[2] or spec, args))
                     for spec in args.policies]
        results = _pooled(labelled)
        comparisons = _comparisons(results, args.compare)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f'embodied-vision evaluate: error: {err}', file=sys.stderr)
        return 2
    episodes = sorted({run['episodes'] for r in results for run in r['runs']})
    runs = sorted({len(r['runs']) for r in results})
    title = (f'{_describe(args.task, args.domain, args.task_options)}, '
             f'{"/".join(map(str, runs))} runs x '
             f'{"/".join(map(str, episodes))} episodes')
    print(f'{title}\n{"policy":<40} {"kind":<16} {"success":>9} {"+-":>7}  per run')
    for r in results:
        per_seed = ' '.join(f'{run["success_rate"]:.0%}' for run in r['runs'])
        print(f'{r["policy"]:<40} {r["kind"]:<16} {r["mean"]:>8.1%} {r["std"]:>7.1%}  '
              f'{per_seed}')
    runs = {r['policy']: len(r['runs']) for r in results}
    for c in comparisons:
        print(f'{c["policy"]} ({runs[c["policy"]]} runs) - {c["baseline"]} '
              f'({runs[c["baseline"]]} runs): {100 * c["difference"]:+.1f} points, 95% interval '
              f'[{100 * c["low"]:+.1f}, {100 * c["high"]:+.1f}], ahead in '
              f'{c["probability_ahead"]:.1%} of {c["resamples"]} resamples')
    if args.plot:
        _plot(results, Path(args.plot), title)
    if args.json:
        Path(args.json).write_text(json.dumps({'task': args.task, 'domain': args.domain,
                                               'task_options': args.task_options,
                                               'results': results,
                                               **({'comparisons': comparisons}
                                                  if comparisons else {})},
                                              indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
