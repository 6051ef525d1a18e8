"""Voxel-labelling runs side by side: mIoU per arm over seeds, and the difference of two arms
with a 95 % two-level bootstrap interval.

Each run folder holds the `semantics_eval.json` of `nerf_mae_semantics` (per-scene confusion
matrices on the same held-out scenes). An arm is a list of runs (seeds). One resample draws
the held-out scenes with replacement, the same draw for both arms (the arms are scored on
the same scenes, so the comparison is paired), then each arm's runs with replacement; a
run's mIoU is that of its confusions summed over the drawn scenes, an arm's the mean over
its drawn runs. With 3 runs per arm the interval is narrower than the truth, as bootstraps
over few samples are: read it as a lower bound on the uncertainty.

    embodied-vision compare-semantics --arm random=runs/rand_s* --arm pretrained=runs/pre_s* \\
        --compare random pretrained [--metric miou_objects] [--json out.json]
"""
import argparse
import glob
import json
from pathlib import Path
import sys

import numpy as np

from embodied_vision.downstream.nerf_mae_semantics import EVAL_FILE, mean_iou

__all__ = ['arm_summary', 'load_run', 'main', 'miou_difference']

METRICS = {'miou': False, 'miou_objects': True}   # metric -> skip background


def load_run(path) -> dict:
    """`{'path', 'scenes': [names], 'confusions': (S, K, K)}` of one run folder (or file)."""
    path = Path(path)
    file = path / EVAL_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f'{path}: no {EVAL_FILE} (written when a nerf_mae_semantics '
                                'run finishes)')
    report = json.loads(file.read_text())
    names = sorted(report['scenes'])
    return {'path': str(path), 'scenes': names,
            'confusions': np.array([report['scenes'][n] for n in names], np.int64)}


def _check_same_scenes(runs: list[dict]) -> None:
    first = runs[0]
    for run in runs[1:]:
        if run['scenes'] != first['scenes'] or \
                run['confusions'].shape != first['confusions'].shape:
            raise ValueError(f"{run['path']} was scored on other scenes or classes than "
                             f"{first['path']}; compare runs on the same held-out split")


def arm_summary(runs: list[dict], metric: str = 'miou') -> dict:
    """Per-run values (all held-out scenes), their mean and sample standard deviation."""
    values = [mean_iou(run['confusions'].sum(0), METRICS[metric]) for run in runs]
    return {'runs': [run['path'] for run in runs], 'values': values,
            'mean': float(np.mean(values)),
            'std': float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def miou_difference(baseline: list[dict], treatment: list[dict], metric: str = 'miou',
                    resamples: int = 2000, seed: int = 0) -> dict:
    """Mean `metric` of `treatment` minus `baseline`, with the 95 % interval of the paired
    two-level bootstrap and the fraction of resamples where `treatment` is ahead."""
    _check_same_scenes(baseline + treatment)
    rng = np.random.default_rng(seed)
    n_scenes = baseline[0]['confusions'].shape[0]
    stacks = [np.stack([run['confusions'] for run in arm]) for arm in (baseline, treatment)]
    differences = np.empty(resamples)
    for r in range(resamples):
        scenes = rng.integers(n_scenes, size=n_scenes)
        means = []
        for stack in stacks:
            picked = stack[rng.integers(len(stack), size=len(stack))]
            summed = picked[:, scenes].sum(1)       # (runs, K, K)
            means.append(np.mean([mean_iou(c, METRICS[metric]) for c in summed]))
        differences[r] = means[1] - means[0]
    low, high = np.percentile(differences, [2.5, 97.5])
    point = arm_summary(treatment, metric)['mean'] - arm_summary(baseline, metric)['mean']
    return {'metric': metric, 'difference': float(point), 'low': float(low),
            'high': float(high),
            'probability_ahead': float(np.mean(differences > 0)
                                       + 0.5 * np.mean(differences == 0)),
            'resamples': resamples, 'scenes': int(n_scenes)}


def _arms(specs: list[str]) -> dict[str, list[dict]]:
    arms = {}
    for spec in specs:
        name, sep, pattern = spec.partition('=')
        if not sep or not name:
            raise ValueError(f'--arm takes NAME=GLOB, got {spec!r}')
        paths = sorted(glob.glob(pattern)) or [pattern]
        arms[name] = [load_run(p) for p in paths]
    return arms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='embodied-vision compare-semantics',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--arm', action='append', required=True, metavar='NAME=GLOB',
                        help='an arm: its name and the run folders of its seeds')
    parser.add_argument('--compare', nargs=2, action='append', default=[],
                        metavar=('BASELINE', 'TREATMENT'), help='arms to difference')
    parser.add_argument('--metric', choices=sorted(METRICS), action='append',
                        help='metrics (default both)')
    parser.add_argument('--resamples', type=int, default=2000)
    parser.add_argument('--json', help='write the table here as JSON')
    args = parser.parse_args(argv)
    try:
        arms = _arms(args.arm)
        for pair in args.compare:
            missing = [a for a in pair if a not in arms]
            if missing:
                raise ValueError(f'--compare names unknown arms {missing}; arms: {list(arms)}')
    except (ValueError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    metrics = args.metric or list(METRICS)
    table = {'arms': {}, 'comparisons': []}
    print('| arm | ' + ' | '.join(f'{m} (per seed)' for m in metrics) + ' |')
    print('|---|' + '---|' * len(metrics))
    for name, runs in arms.items():
        summaries = {m: arm_summary(runs, m) for m in metrics}
        table['arms'][name] = summaries
        cells = [f"{s['mean']:.3f} ± {s['std']:.3f} ("
                 + ', '.join(f'{v:.3f}' for v in s['values']) + ')'
                 for s in summaries.values()]
        print(f'| {name} | ' + ' | '.join(cells) + ' |')
    for baseline, treatment in args.compare:
        for m in metrics:
            result = miou_difference(arms[baseline], arms[treatment], m, args.resamples)
            table['comparisons'].append({'baseline': baseline, 'treatment': treatment,
                                         **result})
            print(f"{treatment} - {baseline}, {m}: {result['difference']:+.3f} "
                  f"[{result['low']:+.3f}, {result['high']:+.3f}], ahead in "
                  f"{100 * result['probability_ahead']:.0f}% of resamples")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
