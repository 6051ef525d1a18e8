"""Official CroCo checkpoint layouts, built here with random weights, load strictly.

Key names and shapes come from the notes on the four releases (reference/croco.md §8), written
out independently of the model code in `official_layout`.
"""
import argparse
import os
import warnings

import pytest
import torch

from embodied_vision.checkpoints import CheckpointError, read_checkpoint
from embodied_vision.checkpoints.croco import (
    croco_architecture,
    load_croco_checkpoint,
    parse_model_string,
)
from embodied_vision.encoders import create_encoder
from embodied_vision.encoders.croco import CroCoPair, croco_from_checkpoint
from embodied_vision.layers import resample_pos_embed_2d, sincos_pos_embed_2d

TINY_V2 = {'enc_embed_dim': 32, 'enc_depth': 2, 'enc_num_heads': 2, 'dec_embed_dim': 24,
           'dec_depth': 2, 'dec_num_heads': 2, 'pos_embed': 'RoPE100', 'img_size': 32}
RELEASES = {  # file: (enc dim, depth, dec dim, depth, cosine, keys, params in M)
    'CroCo.pth': (768, 12, 512, 8, True, 349, 120.08),
    'CroCo_V2_ViTBase_SmallDecoder.pth': (768, 12, 512, 8, False, 347, 120.08),
    'CroCo_V2_ViTBase_BaseDecoder.pth': (768, 12, 768, 12, False, 443, 200.27),
    'CroCo_V2_ViTLarge_BaseDecoder.pth': (1024, 24, 768, 12, False, 587, 417.92),
}
PAIR_NAMES = {'CroCo.pth': 'croco_pair_vit_base',
              'CroCo_V2_ViTBase_SmallDecoder.pth': 'croco_v2_pair_vit_base_smalldec',
              'CroCo_V2_ViTBase_BaseDecoder.pth': 'croco_v2_pair_vit_base_basedec',
              'CroCo_V2_ViTLarge_BaseDecoder.pth': 'croco_v2_pair_vit_large_basedec'}


def official_layout(enc: int, enc_depth: int, dec: int, dec_depth: int, cosine: bool,
                    tokens: int = 196) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an upstream CroCoNet state dict (patch 16, MLP ratio 4)."""
    layout = {'mask_token': (1, 1, dec), 'patch_embed.proj.weight': (enc, 3, 16, 16),
              'patch_embed.proj.bias': (enc,)}
    if cosine:
        layout.update(enc_pos_embed=(tokens, enc), dec_pos_embed=(tokens, dec))

    def linear(name, out_dim, in_dim):
        layout[f'{name}.weight'] = (out_dim, in_dim)
        layout[f'{name}.bias'] = (out_dim,)

    def norm(name, dim):
        layout[f'{name}.weight'] = layout[f'{name}.bias'] = (dim,)

    for i in range(enc_depth):
        block = f'enc_blocks.{i}'
        norm(f'{block}.norm1', enc)
        norm(f'{block}.norm2', enc)
        linear(f'{block}.attn.qkv', 3 * enc, enc)
        linear(f'{block}.attn.proj', enc, enc)
        linear(f'{block}.mlp.fc1', 4 * enc, enc)
        linear(f'{block}.mlp.fc2', enc, 4 * enc)
    norm('enc_norm', enc)
    linear('decoder_embed', dec, enc)
    for i in range(dec_depth):
        block = f'dec_blocks.{i}'
        for name in ('norm1', 'norm2', 'norm3', 'norm_y'):
            norm(f'{block}.{name}', dec)
        linear(f'{block}.attn.qkv', 3 * dec, dec)
        linear(f'{block}.attn.proj', dec, dec)
        for name in ('projq', 'projk', 'projv', 'proj'):
            linear(f'{block}.cross_attn.{name}', dec, dec)
        linear(f'{block}.mlp.fc1', 4 * dec, dec)
        linear(f'{block}.mlp.fc2', dec, 4 * dec)
    norm('dec_norm', dec)
    linear('prediction_head', 16 * 16 * 3, dec)
    return layout


def random_state(layout: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=generator) * 0.05 for k, shape in layout.items()}


def reference_model(name: str, state: dict, **kwargs) -> CroCoPair:
    """The architecture holding `state` directly (meta-built, no init cost)."""
    from embodied_vision.encoders import _registry
    with torch.device('meta'):
        model = _registry._ENTRYPOINTS[name](**kwargs)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _pair_input(batch=2, size=(32, 32), seed=1):
    return torch.randn(batch, 6, *size, generator=torch.Generator().manual_seed(seed))


def _tiny_layout(kwargs: dict) -> dict:
    grid = kwargs['img_size'] // 16
    return official_layout(kwargs['enc_embed_dim'], kwargs['enc_depth'],
                           kwargs['dec_embed_dim'], kwargs['dec_depth'],
                           kwargs['pos_embed'] == 'cosine', tokens=grid * grid)


def _training_file(path, kwargs: dict, state: dict) -> None:
    """A file as upstream pretrain.py writes it: architecture only in args.model."""
    call = 'CroCoNet(' + ', '.join(f'{k}={v!r}' for k, v in kwargs.items()) + ')'
    args = argparse.Namespace(model=call, batch_size=64, lr=None, blr=1.5e-4,
                              output_dir='./output/', dataset='habitat_release')
    optimizer = {'state': {0: {'step': torch.tensor(3.0), 'exp_avg': torch.zeros(3)}},
                 'param_groups': [{'lr': 1e-4, 'betas': (0.9, 0.95), 'params': [0]}]}
    torch.save({'model': state, 'optimizer': optimizer, 'scaler': {'scale': 65536.0},
                'args': args, 'epoch': 3, 'best_so_far': 0.5}, path)


# -------------------------------------------------------------------- full-size layouts
@pytest.mark.parametrize('file', list(RELEASES))
def test_full_size_architectures_have_the_official_keys_and_shapes(file):
    enc, enc_depth, dec, dec_depth, cosine, count, params = RELEASES[file]
    layout = official_layout(enc, enc_depth, dec, dec_depth, cosine)
    from embodied_vision.encoders import _registry
    with torch.device('meta'):
        model = _registry._ENTRYPOINTS[PAIR_NAMES[file]]()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == layout and len(layout) == count
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == params


def test_v1_release_loads_with_defaults_and_reproduces_its_outputs(tmp_path):
    """CroCo.pth has no kwargs: the v1 defaults (ViT-B, small decoder, cosine) apply."""
    state = random_state(official_layout(768, 12, 512, 8, True))
    state['enc_pos_embed'] = sincos_pos_embed_2d(768, 14, 14)
    state['dec_pos_embed'] = sincos_pos_embed_2d(512, 14, 14)
    torch.save({'model': state}, tmp_path / 'CroCo.pth')
    assert read_checkpoint(tmp_path / 'CroCo.pth')[0] == 'croco'
    with pytest.warns(UserWarning, match='non-commercial'):
        model = create_encoder('croco_pair_vit_base.habitat_pairs',
                               checkpoint=tmp_path / 'CroCo.pth')
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    reference = reference_model('croco_pair_vit_base', state)
    x = _pair_input()
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    # the encoder-only entry takes the encoder part of the same file
    with pytest.warns(UserWarning, match='non-commercial'):
        encoder = create_encoder('croco_vit_base', checkpoint=tmp_path / 'CroCo.pth')
    with torch.inference_mode():
        torch.testing.assert_close(encoder.encode(x[:, :3]), reference.encode(x[:, :3]))
    del state, model, reference, encoder


@pytest.mark.slow
@pytest.mark.parametrize('file', list(RELEASES)[1:])
def test_full_size_v2_releases_load(tmp_path, file):
    enc, enc_depth, dec, dec_depth, cosine, _, _ = RELEASES[file]
    state = random_state(official_layout(enc, enc_depth, dec, dec_depth, cosine))
    kwargs = {'enc_embed_dim': enc, 'enc_depth': enc_depth, 'enc_num_heads': enc // 64,
              'dec_embed_dim': dec, 'dec_depth': dec_depth, 'dec_num_heads': 16 if dec == 512
              else 12, 'pos_embed': 'RoPE100'}
    torch.save({'model': state, 'croco_kwargs': kwargs}, tmp_path / file)
    with pytest.warns(UserWarning, match='non-commercial'):
        model = create_encoder(PAIR_NAMES[file], checkpoint=tmp_path / file)
    x = _pair_input()
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference_model(PAIR_NAMES[file], state)(x))


# ------------------------------------------------------------------ tiny files, layouts
def test_v2_release_layout_with_croco_kwargs(tmp_path):
    state = random_state(_tiny_layout(TINY_V2))
    torch.save({'model': state, 'croco_kwargs': TINY_V2}, tmp_path / 'v2.pth')
    overrides = {k: v for k, v in TINY_V2.items() if k != 'pos_embed'}
    with pytest.warns(UserWarning, match='CC-BY-NC-SA-4.0'):
        model = create_encoder('croco_v2_pair_vit_base_smalldec.habitat_real',
                               checkpoint=tmp_path / 'v2.pth', **overrides)
    reference = reference_model('croco_v2_pair_vit_base_smalldec', state, **overrides)
    for size in ((32, 32), (48, 64)):
        x = _pair_input(size=size)
        with torch.inference_mode():
            torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
            torch.testing.assert_close(model.forward_features(x), reference.forward_features(x))
    with pytest.warns(UserWarning):
        built = croco_from_checkpoint(tmp_path / 'v2.pth')
    assert built.name == 'croco_v2_pair_vit_base_smalldec' and built.embed_dim == 24
    with torch.inference_mode():
        torch.testing.assert_close(built(x), reference(x), rtol=0, atol=0)


def test_training_script_file_reads_args_model_safely(tmp_path):
    path = tmp_path / 'checkpoint-last.pth'
    state = random_state(_tiny_layout(TINY_V2), seed=2)
    _training_file(path, TINY_V2, state)
    # plain weights-only loading refuses the argparse.Namespace ...
    with pytest.raises(Exception, match='Namespace'):
        torch.load(path, weights_only=True)
    # ... our readers allow exactly that class, only around their own torch.load
    assert read_checkpoint(path)[0] == 'croco'
    with pytest.warns(UserWarning, match='non-commercial'):
        model = croco_from_checkpoint(path)
    with pytest.raises(Exception, match='Namespace'):
        torch.load(path, weights_only=True)
    overrides = {k: v for k, v in TINY_V2.items() if k != 'pos_embed'}
    reference = reference_model('croco_v2_pair_vit_base_smalldec', state, **overrides)
    x = _pair_input()
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    encoder = create_encoder('croco_v2_vit_base', **{k: v for k, v in overrides.items()
                                                     if not k.startswith('dec_')})
    with pytest.warns(UserWarning):
        load_croco_checkpoint(encoder, path)
    with torch.inference_mode():
        torch.testing.assert_close(encoder.encode(x[:, :3]), reference.encode(x[:, :3]))
    with pytest.warns(UserWarning, match='non-commercial'):  # the generic path reads it too
        generic = create_encoder('croco_v2_pair_vit_base_smalldec', checkpoint=path,
                                 **overrides)
    with torch.inference_mode():
        torch.testing.assert_close(generic(x), reference(x), rtol=0, atol=0)


def test_cosine_training_file_at_another_size_gets_resampled_tables(tmp_path):
    kwargs = {**TINY_V2, 'pos_embed': 'cosine', 'img_size': 64}
    state = random_state(_tiny_layout(kwargs))
    state['enc_pos_embed'] = sincos_pos_embed_2d(32, 4, 4)
    state['dec_pos_embed'] = sincos_pos_embed_2d(24, 4, 4)
    _training_file(tmp_path / 'cos.pth', kwargs, state)
    with pytest.warns(UserWarning):
        model = croco_from_checkpoint(tmp_path / 'cos.pth', img_size=32)
    assert model.name == 'croco_pair_vit_base' and model.init_kwargs['img_size'] == 32
    torch.testing.assert_close(model.enc_pos_embed,
                               resample_pos_embed_2d(state['enc_pos_embed'], (4, 4), (2, 2)))


def test_architecture_sources_in_order():
    assert croco_architecture({'model': {}, 'croco_kwargs': {'enc_depth': 3}})[0][
        'enc_depth'] == 3
    args = argparse.Namespace(model="CroCoNet(enc_depth=5, pos_embed='RoPE100')")
    arch, source = croco_architecture({'model': {}, 'args': args})
    assert (arch['enc_depth'], arch['pos_embed'], source) == (5, 'RoPE100', 'args.model')
    arch, source = croco_architecture({'model': {}})
    assert arch['pos_embed'] == 'cosine' and arch['dec_embed_dim'] == 512
    assert source.startswith('v1 defaults')


@pytest.mark.parametrize('text', [
    "__import__('os').system('touch pwned')", 'CroCoNet(**kw)', 'CroCoNet(768)',
    'CroCoNet(enc_depth=len([1]))', 'AsymmetricCroCo3DStereo(enc_depth=2)', 'CroCoNet(',
])
def test_args_model_is_parsed_never_evaluated(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match='args.model'):
        parse_model_string(text)
    assert not os.path.exists('pwned')
    assert parse_model_string('CroCoNet(img_size=(224, 448), mask_ratio=0.9)') == {
        'img_size': (224, 448), 'mask_ratio': 0.9}


class _Exploit:
    def __reduce__(self):
        return (os.system, ('touch pwned',))


def test_foreign_classes_in_args_are_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = random_state(_tiny_layout(TINY_V2))
    torch.save({'model': state, 'args': _Exploit()}, tmp_path / 'evil.pth')
    with pytest.raises(CheckpointError, match='weights_only'):
        croco_from_checkpoint(tmp_path / 'evil.pth')
    assert not os.path.exists('pwned')


def test_wrong_architecture_is_a_clear_error(tmp_path):
    state = random_state(_tiny_layout(TINY_V2))
    torch.save({'model': state, 'croco_kwargs': TINY_V2}, tmp_path / 'v2.pth')
    overrides = {k: v for k, v in TINY_V2.items() if k != 'pos_embed'}
    with pytest.raises(CheckpointError, match=r"pos_embed: file 'RoPE100' vs model 'cosine'"):
        create_encoder('croco_pair_vit_base', checkpoint=tmp_path / 'v2.pth', **overrides)
    # a file with the ViT-L release architecture names the entry that fits it
    large = {'enc_embed_dim': 1024, 'enc_depth': 24, 'enc_num_heads': 16,
             'dec_embed_dim': 768, 'dec_depth': 12, 'dec_num_heads': 12, 'pos_embed': 'RoPE100'}
    torch.save({'model': state, 'croco_kwargs': large}, tmp_path / 'large.pth')
    with pytest.raises(CheckpointError, match='use croco_v2_vit_large'):
        create_encoder('croco_v2_vit_base', checkpoint=tmp_path / 'large.pth',
                       **{k: v for k, v in overrides.items() if not k.startswith('dec_')})
    # same architecture, a block missing: strict loading names the keys
    del state['dec_blocks.1.mlp.fc2.weight']
    torch.save({'model': state, 'croco_kwargs': TINY_V2}, tmp_path / 'cut.pth')
    with pytest.raises(CheckpointError, match=r'missing keys \(1\).*dec_blocks.1.mlp.fc2'):
        create_encoder('croco_v2_pair_vit_base_smalldec', checkpoint=tmp_path / 'cut.pth',
                       **overrides)


def test_non_commercial_artefact_warns_once_and_keeps_its_source(tmp_path):
    from embodied_vision.checkpoints.artifact import save_encoder as save_artifact_encoder
    from embodied_vision.encoders import load_encoder
    name = 'croco_v2_pair_vit_base_smalldec'
    model = create_encoder(f'{name}.habitat_real', **TINY_V2)
    save_artifact_encoder(model, tmp_path / 'enc')  # records non_commercial: read warns
    for load in (lambda: create_encoder(name, checkpoint=tmp_path / 'enc', **TINY_V2),
                 lambda: load_encoder(tmp_path / 'enc')):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            loaded = load()
        licence = [w for w in caught if 'non-commercial' in str(w.message)]
        assert len(licence) == 1, [str(w.message) for w in caught]
        assert loaded.pretrained_cfg.tag == 'habitat_real'
