"""Multi-scale point tokens of Point-M2AE / I2P-MAE: grouping, mini-PointNet embedding and
token merging, and the multi-scale visibility masks.

Point-M2AE (https://arxiv.org/abs/2205.14401) and I2P-MAE (https://arxiv.org/abs/2212.06785)
tokenise a cloud at three scales. Each scale runs farthest point sampling and kNN **on the
previous scale's centers** (scale 0 on the raw points), so a scale-i token is a group of k
scale-(i-1) tokens:

- `group_scales` returns one `PointGroups` per scale: centers, center-relative
  neighbourhoods and the member indices (per cloud, and flattened with a batch offset so that
  they gather rows of a `(B * G, C)` token tensor). Only scale 0 needs a sampler: FPS
  started at index 0 on centers that are themselves in FPS order returns `0, 1, ..., g-1`
  (each next center already maximised the distance to the chosen ones over a superset), so
  the coarser centers are prefixes of the finer ones, exactly as upstream's FPS gives them;
- `TokenEmbed` is the mini-PointNet: offsets (scale 0) or member features (scales >= 1,
  "token merging") -> shared MLP -> group max concatenated back -> MLP -> group max. Module
  names (`first_conv.{0,1,3}`, `second_conv.{0,1,3}`) are the released checkpoint's;
- `propagate_visibility` makes the finer scales' masks from the coarsest: a finer token is
  visible iff it is a member of a visible coarser token. With every coarse token visible
  (evaluation) it still leaves out finer tokens that no coarse group references, as
  upstream does.
"""
from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from embodied_vision.layers.point_ops import (
    farthest_point_sample,
    flatten_indices,
    gather_points,
    knn,
)

__all__ = ['PointGroups', 'TokenEmbed', 'group_scales', 'mask_coarse_tokens',
           'propagate_visibility']


@dataclass
class PointGroups:
    """One scale's groups.

    Attributes:
        centers: `(B, G, 3)` group centers (a subset of the previous scale's centers).
        neighborhood: `(B, G, K, 3)` members minus their center.
        members: `(B, G, K, 3)` members in absolute coordinates.
        index: `(B, G, K)` member indices into the previous scale (its points or tokens),
            nearest first.
        n_source: points (or tokens) of the previous scale.
    """

    centers: torch.Tensor
    neighborhood: torch.Tensor
    members: torch.Tensor
    index: torch.Tensor
    n_source: int = 0  # points (or tokens) of the previous scale

    @property
    def flat_index(self) -> torch.Tensor:
        """`index` as rows `b * n_source + j` of the flattened previous scale."""
        return flatten_indices(self.index, self.n_source)


def _check_scales(num_groups, group_sizes) -> tuple[list[int], list[int]]:
    groups, sizes = [int(g) for g in num_groups], [int(k) for k in group_sizes]
    if len(groups) != len(sizes) or not groups:
        raise ValueError(f'num_groups {groups} and group_sizes {sizes} need one entry per '
                         'scale')
    if any(b > a for a, b in zip(groups, groups[1:])) or min(groups) < 1 or min(sizes) < 1:
        raise ValueError(f'num_groups {groups} must be positive and non-increasing, '
                         f'group_sizes {sizes} positive')
    return groups, sizes


def group_scales(points: torch.Tensor, num_groups, group_sizes,
                 centers_index: list[torch.Tensor] | None = None) -> list[PointGroups]:
    """FPS + kNN at every scale, each on the previous scale's centers.

    Args:
        points: `(B, N, 3)` float cloud.
        num_groups: groups per scale, e.g. `[512, 256, 64]`.
        group_sizes: members per group, e.g. `[16, 8, 8]`.
        centers_index: per scale, the FPS indices (`(B, G_i)` into the previous scale)
            when computed elsewhere (outside an exported graph), or None to sample here.
    """
    groups, sizes = _check_scales(num_groups, group_sizes)
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f'points must be (B, N, 3), got {tuple(points.shape)}')
    if points.shape[1] < groups[0]:
        raise ValueError(f'{points.shape[1]} points are fewer than the {groups[0]} groups of '
                         'the first scale')
    if centers_index is not None and len(centers_index) != len(groups):
        raise ValueError(f'centers_index has {len(centers_index)} entries, expected '
                         f'{len(groups)} (one per scale)')
    out, source = [], points
    for i, (g, k) in enumerate(zip(groups, sizes)):
        if k > source.shape[1]:
            raise ValueError(f'group_sizes[{i}]={k} exceeds the {source.shape[1]} points of '
                             'the scale it groups')
        if centers_index is not None and centers_index[i] is not None:
            centers = gather_points(source, centers_index[i])
        elif i == 0:
            centers = gather_points(source, farthest_point_sample(source, g))
        else:  # FPS of centers in FPS order, from index 0, returns 0..g-1: the prefix
            centers = source[:, :g]
        _, index = knn(centers, source, k)
        members = gather_points(source, index)
        out.append(PointGroups(centers, members - centers[:, :, None], members, index,
                               n_source=source.shape[1]))
        source = centers
    return out


def _conv_bn_relu_conv(c_in: int, c_hidden: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_hidden, 1), nn.BatchNorm1d(c_hidden),
                         nn.ReLU(inplace=True), nn.Conv1d(c_hidden, c_out, 1))


class TokenEmbed(nn.Module):
    """Mini-PointNet over the members of each group: `(B, G, K, C_in) -> (B, G, C_out)`.

    Scale 0 (`in_channels=3`, offsets): 3 -> 128 -> 256, group max concatenated (512),
    512 -> 512 -> `out_channels`. Merging scales (`in_channels` = the previous width):
    C -> C -> C, concatenated (2C), 2C -> `out_channels` -> `out_channels`.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        if in_channels == 3:
            self.first_conv = _conv_bn_relu_conv(3, 128, 256)
            self.second_conv = _conv_bn_relu_conv(512, 512, out_channels)
        else:
            self.first_conv = _conv_bn_relu_conv(in_channels, in_channels, in_channels)
            self.second_conv = _conv_bn_relu_conv(2 * in_channels, out_channels, out_channels)

    def forward(self, members: torch.Tensor) -> torch.Tensor:
        """Channels-last: the 1x1 convolutions run as matrix products over all members, and
        the concatenated group max meets its half of the second layer's weights once per
        group instead of once per member (`W [g; x] = W_g g + W_x x`)."""
        b, g, k, c = members.shape
        if c != self.in_channels:
            raise ValueError(f'token embedding expects {self.in_channels} channels per member, '
                             f'got {tuple(members.shape)}')
        conv0, norm0, act0, conv1 = self.first_conv
        x = act0(norm0(F.linear(members.reshape(b * g * k, c), conv0.weight[..., 0],
                                conv0.bias)))
        x = F.linear(x, conv1.weight[..., 0], conv1.bias)                    # (BGK, C1)
        width = x.shape[1]
        pooled = x.view(b * g, k, width).amax(dim=1)                         # (BG, C1)
        conv2, norm2, act2, conv3 = self.second_conv
        weight = conv2.weight[..., 0]                                        # (C2, 2 C1)
        local = F.linear(x, weight[:, width:]).view(b * g, k, -1)
        glob = F.linear(pooled, weight[:, :width], conv2.bias)[:, None]
        x = act2(norm2((local + glob).reshape(b * g * k, -1)))
        x = F.linear(x, conv3.weight[..., 0], conv3.bias)
        return x.view(b * g, k, self.out_channels).amax(dim=1).reshape(b, g, self.out_channels)


def mask_coarse_tokens(batch: int, tokens: int, mask_ratio: float,
                       saliency: torch.Tensor | None = None,
                       generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """`(B, G)` bool visibility of the coarsest scale: `int(mask_ratio * G)` tokens masked.

    With `saliency` (`(B, G)` scores, I2P-MAE's 2D-guided masking) a permutation is drawn
    without replacement from `softmax(saliency)` and its first `G - n_masked` entries stay
    visible, so salient tokens tend to stay visible; without it the permutation is uniform
    (Point-M2AE's random masking).
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f'mask_ratio={mask_ratio} must be in [0, 1)')
    visible = tokens - int(mask_ratio * tokens)
    if saliency is None:
        probs = torch.ones(batch, tokens, device=device)
    else:
        if saliency.shape != (batch, tokens):
            raise ValueError(f'saliency must be ({batch}, {tokens}), got '
                             f'{tuple(saliency.shape)}')
        probs = saliency.float().softmax(dim=1)
        device = saliency.device
    order = torch.multinomial(probs, tokens, replacement=False, generator=generator)
    mask = torch.zeros(batch, tokens, dtype=torch.bool, device=order.device)
    return mask.scatter_(1, order[:, :visible], True)


def propagate_visibility(coarse_visible: torch.Tensor,
                         scales: list[PointGroups]) -> list[torch.Tensor]:
    """Visibility of every scale (finest first) from the coarsest's `(B, G_last)` mask.

    A token of scale i is visible iff some visible token of scale i+1 lists it among its
    members (`scales[i + 1].index`)."""
    masks = [coarse_visible]
    for i in range(len(scales) - 1, 0, -1):
        index = scales[i].index                                      # (B, G_i, K) into i-1
        member_of_visible = index.masked_fill(~masks[0][..., None], -1).flatten(1)
        finer = torch.zeros(index.shape[0], scales[i].n_source + 1, dtype=torch.bool,
                            device=index.device)
        # slot n_source collects the masked groups' members (-1 -> last slot), then is cut
        member_of_visible = torch.where(member_of_visible < 0, scales[i].n_source,
                                        member_of_visible)
        finer.scatter_(1, member_of_visible, True)
        masks.insert(0, finer[:, :-1])
    return masks
