"""What the commands and nodes feed encoders: 0-255 frames through `InputContract.from_pixels`,
and `encoder_for_inference`'s loud, seeded, uncached random weights."""
import pytest
import torch

from embodied_vision import create_encoder, deploy
from embodied_vision.checkpoints import CheckpointError, save_encoder
from embodied_vision.encoders import encoder_for_inference, factory

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _tiny_croco(name='croco_vit_base'):
    return create_encoder(name, img_size=32, enc_embed_dim=16, enc_depth=2, enc_num_heads=2)


def test_from_pixels_normalises_only_for_models_that_expect_it():
    frames = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    r3m = create_encoder('r3m_resnet18').input_contract
    assert r3m.takes_pixels and r3m.from_pixels(frames) is frames  # R3M normalises inside
    croco = _tiny_croco().input_contract
    assert not croco.takes_pixels
    torch.testing.assert_close(croco.from_pixels(frames), (frames / 255 - MEAN) / STD)
    torch.testing.assert_close(croco.from_pixels(frames.float()), (frames / 255 - MEAN) / STD)
    with pytest.raises(ValueError, match='not 0-255 pixels'):
        croco.from_pixels((frames / 255 - MEAN) / STD)  # normalised twice is refused
    with pytest.raises(ValueError, match=r'expects 0-255 frames \(B, 3, H, W\)'):
        croco.from_pixels(frames[:, :2])
    with torch.device('meta'):
        pair = create_encoder('croco_v2_pair_vit_base_smalldec').input_contract
    six = torch.randint(0, 256, (1, 6, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(pair.from_pixels(six),
                               (six / 255 - MEAN.repeat(1, 2, 1, 1)) / STD.repeat(1, 2, 1, 1))
    with torch.device('meta'):
        points = create_encoder('i2p_mae_tiny').input_contract
    with pytest.raises(ValueError, match='does not take camera frames'):
        points.from_pixels(frames)


def test_random_weights_are_warned_once_seeded_and_marked(monkeypatch):
    monkeypatch.setattr(factory, '_warned_random', set())
    with pytest.warns(UserWarning, match='r3m_resnet18 has random weights'):
        first = encoder_for_inference('r3m_resnet18')
    torch.manual_seed(123)  # the global RNG does not matter, nor is it consumed
    state = torch.random.get_rng_state()
    second = encoder_for_inference('r3m_resnet18', checkpoint='')
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first.random_weights and second.random_weights
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_our_exports_rebuild_their_architecture_and_name_it(tmp_path):
    vit = _tiny_croco()
    export = save_encoder(vit, tmp_path / 'croco')
    loaded = encoder_for_inference('croco_vit_base', checkpoint=export)
    assert not loaded.random_weights and loaded.embed_dim == 16
    for a, b in zip(vit.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match='holds a croco_vit_base encoder, not r3m'):
        encoder_for_inference('r3m_resnet18', checkpoint=export)


def test_compile_keeps_no_artefact_of_random_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(factory, '_warned_random', {'r3m_resnet18'})
    encoder = encoder_for_inference('r3m_resnet18')
    compiled = deploy.compile(encoder, 'onnxruntime', device='cpu', input_size=(32, 32),
                              cache_dir=tmp_path, input_dtype=torch.uint8)
    assert compiled.artifact is None and list(tmp_path.iterdir()) == []
    assert compiled.parity.passed  # the runtime still runs after its folder is gone
    frames = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert compiled(frames).shape == (2, 512)
