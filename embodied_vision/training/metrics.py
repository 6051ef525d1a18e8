"""Training metrics on disk: one CSV row per logged step, a JSON summary and PNG plots."""
import csv
import json
import math
import os
from pathlib import Path

__all__ = ['MetricsLogger', 'plot_metrics']


class MetricsLogger:
    """Append-only CSV of `step, key...` rows; survives resumes (rows past `step` are dropped).

    Args:
        path: the CSV file (created with its parent folder).
        resume_step: when resuming, keep only rows with step <= resume_step.
    """

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []
        if self.path.exists() and resume_step is not None:
            with open(self.path, newline='') as handle:
                self.rows = [{k: _number(v) for k, v in row.items()}
                             for row in csv.DictReader(handle)
                             if int(float(row['step'])) <= resume_step]
        self._rewrite()

    def log(self, step: int, **values: float) -> None:
        row = {'step': step, **{k: float(v) for k, v in values.items()}}
        known = set(self._fields)
        self.rows.append(row)
        if set(row) - known:  # a new column: rewrite the file with the wider header
            self._rewrite()
            return
        with open(self.path, 'a', newline='') as handle:
            csv.DictWriter(handle, fieldnames=self._fields, restval='').writerow(row)

    @property
    def _fields(self) -> list[str]:
        fields = ['step']
        for row in self.rows:
            fields += [k for k in row if k not in fields]
        return fields

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix('.tmp')
        with open(tmp, 'w', newline='') as handle:
            writer = csv.DictWriter(handle, fieldnames=self._fields, restval='')
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        points = [(r['step'], r[key]) for r in self.rows if r.get(key, '') != '']
        return [int(s) for s, _ in points], [float(v) for _, v in points]

    def write_summary(self, path: str | os.PathLike, **extra) -> dict:
        """JSON with the last value of every metric plus `extra` fields."""
        last = {}
        for row in self.rows:
            last.update({k: v for k, v in row.items() if v != ''})
        summary = {'last': last, **extra}
        Path(path).write_text(json.dumps(summary, indent=2, default=str) + '\n')
        return summary


def _number(text: str):
    if text == '':
        return ''
    value = float(text)
    return int(value) if value.is_integer() and 'e' not in text and '.' not in text else value


def plot_metrics(logger: MetricsLogger, path: str | os.PathLike, keys: list[str] | None = None
                 ) -> Path:
    """One panel per metric against step, saved as PNG (matplotlib, headless)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    keys = keys or [k for k in logger._fields if k != 'step']
    columns = min(3, max(1, len(keys)))
    rows = math.ceil(len(keys) / columns) or 1
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows),
                                squeeze=False)
    for axis, key in zip(axes.flat, keys):
        steps, values = logger.series(key)
        axis.plot(steps, values, marker='.' if len(steps) < 30 else None)
        axis.set_title(key)
        axis.set_xlabel('step')
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(keys):]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return Path(path)
