"""One assertion for "it learns" tests, and a record of how much margin each run left.

A learning test compares a deterministic measurement after training with the same
measurement of the untrained model (a ratio), never a knife-edge on noisy per-batch losses.
Each bound sits well above the worst ratio measured over several seeds and two kernel
settings (written beside the assertion). With `EMBODIED_VISION_LEARNING_LOG=<file>` set,
every check appends `{"test", "value", "bound"}` as a JSON line, so `make test-portability`
can show the tightest margin of each run.
"""
import json
import os

__all__ = ['LOG_ENV', 'assert_learned']

LOG_ENV = 'EMBODIED_VISION_LEARNING_LOG'


def assert_learned(ratio: float, bound: float, what: str) -> None:
    """Assert `ratio` (trained / untrained, lower is better) is below `bound`."""
    log = os.environ.get(LOG_ENV)
    if log:
        test = os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]
        with open(log, 'a') as handle:
            handle.write(json.dumps({'test': test, 'what': what, 'value': float(ratio),
                                     'bound': bound}) + '\n')
    assert ratio < bound, (f'{what}: trained / untrained = {ratio:.3g}, needs < {bound:.3g} '
                           '(no learning signal)')
