"""Runtimes: parity with eager, dynamic batch, caching, backend choice and refusals."""
import copy
import os

import pytest
import torch

from embodied_vision import create_encoder, deploy
from embodied_vision.deploy import ParityError
from embodied_vision.deploy.cache import artifact_key, cache_budget_bytes, prune_cache
from embodied_vision.deploy.onnx_runtime import export_onnx
from embodied_vision.utils import is_available
from tests.conftest import TINY
from tests.numerics import assert_fp32_close, fp32_tolerance, network_size


@pytest.fixture(scope='module')
def encoder():
    torch.manual_seed(0)
    return create_encoder('r3m_resnet18')


def _frames(batch, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, *TINY), dtype=torch.uint8, generator=generator)


def test_onnxruntime_matches_eager_at_any_batch(encoder, cache_dir):
    compiled = deploy.compile(encoder, 'onnxruntime', device='cpu', input_size=TINY,
                              cache_dir=cache_dir)
    assert compiled.backend == 'onnxruntime' and compiled.artifact.suffix == '.onnx'
    assert compiled.parity.passed and compiled.parity.max_abs_error <= fp32_tolerance(
        compiled.parity.reference_max, *network_size(encoder))
    assert compiled.parity.probe_shape[0] == 3  # not the export batch (2)
    exact_encoder = copy.deepcopy(encoder).double()
    for batch in (1, 7):
        frames = _frames(batch)
        with torch.inference_mode():
            expected = encoder(frames)
            exact = exact_encoder(frames)
        out = compiled(frames)  # uint8 in, cast inside the wrapper
        assert out.shape == (batch, encoder.embed_dim) and out.dtype == torch.float32
        assert_fp32_close(out, exact, encoder, exact=True, what='onnxruntime vs float64')
        assert_fp32_close(expected, exact, encoder, exact=True, what='eager vs float64')
        assert_fp32_close(out, expected, encoder, what='onnxruntime vs eager')


def test_artifact_cache_is_reused_and_keyed_by_weights(encoder, cache_dir):
    first = deploy.compile(encoder, 'onnxruntime', device='cpu', input_size=TINY,
                           cache_dir=cache_dir)
    inode = first.artifact.stat().st_ino  # a re-export replaces the file: a new inode
    os.utime(first.artifact, (1, 1))
    again = deploy.compile(encoder, 'onnxruntime', device='cpu', input_size=TINY,
                           cache_dir=cache_dir)
    assert again.artifact == first.artifact and again.artifact.stat().st_ino == inode
    assert again.artifact.stat().st_mtime > 1  # the reuse counts as a use for pruning
    other = create_encoder('r3m_resnet18')
    assert artifact_key(other, 'onnxruntime', {}) != artifact_key(encoder, 'onnxruntime', {})
    assert artifact_key(encoder, 'onnxruntime', {'size': (64, 64)}) != \
        artifact_key(encoder, 'onnxruntime', {'size': (96, 96)})


def _artifact(cache, name, size, last_used):
    path = cache / name
    path.write_bytes(b'x' * size)
    os.utime(path, (last_used, last_used))
    return path


def test_prune_cache_drops_least_recently_used_artefacts_first(tmp_path):
    old, mid, new = (_artifact(tmp_path, f'{n}.onnx', 100, t)
                     for n, t in (('old', 10), ('mid', 20), ('new', 30)))
    engine = _artifact(tmp_path, 'engine.ep', 100, 5)
    writing = _artifact(tmp_path, 'half.tmp.onnx', 500, 1)  # an export in progress
    other = _artifact(tmp_path, 'notes.txt', 500, 1)
    assert prune_cache(tmp_path, 0) == []  # budget 0: keep everything
    assert sorted(prune_cache(tmp_path, 250)) == sorted([engine, old])
    assert [p.exists() for p in (mid, new, writing, other)] == [True] * 4
    # the artefact in use is kept even when it alone is over the budget
    assert prune_cache(tmp_path, 50, keep=mid) == [new]
    assert mid.exists()


def test_compile_keeps_the_cache_under_its_budget(cache_dir, monkeypatch):
    torch.manual_seed(1)
    first_encoder, second_encoder = create_encoder('r3m_resnet18'), create_encoder('r3m_resnet18')
    first = deploy.compile(first_encoder, 'onnxruntime', device='cpu', input_size=TINY,
                           cache_dir=cache_dir, check_parity=False)
    size = first.artifact.stat().st_size
    monkeypatch.setenv('EMBODIED_VISION_CACHE_MAX_GB', str(1.5 * size / 1024 ** 3))
    second = deploy.compile(second_encoder, 'onnxruntime', device='cpu', input_size=TINY,
                            cache_dir=cache_dir, check_parity=False)
    assert second.artifact.exists() and not first.artifact.exists()
    frames = _frames(2)
    with torch.inference_mode():
        assert_fp32_close(second(frames), second_encoder(frames), second_encoder,
                          what='onnxruntime vs eager')


@pytest.mark.parametrize('value', ['lots', '-1'])
def test_cache_budget_names_a_bad_setting(value, monkeypatch):
    monkeypatch.setenv('EMBODIED_VISION_CACHE_MAX_GB', value)
    with pytest.raises(ValueError, match=f'EMBODIED_VISION_CACHE_MAX_GB={value!r}'):
        cache_budget_bytes()


def test_onnxruntime_spinning_is_a_session_option(encoder, cache_dir):
    """`spinning` reaches the session config and reuses the artefact (not in the key)."""
    spinning = deploy.compile(encoder, 'onnxruntime', device='cpu', input_size=TINY,
                              cache_dir=cache_dir, check_parity=False)
    quiet = deploy.compile(encoder, 'onnxruntime', device='cpu', input_size=TINY,
                           cache_dir=cache_dir, spinning=False, check_parity=False)
    assert quiet.artifact == spinning.artifact
    assert spinning.runner.allow_spinning and not quiet.runner.allow_spinning
    config = quiet.runner.session.get_session_options().get_session_config_entry
    assert config('session.intra_op.allow_spinning') == '0'
    frames = _frames(2)
    torch.testing.assert_close(quiet(frames), spinning(frames), rtol=0, atol=0)


def test_parity_gate_refuses_a_runtime_past_tolerance(encoder, cache_dir):
    # A cached artefact replaced by another network's (a stale or foreign file under the
    # right name) is loaded, and the gate must refuse it.
    first = deploy.compile(encoder, 'onnxruntime', device='cpu', input_size=TINY,
                           cache_dir=cache_dir)
    torch.manual_seed(5)
    other = create_encoder('r3m_resnet18')
    export_onnx(other, first.artifact, other.example_inputs(2, TINY))
    with pytest.raises(ParityError, match='drifts from eager'):
        deploy.compile(encoder, 'onnxruntime', device='cpu', input_size=TINY,
                       cache_dir=cache_dir)


def test_measure_parity_reports_real_drift():
    reference = torch.nn.Linear(4, 3)
    noisy = torch.nn.Linear(4, 3)
    noisy.load_state_dict(reference.state_dict())
    with torch.no_grad():
        noisy.bias.add_(0.5)
    report = deploy.measure_parity(reference, noisy, (torch.randn(5, 4),))
    assert report.max_abs_error == pytest.approx(0.5, abs=1e-6)
    assert not report.passed


def test_eager_backend_and_auto_on_cpu(encoder, cache_dir):
    eager = deploy.compile(encoder, 'eager', device='cpu', input_size=TINY)
    assert eager.parity.max_abs_error == 0.0
    expected = 'onnxruntime' if is_available('onnxruntime') else 'eager'
    assert deploy.resolve_backend('auto', 'cpu') == expected
    assert 'tensorrt' not in deploy.available_backends('cpu')


def test_inductor_matches_eager(encoder):
    compiled = deploy.compile(encoder, 'inductor', device='cpu', input_size=TINY)
    frames = _frames(3, seed=4)
    with torch.inference_mode():
        exact = copy.deepcopy(encoder).double()(frames)
        out, expected = compiled(frames), encoder(frames)
    assert_fp32_close(out, exact, encoder, exact=True, what='inductor vs float64')
    assert_fp32_close(expected, exact, encoder, exact=True, what='eager vs float64')
    assert_fp32_close(out, expected, encoder, what='inductor vs eager')


def test_bad_arguments_are_named(encoder):
    with pytest.raises(ValueError, match=r"backend='tensor_rt' is not one of"):
        deploy.compile(encoder, 'tensor_rt', device='cpu')
    with pytest.raises(ValueError, match='needs a CUDA device'):
        deploy.compile(encoder, 'eager', device='cpu', precision='fp16')
    with pytest.raises(ValueError, match='precision'):
        deploy.compile(encoder, 'eager', device='cpu', precision='int3')


@pytest.mark.skipif(is_available('torch_tensorrt'), reason='torch_tensorrt is installed')
def test_tensorrt_without_the_package_names_the_extra(encoder, cache_dir):
    with pytest.raises(ImportError, match=r'embodied_vision\[tensorrt\]'):
        deploy.compile(encoder, 'tensorrt', device='cpu', input_size=TINY,
                       cache_dir=cache_dir)


def test_tensorrt_precision_arguments_follow_the_installed_version():
    from embodied_vision.deploy.tensorrt import precision_kwargs
    assert precision_kwargs('2.8.0', 'fp16') == {'enabled_precisions': {torch.float16}}
    assert precision_kwargs('2.12.0+cu130', 'fp32') == {'enabled_precisions': {torch.float32}}
    assert precision_kwargs('2.13.0', 'fp32') == {}
    assert precision_kwargs('2.14.0a0', 'bf16') == {
        'enable_autocast': True, 'autocast_low_precision_type': torch.bfloat16}
    with pytest.raises(ValueError, match='precision'):
        precision_kwargs('2.13.0', 'int8')


@pytest.mark.gpu
@pytest.mark.parametrize('backend,precision', [('eager', 'fp16'), ('eager', 'bf16'),
                                               ('inductor', 'fp32')])
def test_gpu_runtimes_pass_parity(encoder, backend, precision, cache_dir):
    compiled = deploy.compile(encoder, backend, device='cuda', precision=precision,
                              input_size=(224, 224), cache_dir=cache_dir)
    assert compiled.parity.passed, compiled.parity


@pytest.mark.gpu
@pytest.mark.skipif(not is_available('torch_tensorrt'), reason='needs torch_tensorrt')
@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_tensorrt_engine_passes_parity_and_is_cached(encoder, precision, cache_dir):
    built = deploy.compile(encoder, 'tensorrt', device='cuda', precision=precision,
                           input_size=(224, 224), max_batch=8, cache_dir=cache_dir)
    assert built.parity.passed and built.artifact.exists()
    loaded = deploy.compile(encoder, 'tensorrt', device='cuda', precision=precision,
                            input_size=(224, 224), max_batch=8, cache_dir=cache_dir)
    assert loaded.build_seconds < built.build_seconds


def test_max_batch_one_still_exports_a_dynamic_batch(encoder, cache_dir):
    compiled = deploy.compile(encoder, 'onnxruntime', device='cpu', input_size=TINY,
                              max_batch=1, cache_dir=cache_dir)
    assert compiled(_frames(1)).shape == (1, encoder.embed_dim)


@pytest.mark.parametrize('backend', ['eager', 'onnxruntime'])
def test_every_call_checks_the_input_contract(encoder, cache_dir, backend):
    compiled = deploy.compile(encoder, backend, device='cpu', input_size=TINY,
                              cache_dir=cache_dir)
    with pytest.raises(ValueError, match=r'expects image input \(B,C,H,W\) with C=3'):
        compiled(torch.zeros(1, 1, *TINY, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"expects dtype in \('uint8', 'float32'"):
        compiled(torch.zeros(1, 3, *TINY, dtype=torch.int32))
    with pytest.raises(ValueError, match='every side must be >= 32'):
        compiled(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


def test_input_dtype_is_refused_before_anything_is_built(encoder, cache_dir):
    with pytest.raises(TypeError, match='expects dtype in'):
        deploy.compile(encoder, 'onnxruntime', device='cpu', input_size=TINY,
                       input_dtype=torch.int16, cache_dir=cache_dir)
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []
