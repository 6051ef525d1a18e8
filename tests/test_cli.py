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
