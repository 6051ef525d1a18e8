"""The `embodied-vision` command end to end (in process, on tiny inputs)."""
import argparse
import copy
import json

import numpy as np
from PIL import Image
import pytest
from safetensors.numpy import load_file
import torch

from embodied_vision import create_encoder
from embodied_vision.checkpoints import save_encoder
from embodied_vision.cli import main
from tests.numerics import assert_fp32_close


@pytest.fixture
def frames_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / 'frames'
    folder.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            folder / f'{i:02d}.png')
    return folder


def test_list_json(capsys):
    assert main(['list', 'r3m', '--json']) == 0
    rows = json.loads(capsys.readouterr().out)
    dims = {r['name']: r['embed_dim'] for r in rows}
    assert dims['r3m_resnet50.ego4d'] == 2048 and dims['r3m_resnet18.tv_in1k'] == 512


def test_encode_folder_to_npy_matches_library(tmp_path, frames_dir, capsys, monkeypatch):
    monkeypatch.setenv('EMBODIED_VISION_CACHE', str(tmp_path / 'cache'))
    ckpt = save_encoder(create_encoder('r3m_resnet18'), tmp_path / 'ckpt')
    out = tmp_path / 'emb.npy'
    assert main(['encode', str(frames_dir), '--encoder', 'r3m_resnet18', '--checkpoint',
                 str(ckpt), '--size', '64', '--batch-size', '2', '--backend', 'eager',
                 '--out', str(out)]) == 0
    assert 'encoded 5 frames' in capsys.readouterr().out
    embeddings = np.load(out)
    meta = json.loads(out.with_suffix('.json').read_text())
    assert embeddings.shape == (5, 512) and meta['names'][0] == '00.png'
    # Same numbers as the library on the same frame with the same resize.
    from embodied_vision.data.images import iter_frames, to_batch
    from embodied_vision.encoders import load_encoder
    frame = next(iter_frames(frames_dir))[1]
    encoder = load_encoder(ckpt)
    with torch.inference_mode():
        expected = encoder(to_batch([frame], (64, 64)))
        exact = copy.deepcopy(encoder).double()(to_batch([frame], (64, 64)))
    # The CLI ran the frame in a batch of 2, the library alone: other kernels, so both fp32
    # results are held to the float64 run, then to each other.
    assert_fp32_close(embeddings[0], exact[0], encoder, exact=True, what='cli vs float64')
    assert_fp32_close(expected[0], exact[0], encoder, exact=True, what='library vs float64')
    assert_fp32_close(embeddings[0], expected[0], encoder, what='cli vs library')


def test_encode_to_safetensors_with_onnxruntime(tmp_path, frames_dir, monkeypatch):
    monkeypatch.setenv('EMBODIED_VISION_CACHE', str(tmp_path / 'cache'))
    out = tmp_path / 'emb.safetensors'
    assert main(['encode', str(frames_dir), '--encoder', 'r3m_resnet18', '--size', '64',
                 '--backend', 'onnxruntime', '--out', str(out)]) == 0
    assert load_file(str(out))['embeddings'].shape == (5, 512)


def test_export_onnx_and_exported_program(tmp_path, capsys):
    onnx_path = tmp_path / 'r18.onnx'
    assert main(['export', 'r3m_resnet18', '--format', 'onnx', '--size', '64',
                 '--out', str(onnx_path)]) == 0
    assert onnx_path.stat().st_size > 10_000_000  # 11.2M fp32 parameters
    program_path = tmp_path / 'r18.pt2'
    assert main(['export', 'r3m_resnet18', '--format', 'exported_program', '--size', '64',
                 '--out', str(program_path)]) == 0
    module = torch.export.load(str(program_path)).module()
    assert module(torch.rand(4, 3, 64, 64) * 255).shape == (4, 512)
    assert capsys.readouterr().out.count('parity vs eager') == 2


def test_bench_prints_a_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('EMBODIED_VISION_CACHE', str(tmp_path / 'cache'))
    rows = tmp_path / 'rows.json'
    assert main(['bench', '--encoders', 'r3m_resnet18', '--backends', 'onnxruntime',
                 '--batch', '1', '2', '--size', '96x64', '--iterations', '3',
                 '--json', str(rows)]) == 0
    table = capsys.readouterr().out
    assert 'vs eager' in table and table.count('r3m_resnet18') == 4
    parsed = json.loads(rows.read_text())
    assert {(r['backend'], r['batch']) for r in parsed} == {
        ('eager', 1), ('onnxruntime', 1), ('eager', 2), ('onnxruntime', 2)}
    assert all(r['median_ms'] > 0 and r['size'] == '96x64' for r in parsed)


def test_size_argument_takes_a_side_or_height_by_width():
    from embodied_vision.cli import parse_size
    assert parse_size('224') == (224, 224)
    assert parse_size('448x224') == (448, 224)
    for bad in ('0', '448x', 'x224', '1x2x3', 'big'):
        with pytest.raises(argparse.ArgumentTypeError, match='expected N or HxW'):
            parse_size(bad)


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(['encode', str(tmp_path), '--encoder', 'r3m_resnet18', '--out',
                 str(tmp_path / 'x.npy')]) == 2
    assert 'holds no images' in capsys.readouterr().err
    assert main(['encode', str(tmp_path), '--encoder', 'r3m_resnet99', '--out',
                 str(tmp_path / 'x.npy')]) == 2
    assert 'unknown encoder' in capsys.readouterr().err


def _tiny_croco(tmp_path):
    torch.manual_seed(0)
    vit = create_encoder('croco_vit_base', img_size=32, enc_embed_dim=16, enc_depth=2,
                         enc_num_heads=2)
    return vit, save_encoder(vit, tmp_path / 'croco' / 'encoder')


def test_encode_feeds_croco_imagenet_normalised_frames(tmp_path, frames_dir):
    # CroCo takes normalised input, normalised by the caller as upstream: encode must do it.
    vit, export = _tiny_croco(tmp_path)
    out = tmp_path / 'croco.npy'
    assert main(['encode', str(frames_dir), '--encoder', 'croco_vit_base', '--checkpoint',
                 str(export), '--size', '32', '--backend', 'eager', '--out', str(out)]) == 0
    from embodied_vision.data.images import iter_frames, to_batch
    pixels = to_batch([f for _, f in iter_frames(frames_dir)], (32, 32)).float()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        exact = copy.deepcopy(vit).double()(((pixels / 255 - mean) / std).double())
    assert_fp32_close(np.load(out), exact, vit, what='encode vs normalised float64')


def test_random_weights_are_warned_seeded_and_not_cached(tmp_path, frames_dir, monkeypatch):
    cache = tmp_path / 'cache'
    monkeypatch.setenv('EMBODIED_VISION_CACHE', str(cache))
    from embodied_vision.encoders import factory
    monkeypatch.setattr(factory, '_warned_random', set())
    outs = [tmp_path / f'emb{i}.npy' for i in range(2)]
    with pytest.warns(UserWarning, match='r3m_resnet18 has random weights'):
        for out in outs:
            assert main(['encode', str(frames_dir), '--encoder', 'r3m_resnet18', '--size',
                         '64', '--backend', 'onnxruntime', '--out', str(out)]) == 0
    assert np.array_equal(np.load(outs[0]), np.load(outs[1]))
    assert json.loads(outs[0].with_suffix('.json').read_text())['random_weights'] is True
    assert not cache.exists() or not any(cache.rglob('*.onnx'))


def test_encode_checks_come_before_the_model(tmp_path, frames_dir, capsys, monkeypatch):
    import embodied_vision.encoders as encoders
    built = []
    monkeypatch.setattr(encoders, 'encoder_for_inference',
                        lambda *a, **k: built.append(a) or pytest.fail('model built'))
    cases = [([str(frames_dir), '--out', str(tmp_path / 'bad.txt')], 'must end in .npy'),
             ([str(tmp_path / 'missing.mp4'), '--out', str(tmp_path / 'x.npy')],
              'no such image folder'),
             ([str(tmp_path / 'frames' / '00.png') + '.jpg', '--out', str(tmp_path / 'x.npy')],
              'no such image folder')]
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'a.png').write_bytes(b'not a png')
    cases.append(([str(broken), '--out', str(tmp_path / 'x.npy')], 'no readable frames'))
    for argv, message in cases:
        assert main(['encode', *argv, '--encoder', 'r3m_resnet18']) == 2
        assert message in capsys.readouterr().err
    assert not built


def test_encode_refuses_a_pair_model_and_skips_unreadable_frames(tmp_path, frames_dir,
                                                                  capsys):
    assert main(['encode', str(frames_dir), '--encoder', 'croco_v2_pair_vit_base_smalldec',
                 '--out', str(tmp_path / 'x.npy')]) == 2
    assert 'takes image_pair input' in capsys.readouterr().err
    (frames_dir / '02.png').write_bytes(b'truncated')
    out = tmp_path / 'emb.npy'
    assert main(['encode', str(frames_dir), '--encoder', 'r3m_resnet18', '--size', '64',
                 '--backend', 'eager', '--out', str(out)]) == 0
    meta = json.loads(out.with_suffix('.json').read_text())
    assert np.load(out).shape == (4, 512) and meta['skipped'] == ['02.png']
    assert '02.png' not in meta['names'] and 'skipped 1 unreadable' in capsys.readouterr().out


def test_delegated_commands_report_user_errors_in_one_line(tmp_path, capsys):
    pytest.importorskip('mujoco')
    cases = [(['evaluate', 'scripted_expert', '--task', 'NoSuchTask', '--episodes', '1'],
              "--task 'NoSuchTask' is not one of"),
             (['train'], 'no task: pick an experiment'),
             (['train', 'experiment=bc_mlp', f'hydra.run.dir={tmp_path / "run"}'],
              'task.episodes is required'),
             (['train', 'experiment=bc_mlp', f'task.episodes=[{tmp_path}/none.hdf5]',
               f'hydra.run.dir={tmp_path / "run"}'], 'episode files not found'),
             (['pipeline', str(tmp_path / 'nope.yaml')], 'does not exist')]
    for argv, message in cases:
        try:
            code = main(argv)
        except SystemExit as exit_:  # hydra's entry point exits
            code = exit_.code
        err = capsys.readouterr().err
        assert code == 2 and message in err, (argv, err)
        assert 'Traceback' not in err and len(err.strip().splitlines()) == 1, err


def test_a_missing_extra_is_named_in_one_line(capsys, monkeypatch):
    import embodied_vision.cli as cli

    def needs_mujoco(argv):
        raise ModuleNotFoundError("No module named 'mujoco'", name='mujoco')
    monkeypatch.setitem(cli.DELEGATED_COMMANDS, 'collect', ('tests.test_cli:_unused', ''))
    monkeypatch.setattr(cli.importlib, 'import_module',
                        lambda name: type('M', (), {'_unused': staticmethod(needs_mujoco)}))
    assert main(['collect', 'task=Reach']) == 2
    assert "mujoco is not installed (needed for embodied-vision collect): pip install " \
           "'embodied_vision[sim]'" in capsys.readouterr().err
