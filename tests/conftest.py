"""Shared pytest fixtures and markers."""
import os

import pytest
import torch

os.environ.setdefault('MUJOCO_GL', 'egl')

TINY = (64, 64)  # spatial size for CPU tests: big enough for every stride-32 ResNet stage


def pytest_configure(config):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope='session', autouse=True)
def private_compile_cache(tmp_path_factory):
    """Artefacts compiled by tests (e.g. a node switched to onnxruntime) stay out of the
    user's `~/.cache/embodied_vision/compiled`, where nothing would ever reuse them.

    Inductor's kernel cache is private to the session too: torch 2.14 reuses C++ kernels
    built under another `ATEN_CPU_CAPABILITY` / `ONEDNN_MAX_CPU_ISA` (they gave NaN or
    crashed when `make test-portability` changed the ISA between runs)."""
    names = ('EMBODIED_VISION_CACHE', 'TORCHINDUCTOR_CACHE_DIR')
    previous = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ[name] = str(tmp_path_factory.mktemp(name.lower()))
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def one_thread():
    """Tiny models run ~10x faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def pairs(tmp_path_factory):
    """A small view-pair file (8 pairs of 40x40 sim renders), rendered once per session."""
    from embodied_vision.sim.view_pairs import compose_config, render_pairs
    path = tmp_path_factory.mktemp('pairs') / 'pairs.hdf5'
    summary = render_pairs(compose_config([f'out={path}', 'n=8', 'size=40', 'progress=false',
                                           'shadows=false', 'pairs_per_scene=2']))
    assert summary['pairs'] == 8
    return str(path)


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
