"""The I2P-MAE fine-tuning classifier: upstream layout, the backbone it starts from, save/load."""
import pytest
import torch

from embodied_vision import create_encoder
from embodied_vision.downstream.point_classification import (
    PointClassifier,
    create_point_classifier,
    load_point_classifier,
    save_point_classifier,
)
from embodied_vision.encoders.i2p_mae import PRESETS

TINY = dict(PRESETS['tiny'])
CLASSES = ['mug', 'bowl', 'chair']


def _points(b=3, n=256, seed=0):
    x = torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=-1).amax(dim=1)[:, None, None]


def test_upstream_layout_and_the_backbone_weights_it_starts_from():
    torch.manual_seed(0)
    backbone = create_encoder('i2p_mae_pretrain_tiny')
    model = PointClassifier(backbone, CLASSES, group_sizes=(8, 4, 4))
    state = model.state_dict()
    assert not [k for k in state if 'encoder_norms' in k]
    heads = sorted({k.split('.')[1] for k in state if k.startswith('cls_head_finetune.')})
    assert heads == ['0', '1', '4', '5', '8']
    assert state['cls_head_finetune.0.weight'].shape == (256, 128)  # concat(mean, max) of 64
    assert state['cls_head_finetune.8.weight'].shape == (3, 256)
    source = backbone.h_encoder.state_dict()
    for key, value in model.h_encoder.state_dict().items():
        assert torch.equal(value, source[key]), key
    summed = PointClassifier(backbone, CLASSES, group_sizes=(8, 4, 4), pooling='sum')
    assert summed.state_dict()['cls_head_finetune.0.weight'].shape == (256, 64)
    model.eval()
    with torch.no_grad():
        logits = model(_points())
        feats = model.features(_points())
    assert logits.shape == (3, 3) and feats.shape == (3, 128)
    # the feature is concat(mean, max) of the normed last-scale tokens
    assert torch.all(feats[:, 64:] >= feats[:, :64] - 1e-6)
    with pytest.raises(ValueError, match='pooling=.avg. is not one of'):
        PointClassifier(backbone, CLASSES, pooling='avg')
    with pytest.raises(ValueError, match=r'expects \(B, N >= 64, 3\) points'):
        model(_points(n=32))


def test_local_radius_changes_the_features():
    torch.manual_seed(0)
    backbone = create_encoder('i2p_mae_tiny')
    wide = PointClassifier(backbone, CLASSES, (8, 4, 4), local_radius=(0, 0, 0)).eval()
    local = PointClassifier(backbone, CLASSES, (8, 4, 4), local_radius=(0.1, 0.2, 0.4)).eval()
    local.load_state_dict(wide.state_dict())
    with torch.no_grad():
        assert (wide.features(_points()) - local.features(_points())).abs().max() > 1e-4


def test_save_and_load_round_trip_keeps_weights_and_licence(tmp_path):
    from tests.checkpoints.test_i2p_mae_checkpoints import _random_model, _save
    release = _save(tmp_path / 'pre-train.pth', _random_model())
    with pytest.warns(UserWarning, match='published without a licence'):
        model = create_point_classifier(CLASSES, 'i2p_mae', release, TINY, group_sizes=(8, 4, 4),
                                        local_radius=(0.2, 0.4, 0.8))
    assert model.non_commercial and 'no licence' in model.weights_license
    with torch.no_grad():
        for p in model.cls_head_finetune.parameters():
            p.add_(0.1)
    path = save_point_classifier(model, tmp_path / 'classifier')
    with pytest.warns(UserWarning):
        loaded = load_point_classifier(path)
    assert loaded.class_names == CLASSES and loaded.local_radius == [0.2, 0.4, 0.8]
    assert loaded.backbone_source == str(release)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(_points()), model(_points()))
