"""The one licence warning: its text and where it points."""
import warnings

import pytest

from embodied_vision.checkpoints.licence import warn_licence


def _load_something():
    warn_licence('CroCo.pth (croco_vit_base.habitat_pairs)', 'CC-BY-NC-SA-4.0')


def test_names_the_source_and_licence_and_points_at_the_caller():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        _load_something()
    assert len(caught) == 1 and caught[0].category is UserWarning
    assert str(caught[0].message) == ('CroCo.pth (croco_vit_base.habitat_pairs): weights '
                                      'licensed CC-BY-NC-SA-4.0 (non-commercial use only)')
    assert caught[0].filename == __file__  # the caller of the loading function


def test_an_unrecorded_licence_says_so():
    with pytest.warns(UserWarning, match=r'weights licensed \(licence not recorded\)'):
        warn_licence('policy.safetensors', '')
