"""PairGeometryModel: shapes, rotations, hooks, save/load, backbone checkpoints, export."""
import copy
import json

import pytest
import torch

from embodied_vision.checkpoints import CheckpointError, save_encoder
from embodied_vision.deploy import export_onnx
from embodied_vision.downstream import (
    PairGeometryModel,
    create_pair_geometry_model,
    croco_dpt_hooks,
    load_pair_geometry_model,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
    save_pair_geometry_model,
)
from embodied_vision.encoders import create_encoder
from embodied_vision.utils import is_available
from tests.numerics import assert_fp32_close

TINY = {'enc_embed_dim': 32, 'enc_depth': 2, 'enc_num_heads': 2, 'img_size': 32,
        'dec_embed_dim': 32, 'dec_depth': 2, 'dec_num_heads': 2}
HEAD = {'dpt_layer_dims': (8, 16, 24, 32), 'dpt_feature_dim': 16, 'dpt_last_dim': 8,
        'pose_hidden': 32}
SIZE = (32, 48)  # non-square


def _model(confidence=False, **overrides):
    torch.manual_seed(0)
    return create_pair_geometry_model(head_kwargs={**HEAD, 'depth_confidence': confidence},
                                      **{**TINY, **overrides})


def _images(batch=2, size=SIZE, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand((batch, 3, *size), generator=generator) * 255,
            torch.rand((batch, 3, *size), generator=generator) * 255)


@pytest.mark.parametrize('confidence', [False, True])
def test_predict_and_forward_shapes_non_square(confidence):
    model = _model(confidence)
    img1, img2 = _images(3)
    out = model.predict(img1, img2)
    assert out['depth'].shape == (3, *SIZE) and out['depth'].dtype == torch.float32
    assert bool((out['depth'] > 0).all())
    assert out['rotation'].shape == (3, 3, 3) and out['translation'].shape == (3, 3)
    assert ('confidence' in out) == confidence
    depth, pose = model(torch.cat((img1, img2), dim=1))
    assert depth.shape == (3, 1, *SIZE) and pose.shape == (3, 9)
    torch.testing.assert_close(depth[:, 0], out['depth'])
    torch.testing.assert_close(rotation_6d_to_matrix(pose[:, :6]), out['rotation'])
    assert model.input_size == (32, 32) and model.patch_size == 16


def test_predict_accepts_uint8_and_rejects_bad_sizes():
    model = _model()
    img1, img2 = _images(1)
    out = model.predict(img1.round().to(torch.uint8), img2.round().to(torch.uint8))
    torch.testing.assert_close(out['depth'], model.predict(img1.round(), img2.round())['depth'])
    with pytest.raises(ValueError, match='multiple of patch_size=16'):
        model.predict(*_images(1, (32, 40)))
    with pytest.raises(ValueError, match='two'):
        model.predict(img1, img2[:, :, :16])


def test_rotations_are_orthonormal_with_det_one():
    model = _model()
    rotation = model.predict(*_images(4))['rotation']
    eye = torch.eye(3).expand(4, 3, 3)
    torch.testing.assert_close(rotation @ rotation.transpose(1, 2), eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(4), atol=1e-5, rtol=0)
    # Gram-Schmidt of arbitrary 6D vectors too, and 6D <-> matrix round trips
    raw = torch.randn(16, 6, generator=torch.Generator().manual_seed(3))
    rot = rotation_6d_to_matrix(raw)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(rotation_6d_to_matrix(matrix_to_rotation_6d(rot)), rot,
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(rot[:, :, 0], raw[:, :3] / raw[:, :3].norm(dim=1, keepdim=True))


def test_hook_indices_match_croco_stereo_for_official_configs():
    assert croco_dpt_hooks(12, 8) == [10, 13, 16, 19]     # ViT-B + small decoder
    assert croco_dpt_hooks(12, 12) == [11, 15, 19, 23]    # ViT-B + base decoder
    assert croco_dpt_hooks(24, 12) == [23, 27, 31, 35]    # ViT-L + base decoder
    assert croco_dpt_hooks(2, 2) == [0, 1, 2, 3]
    assert croco_dpt_hooks(1, 1) == [0, 0, 0, 1]
    with torch.device('meta'):
        backbone = create_encoder('croco_v2_pair_vit_base_smalldec')
        model = PairGeometryModel(backbone)
    assert model.hooks == [10, 13, 16, 19]
    assert model.depth_head.in_dims == (768, 512, 512, 512)


def test_hooks_follow_the_block_outputs():
    # Moving the hooks changes the depth output; the pose reads only the last decoder tokens.
    torch.manual_seed(0)
    backbone = create_encoder('croco_v2_pair_vit_base_smalldec', **TINY)
    model = PairGeometryModel(backbone, hooks=[0, 1, 2, 3], **HEAD)
    pair = torch.cat(_images(1), dim=1)
    depth, pose = model(pair)
    model.hooks = [3, 2, 1, 0]
    depth2, pose2 = model(pair)
    assert not torch.allclose(depth, depth2)
    torch.testing.assert_close(pose, pose2)
    with pytest.raises(ValueError, match='hooks'):
        PairGeometryModel(backbone, hooks=[0, 1, 2, 4], **HEAD)


def test_save_load_round_trip(tmp_path):
    model = _model(confidence=True)
    with torch.no_grad():   # make the heads non-trivial
        for param in model.parameters():
            param.add_(0.01 * torch.randn_like(param))
    path = save_pair_geometry_model(model, tmp_path / 'geometry')
    config = json.loads((path / 'config.json').read_text())
    assert (config['format'], config['kind'], config['name']) == ('embodied_vision', 'head',
                                                                  'pair_geometry')
    assert config['license'] == '' and not config['non_commercial']  # random init
    assert config['input_size'] == [32, 32]
    loaded = load_pair_geometry_model(path)
    assert isinstance(loaded, PairGeometryModel) and not loaded.training
    img1, img2 = _images(2, seed=5)
    expected, got = model.predict(img1, img2), loaded.predict(img1, img2)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
    assert loaded.input_size == model.input_size and loaded.hooks == model.hooks


def test_a_head_on_non_commercial_weights_stays_marked_and_warns_on_load(tmp_path):
    backbone = create_encoder('croco_v2_pair_vit_base_smalldec.habitat_real', **TINY)
    path = save_pair_geometry_model(PairGeometryModel(backbone, **HEAD), tmp_path / 'nc')
    config = json.loads((path / 'config.json').read_text())
    assert config['non_commercial'] and config['license'] == 'CC-BY-NC-SA-4.0'
    with pytest.warns(UserWarning, match='CC-BY-NC-SA-4.0 .non-commercial'):
        loaded = load_pair_geometry_model(path)
    # saved again (e.g. after fine-tuning), the mark is not lost
    again = json.loads((save_pair_geometry_model(loaded, tmp_path / 'again')
                        / 'config.json').read_text())
    assert again['non_commercial'] and again['license'] == 'CC-BY-NC-SA-4.0'


def test_load_errors_name_what_was_expected(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist.*model.safetensors'):
        load_pair_geometry_model(tmp_path / 'missing')
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(CheckpointError, match='holds no model.safetensors'):
        load_pair_geometry_model(empty)
    path = save_pair_geometry_model(_model(), tmp_path / 'ok')
    (path / 'model.safetensors').write_bytes(b'not a safetensors file')
    with pytest.raises(CheckpointError, match='cannot be read as safetensors'):
        load_pair_geometry_model(path)
    (path / 'config.json').write_text('{broken')
    with pytest.raises(CheckpointError, match='not valid JSON'):
        load_pair_geometry_model(path)
    encoder_dir = save_encoder(create_encoder('croco_v2_pair_vit_base_smalldec', **TINY),
                               tmp_path / 'encoder')
    with pytest.raises(CheckpointError, match="holds encoder 'croco_v2_pair_vit_base_smalldec', "
                                              'not a head'):
        load_pair_geometry_model(encoder_dir)


def test_backbone_from_our_pretraining_export(tmp_path):
    torch.manual_seed(1)
    pretrained = create_encoder('croco_v2_pair_vit_base_smalldec', **TINY)
    directory = save_encoder(pretrained, tmp_path / 'encoder')
    model = create_pair_geometry_model(backbone_checkpoint=str(directory), head_kwargs=HEAD)
    for name, value in pretrained.state_dict().items():
        if not name.startswith('prediction_head'):
            torch.testing.assert_close(model.backbone.state_dict()[name], value, rtol=0, atol=0)
    assert model.backbone_source == str(directory)
    random = _model()
    assert not torch.equal(random.backbone.enc_blocks[0].attn.qkv.weight,
                           model.backbone.enc_blocks[0].attn.qkv.weight)
    geometry_dir = save_pair_geometry_model(model, tmp_path / 'geometry')
    with pytest.raises(CheckpointError, match='load_pair_geometry_model'):
        create_pair_geometry_model(backbone_checkpoint=str(geometry_dir))


def test_freeze_backbone_stops_its_gradients():
    model = _model().train()
    model.freeze_backbone()
    depth, pose = model(torch.cat(_images(1), dim=1))
    (depth.mean() + pose.sum()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.depth_head.parameters())
    assert all(p.grad is not None for p in model.pose_head.parameters())


def test_torch_export_with_dynamic_batch_matches_eager():
    model = _model(confidence=True)
    program = torch.export.export(model, model.example_inputs(2, SIZE),
                                  dynamic_shapes=model.dynamic_shapes(1, 8), strict=False)
    module = program.module()
    exact_model = copy.deepcopy(model).double()
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 5):
        (pair,) = model.example_inputs(batch, SIZE, generator=generator)
        with torch.inference_mode():
            outputs = zip(('depth', 'pose'), module(pair), model(pair), exact_model(pair.double()))
        for name, got, expected, exact in outputs:
            assert_fp32_close(got, exact, model, exact=True, what=f'exported {name} vs float64')
            assert_fp32_close(expected, exact, model, exact=True, what=f'eager {name} vs float64')
            assert_fp32_close(got, expected, model, what=f'exported vs eager {name}')


@pytest.mark.skipif(not (is_available('onnxruntime') and is_available('onnxscript')),
                    reason='needs onnxruntime and onnxscript')
def test_onnxruntime_matches_eager(tmp_path):
    import onnxruntime as ort
    model = _model()
    path = export_onnx(model, tmp_path / 'geometry.onnx', size=SIZE, max_batch=8)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert [o.name for o in session.get_outputs()] == ['depth', 'pose']
    exact_model = copy.deepcopy(model).double()
    for batch in (1, 3):
        (pair,) = model.example_inputs(batch, SIZE, generator=torch.Generator().manual_seed(2))
        depth, pose = session.run(None, {'pair': pair.numpy()})
        with torch.inference_mode():
            expected, exact = model(pair), exact_model(pair.double())
        for name, got, want, truth in zip(('depth', 'pose'), (depth, pose), expected, exact):
            assert_fp32_close(got, truth, model, exact=True, what=f'onnxruntime {name} vs float64')
            assert_fp32_close(want, truth, model, exact=True, what=f'eager {name} vs float64')
            assert_fp32_close(got, want, model, what=f'onnxruntime vs eager {name}')
