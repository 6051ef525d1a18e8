"""CroCo pretraining task on sim view pairs: augmentation, learning, evaluation, export."""
from functools import partial

import numpy as np
from PIL import Image
import pytest
import torch
from torchvision.transforms import v2

from embodied_vision.encoders import load_encoder
from embodied_vision.pretrain.augment import colour_jitter
from embodied_vision.pretrain.training_croco_pretrain import (
    CroCoPretrainTask,
    ViewPairDataset,
    _crop,
    mean_predictor_loss,
)
from embodied_vision.training import MetricsLogger, Trainer, TrainerConfig, parameter_groups
from tests.learning import assert_learned

TINY = dict(img_size=32, patch_size=8, enc_embed_dim=32, enc_depth=2, enc_num_heads=2,
            dec_embed_dim=32, dec_depth=1, dec_num_heads=2)
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)


def _hand_written_jitter(img, factors, order):
    """The colour jitter this package had before torchvision's: brightness, contrast (to the
    mean luma), saturation (to the per-pixel luma), in `order`, clamped after each."""
    for op in order:
        f = factors[op]
        if op == 0:
            img = img * f
        elif op == 1:
            grey = (img * _LUMA).sum(0).mean()
            img = (img - grey) * f + grey
        else:
            grey = (img * _LUMA).sum(0, keepdim=True)
            img = (img - grey) * f + grey
        img = img.clamp(0.0, 1.0)
    return img


def test_colour_jitter_is_torchvision_with_upstream_semantics():
    jitter = colour_jitter(0.4)
    assert isinstance(jitter, v2.ColorJitter) and jitter.hue is None
    assert jitter.brightness == jitter.contrast == jitter.saturation == (0.6, 1.4)
    assert colour_jitter(0.0) is None
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    for seed in range(20):
        torch.manual_seed(seed)
        params = jitter.make_params([img])
        factors = [params['brightness_factor'], params['contrast_factor'],
                   params['saturation_factor']]
        assert all(0.6 <= f <= 1.4 for f in factors) and params['hue_factor'] is None
        order = [int(i) for i in params['fn_idx'] if int(i) < 3]
        # torchvision's luma weights are (0.2989, 0.587, 0.114): 1e-4 from ours
        torch.testing.assert_close(jitter.transform(img, params),
                                   _hand_written_jitter(img, factors, order),
                                   atol=2e-4, rtol=0)


def test_views_are_cropped_jittered_and_normalised():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    data = ViewPairDataset(rgb, rgb, [0, 1], (32, 32), augment=True)
    torch.manual_seed(0)
    item = data[0]
    assert item['img1'].shape == item['img2'].shape == (3, 32, 32)
    assert not torch.equal(item['img1'], item['img2'])  # independent crops / jitter per view
    # the same draws by hand: random crop, then torchvision's jitter, then normalisation
    torch.manual_seed(0)
    view = torch.from_numpy(rgb[0]).permute(2, 0, 1).float() / 255.0
    by_hand = colour_jitter(0.4)(_crop(view, (32, 32), True, None))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(item['img1'], (by_hand - mean) / std)
    centre = ViewPairDataset(rgb, rgb, [0], (32, 32), augment=False)[0]
    torch.testing.assert_close(centre['img1'], centre['img2'])
    expected = (torch.from_numpy(rgb[0, 4:36, 8:40]).permute(2, 0, 1) / 255.0 - mean) / std
    torch.testing.assert_close(centre['img1'], expected)
    unjittered = ViewPairDataset(rgb, rgb, [0], (40, 48), augment=True, jitter=0.0)[0]
    torch.testing.assert_close(unjittered['img1'], unjittered['img2'])  # full-size crop only


def test_mean_predictor_loss():
    target = torch.randn(2, 5, 48)
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert mean_predictor_loss(target, mask).item() == pytest.approx(47 / 48, rel=1e-4)


@pytest.mark.filterwarnings('ignore:.*non-commercial')  # the registry entry's licence tag
def test_weight_decay_groups_are_the_upstream_ones(pairs):
    task = CroCoPretrainTask([pairs], model_kwargs=TINY, val_fraction=0.25, weight_decay=0.05)
    task.model.dec_blocks[0].requires_grad_(False)  # frozen parameters are left out
    named = [(n, p) for n, p in task.model.named_parameters() if p.requires_grad]
    skip = task.model.no_weight_decay()
    # the rule this task had before timm's groups: decay >= 2-D weights not in the skip list
    decay = [p for n, p in named if p.ndim >= 2 and n not in skip]
    rest = [p for n, p in named if p.ndim < 2 or n in skip]
    groups = parameter_groups(task, task.model)
    by_decay = {g['weight_decay']: g['params'] for g in groups}
    assert len(groups) == 2 and set(by_decay) == {0.0, 0.05}
    assert [id(p) for p in by_decay[0.05]] == [id(p) for p in decay]
    assert [id(p) for p in by_decay[0.0]] == [id(p) for p in rest]
    assert any(p is task.model.mask_token for p in by_decay[0.0])
    one = CroCoPretrainTask([pairs], model_kwargs=TINY, weight_decay=None)
    assert [id(p) for p in parameter_groups(one, one.model)] == [
        id(p) for p in one.model.parameters()]


@pytest.mark.filterwarnings('ignore:.*non-commercial')  # the registry entry's licence tag
def test_tiny_model_learns_below_the_mean_predictor(pairs, tmp_path, one_thread):
    torch.manual_seed(0)
    task = CroCoPretrainTask([pairs], model_kwargs=TINY, val_fraction=0.25, num_images=2)
    assert len(task.train_ids) == 6 and len(task.val_ids) == 2
    before = task.evaluate(task.model, 0)
    config = TrainerConfig(out_dir=str(tmp_path), max_steps=30, batch_size=6, device='cpu',
                           progress=False, log_every=5, checkpoint_every=0, resume=False)
    optimizer = partial(torch.optim.AdamW, lr=3e-3, betas=(0.9, 0.95))
    summary = Trainer(config, task, optimizer).fit()
    final = summary['final']
    for key in ('masked_loss', 'mean_loss', 'loss_ratio', 'train_masked_loss',
                'train_mean_loss', 'train_loss_ratio'):
        assert np.isfinite(final[f'eval/{key}']), key
    steps = MetricsLogger(tmp_path / 'metrics.csv', resume_step=10**9).series('loss')[0]
    assert steps[-1] == 30
    # fixed training pairs, centre crops and masks: deterministic before / after
    assert_learned(final['eval/train_masked_loss'] / before['train_masked_loss'], 0.9,
                   'masked loss on training pairs')
    assert_learned(final['eval/train_loss_ratio'], 0.9, 'masked loss / mean predictor')
    png = Image.open(tmp_path / 'reconstructions.png')
    assert png.size[0] == 4 * png.size[1] // 2  # 2 rows of 4 square panels
    encoder = load_encoder(tmp_path / 'encoder')
    for key, value in task.model.state_dict().items():
        torch.testing.assert_close(encoder.state_dict()[key], value)
    loss, _ = encoder.forward_loss(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
    assert torch.isfinite(loss)


def test_experiment_config_composes():
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    with initialize_config_module('embodied_vision.configs', version_base='1.3'):
        cfg = compose(config_name='train', overrides=['experiment=croco_pretrain',
                                                      'task.pairs=[x.hdf5]'])
    GlobalHydra.instance().clear()
    assert cfg.task.name == 'croco_pretrain'
    assert cfg.task._target_ == 'embodied_vision.training.create_task'
    assert cfg.scheduler._target_ == 'embodied_vision.training.warmup_cosine'
    assert cfg.optimizer.weight_decay == 0.05 and list(cfg.optimizer.betas) == [0.9, 0.95]
    assert cfg.scheduler.total_steps == cfg.trainer.max_steps
