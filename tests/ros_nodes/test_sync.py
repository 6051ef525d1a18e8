"""The approximate-time pairing policy of `ros_nodes/approximate_sync.py`, without rclpy."""
import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from embodied_vision.ros_nodes.approximate_sync import ApproximateTimeSync, stamp_ns

MS = 1_000_000  # nanoseconds


def _feed(sync, events):
    """Add `(stream, stamp_ms)` events; returns the pairs of stamps (ms) and drops."""
    pairs, dropped = [], 0
    for stream, stamp in events:
        out, n = sync.add(stream, round(stamp * MS), stamp)
        pairs += out
        dropped += n
    return pairs, dropped


def test_stamp_ns():
    assert stamp_ns(SimpleNamespace(sec=3, nanosec=5)) == 3_000_000_005


def test_equal_stamps_pair_at_once_in_either_order():
    sync = ApproximateTimeSync(queue_size=5, slop=0.0)
    assert sync.add(0, 10 * MS, 'a') == ([], 0)
    assert sync.add(1, 10 * MS, 'b') == ([('a', 'b')], 0)
    assert sync.add(1, 20 * MS, 'd') == ([], 0)
    assert sync.add(0, 20 * MS, 'c') == ([('c', 'd')], 0)  # view order is kept
    assert sync.pending() == (0, 0)


def test_a_pair_waits_until_no_closer_message_can_come():
    sync = ApproximateTimeSync(queue_size=5, slop=0.010)
    assert _feed(sync, [(0, 0), (1, 3)]) == ([], 0)  # a left at 2 ms would be closer
    assert _feed(sync, [(0, 33)]) == ([(0, 3)], 0)
    # with a known minimum period the pair is final at once
    sync = ApproximateTimeSync(queue_size=5, slop=0.010, inter_message_lower_bound=0.030)
    assert _feed(sync, [(0, 0), (1, 3)]) == ([(0, 3)], 0)


def test_the_nearest_message_wins_and_the_other_is_dropped():
    sync = ApproximateTimeSync(queue_size=5, slop=0.010)
    pairs, dropped = _feed(sync, [(0, 0), (0, 8), (1, 9), (0, 40), (1, 41)])
    assert pairs == [(8, 9)] and dropped == 1
    assert sync.dropped['superseded'] == 1  # left 0 was in slop of right 9, but 8 is nearer
    assert _feed(sync, [(0, 70)]) == ([(40, 41)], 0)


def test_unmatched_messages_are_dropped_and_counted():
    sync = ApproximateTimeSync(queue_size=5, slop=0.005)
    pairs, dropped = _feed(sync, [(0, 0), (1, 100), (0, 200), (1, 200)])
    assert pairs == [(200, 200)] and dropped == 2
    assert sync.dropped['unmatched'] == 2 and sync.pending() == (0, 0)


def test_overflow_bounds_each_queue():
    sync = ApproximateTimeSync(queue_size=3, slop=0.001)
    pairs, dropped = _feed(sync, [(0, t) for t in range(0, 100, 10)])  # right stream stalled
    assert pairs == [] and dropped == 7 and sync.dropped['overflow'] == 7
    assert sync.pending() == (3, 0)
    assert _feed(sync, [(1, 90)]) == ([(90, 90)], 2)  # 70 and 80 can no longer match


def test_duplicates_and_time_jumps():
    sync = ApproximateTimeSync(queue_size=5, slop=0.001)
    assert _feed(sync, [(0, 50), (0, 50)]) == ([], 1)
    assert sync.dropped['duplicate'] == 1
    _feed(sync, [(0, 60)])
    # a sim reset: time starts again at 0; the queued 50 and 60 are flushed
    pairs, dropped = _feed(sync, [(0, 0), (1, 0)])
    assert pairs == [(0, 0)] and dropped == 2 and sync.dropped['time_jump'] == 2
    # the other stream jumps first: its new message finds no partner until this one jumps
    _feed(sync, [(0, 40), (1, 40), (0, 80)])
    pairs, dropped = _feed(sync, [(1, 5), (0, 5), (1, 10), (0, 10)])
    assert pairs == [(10, 10)] and sync.dropped['time_jump'] == 3
    assert sync.dropped['unmatched'] == 2 and sync.pending() == (0, 0)  # right 5, left 5


def test_parameters_are_checked_and_slop_can_change():
    for kwargs in ({'queue_size': 0}, {'slop': -0.1}, {'slop': float('nan')},
                   {'inter_message_lower_bound': -1.0}):
        with pytest.raises(ValueError):
            ApproximateTimeSync(**kwargs)
    with pytest.raises(ValueError, match='stream'):
        ApproximateTimeSync().add(2, 0, None)
    sync = ApproximateTimeSync(queue_size=5, slop=0.001)
    sync.slop = 0.050
    assert sync.slop == 0.050
    assert _feed(sync, [(0, 0), (1, 30), (0, 90)]) == ([(0, 30)], 0)


def _offline_pairs(left, right, slop):
    """Reference with every stamp known in advance: take the oldest unused stamp, pair it with
    its nearest unused partner when that is within slop and mutual (older on ties)."""
    streams = [sorted(left), sorted(right)]
    pairs = []
    while streams[0] and streams[1]:
        x = 0 if streams[0][0] <= streams[1][0] else 1
        head = streams[x][0]
        partner = min(streams[1 - x], key=lambda o: (abs(o - head), o))
        back = min(streams[x], key=lambda o: (abs(o - partner), o))
        streams[x].pop(0)
        if abs(partner - head) <= slop and back == head:
            streams[1 - x].remove(partner)
            pairs.append((head, partner) if x == 0 else (partner, head))
    return sorted(pairs)


@pytest.mark.parametrize('seed', range(30))
def test_random_streams_match_the_offline_policy(seed):
    """Jittered cameras at different rates, arrival order shuffled between the streams: the
    online decisions (waiting until final) equal the offline ones."""
    rng = np.random.default_rng(seed)
    stamps = []
    base = rng.uniform(25, 40)
    for period in (base, base * rng.choice([0.5, 1.0, 2.0]) * rng.uniform(0.97, 1.03)):
        ideal = np.arange(rng.uniform(0, 10), 2000, period)
        stamps.append(np.unique(np.round(ideal + rng.uniform(-3, 3, ideal.size))).tolist())
    slop = float(rng.uniform(4, 15))
    events = [(0, t) for t in stamps[0]] + [(1, t) for t in stamps[1]]
    # each stream stays in order; the interleaving is random (delivery latency)
    order = sorted(range(len(events)), key=lambda i: events[i][1] + rng.uniform(0, 30))
    by_stream = [iter([e for e in events if e[0] == s]) for s in (0, 1)]
    interleaved = [next(by_stream[events[i][0]]) for i in order]
    sync = ApproximateTimeSync(queue_size=1000, slop=slop / 1e3)
    pairs, dropped = _feed(sync, interleaved + [(0, 5000), (1, 5000)])
    expected = _offline_pairs(stamps[0], stamps[1], slop)
    assert len(expected) >= 5  # the case is not trivial
    assert pairs == expected + [(5000, 5000)]
    assert dropped == len(events) - 2 * len(expected)
    assert all(a < b for a, b in itertools.pairwise([p[0] for p in pairs]))
