"""I2P-MAE's 2D signals: depth projections and back-projection against written-out loops,
the frozen ViT guides (ours, CLIP), and the losses they feed."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from embodied_vision import create_encoder
from embodied_vision.layers.point_ops import chamfer_l2
from embodied_vision.pretrain.image_guidance import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VIEW_AXES,
    ImageGuide,
    back_project,
    depth_views,
)


def _cloud(b=2, n=256, seed=0):
    x = torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=-1).amax(dim=1)[:, None, None]


def _tiny_vit(seed=0):
    torch.manual_seed(seed)
    return create_encoder('croco_vit_base', img_size=32, enc_embed_dim=16, enc_depth=2,
                          enc_num_heads=2)


def test_depth_views_match_a_per_point_loop():
    points = _cloud(2, 40)
    size, splat = 24, 3
    views = depth_views(points, size, splat)
    assert views.images.shape == (2, 3, 3, size, size)
    for b in range(2):
        for view, (a, c, d) in enumerate(VIEW_AXES):
            p = points[b].double().numpy()
            plane, depth = p[:, [a, c]], p[:, d]
            low, high = plane.min(0), plane.max(0)
            step = (high - low).max() / (size - 3)
            canvas = np.zeros((size, size))
            for (x, y), z in zip(plane, depth):
                u = int(np.floor((x - (low[0] + high[0]) / 2) / step + size / 2))
                v = int(np.floor((y - (low[1] + high[1]) / 2) / step + size / 2))
                for dv in (-1, 0, 1):
                    for du in (-1, 0, 1):
                        if 0 <= u + du < size and 0 <= v + dv < size:
                            canvas[v + dv, u + du] += z
            image = 1 / (1 + np.exp(-canvas))
            for ch in range(3):
                want = (image - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch]
                got = views.images[b, view, ch].double().numpy()
                np.testing.assert_allclose(got, want, atol=1e-5)
    # empty pixels read sigmoid(0) = 0.5 before normalisation; the object fills the frame
    raw = views.images[0, 0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    assert torch.isclose(raw[0, 0], torch.tensor(0.5))
    used = (raw - 0.5).abs() > 1e-6
    cols, rows = used.any(0).nonzero(), used.any(1).nonzero()
    assert int(cols.max() - cols.min()) >= size - 4 or int(rows.max() - rows.min()) >= size - 4


def test_back_projection_is_upsample_then_gather():
    maps = torch.randn(2, 3, 5, 7, 7, dtype=torch.float64)
    pixels = torch.randint(0, 56, (2, 3, 30, 2))
    pixels[0, 0, :2] = torch.tensor([[0, 0], [55, 55]])  # the borders
    got = back_project(maps, pixels, 56)
    up = F.interpolate(maps.flatten(0, 1), size=56, mode='bicubic', align_corners=False)
    up = up.reshape(2, 3, 5, 56, 56)
    for b in range(2):
        for v in range(3):
            want = up[b, v][:, pixels[b, v, :, 1], pixels[b, v, :, 0]].T
            torch.testing.assert_close(got[b, v], want, rtol=0, atol=1e-12)


def test_vit_guide_runs_the_frozen_encoder_and_reads_its_attention():
    vit = _tiny_vit()
    guide = ImageGuide(vit, image_size=32, splat=3)
    images = depth_views(_cloud(2), 32, 3).images.flatten(0, 1)
    features, saliency = guide(images)
    assert features.shape == (6, 16, 2, 2) and saliency.shape == (6, 2, 2)
    with torch.no_grad():
        tokens = vit.forward_features(images)                         # (6, 4, 16)
    torch.testing.assert_close(features.flatten(2).transpose(1, 2), tokens)
    # attention each patch receives, averaged over queries and heads: a distribution
    torch.testing.assert_close(saliency.sum(dim=(1, 2)), torch.ones(6))
    assert not all(p.requires_grad for p in guide.parameters())
    guide.train()
    assert not guide.vit.training
    with pytest.raises(ValueError, match='not a multiple of the ViT patch 16'):
        ImageGuide(vit, image_size=40)
    with pytest.raises(TypeError, match='neither a registered ViT'):
        ImageGuide(torch.nn.Linear(2, 2))


def test_guide_embedding_max_pools_each_view_and_concatenates_them():
    guide = ImageGuide(_tiny_vit(), image_size=32, splat=3)
    points = _cloud(2)
    features, _ = guide(depth_views(points, 32, 3).images.flatten(0, 1))     # (6,16,2,2)
    expected = features.reshape(2, 3, 16, 4).amax(dim=-1).reshape(2, 48)
    torch.testing.assert_close(guide.embed(points), expected)
    # a cloud's embedding does not depend on the others in the batch
    torch.testing.assert_close(guide.embed(points[1:]), expected[1:])


def test_clip_guide_takes_projected_patch_tokens_and_the_cls_row():
    open_clip = pytest.importorskip('open_clip')
    torch.manual_seed(0)
    visual = open_clip.create_model('ViT-B-16', pretrained=None).visual.eval()
    guide = ImageGuide(visual)
    images = depth_views(_cloud(1), 224, 5).images[0, :1]
    features, saliency = guide(images)
    assert features.shape == (1, 512, 14, 14) and saliency.shape == (1, 14, 14)
    visual.output_tokens = True
    with torch.no_grad():
        _, tokens = visual(images)                         # after ln_post, not projected
    torch.testing.assert_close(features.flatten(2).transpose(1, 2), tokens @ visual.proj,
                               rtol=1e-4, atol=1e-4)
    total = float(saliency.sum())  # the CLS row without its own entry
    assert 0.0 < total < 1.0


def test_signals_and_losses_of_both_variants():
    torch.manual_seed(0)
    model = create_encoder('i2p_mae_pretrain_tiny', image_feature_dim=16).train()
    guide = ImageGuide(_tiny_vit(), image_size=32, splat=3)
    points = _cloud(2)
    scales = model.group(points)
    signals = guide.signals(points, scales)
    assert signals.saliency.shape == (2, 8)
    assert signals.targets.shape == (2, 32, 4, 48)
    # view 1's features of group 5's member 2 sit at channels 16..31
    features, _ = guide(signals.views.images.flatten(0, 1))
    member = scales[1].members[1, 5, 2].reshape(1, 1, 3).expand(2, 1, 3)
    pixel = signals.views.pixels(member)[1:2, 1:2]
    want = back_project(features.reshape(2, 3, 16, 2, 2)[1:2, 1:2], pixel, 32)[0, 0, 0]
    torch.testing.assert_close(signals.targets[1, 5, 2, 16:32], want)

    generator = torch.Generator().manual_seed(0)
    visible = model.draw_visibility(scales, generator=generator)
    loss, out = model.forward_loss(points, visible=visible)           # Point-M2AE
    hidden = ~visible[1]
    want = chamfer_l2(out['pred_3d'][hidden], scales[1].neighborhood[hidden])
    torch.testing.assert_close(out['loss_3d'], want)
    assert float(out['loss_2d'].detach()) == 0.0 and torch.equal(loss, out['loss_3d'])
    assert out['pred_2d'] is None  # the 2D head is not run when nothing reads it
    loss, out = model.forward_loss(points, guide=guide, visible=visible)  # I2P-MAE
    shown = visible[1]
    want_2d = F.mse_loss(out['pred_2d'][shown], out['signals'].targets[shown])
    torch.testing.assert_close(out['loss_2d'], want_2d)
    torch.testing.assert_close(loss, out['loss_3d'] + want_2d)
    loss.backward()
    assert model.rec_head_2d.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in guide.parameters())
    with pytest.raises(ValueError, match='16-d features, the model predicts '
                                         'image_feature_dim=512'):
        create_encoder('i2p_mae_pretrain_tiny', image_feature_dim=512).forward_loss(
            points, guide=guide)
