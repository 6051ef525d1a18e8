"""CroCo pretraining task on sim view pairs: augmentation, learning, evaluation, export."""
from functools import partial

import numpy as np
from PIL import Image
import pytest
import torch

from embodied_vision.checkpoints import load_encoder
from embodied_vision.pretrain.croco_pretrain import (
    CroCoPretrainTask,
    ViewPairDataset,
    color_jitter,
    mean_predictor_loss,
    warmup_cosine,
)
from embodied_vision.training import MetricsLogger, Trainer, TrainerConfig
from tests.learning import assert_learned

TINY = dict(img_size=32, patch_size=8, enc_embed_dim=32, enc_depth=2, enc_num_heads=2,
            dec_embed_dim=32, dec_depth=1, dec_num_heads=2)




def test_views_are_cropped_jittered_and_normalised():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    data = ViewPairDataset(rgb, rgb, [0, 1], (32, 32), augment=True)
    torch.manual_seed(0)
    item = data[0]
    assert item['img1'].shape == item['img2'].shape == (3, 32, 32)
    assert not torch.equal(item['img1'], item['img2'])  # independent crops / jitter per view
    centre = ViewPairDataset(rgb, rgb, [0], (32, 32), augment=False)[0]
    torch.testing.assert_close(centre['img1'], centre['img2'])
    expected = (torch.from_numpy(rgb[0, 4:36, 8:40]).permute(2, 0, 1) / 255.0
                - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) \
        / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(centre['img1'], expected)
    grey = torch.full((3, 4, 4), 0.5)
    assert torch.equal(color_jitter(grey, 0.0), grey)
    out = color_jitter(torch.rand(3, 8, 8), 0.4)
    assert out.min() >= 0 and out.max() <= 1


def test_mean_predictor_and_schedule():
    target = torch.randn(2, 5, 48)
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert mean_predictor_loss(target, mask).item() == pytest.approx(47 / 48, rel=1e-4)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[-1] < 0.05 and all(a >= b for a, b in zip(lrs[1:], lrs[2:]))


@pytest.mark.filterwarnings('ignore:.*non-commercial')  # the registry entry's licence tag
def test_tiny_model_learns_below_the_mean_predictor(pairs, tmp_path, one_thread):
    torch.manual_seed(0)
    task = CroCoPretrainTask([pairs], model_kwargs=TINY, val_fraction=0.25, num_images=2)
    assert len(task.train_ids) == 6 and len(task.val_ids) == 2
    groups = task.trainable_parameters(task.model)
    assert groups[1]['weight_decay'] == 0.0 and all(p.ndim < 2 or p is task.model.mask_token
                                                    for p in groups[1]['params'])
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
    assert cfg.task._target_.endswith('CroCoPretrainTask')
    assert cfg.optimizer.weight_decay == 0.05 and list(cfg.optimizer.betas) == [0.9, 0.95]
    assert cfg.scheduler.total_steps == cfg.trainer.max_steps
