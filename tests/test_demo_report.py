"""The closed-loop report: Wilson intervals and the files a person opens."""
import pytest

from embodied_vision.demo_report import success_interval, write_report


def test_wilson_interval():
    assert success_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert success_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = success_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(0.7225, abs=1e-4)
    with pytest.raises(ValueError):
        success_interval(0, 0)


def test_report_files(tmp_path):
    summary = {'seconds': 12.5, 'nodes': {
        'sim_node': {'counts': {}, 'latency_ms': {'step': {'median': 9.0, 'p90': 15.0,
                                                           'max': 20.0, 'count': 40}},
                     'episodes': [{'success': True, 'steps': 20}, {'success': False,
                                                                   'steps': 50}]},
        'encoder_node': {'counts': {}, 'latency_ms': {'inference': {
            'median': 1.5, 'p90': 2.0, 'max': 3.0, 'count': 70}}}}}
    (tmp_path / 'episode.gif').write_bytes(b'GIF89a')
    page = write_report(summary, tmp_path, 'demo', video='episode.gif', notes='a note')
    text = page.read_text()
    assert '1/2' in text and '50% [9, 91]' in text and 'encoder_node' in text
    assert '<img src="episode.gif"' in text and 'a note' in text
    for name in ('success.png', 'latency.png', 'summary.json'):
        assert (tmp_path / name).stat().st_size > 0
