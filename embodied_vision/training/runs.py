"""Tables of finished training runs, read from the `summary.json` the trainer writes.

    embodied-vision runs runs/depth_pretrained runs/depth_random --keys abs_rel delta1 \\
        --json table.json
"""
from collections.abc import Sequence
import json
import math
import os
from pathlib import Path

__all__ = ['compare_runs', 'format_runs_table']

_FIXED = ('run', 'steps', 'seconds')


def compare_runs(run_dirs: Sequence[str | os.PathLike], keys: Sequence[str] | None = None
                 ) -> list[dict]:
    """One row per run folder: `run`, `steps`, `seconds` and its final metrics.

    Args:
        run_dirs: training run folders (each with the `summary.json` of a finished run).
        keys: final metrics to keep (without the `eval/` prefix), in this order; a run that
            lacks one has no such entry. None: every final metric of each run.
    """
    rows = []
    for run in run_dirs:
        path = Path(run) / 'summary.json'
        if not path.exists():
            raise FileNotFoundError(f'{path} not found: is {run} a finished training run?')
        summary = json.loads(path.read_text())
        final = {k.removeprefix('eval/'): v for k, v in summary.get('final', {}).items()}
        wanted = final if keys is None else [k for k in keys if k in final]
        rows.append({'run': str(run), 'steps': summary.get('steps'),
                     'seconds': round(float(summary.get('seconds', math.nan)), 1),
                     **{k: final[k] for k in wanted}})
    return rows


def format_runs_table(rows: Sequence[dict], keys: Sequence[str] | None = None) -> str:
    """A markdown table of `compare_runs` rows: `run`, `steps`, `seconds`, then the metrics
    any row has, in the order of `keys` (None: as they first appear); floats to 4 significant
    digits, missing cells empty."""
    present: list[str] = []
    for row in rows:
        present += [k for k in row if k not in present and k not in _FIXED]
    if keys is not None:
        present = [k for k in keys if k in present]
    keys = [*_FIXED, *present]
    lines = ['| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
    for row in rows:
        cells = [f'{row[k]:.4g}' if isinstance(row.get(k), float) else str(row.get(k, ''))
                 for k in keys]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'
