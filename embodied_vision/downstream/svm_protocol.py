"""`embodied-vision eval-svm`: the linear-SVM protocol over arms of encoders and datasets,
with paired two-level bootstrap intervals on the accuracy differences; `embodied-vision
compare-accuracy` does the same for fine-tuning runs (`classification_eval.json`).

An arm is a list of encoders (one per pretraining seed): our exports (`encoder/` folders,
globs allowed) or `random:<registry name>:<seed>[,<seed>...]` for random init; or
`guide:<ViT export>:<image size>:<splat>:<points>`, I2P-MAE's frozen 2D guide scored on its
own max-pooled depth-view features (`ImageGuide.embed`), what the 3D student could learn from
it. A dataset is
`NAME=ROOT` (ModelNet40-hdf5 or ScanObjectNN layout, so the real files work). Every encoder
embeds every dataset's train and test clouds (the first `points` of each, no normalisation,
as upstream, `downstream.point_svm`), a linear SVM with the layout's official C is fit on the
train features and scored on the test ones. A difference `--compare A B` is B's mean accuracy
minus A's; one resample draws the test clouds with replacement (the same draw for both arms:
paired), then each arm's seeds with replacement. With 3 seeds per arm the interval is a
lower bound on the uncertainty, as bootstraps over few samples are.

    embodied-vision eval-svm --arm random=random:i2p_mae_small:0,1,2 \\
        --arm point_m2ae='runs/m2ae_s?/encoder' --arm i2p_mae='runs/i2p_s?/encoder' \\
        --data full=shapes --data partial=shapes --compare random i2p_mae --json svm.json
"""
import argparse
import glob
import json
from pathlib import Path
import sys

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from embodied_vision.data.point_clouds import read_point_cloud_split
from embodied_vision.downstream.point_svm import SVM_C, extract_features, linear_svm_accuracy
from embodied_vision.encoders import create_encoder, load_encoder
from embodied_vision.pretrain.image_guidance import ImageGuide

__all__ = ['accuracy_difference', 'compare_main', 'evaluate_arms', 'load_classification_runs',
           'main', 'resolve_arm']

_RANDOM = 'random:'
_GUIDE = 'guide:'


class _GuideProbe(nn.Module):
    """A 2D guide in the place of a point-cloud encoder (`num_points`, `forward(points)`)."""

    def __init__(self, guide: ImageGuide, num_points: int):
        super().__init__()
        self.guide, self.num_points = guide, num_points

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.guide.embed(points)


def _parse_guide(spec: str) -> tuple[str, int, int, int]:
    path, *numbers = spec[len(_GUIDE):].rsplit(':', 3)
    try:
        size, splat, points = (int(n) for n in numbers)
    except ValueError:
        raise ValueError(f'{spec!r}: expected guide:<ViT encoder export>:<image size>:'
                         '<splat>:<points> (integers)') from None
    if not Path(path).is_dir():
        raise FileNotFoundError(f'{spec!r}: {path} is not an encoder export folder')
    return path, size, splat, points


def resolve_arm(spec: str) -> list[str]:
    """The encoder sources of one arm: `random:<name>:<seeds>` or paths / globs (sorted)."""
    if spec.startswith(_RANDOM):
        parts = spec[len(_RANDOM):].split(':')
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f'{spec!r}: expected random:<encoder name>:<seed>[,<seed>...]')
        try:
            seeds = [int(s) for s in parts[1].split(',')]
        except ValueError:
            raise ValueError(f'{spec!r}: seeds must be integers') from None
        return [f'{_RANDOM}{parts[0]}:{s}' for s in seeds]
    if spec.startswith(_GUIDE):
        _parse_guide(spec)
        return [spec]
    found = sorted(glob.glob(spec)) or ([spec] if Path(spec).exists() else [])
    if not found:
        raise FileNotFoundError(f"{spec}: no encoder export matches (an experiment's "
                                '`encoder/` folder, or random:<name>:<seeds>)')
    return found


def _encoder(source: str):
    if source.startswith(_RANDOM):
        name, seed = source[len(_RANDOM):].rsplit(':', 1)
        torch.manual_seed(int(seed))
        return create_encoder(name)
    if source.startswith(_GUIDE):
        path, size, splat, points = _parse_guide(source)
        return _GuideProbe(ImageGuide(load_encoder(path), image_size=size, splat=splat),
                           points)
    return load_encoder(source)


def evaluate_arms(arms: dict[str, list[str]], datasets: dict[str, str],
                  c: float | None = None, batch_size: int = 32,
                  progress: bool = True) -> dict:
    """`{dataset: {'labels': test labels, 'arms': {arm: [{'source', 'accuracy',
    'correct'}]}}}` (each encoder scored on each dataset)."""
    splits = {name: (read_point_cloud_split(root, 'train'), read_point_cloud_split(root, 'test'))
              for name, root in datasets.items()}
    results = {name: {'labels': test.labels.tolist(), 'layout': test.layout, 'arms': {}}
               for name, (_, test) in splits.items()}
    jobs = [(arm, source) for arm, sources in arms.items() for source in sources]
    for arm, source in tqdm(jobs, desc='eval-svm', disable=not progress):
        encoder = _encoder(source)
        for name, (train, test) in splits.items():
            n = min(encoder.num_points, train.points.shape[1])
            features = [extract_features(encoder, split.points, n, batch_size)
                        for split in (train, test)]
            accuracy, predictions = linear_svm_accuracy(
                features[0], train.labels, features[1], test.labels,
                SVM_C.get(test.layout, SVM_C['monitor']) if c is None else c)
            results[name]['arms'].setdefault(arm, []).append(
                {'source': source, 'accuracy': accuracy,
                 'correct': (predictions == test.labels).astype(int).tolist()})
    return results


def accuracy_difference(baseline: list[dict], treatment: list[dict], resamples: int = 2000,
                        seed: int = 0) -> dict:
    """Mean accuracy of `treatment` minus `baseline` (each a list of seeds' `correct`
    vectors on the same test clouds), with the paired two-level bootstrap 95 % interval."""
    stacks = [np.array([run['correct'] for run in arm], np.float64)
              for arm in (baseline, treatment)]
    if stacks[0].shape[1] != stacks[1].shape[1]:
        raise ValueError('the arms were scored on different test clouds')
    rng = np.random.default_rng(seed)
    n = stacks[0].shape[1]
    differences = np.empty(resamples)
    for r in range(resamples):
        clouds = rng.integers(n, size=n)
        means = [stack[rng.integers(len(stack), size=len(stack))][:, clouds].mean()
                 for stack in stacks]
        differences[r] = means[1] - means[0]
    low, high = np.percentile(differences, [2.5, 97.5])
    point = stacks[1].mean() - stacks[0].mean()
    return {'difference': float(point), 'low': float(low), 'high': float(high),
            'p_ahead': float(np.mean(differences > 0))}


def _summary(runs: list[dict]) -> dict:
    values = [run['accuracy'] for run in runs]
    return {'values': values, 'mean': float(np.mean(values)),
            'std': float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def load_classification_runs(spec: str) -> list[dict]:
    """The `classification_eval.json` of each run folder a glob names (fine-tuning runs of
    `experiment=i2p_mae_finetune`), as `{'source', 'accuracy', 'correct'}`."""
    from embodied_vision.downstream.training_point_classification import EVAL_FILE
    runs = []
    for folder in sorted(glob.glob(spec)) or [spec]:
        file = Path(folder) / EVAL_FILE
        if not file.is_file():
            raise FileNotFoundError(f'{folder}: no {EVAL_FILE} (written when a '
                                    'point_classification run finishes)')
        report = json.loads(file.read_text())
        runs.append({'source': folder, 'accuracy': report['accuracy'],
                     'correct': report['correct'], 'labels': report['labels']})
    if any(run['labels'] != runs[0]['labels'] for run in runs):
        raise ValueError(f'{spec}: the runs were scored on different test clouds')
    return runs


def _named(specs: list[str], flag: str, value: str) -> list[tuple[str, str]]:
    """`NAME=VALUE` command-line entries as pairs; ValueError naming a malformed one."""
    pairs = []
    for spec in specs:
        name, sep, rest = spec.partition('=')
        if not sep or not name:
            raise ValueError(f'{flag} {spec!r}: expected NAME={value}')
        pairs.append((name, rest))
    return pairs


def _check_compared(compare: list, arms: dict) -> None:
    unknown = sorted({a for pair in compare for a in pair} - set(arms))
    if unknown:
        raise ValueError(f'--compare names unknown arms {unknown}; arms: {sorted(arms)}')


def _print_arms(summaries: dict, differences: dict, indent: str = '') -> None:
    for arm, summary in summaries.items():
        values = ', '.join(f'{v:.3f}' for v in summary['values'])
        print(f'{indent}{arm:16} {summary["mean"]:.3f} ± {summary["std"]:.3f}  [{values}]')
    for name, diff in differences.items():
        print(f'{indent}{name}: {diff["difference"]:+.3f} '
              f'[{diff["low"]:+.3f}, {diff["high"]:+.3f}]')


def compare_main(argv: list[str] | None = None) -> int:
    """`embodied-vision compare-accuracy`: fine-tuning runs' test accuracy per arm over seeds,
    and paired two-level bootstrap differences."""
    parser = argparse.ArgumentParser(prog='embodied-vision compare-accuracy',
                                     description=compare_main.__doc__.splitlines()[0])
    parser.add_argument('--arm', action='append', required=True, metavar='NAME=RUN_GLOB')
    parser.add_argument('--compare', nargs=2, action='append', default=[],
                        metavar=('BASELINE', 'TREATMENT'))
    parser.add_argument('--resamples', type=int, default=2000)
    parser.add_argument('--json', type=Path)
    args = parser.parse_args(argv)
    try:
        arms = {name: load_classification_runs(runs)
                for name, runs in _named(args.arm, '--arm', 'RUN_GLOB')}
        _check_compared(args.compare, arms)
        report = {'arms': {a: _summary(runs) for a, runs in arms.items()}, 'differences': {}}
        for base, treat in args.compare:
            report['differences'][f'{treat} - {base}'] = accuracy_difference(
                arms[base], arms[treat], args.resamples)
    except (ValueError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    _print_arms(report['arms'], report['differences'])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + '\n')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='embodied-vision eval-svm',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--arm', action='append', required=True, metavar='NAME=SOURCES')
    parser.add_argument('--data', action='append', required=True, metavar='NAME=ROOT')
    parser.add_argument('--compare', nargs=2, action='append', default=[],
                        metavar=('BASELINE', 'TREATMENT'))
    parser.add_argument('--c', type=float, help="the SVM's C (default: the layout's, "
                        f'{SVM_C})')
    parser.add_argument('--resamples', type=int, default=2000)
    parser.add_argument('--json', type=Path)
    args = parser.parse_args(argv)
    try:
        arms = {}
        for name, sources in _named(args.arm, '--arm', 'SOURCES'):
            arms.setdefault(name, []).extend(resolve_arm(sources))
        datasets = dict(_named(args.data, '--data', 'ROOT'))
        _check_compared(args.compare, arms)
        results = evaluate_arms(arms, datasets, args.c)
    except (ValueError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    report = {'datasets': {}}
    for name, result in results.items():
        entry = {'arms': {a: _summary(runs) for a, runs in result['arms'].items()},
                 'differences': {}}
        for base, treat in args.compare:
            entry['differences'][f'{treat} - {base}'] = accuracy_difference(
                result['arms'][base], result['arms'][treat], args.resamples)
        print(f'{name} ({result["layout"]}, {len(result["labels"])} test clouds)')
        _print_arms(entry['arms'], entry['differences'], indent='  ')
        entry['runs'] = result['arms']
        report['datasets'][name] = entry
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + '\n')
    return 0
