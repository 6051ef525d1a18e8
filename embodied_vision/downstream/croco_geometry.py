"""Two-view geometry on a CroCo backbone: depth of view 1 and the relative camera pose.

CroCo (Weinzaepfel et al., NeurIPS 2022, https://arxiv.org/abs/2210.10716) and CroCo v2
(ICCV 2023, https://arxiv.org/abs/2211.10408) downstream binocular setting: both views are
encoded whole in one batched pass, the decoder runs unmasked with view 1 as queries and view 2
as memory. Heads (independent implementation; upstream https://github.com/naver/croco has a
stereo/flow DPT head but no pose head):

- depth: a DPT head (Ranftl et al., https://arxiv.org/abs/2103.13413; `layers.dpt`) on four
  hooked block outputs, at `enc_depth + dec_depth - 1 - i * step`, i = 3..0, with
  `step = ceil(dec_depth / 3)` (3/4/8 for decoder depth 8/12/24, as CroCo-Stereo; clipped at 0
  for tiny models). The encoder's last output gets `enc_norm`, the decoder's last `dec_norm`.
  It predicts log-depth in metres (depth = exp), plus optionally the log-scale of a Laplacian
  (confidence = exp(-log_scale)) for CroCo-Stereo's Laplacian NLL;
- pose: the decoder tokens, each concatenated with Fourier features of its grid position
  (RoPE leaves no absolute position in the tokens), go through a token MLP, are mean-pooled and
  an MLP gives 9 numbers: a 6D rotation (first two columns of R, made orthonormal by
  Gram-Schmidt, Zhou et al. CVPR 2019, https://arxiv.org/abs/1812.07035) and a translation
  direction (unit vector).

Conventions: `R, t` map camera-2 coordinates to camera 1, `x_cam1 = R @ x_cam2 + t`, OpenCV
camera axes (x right, y down, z forward); only the direction of `t` is observable.
Inputs are RGB floats in 0..255, ImageNet-normalised inside the model (so the exported graph
takes raw pixels).

Checkpoint: a `head` artefact named `pair_geometry` (`checkpoints.artifact`). Weights licence:
whatever the backbone was initialised from; the official CroCo weights are CC BY-NC-SA 4.0
(non-commercial), recorded in the artefact and warned about on load. ONNX export:
`deploy.export_onnx(model, path)`, with the names from `export_names`.
"""
import logging
import math
import os
from pathlib import Path

from timm.layers import Mlp
import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from embodied_vision.checkpoints import CheckpointError, load_head, load_state_strict
from embodied_vision.checkpoints.artifact import is_artifact, read_artifact, save_artifact
from embodied_vision.encoders import create_encoder
from embodied_vision.encoders.croco import IMAGENET_MEAN, IMAGENET_STD, CroCoPair
from embodied_vision.layers.dpt import DPTHead

__all__ = ['HEAD_NAME', 'PairGeometryModel', 'PoseHead', 'create_pair_geometry_model',
           'croco_dpt_hooks', 'load_pair_geometry_model', 'matrix_to_rotation_6d',
           'rotation_6d_to_matrix', 'save_pair_geometry_model']

_logger = logging.getLogger(__name__)

HEAD_NAME = 'pair_geometry'   # its name in the artefact envelope
_LOG_DEPTH_RANGE = (-8.0, 8.0)   # exp -> 0.3 mm .. 3 km, keeps exp finite in fp16 too
_MAX_LOG_SCALE = 6.0


# ------------------------------------------------------------------------ helpers
def croco_dpt_hooks(enc_depth: int, dec_depth: int) -> list[int]:
    """Indices into `[encoder block outputs] + [decoder block outputs]` for the DPT head.

    CroCo-Stereo: `enc_depth + dec_depth - 1 - i * step` for i = 3..0, step 3/4/8 for decoder
    depth 8/12/24 (B+Small [10, 13, 16, 19], B+Base [11, 15, 19, 23], L+Base [23, 27, 31, 35]);
    here `step = ceil(dec_depth / 3)`, which gives the same steps, and indices below 0 (tiny
    models) are clipped to 0.
    """
    if enc_depth < 1 or dec_depth < 1:
        raise ValueError(f'need enc_depth, dec_depth >= 1, got {enc_depth}, {dec_depth}')
    last = enc_depth + dec_depth - 1
    step = math.ceil(dec_depth / 3)
    return [max(0, last - i * step) for i in (3, 2, 1, 0)]


def rotation_6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """`(..., 6)` = two 3-vectors (columns 1 and 2 of R, unnormalised) -> `(..., 3, 3)` R.

    Gram-Schmidt: `b1 = a1/|a1|`, `b2 = normalise(a2 - (b1.a2) b1)`, `b3 = b1 x b2`;
    the result is orthonormal with determinant +1 (Zhou et al. 2019).
    """
    a1, a2 = x[..., :3], x[..., 3:6]
    b1 = F.normalize(a1, dim=-1, eps=1e-8)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=1e-8)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def matrix_to_rotation_6d(rotation: torch.Tensor) -> torch.Tensor:
    """`(..., 3, 3)` -> `(..., 6)`: the first two columns, column 1 first."""
    return torch.cat((rotation[..., :, 0], rotation[..., :, 1]), dim=-1)


def _grid_fourier(grid: tuple[int, int], frequencies: int, device, dtype) -> torch.Tensor:
    """`(gh * gw, 4 * frequencies)` sin/cos of x and y in [-1, 1] at `pi * 2^k`, row-major."""
    ys = torch.linspace(-1.0, 1.0, grid[0], device=device, dtype=torch.float32)
    xs = torch.linspace(-1.0, 1.0, grid[1], device=device, dtype=torch.float32)
    yy, xx = torch.meshgrid(ys, xs, indexing='ij')
    scales = math.pi * 2.0 ** torch.arange(frequencies, device=device, dtype=torch.float32)
    angles = torch.cat((xx.reshape(-1, 1) * scales, yy.reshape(-1, 1) * scales), dim=1)
    return torch.cat((angles.sin(), angles.cos()), dim=1).to(dtype)


class PoseHead(nn.Module):
    """Decoder tokens -> `(B, 9)`: 6D rotation (unnormalised) + translation (unnormalised).

    Args:
        dim: decoder token width.
        hidden: width of the token MLP and of the output MLP.
        frequencies: Fourier frequencies of the token grid position (4 * this channels).
    """

    def __init__(self, dim: int, hidden: int = 256, frequencies: int = 4):
        super().__init__()
        self.frequencies = frequencies
        self.token_mlp = Mlp(dim + 4 * frequencies, hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.out = Mlp(hidden, hidden, 9)
        # Start at the identity rotation with small perturbations.
        nn.init.normal_(self.out.fc2.weight, std=0.01)
        with torch.no_grad():
            self.out.fc2.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0, 0, 0, 0]))

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        pos = _grid_fourier(grid, self.frequencies, tokens.device, tokens.dtype)
        pos = pos.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        x = self.token_mlp(torch.cat((tokens, pos), dim=-1)).mean(dim=1)
        return self.out(self.norm(x))


# -------------------------------------------------------------------------- model
class PairGeometryModel(nn.Module):
    """CroCo pair backbone + DPT depth head (view 1) + relative pose head.

    Args:
        backbone: a `CroCoPair` (from `create_encoder`); its `prediction_head` is dropped.
        depth_confidence: also predict a per-pixel Laplacian log-scale (confidence).
        dpt_layer_dims: DPT reassembly widths (CroCo: 96, 192, 384, 768).
        dpt_feature_dim: DPT fusion width (256).
        dpt_last_dim: DPT width before the output conv (32).
        pose_hidden: pose head width.
        pose_frequencies: Fourier frequencies of the token positions in the pose head.
        hooks: four indices into the encoder + decoder block outputs (default
            `croco_dpt_hooks`).
    """

    def __init__(self, backbone: CroCoPair, depth_confidence: bool = False,
                 dpt_layer_dims: tuple[int, ...] = (96, 192, 384, 768),
                 dpt_feature_dim: int = 256, dpt_last_dim: int = 32, pose_hidden: int = 256,
                 pose_frequencies: int = 4, hooks: list[int] | None = None):
        super().__init__()
        if not isinstance(backbone, CroCoPair):
            raise TypeError(f'backbone must be a CroCoPair (a two-view CroCo model such as '
                            f'croco_v2_pair_vit_base_smalldec), got {type(backbone).__name__}')
        enc_depth, dec_depth = len(backbone.enc_blocks), len(backbone.dec_blocks)
        hooks = list(hooks) if hooks is not None else croco_dpt_hooks(enc_depth, dec_depth)
        if len(hooks) != 4 or any(not 0 <= h < enc_depth + dec_depth for h in hooks):
            raise ValueError(f'hooks={hooks} must be 4 indices in [0, {enc_depth + dec_depth})')
        self.backbone = backbone
        backbone.prediction_head = nn.Identity()   # pixel reconstruction is not used here
        backbone.mask_token.requires_grad_(False)   # no masking downstream
        self.hooks = hooks
        self.head_config = {
            'depth_confidence': bool(depth_confidence),
            'dpt_layer_dims': [int(d) for d in dpt_layer_dims],
            'dpt_feature_dim': int(dpt_feature_dim), 'dpt_last_dim': int(dpt_last_dim),
            'pose_hidden': int(pose_hidden), 'pose_frequencies': int(pose_frequencies),
            'hooks': list(hooks)}
        self.depth_confidence = bool(depth_confidence)
        in_dims = [backbone.enc_embed_dim if h < enc_depth else backbone.dec_embed_dim
                   for h in hooks]
        self.depth_head = DPTHead(in_dims, 2 if depth_confidence else 1, dpt_layer_dims,
                                  dpt_feature_dim, dpt_last_dim)
        self.pose_head = PoseHead(backbone.dec_embed_dim, pose_hidden, pose_frequencies)
        self.register_buffer('pixel_mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255,
                             persistent=False)
        self.register_buffer('pixel_std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255,
                             persistent=False)
        self.backbone_frozen = False
        self.backbone_source = ''

    # ------------------------------------------------------------------ properties
    @property
    def input_size(self) -> tuple[int, int]:
        """`(H, W)` the model was built (and trained) for; inputs are resized to this."""
        return tuple(self.backbone.img_size)

    @property
    def patch_size(self) -> int:
        return self.backbone.patch_size

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Stop (or restart) gradients into the backbone; frozen, it runs under no_grad."""
        self.backbone_frozen = bool(frozen)
        for name, param in self.backbone.named_parameters():
            param.requires_grad_(not frozen and name != 'mask_token')

    # --------------------------------------------------------------------- forward
    def _check_pair(self, pair: torch.Tensor) -> tuple[int, int]:
        if pair.ndim != 4 or pair.shape[1] != 6:
            raise ValueError('expected an image pair (B,6,H,W) (view 1 in channels 0-2, view 2 '
                             f'in 3-5), got {tuple(pair.shape)}')
        height, width = pair.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f'image size {(height, width)} is not a multiple of patch_size='
                             f'{self.patch_size} (the model was trained at {self.input_size})')
        return height, width

    def _backbone_tokens(self, pair: torch.Tensor) -> tuple[list, torch.Tensor, tuple]:
        """`(hooked token maps, final decoder tokens, grid)` of a raw 0..255 pair."""
        pair = pair.float() if not pair.is_floating_point() else pair
        img1 = (pair[:, :3] - self.pixel_mean.to(pair.dtype)) / self.pixel_std.to(pair.dtype)
        img2 = (pair[:, 3:] - self.pixel_mean.to(pair.dtype)) / self.pixel_std.to(pair.dtype)
        backbone, batch = self.backbone, pair.shape[0]
        grid = backbone._grid(img1)
        enc, dec = [], []
        feats = backbone.encode(torch.cat((img1, img2), dim=0), intermediates=enc)
        tokens = backbone.decode(feats[:batch], feats[batch:], grid, intermediates=dec)
        layers = [t[:batch] for t in enc[:-1]] + [feats[:batch]] + dec[:-1] + [tokens]
        return [layers[h] for h in self.hooks], tokens, grid

    def forward_outputs(self, pair: torch.Tensor, depth: bool = True,
                        pose: bool = True) -> dict:
        """Raw head outputs for a `(B, 6, H, W)` 0..255 pair (what the losses use).

        Returns `log_depth (B, 1, H, W)`, `log_scale (B, 1, H, W)` or None (Laplacian
        log-scale of log-depth), `rotation_6d (B, 6)`, `rotation (B, 3, 3)`,
        `translation_raw (B, 3)`, `translation (B, 3)` unit vector; `depth=False` /
        `pose=False` skip a head (its keys are then absent).
        """
        size = self._check_pair(pair)
        if self.backbone_frozen:
            with torch.no_grad():
                hooked, tokens, grid = self._backbone_tokens(pair)
        else:
            hooked, tokens, grid = self._backbone_tokens(pair)
        out = {}
        if depth:
            dense = self.depth_head(hooked, grid, size)
            out['log_depth'] = dense[:, :1].clamp(*_LOG_DEPTH_RANGE)
            out['log_scale'] = None
            if self.depth_confidence:
                out['log_scale'] = _MAX_LOG_SCALE * torch.tanh(dense[:, 1:2] / _MAX_LOG_SCALE)
        if pose:
            raw = self.pose_head(tokens, grid)
            out.update({'rotation_6d': raw[:, :6], 'rotation': rotation_6d_to_matrix(raw[:, :6]),
                        'translation_raw': raw[:, 6:],
                        'translation': F.normalize(raw[:, 6:], dim=-1, eps=1e-8)})
        return out

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(depth (B, 1, H, W) metres, pose (B, 9))` for a `(B, 6, H, W)` 0..255 pair.

        `pose[:, :6]` = first two columns of R (orthonormal; `rotation_6d_to_matrix` rebuilds
        R), `pose[:, 6:]` = unit translation direction; `x_cam1 = R @ x_cam2 + t`.
        """
        out = self.forward_outputs(pair)
        pose = torch.cat((matrix_to_rotation_6d(out['rotation']), out['translation']), dim=1)
        return out['log_depth'].exp(), pose

    @torch.inference_mode()
    def predict(self, img1: torch.Tensor, img2: torch.Tensor) -> dict:
        """Depth of view 1 and the pose of camera 2 in camera 1.

        Args:
            img1, img2: `(B, 3, H, W)` RGB in 0..255 (float or uint8), H and W multiples of
                `patch_size` (best at `input_size`).

        Returns:
            `depth (B, H, W)` float32 metres, `rotation (B, 3, 3)` and `translation (B, 3)`
            (unit) with `x_cam1 = R @ x_cam2 + t`; `confidence (B, H, W)` when the model
            predicts one.
        """
        if img1.ndim != 4 or img1.shape[1] != 3 or img1.shape != img2.shape:
            raise ValueError(f'expected two (B,3,H,W) images of one shape, got '
                             f'{tuple(img1.shape)} and {tuple(img2.shape)}')
        out = self.forward_outputs(torch.cat((img1, img2), dim=1))
        result = {'depth': out['log_depth'][:, 0].exp().float(),
                  'rotation': out['rotation'].float(),
                  'translation': out['translation'].float()}
        if out['log_scale'] is not None:
            result['confidence'] = (-out['log_scale'][:, 0]).exp().float()
        return result

    def example_inputs(self, batch_size: int = 2, size: tuple[int, int] | None = None,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor]:
        """One random `(B, 6, H, W)` 0..255 pair, for export and parity checks."""
        size = tuple(size or self.input_size)
        return (torch.rand((batch_size, 6, *size), generator=generator) * 255.0,)

    def dynamic_shapes(self, n_inputs: int = 1, max_batch: int = 256) -> tuple[dict, ...]:
        """`torch.export` dynamic shapes: the batch axis is dynamic, H and W static."""
        batch = torch.export.Dim('batch', min=1, max=max(2, max_batch))
        return tuple({0: batch} for _ in range(n_inputs))

    def export_names(self, n_inputs: int = 1) -> tuple[list[str], list[str]]:
        """Input and output names of the exported graph (`deploy.export_onnx`)."""
        return ['pair'], ['depth', 'pose']

    def config(self) -> dict:
        """The JSON config that rebuilds this model (`load_pair_geometry_model`)."""
        return {
            'backbone': self.backbone.name, 'backbone_kwargs': dict(self.backbone.init_kwargs),
            'backbone_source': self.backbone_source, 'head': dict(self.head_config),
            'input_size': list(self.input_size), 'patch_size': self.patch_size,
            'outputs': {'depth': 'metres of view 1', 'rotation': 'x_cam1 = R @ x_cam2 + t',
                        'translation': 'unit direction of t'},
        }


# ----------------------------------------------------------------------- building
def _backbone_from_checkpoint(backbone: str, path: str, overrides: dict):
    if not is_artifact(path):   # official CroCo file: the registry entry converts and checks
        return create_encoder(backbone, checkpoint=path, **overrides)
    found = read_artifact(path)
    if found.kind != 'encoder':
        raise CheckpointError(f'{path} is a {found.kind} {found.name!r}, not a backbone; a '
                              'pair-geometry model loads with load_pair_geometry_model(path)')
    state, config = found.state, {'name': found.name, **found.config}
    name = config.get('name', '')
    if name != backbone.split('.')[0]:
        _logger.info('backbone %s: using the architecture recorded in %s (%s)', backbone,
                     path, name)
    model = create_encoder(name, **{**config.get('kwargs', {}), **overrides})
    load_state_strict(model, state, f'{path} (embodied_vision checkpoint)')
    model.weights_license, model.non_commercial = found.license, found.non_commercial
    return model


def create_pair_geometry_model(backbone: str = 'croco_v2_pair_vit_base_smalldec',
                               backbone_checkpoint: str | None = None,
                               head_kwargs: dict | None = None,
                               **backbone_overrides) -> PairGeometryModel:
    """A `PairGeometryModel` on a registered two-view CroCo backbone (eval mode).

    Args:
        backbone: registry name of a `CroCoPair` model.
        backbone_checkpoint: None (random init), a directory / `.safetensors` in our format
            (e.g. the `encoder/` exported by CroCo pretraining; its recorded architecture is
            used) or an official CroCo file (`CroCo_V2_ViTBase_SmallDecoder.pth`, ...).
        head_kwargs: `PairGeometryModel` head arguments (`depth_confidence`, `dpt_*`, ...).
        **backbone_overrides: architecture arguments, e.g. `img_size=(224, 320)` (the input
            size), or the sizes of a small model.
    """
    if backbone_checkpoint is None:
        model = create_encoder(backbone, **backbone_overrides)
    else:
        model = _backbone_from_checkpoint(backbone, str(backbone_checkpoint),
                                          backbone_overrides)
    if not isinstance(model, CroCoPair):
        raise ValueError(f'backbone {backbone!r} is not a two-view CroCo model; use e.g. '
                         'croco_v2_pair_vit_base_smalldec')
    geometry = PairGeometryModel(model, **(head_kwargs or {}))
    geometry.backbone_source = str(backbone_checkpoint or '')
    return geometry.eval()


def save_pair_geometry_model(model: PairGeometryModel, directory: str | os.PathLike) -> Path:
    """Write the model as a `head` artefact (`checkpoints.artifact`) to `directory`."""
    return save_artifact(directory, model, 'head', HEAD_NAME, model.config())


def load_pair_geometry_model(directory: str | os.PathLike,
                             map_location: str | torch.device = 'cpu') -> PairGeometryModel:
    """Rebuild a model written by `save_pair_geometry_model` (eval mode, on `map_location`).

    Warns when the backbone's weights are non-commercial.
    """
    def build(config: dict) -> PairGeometryModel:
        backbone = create_encoder(config['backbone'], **config.get('backbone_kwargs', {}))
        return PairGeometryModel(backbone, **dict(config.get('head', {})))
    return load_head(directory, HEAD_NAME, build, 'save_pair_geometry_model', map_location)
