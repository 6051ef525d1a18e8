"""I2P-MAE's 2D signals: depth projections, a frozen 2D ViT, saliency and back-projected
targets (Zhang et al., CVPR 2023, https://arxiv.org/abs/2212.06785, sections 3.2-3.3).

- `depth_views`: three orthographic depth images per cloud, by cyclic axis permutation
  (plane (x, y) seen along z, (z, x) along y, (y, z) along x). The grid step is the largest
  in-plane extent over `size - 3` pixels with the object centered; every point splats a
  `splat` x `splat` square, a pixel holds the **sum** of the depth coordinates landing on
  it, then `sigmoid` (empty pixels read 0.5), replicated to 3 channels and
  ImageNet-normalised.
- `ImageGuide`: a frozen ViT run on those images. It returns the patch features (CLIP: after
  `ln_post` and `proj`; a registered ViT, e.g. a CroCo encoder pretrained here: after its
  final norm) and the last block's attention as saliency: the CLS query's row over the
  patches where the model has a CLS token (CLIP), else the attention each patch receives,
  averaged over queries (CroCo has none).
- `back_project`: a `(h, w)` map bicubically upsampled to the image size and read at each
  3D point's pixel (no splat). It samples the bicubic surface at the pixel centers with
  `grid_sample` (border padding), the same values as upsampling the whole map and
  gathering, without the `(C, size, size)` maps.
- `ImageGuide.signals` turns one batch into the two things pretraining needs: the coarse
  tokens' saliency (averaged over the 3 views) for the masking, and each scale-1 group's
  targets: the features at its members' pixels, views concatenated on the channel axis.
"""
from dataclasses import dataclass
import os

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from embodied_vision.layers.point_tokens import PointGroups
from embodied_vision.layers.rope import apply_rope_2d
from embodied_vision.utils import require_package

__all__ = ['DepthViews', 'GuideSignals', 'IMAGENET_MEAN', 'IMAGENET_STD', 'ImageGuide',
           'VIEW_AXES', 'back_project', 'depth_views']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: (in-plane u, in-plane v, depth) axes of the three views.
VIEW_AXES = ((0, 1, 2), (2, 0, 1), (1, 2, 0))


@dataclass
class DepthViews:
    """Depth images of a batch and the grid that made them.

    Attributes:
        images: `(B, V, 3, size, size)` ImageNet-normalised depth images.
        center: `(B, V, 2)` in-plane center of each view's grid.
        step: `(B, V)` grid step (world units per pixel).
        size: image side.
    """

    images: torch.Tensor
    center: torch.Tensor
    step: torch.Tensor
    size: int

    def pixels(self, points: torch.Tensor) -> torch.Tensor:
        """`(B, V, M, 2)` int64 `(u, v)` pixel of each point of `(B, M, 3)` in each view,
        clamped to the image."""
        plane = torch.stack([points[..., [a, b]] for a, b, _ in VIEW_AXES], dim=1)
        uv = (plane - self.center[:, :, None]) / self.step[:, :, None, None] + self.size / 2
        return uv.floor().long().clamp_(0, self.size - 1)


def depth_views(points: torch.Tensor, size: int = 224, splat: int = 5) -> DepthViews:
    """The three orthographic depth images of `(B, N, 3)` clouds (see the module docstring)."""
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f'points must be (B, N, 3), got {tuple(points.shape)}')
    if size < 8 or splat < 1 or splat % 2 == 0:
        raise ValueError(f'size={size} must be >= 8 and splat={splat} a positive odd number')
    b, n, _ = points.shape
    points = points.float()
    plane = torch.stack([points[..., [u, v]] for u, v, _ in VIEW_AXES], dim=1)   # (B,V,N,2)
    depth = torch.stack([points[..., d] for _, _, d in VIEW_AXES], dim=1)        # (B,V,N)
    low, high = plane.amin(dim=2), plane.amax(dim=2)
    center = (low + high) / 2
    step = ((high - low).amax(dim=2) / (size - 3)).clamp_min(1e-8)
    views = DepthViews(torch.empty(0), center, step, size)
    uv = views.pixels(points)                                                  # (B,V,N,2)
    r = splat // 2
    offsets = torch.arange(-r, r + 1, device=points.device)
    du, dv = torch.meshgrid(offsets, offsets, indexing='xy')
    u = uv[..., 0, None] + du.reshape(-1)                                      # (B,V,N,S2)
    v = uv[..., 1, None] + dv.reshape(-1)
    inside = (u >= 0) & (u < size) & (v >= 0) & (v < size)
    image_id = torch.arange(b * 3, device=points.device).reshape(b, 3, 1, 1)
    flat = (image_id * size + v.clamp(0, size - 1)) * size + u.clamp(0, size - 1)
    values = (depth[..., None] * inside).expand_as(flat)
    canvas = torch.zeros(b * 3 * size * size, device=points.device)
    canvas.index_add_(0, flat.reshape(-1), values.reshape(-1))
    image = torch.sigmoid(canvas.reshape(b, 3, 1, size, size)).expand(-1, -1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN, device=points.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=points.device).view(1, 1, 3, 1, 1)
    views.images = (image - mean) / std
    return views


def back_project(maps: torch.Tensor, pixels: torch.Tensor, size: int) -> torch.Tensor:
    """Values of `(B, V, C, h, w)` maps, bicubically upsampled to `size`, at integer
    `(B, V, M, 2)` pixels: `(B, V, M, C)`."""
    b, v, c, h, w = maps.shape
    grid = (pixels.to(maps.dtype) + 0.5) / size * 2 - 1                         # (B,V,M,2)
    out = F.grid_sample(maps.reshape(b * v, c, h, w), grid.reshape(b * v, 1, -1, 2),
                        mode='bicubic', padding_mode='border', align_corners=False)
    return out.reshape(b, v, c, -1).transpose(2, 3)


@dataclass
class GuideSignals:
    """What pretraining takes from the 2D model.

    Attributes:
        saliency: `(B, G_2)` per coarse token, averaged over the views (masking scores).
        targets: `(B, G_1, K_1, V * C)` 2D features at each scale-1 group's members.
        views: the depth images they came from.
    """

    saliency: torch.Tensor
    targets: torch.Tensor
    views: DepthViews


class ImageGuide(nn.Module):
    """A frozen 2D ViT that gives I2P-MAE its saliency and its 2D targets.

    Args:
        vit: a registered ViT encoder (`CroCoEncoder`: `patch_embed`, `enc_blocks`,
            `enc_norm`) or an open_clip `VisionTransformer` (`conv1`, `class_embedding`,
            `transformer.resblocks`, `ln_post`, `proj`).
        image_size: side of the depth images (224 for CLIP ViT-B/16).
        splat: side of each point's square in the depth images (5 at 224).
    """

    def __init__(self, vit: nn.Module, image_size: int = 224, splat: int = 5):
        super().__init__()
        if hasattr(vit, 'enc_blocks') and hasattr(vit, 'patch_embed'):
            self.kind, self.feature_dim = 'vit', int(vit.enc_norm.normalized_shape[0])
            self.patch = int(vit.patch_size)
        elif hasattr(vit, 'transformer') and hasattr(vit, 'class_embedding'):
            self.kind, self.feature_dim = 'clip', int(vit.proj.shape[1])
            self.patch = int(vit.conv1.kernel_size[0])
        else:
            raise TypeError(f'{type(vit).__name__} is neither a registered ViT encoder (with '
                            'patch_embed / enc_blocks) nor an open_clip VisionTransformer')
        if image_size % self.patch:
            raise ValueError(f'image_size={image_size} is not a multiple of the ViT patch '
                             f'{self.patch}')
        self.vit = vit.eval().requires_grad_(False)
        self.image_size, self.splat = int(image_size), int(splat)
        self.grid = self.image_size // self.patch

    @classmethod
    def from_clip(cls, path: str | os.PathLike, model: str = 'ViT-B-16', **kwargs):
        """OpenAI CLIP (the paper's ViT-B/16) from a user-supplied open_clip checkpoint."""
        open_clip = require_package('open_clip', extra='clip',
                                    purpose='loading CLIP as the I2P-MAE 2D guide')
        clip = open_clip.create_model(model, pretrained=str(path))
        return cls(clip.visual, **kwargs)

    def train(self, mode: bool = True):
        super().train(mode)
        self.vit.eval()  # frozen: never in training mode
        return self

    def _vit(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vit = self.vit
        grid = (images.shape[-2] // self.patch, images.shape[-1] // self.patch)
        x = vit.patch_embed(images)
        if vit.enc_pos_embed is not None:
            x = x + vit._table(vit.enc_pos_embed, grid).to(x.dtype)
        rope = None if vit.enc_rope is None else vit.enc_rope(*grid, device=x.device)
        for block in vit.enc_blocks[:-1]:
            x = block(x, rope)
        last = vit.enc_blocks[-1]
        attn = _attention_weights(last.attn, last.norm1(x), rope)                # (B,N,N)
        features = vit.enc_norm(last(x, rope))
        return features, attn.mean(dim=(1, 2))  # over heads and queries: what each gets

    def _clip(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vit = self.vit
        x = vit.conv1(images).flatten(2).transpose(1, 2)                          # (B,N,C)
        cls = vit.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = vit.ln_pre(torch.cat([cls, x], dim=1) + vit.positional_embedding.to(x.dtype))
        batch_first = getattr(vit.transformer, 'batch_first', True)
        x = x if batch_first else x.transpose(0, 1)
        blocks = vit.transformer.resblocks
        for block in blocks[:-1]:
            x = block(x)
        last = blocks[-1]
        h = last.ln_1(x)
        out, attn = last.attn(h, h, h, need_weights=True, average_attn_weights=True)
        x = x + last.ls_1(out)
        x = x + last.ls_2(last.mlp(last.ln_2(x)))
        x = x if batch_first else x.transpose(0, 1)
        features = vit.ln_post(x[:, 1:]) @ vit.proj
        return features, attn[:, 0, 1:]

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, 3, S, S)` -> patch features `(B, C, h, w)` and saliency `(B, h, w)`."""
        dtype = next(self.vit.parameters()).dtype
        features, saliency = (self._vit if self.kind == 'vit' else self._clip)(
            images.to(dtype))
        b, g = images.shape[0], self.grid
        return (features.float().transpose(1, 2).reshape(b, -1, g, g),
                saliency.float().reshape(b, g, g))

    @torch.no_grad()
    def embed(self, points: torch.Tensor) -> torch.Tensor:
        """`(B, N, 3)` clouds -> `(B, V * C)`: each depth view's patch features max-pooled,
        views concatenated. The 2D model's own view of the cloud, to probe how much a guide
        knows (e.g. its linear-SVM accuracy beside the 3D encoders')."""
        views = depth_views(points, self.image_size, self.splat)
        b, v = views.images.shape[:2]
        features, _ = self(views.images.flatten(0, 1))
        return features.amax(dim=(2, 3)).reshape(b, -1)

    def signals(self, points: torch.Tensor, scales: list[PointGroups]) -> GuideSignals:
        """Saliency of the coarse tokens and 2D targets of the scale-1 groups of `points`."""
        views = depth_views(points, self.image_size, self.splat)
        b, v = views.images.shape[:2]
        features, saliency = self(views.images.flatten(0, 1))
        features = features.reshape(b, v, *features.shape[1:])
        saliency = saliency.reshape(b, v, 1, self.grid, self.grid)
        coarse = back_project(saliency, views.pixels(scales[-1].centers), self.image_size)
        members = scales[1].members                                           # (B,G,K,3)
        g, k = members.shape[1:3]
        targets = back_project(features, views.pixels(members.reshape(b, g * k, 3)),
                               self.image_size)                               # (B,V,GK,C)
        targets = targets.permute(0, 2, 1, 3).reshape(b, g, k, -1)
        return GuideSignals(coarse[..., 0].mean(dim=1), targets, views)


def _attention_weights(attn: nn.Module, x: torch.Tensor, rope) -> torch.Tensor:
    """`(B, heads, N, N)` softmax weights of one of our `layers.Attention` modules."""
    b, n, c = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = (apply_rope_2d(qkv[:2], *rope) if rope is not None else qkv[:2]).unbind(0)
    return ((q @ k.transpose(-2, -1)) * attn.head_dim ** -0.5).softmax(dim=-1)
