"""The linear-SVM protocol: features of the first points, the SVM, arms, paired intervals."""
import json

import numpy as np
import pytest
import torch

from embodied_vision import create_encoder
from embodied_vision.checkpoints import save_encoder
from embodied_vision.data.point_clouds import write_modelnet40
from embodied_vision.downstream.point_svm import extract_features, linear_svm_accuracy
from embodied_vision.downstream.svm_protocol import accuracy_difference, main, resolve_arm
from tests.pretrain.test_training_i2p_mae_pretrain import NAMES, _shapes


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp('svm_shapes')
    rng = np.random.default_rng(1)
    for split, n in (('train', 24), ('test', 12)):
        write_modelnet40(root, split, *_shapes(n, rng, points=300), NAMES)
    return root


def test_features_read_only_the_first_points_and_the_svm_scores():
    torch.manual_seed(0)
    encoder = create_encoder('i2p_mae_tiny')
    clouds = np.random.default_rng(0).normal(size=(5, 300, 3)).astype(np.float32)
    clouds /= np.linalg.norm(clouds, axis=-1).max(axis=1)[:, None, None]
    first = extract_features(encoder, clouds, 256, batch_size=2)
    moved = clouds.copy()
    moved[:, 256:] += 5.0
    assert first.shape == (5, 64) and np.array_equal(first, extract_features(encoder, moved,
                                                                             256))
    assert not np.array_equal(first, extract_features(encoder, clouds[:, 44:], 256))
    with pytest.raises(ValueError, match='n_points=400 exceeds the 300 stored points'):
        extract_features(encoder, clouds, 400)
    x = np.concatenate([np.random.default_rng(1).normal(size=(20, 4)) + 4 * k for k in (0, 1)])
    y = np.repeat([0, 1], 20)
    accuracy, predictions = linear_svm_accuracy(x, y, x, y, c=1.0)
    assert accuracy == 1.0 and np.array_equal(predictions, y)
    with pytest.raises(ValueError, match='at least 2 classes'):
        linear_svm_accuracy(x, np.zeros(40), x, y)


def test_paired_bootstrap_difference():
    base = [{'correct': [1, 0, 0, 1, 0, 0, 1, 0]}, {'correct': [1, 0, 1, 1, 0, 0, 0, 0]}]
    better = [{'correct': [1, 1, 1, 1, 0, 1, 1, 0]}, {'correct': [1, 1, 0, 1, 1, 1, 1, 0]}]
    diff = accuracy_difference(base, better, resamples=500)
    assert diff['difference'] == pytest.approx(12 / 16 - 6 / 16)
    assert diff['low'] <= diff['difference'] <= diff['high'] and diff['p_ahead'] > 0.9
    same = accuracy_difference(base, base, resamples=200)
    assert same['difference'] == 0.0 and same['low'] < 0 < same['high']
    with pytest.raises(ValueError, match='different test clouds'):
        accuracy_difference(base, [{'correct': [1, 0]}])


def test_cli_scores_arms_on_datasets_and_writes_the_report(shapes, tmp_path, capsys):
    torch.manual_seed(3)
    export = save_encoder(create_encoder('i2p_mae_tiny'), tmp_path / 'run_s0' / 'encoder')
    assert resolve_arm('random:i2p_mae_tiny:0,1') == ['random:i2p_mae_tiny:0',
                                                      'random:i2p_mae_tiny:1']
    assert resolve_arm(str(tmp_path / 'run_s?' / 'encoder')) == [str(export)]
    out = tmp_path / 'svm.json'
    code = main(['--arm', 'random=random:i2p_mae_tiny:0,1', '--arm',
                 f'trained={tmp_path}/run_s?/encoder', '--data', f'full={shapes}',
                 '--compare', 'random', 'trained', '--resamples', '100', '--json', str(out)])
    assert code == 0
    report = json.loads(out.read_text())['datasets']['full']
    runs = report['runs']
    assert len(runs['random']) == 2 and len(runs['trained']) == 1
    for arm in runs.values():
        for run in arm:
            assert len(run['correct']) == 12 and run['accuracy'] == np.mean(run['correct'])
    # the same seed gives the same random encoder, another seed another one
    assert runs['random'][0]['source'] != runs['random'][1]['source']
    diff = report['differences']['trained - random']
    assert diff['difference'] == pytest.approx(report['arms']['trained']['mean']
                                               - report['arms']['random']['mean'])
    assert 'trained - random' in capsys.readouterr().out
    assert main(['--arm', 'a=random:i2p_mae_tiny:x', '--data', f'full={shapes}']) == 2
    assert main(['--arm', 'a=random:i2p_mae_tiny:0', '--data', f'full={shapes}',
                 '--compare', 'a', 'b']) == 2
    assert main(['--arm', f'a={tmp_path}/none_*', '--data', f'full={shapes}']) == 2


def test_a_2d_guide_is_scored_on_its_own_depth_view_features(shapes, tmp_path):
    torch.manual_seed(0)
    vit = create_encoder('croco_vit_base', img_size=32, enc_embed_dim=16, enc_depth=2,
                         enc_num_heads=2)
    export = save_encoder(vit, tmp_path / 'guide' / 'encoder')
    spec = f'guide:{export}:32:3:256'
    assert resolve_arm(spec) == [spec]
    out = tmp_path / 'svm.json'
    assert main(['--arm', f'teacher={spec}', '--data', f'full={shapes}', '--resamples', '10',
                 '--json', str(out)]) == 0
    run = json.loads(out.read_text())['datasets']['full']['runs']['teacher'][0]
    assert len(run['correct']) == 12 and run['accuracy'] == np.mean(run['correct'])
    with pytest.raises(ValueError, match='<image size>:<splat>:<points>'):
        resolve_arm(f'guide:{export}:32:3')
    with pytest.raises(FileNotFoundError, match='not an encoder export folder'):
        resolve_arm(f'guide:{tmp_path}/missing:32:3:256')


def test_compare_accuracy_reads_fine_tuning_runs(tmp_path, capsys):
    from embodied_vision.downstream.svm_protocol import compare_main
    from embodied_vision.downstream.training_point_classification import EVAL_FILE
    labels = [0, 1, 2, 0, 1, 2]
    for arm, rows in (('scratch', [[1, 0, 0, 1, 0, 0], [0, 1, 0, 1, 0, 0]]),
                      ('pre', [[1, 1, 1, 1, 0, 1], [1, 1, 0, 1, 1, 1]])):
        for seed, correct in enumerate(rows):
            run = tmp_path / f'{arm}_s{seed}'
            run.mkdir()
            (run / EVAL_FILE).write_text(json.dumps({'labels': labels, 'correct': correct,
                                                     'accuracy': float(np.mean(correct))}))
    out = tmp_path / 'cmp.json'
    assert compare_main(['--arm', f'scratch={tmp_path}/scratch_s?', '--arm',
                         f'pre={tmp_path}/pre_s?', '--compare', 'scratch', 'pre',
                         '--resamples', '200', '--json', str(out)]) == 0
    report = json.loads(out.read_text())
    assert report['arms']['pre']['values'] == [5 / 6, 5 / 6]
    assert report['differences']['pre - scratch']['difference'] == pytest.approx(10 / 12 - 4 / 12)
    assert 'pre - scratch: +0.500' in capsys.readouterr().out
    assert compare_main(['--arm', f'x={tmp_path}/missing_s?']) == 2
    other = tmp_path / 'pre_s9'
    other.mkdir()
    (other / EVAL_FILE).write_text(json.dumps({'labels': [0], 'correct': [1], 'accuracy': 1.0}))
    assert compare_main(['--arm', f'pre={tmp_path}/pre_s?']) == 2
