"""The architecture of every official CroCo release, as upstream `CroCoNet` keyword arguments.

One table, read by the checkpoint reader (`checkpoints.croco`: which release a file matches,
what to suggest when it does not fit) and by the registry (`encoders.croco`: the defaults of
the entries that load each release). Plain data: no model code.

Releases: https://github.com/naver/croco (CroCo v1, https://arxiv.org/abs/2210.10716;
CroCo v2, https://arxiv.org/abs/2211.10408). Weights: CC BY-NC-SA 4.0, never bundled.
"""
from dataclasses import dataclass, field

__all__ = ['CroCoRelease', 'DECODER_KEYS', 'ENCODER_KEYS', 'LICENSE', 'ORIGIN', 'RELEASES',
           'UPSTREAM_DEFAULTS', 'match_release']

LICENSE = 'CC-BY-NC-SA-4.0'  # of every release: non-commercial, share-alike
ORIGIN = 'https://download.europe.naverlabs.com/ComputerVision/CroCo/'  # + file

# Upstream `CroCoNet()` constructor defaults (= the v1 release).
UPSTREAM_DEFAULTS = {'img_size': 224, 'patch_size': 16, 'mask_ratio': 0.9, 'enc_embed_dim': 768,
                     'enc_depth': 12, 'enc_num_heads': 12, 'dec_embed_dim': 512, 'dec_depth': 8,
                     'dec_num_heads': 16, 'mlp_ratio': 4, 'norm_im2_in_dec': True,
                     'pos_embed': 'cosine'}
# The keys that fix the weights' shapes and meaning, of the encoder and of the decoder.
ENCODER_KEYS = ('patch_size', 'enc_embed_dim', 'enc_depth', 'enc_num_heads', 'mlp_ratio',
                'pos_embed')
DECODER_KEYS = ('dec_embed_dim', 'dec_depth', 'dec_num_heads', 'norm_im2_in_dec')


@dataclass(frozen=True)
class CroCoRelease:
    """One released file.

    Args:
        file: the file name users download.
        kwargs: its `CroCoNet` keyword arguments that differ from or restate the defaults.
        encoder: registry name of the encoder-only embedding that loads it.
        pair: registry name of the two-view model that loads it.
        paper: arXiv id of the paper that released it.
    """

    file: str
    kwargs: dict = field(hash=False)
    encoder: str
    pair: str
    paper: str

    def architecture(self) -> dict:
        """Every `CroCoNet` keyword argument of the release."""
        return {**UPSTREAM_DEFAULTS, **self.kwargs}

    def encoder_kwargs(self) -> dict:
        """`kwargs` of the encoder alone (the decoder's are dropped)."""
        return {k: v for k, v in self.kwargs.items() if k not in DECODER_KEYS}


_V1 = {'pos_embed': 'cosine'}
_V2 = {'pos_embed': 'RoPE100'}
_VIT_B = {'enc_embed_dim': 768, 'enc_depth': 12, 'enc_num_heads': 12}
_VIT_L = {'enc_embed_dim': 1024, 'enc_depth': 24, 'enc_num_heads': 16}
_DEC_SMALL = {'dec_embed_dim': 512, 'dec_depth': 8, 'dec_num_heads': 16}
_DEC_BASE = {'dec_embed_dim': 768, 'dec_depth': 12, 'dec_num_heads': 12}

RELEASES = {release.file: release for release in (
    CroCoRelease('CroCo.pth', {**_V1, **_VIT_B, **_DEC_SMALL},
                 'croco_vit_base', 'croco_pair_vit_base', 'arXiv:2210.10716'),
    CroCoRelease('CroCo_V2_ViTBase_SmallDecoder.pth', {**_V2, **_VIT_B, **_DEC_SMALL},
                 'croco_v2_vit_base', 'croco_v2_pair_vit_base_smalldec', 'arXiv:2211.10408'),
    CroCoRelease('CroCo_V2_ViTBase_BaseDecoder.pth', {**_V2, **_VIT_B, **_DEC_BASE},
                 'croco_v2_vit_base', 'croco_v2_pair_vit_base_basedec', 'arXiv:2211.10408'),
    CroCoRelease('CroCo_V2_ViTLarge_BaseDecoder.pth', {**_V2, **_VIT_L, **_DEC_BASE},
                 'croco_v2_vit_large', 'croco_v2_pair_vit_large_basedec', 'arXiv:2211.10408'),
)}


def match_release(kwargs: dict) -> CroCoRelease | None:
    """The release whose encoder and decoder `kwargs` (over the defaults) describe, or None."""
    for release in RELEASES.values():
        reference = release.architecture()
        if all(kwargs.get(k) == reference[k] for k in ENCODER_KEYS + DECODER_KEYS):
            return release
    return None
