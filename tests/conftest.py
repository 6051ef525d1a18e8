"""Shared pytest fixtures and markers."""
import os

import pytest
import torch

os.environ.setdefault('MUJOCO_GL', 'egl')

TINY = (64, 64)  # spatial size for CPU tests: big enough for every stride-32 ResNet stage


def pytest_configure(config):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def cache_dir(tmp_path):
    """A private compiled-artefact cache for one test."""
    return tmp_path / 'cache'


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)
