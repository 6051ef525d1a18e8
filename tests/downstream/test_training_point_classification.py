"""Fine-tuning an I2P-MAE encoder for classification: data, augmentation, learning, export."""
from functools import partial
import json
import math

import numpy as np
import pytest
import torch

from embodied_vision import create_encoder
from embodied_vision.checkpoints import save_encoder
from embodied_vision.data.point_clouds import write_modelnet40
from embodied_vision.downstream.point_classification import load_point_classifier
from embodied_vision.downstream.training_point_classification import (
    EVAL_FILE,
    PointClassificationTask,
    rotate_about_up,
)
from embodied_vision.training import Trainer, TrainerConfig, warmup_cosine
from tests.pretrain.test_training_i2p_mae_pretrain import NAMES, _shapes

TINY = {'group_sizes': (8, 4, 4), 'local_radius': (0.4, 0.8, 1.6), 'backbone': 'i2p_mae_tiny'}


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp('labelled')
    rng = np.random.default_rng(2)
    for split, n in (('train', 48), ('test', 24)):
        write_modelnet40(root, split, *_shapes(n, rng, points=400), NAMES)
    return root


def test_rotation_about_up_keeps_heights_and_radii():
    points = torch.randn(2, 50, 3)
    turned = rotate_about_up(points, torch.tensor([math.pi / 2, 1.0]))
    torch.testing.assert_close(turned[..., 1], points[..., 1])
    torch.testing.assert_close(turned.norm(dim=-1), points.norm(dim=-1))
    torch.testing.assert_close(turned[0, :, 0], points[0, :, 2], atol=1e-6, rtol=0)


def test_fine_tuning_learns_and_exports(shapes, tmp_path, one_thread):
    torch.manual_seed(0)
    task = PointClassificationTask(str(shapes), layout='modelnet40', eval_train=48, **TINY)
    assert task.train_pools.shape == (48, 300, 3)  # FPS pool of ceil(256 * 1200 / 1024)
    assert task.test_points.shape == (24, 256, 3)
    before = task.evaluate(task.model, 0)
    # 150 steps: the mini-PointNet's BatchNorm running variances start at 1 while the true
    # ones are ~1e-5 at random init; with momentum 0.1 eval mode needs ~100 updates to forget
    # the start (80 steps left eval mode at chance while train mode was at 100 %)
    config = TrainerConfig(out_dir=str(tmp_path), max_steps=150, batch_size=12, device='cpu',
                           progress=False, log_every=50, checkpoint_every=0, resume=False)
    summary = Trainer(config, task, partial(torch.optim.AdamW, lr=2e-3, weight_decay=0.05),
                      partial(warmup_cosine, total_steps=150, warmup_steps=5)).fit()
    final = {k[len('eval/'):]: v for k, v in summary['final'].items() if k.startswith('eval/')}
    # three primitive families, chance 1/3: seeds 0, 1, 2 all reach 1.0 on train and test
    assert final['train_accuracy'] > 0.8 and final['accuracy'] > 0.8, (before, final)
    report = json.loads((tmp_path / EVAL_FILE).read_text())
    assert len(report['correct']) == 24 and report['accuracy'] == np.mean(report['correct'])
    loaded = load_point_classifier(tmp_path / 'classifier')
    assert loaded.class_names == NAMES
    with torch.no_grad():
        torch.testing.assert_close(loaded(task.test_points[:4]),
                                   task.model.eval()(task.test_points[:4]))


def test_starts_from_a_pretraining_export_or_from_scratch(shapes, tmp_path):
    torch.manual_seed(1)
    pretrained = create_encoder('i2p_mae_pretrain_tiny')
    export = save_encoder(pretrained, tmp_path / 'encoder')
    task = PointClassificationTask(str(shapes), layout='modelnet40',
                                   backbone='i2p_mae_pretrain_tiny',
                                   backbone_checkpoint=str(export), group_sizes=(8, 4, 4),
                                   train_subset=12)
    assert len(task.train_labels) == 12 and task.model.backbone_source == str(export)
    for key, value in task.model.h_encoder.state_dict().items():
        assert torch.equal(value, pretrained.h_encoder.state_dict()[key]), key
    with pytest.raises(ValueError, match="augment='flip' is not one of"):
        PointClassificationTask(str(shapes), layout='modelnet40', augment='flip', **TINY)
    with pytest.raises(ValueError, match='clouds have 400 points, the model takes 1024'):
        PointClassificationTask(str(shapes), layout='modelnet40')
