"""`embodied-vision runs`: the final metrics of finished runs as a markdown table + JSON."""
import json

import pytest

from embodied_vision.cli import main
from embodied_vision.training import compare_runs, format_runs_table


def _run(folder, steps, final):
    folder.mkdir()
    (folder / 'summary.json').write_text(json.dumps(
        {'last': {}, 'final': {f'eval/{k}': v for k, v in final.items()}, 'steps': steps,
         'seconds': 12.345}))
    return str(folder)


@pytest.fixture
def runs(tmp_path):
    return [_run(tmp_path / 'depth', 50, {'abs_rel': 0.123456, 'delta1': 0.9,
                                          'ref_abs_rel': 0.5}),
            _run(tmp_path / 'pose', 80, {'rot_err_median_deg': 3.25,
                                         'ref_rot_err_median_deg': 9.0})]


def test_rows_keep_the_requested_metrics_in_order(runs):
    rows = compare_runs(runs, keys=['ref_rot_err_median_deg', 'delta1', 'abs_rel', 'absent'])
    assert rows[0] == {'run': runs[0], 'steps': 50, 'seconds': 12.3, 'delta1': 0.9,
                       'abs_rel': 0.123456}
    assert rows[1] == {'run': runs[1], 'steps': 80, 'seconds': 12.3,
                       'ref_rot_err_median_deg': 9.0}
    table = format_runs_table(rows, ['ref_rot_err_median_deg', 'delta1', 'abs_rel', 'absent'])
    assert table.splitlines() == [
        '| run | steps | seconds | ref_rot_err_median_deg | delta1 | abs_rel |',
        '|---|---|---|---|---|---|',
        f'| {runs[0]} | 50 | 12.3 |  | 0.9 | 0.1235 |',
        f'| {runs[1]} | 80 | 12.3 | 9 |  |  |']
    every = compare_runs(runs)
    assert list(every[1])[3:] == ['rot_err_median_deg', 'ref_rot_err_median_deg']


def test_cli_prints_the_table_and_writes_json(runs, tmp_path, capsys):
    out = tmp_path / 'table.json'
    assert main(['runs', *runs, '--keys', 'abs_rel', 'rot_err_median_deg', '--json',
                 str(out)]) == 0
    assert capsys.readouterr().out == format_runs_table(
        compare_runs(runs, ['abs_rel', 'rot_err_median_deg']), ['abs_rel', 'rot_err_median_deg'])
    assert json.loads(out.read_text()) == compare_runs(runs, ['abs_rel', 'rot_err_median_deg'])
    assert main(['runs', str(tmp_path / 'missing')]) == 2
    assert 'missing/summary.json not found: is' in capsys.readouterr().err
