"""Semantic voxel labelling on NeRF-MAE: metrics, model, training task, run comparison."""
from functools import partial
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from embodied_vision.checkpoints import save_encoder
from embodied_vision.downstream.nerf_mae_semantics import (
    VoxelSemanticsModel,
    class_weights,
    confusion_matrix,
    create_voxel_semantics_model,
    iou_per_class,
    load_voxel_semantics_model,
    mean_iou,
    save_voxel_semantics_model,
    voxel_loss,
)
from embodied_vision.downstream.semantics_compare import load_run, main, miou_difference
from embodied_vision.downstream.training_nerf_mae_semantics import NerfMAESemanticsTask
from embodied_vision.encoders import create_encoder
from embodied_vision.geometry.radiance_grid import RadianceGrid
from embodied_vision.training import Trainer, TrainerConfig
from tests.learning import assert_learned

MODEL = 'nerf_mae_pretrain_swin_micro'  # 32^3 grids
CLASSES = ['background', 'red', 'green', 'blue']
COLOURS = {1: (0.9, 0.1, 0.1), 2: (0.1, 0.9, 0.1), 3: (0.1, 0.1, 0.9)}
DENSITY = 460.0  # alpha 0.99


def _scene(rng, shape=(32, 32, 16)):
    """A grey table slab (class 0) and one box of each coloured class, plus its labels."""
    grid = np.zeros((*shape, 4), np.float32)
    labels = np.zeros(shape, np.int64)
    grid[:, :, :2] = (0.5, 0.5, 0.5, DENSITY)
    for cls, colour in COLOURS.items():
        size = rng.integers(3, 8, 3)
        lo = rng.integers(0, np.array(shape) - size)
        lo[2] = 2
        box = tuple(slice(a, a + s) for a, s in zip(lo, size))
        grid[box] = (*colour, DENSITY)
        labels[box] = cls
    return grid, labels


def _write_dataset(root, n_train=6, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    names = [f'scene_{i:03d}' for i in range(n_train + n_test)]
    for folder in ('features', 'voxel_synthetic'):
        (root / folder).mkdir(parents=True)
    for name in names:
        grid, labels = _scene(rng)
        RadianceGrid(grid, [0, 0, 0], [1.0, 1.0, 0.5], grid.shape[:3]).save_npz(
            root / 'features' / f'{name}.npz')
        np.save(root / 'voxel_synthetic' / f'{name}.npy', labels)
    (root / 'classes.json').write_text(json.dumps(
        {'classes': [{'id': i, 'name': n} for i, n in enumerate(CLASSES)]}))
    np.savez(root / 'synthetic_split.npz', train_scenes=np.array(names[:n_train]),
             val_scenes=np.array([], dtype=str), test_scenes=np.array(names[n_train:]))
    return root


@pytest.fixture(scope='module')
def grids(tmp_path_factory):
    return _write_dataset(tmp_path_factory.mktemp('labelled'))


# ---------------------------------------------------------------------------- metrics
def test_confusion_and_iou_match_a_count_by_hand():
    target = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    pred = torch.tensor([0, 1, 1, 1, 2, 2, 0, 0])
    where = torch.tensor([True] * 7 + [False])
    confusion = confusion_matrix(pred, target, where, 4)
    expected = np.zeros((4, 4), np.int64)
    for t, p, w in zip(target.tolist(), pred.tolist(), where.tolist()):
        expected[t, p] += w
    np.testing.assert_array_equal(confusion, expected)
    iou = iou_per_class(confusion)
    # class 0: 1 hit, union 2 true + 2 predicted - 1; class 1: 2 / (3 + 3 - 2); 2: 1 / 3
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 4, 1 / 3])
    assert np.isnan(iou[3])                       # class 3 neither true nor predicted
    assert mean_iou(confusion) == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert mean_iou(confusion, skip_background=True) == pytest.approx((1 / 2 + 1 / 3) / 2)
    with pytest.raises(ValueError, match='labels outside 0..1'):
        confusion_matrix(pred, target, where, 2)


def test_class_weights_favour_rare_classes_and_skip_absent_ones():
    weights = class_weights(np.array([900, 100, 0, 25]))
    assert weights[2] == 0 and weights[3] > weights[1] > weights[0]
    assert weights[[0, 1, 3]].mean() == pytest.approx(1.0)
    assert weights[1] / weights[0] == pytest.approx(3.0)  # sqrt(900 / 100)


def test_voxel_loss_is_cross_entropy_over_occupied_voxels_only():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 3, 3, generator=generator)
    labels = torch.randint(0, 4, (2, 3, 3, 3), generator=generator)
    occupied = torch.rand(2, 3, 3, 3, generator=generator) > 0.5
    weights = torch.tensor([0.5, 1.0, 2.0, 1.5])
    flat = logits.permute(0, 2, 3, 4, 1)[occupied]
    expected = F.cross_entropy(flat, labels[occupied], weight=weights)
    torch.testing.assert_close(voxel_loss(logits, labels, occupied, weights), expected)
    changed = labels.clone()
    changed[~occupied] = (changed[~occupied] + 1) % 4   # labels of empty voxels do not count
    torch.testing.assert_close(voxel_loss(logits, changed, occupied, weights), expected)


# ------------------------------------------------------------------------------ model
def test_model_crops_to_the_grid_and_keeps_empty_voxels_background():
    torch.manual_seed(0)
    model = create_voxel_semantics_model(CLASSES, MODEL).eval()
    grid = torch.rand(2, 4, 20, 32, 12)
    grid[:, 3, :, :, 6:] = 0.0                  # upper half empty
    logits = model(grid)
    assert logits.shape == (2, 4, 20, 32, 12)
    labels = model.predict(grid)
    assert labels.dtype == torch.int64 and (labels[..., 6:] == 0).all()
    occupied = grid[:, 3] > model.occupied_alpha
    assert torch.equal(labels[occupied], logits.argmax(1)[occupied])
    with pytest.raises(ValueError, match='must be a full NeRF-MAE'):
        VoxelSemanticsModel(create_encoder('nerf_mae_swin_micro'), CLASSES)


def test_pretrained_backbone_is_loaded_and_the_artefact_round_trips(tmp_path):
    torch.manual_seed(1)
    pretrained = create_encoder(MODEL)
    save_encoder(pretrained, tmp_path / 'encoder')
    model = create_voxel_semantics_model(CLASSES, MODEL, tmp_path / 'encoder')
    for key, value in pretrained.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value)
    fresh = create_voxel_semantics_model(CLASSES, MODEL)
    assert not torch.equal(fresh.backbone.stages[0][0].attn.qkv.weight,
                           model.backbone.stages[0][0].attn.qkv.weight)
    # a pretraining export records its settings (masking_prob 0.75): its architecture is used
    masked = create_encoder(MODEL, masking_prob=0.75)
    save_encoder(masked, tmp_path / 'masked')
    recorded = create_voxel_semantics_model(CLASSES, MODEL, tmp_path / 'masked', resolution=32)
    torch.testing.assert_close(recorded.backbone.mask_token, masked.mask_token)
    with pytest.raises(ValueError, match=r"another architecture .* \['pos_embed'\] differ"):
        create_voxel_semantics_model(CLASSES, MODEL, tmp_path / 'masked', resolution=64)
    with pytest.raises(ValueError, match='not nerf_mae_pretrain_swin_mini; set backbone'):
        create_voxel_semantics_model(CLASSES, 'nerf_mae_pretrain_swin_mini', tmp_path / 'masked')
    save_voxel_semantics_model(model, tmp_path / 'semantics')
    loaded = load_voxel_semantics_model(tmp_path / 'semantics')
    assert loaded.class_names == CLASSES and loaded.backbone_source == str(tmp_path / 'encoder')
    grid = torch.rand(1, 4, 32, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(grid), model.eval()(grid))


# ------------------------------------------------------------------------------- task
def test_labelled_subset_is_fixed_across_seeds_and_checked(grids):
    names = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        names.append(NerfMAESemanticsTask(str(grids), MODEL, labelled_scenes=2).train_names)
    assert names[0] == names[1] and len(names[0]) == 2
    with pytest.raises(ValueError, match='labelled_scenes=7: the training split has 6'):
        NerfMAESemanticsTask(str(grids), MODEL, labelled_scenes=7)
    with pytest.raises(ValueError, match="eval_split must be 'val' or 'test'"):
        NerfMAESemanticsTask(str(grids), MODEL, eval_split='train')


def test_fine_tuning_learns_the_classes_of_held_out_scenes(grids, tmp_path, one_thread):
    torch.manual_seed(0)
    task = NerfMAESemanticsTask(str(grids), MODEL)
    assert len(task.grids) == 6 and len(task.eval_grids) == 3
    before = task.evaluate(task.model, 0)
    config = TrainerConfig(out_dir=str(tmp_path), max_steps=40, batch_size=2, device='cpu',
                           progress=False, log_every=10, checkpoint_every=0, resume=False)
    final = Trainer(config, task, partial(torch.optim.AdamW, lr=2e-3)).fit()['final']
    # classes follow colour: 1 - mIoU from 0.86-0.95 untrained to 0.03-0.16 (ratio 0.04-0.19,
    # seeds 0-2)
    assert_learned((1 - final['eval/miou']) / (1 - before['miou']), 0.5,
                   'held-out voxel-labelling error (1 - mIoU)')
    report = json.loads((tmp_path / 'semantics_eval.json').read_text())
    assert report['class_names'] == CLASSES and len(report['scenes']) == 3
    summed = sum(np.array(c) for c in report['scenes'].values())
    assert mean_iou(summed) == pytest.approx(final['eval/miou'])
    assert summed.sum() == sum(int((g[3] > 0.01).sum()) for g in task.eval_grids)
    loaded = load_voxel_semantics_model(tmp_path / 'model')
    assert loaded.class_names == CLASSES


# ------------------------------------------------------------------------- comparison
def _run_file(path, confusions):
    path.mkdir()
    scenes = {f's{i}': c.tolist() for i, c in enumerate(confusions)}
    (path / 'semantics_eval.json').write_text(json.dumps({'scenes': scenes}))
    return path


def test_bootstrap_difference_sees_a_real_gain_and_none_between_equals(tmp_path):
    rng = np.random.default_rng(0)

    def confusions(accuracy):  # 12 scenes, 3 classes, ~accuracy on each
        out = []
        for _ in range(12):
            c = rng.integers(0, 3, (3, 3))
            np.fill_diagonal(c, rng.integers(int(accuracy * 60), int(accuracy * 60) + 5, 3))
            out.append(c)
        return out

    weak = [load_run(_run_file(tmp_path / f'weak{s}', confusions(0.3))) for s in range(3)]
    strong = [load_run(_run_file(tmp_path / f'strong{s}', confusions(0.9))) for s in range(3)]
    gain = miou_difference(weak, strong, resamples=300)
    assert 0 < gain['low'] < gain['difference'] < gain['high']
    assert gain['probability_ahead'] == 1.0
    same = miou_difference(weak, weak, resamples=300)
    assert same['difference'] == 0 and same['low'] <= 0 <= same['high']
    other = load_run(_run_file(tmp_path / 'other', confusions(0.5)[:5]))
    with pytest.raises(ValueError, match='other scenes or classes'):
        miou_difference(weak, [other], resamples=10)
    out = tmp_path / 'table.json'
    assert main(['--arm', f'weak={tmp_path}/weak*', '--arm', f'strong={tmp_path}/strong*',
                 '--compare', 'weak', 'strong', '--resamples', '50', '--json', str(out)]) == 0
    table = json.loads(out.read_text())
    assert len(table['arms']['strong']['miou']['values']) == 3
    assert main(['--arm', 'weak=/nonexistent/run']) == 2
