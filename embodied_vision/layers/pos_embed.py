"""Fixed 2D sin-cos position tables (MAE / CroCo v1 "cosine") and their resampling.

Layout of a `(grid_h * grid_w, dim)` table, tokens in row-major order:

- the first `dim/2` channels encode the column (x) index, the second `dim/2` the row (y)
  index (upstream names the halves the other way round; the values are what matters);
- each half is `[sin(p * w_k) ..., cos(p * w_k) ...]` with `w_k = 10000 ** (-k / (dim/4))`,
  `k = 0 .. dim/4 - 1`.

Computed in float64 and returned as float32, like the buffers stored in `CroCo.pth`.
"""
from timm.layers import resample_abs_pos_embed
import torch

__all__ = ['resample_pos_embed_2d', 'sincos_1d', 'sincos_pos_embed_2d', 'sincos_pos_embed_3d']


def sincos_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """`(len(positions), dim)` table `[sin(p * w_k) ..., cos(p * w_k) ...]`, float64."""
    if dim % 2:
        raise ValueError(f'dim={dim} must be even for a sin-cos table')
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / temperature ** omega
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=1)


def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int,
                        temperature: float = 10000.0) -> torch.Tensor:
    """`(grid_h * grid_w, dim)` float32 table: x in the first half, y in the second."""
    if dim % 4:
        raise ValueError(f'dim={dim} must be a multiple of 4 for a 2D sin-cos table')
    ys, xs = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing='ij')
    table = torch.cat((sincos_1d(xs.flatten(), dim // 2, temperature),
                       sincos_1d(ys.flatten(), dim // 2, temperature)), dim=1)
    return table.float()


def resample_pos_embed_2d(table: torch.Tensor, old_grid: tuple[int, int],
                          new_grid: tuple[int, int]) -> torch.Tensor:
    """Bicubically resample a `(old_h * old_w, dim)` table to `(new_h * new_w, dim)`.

    This is what upstream CroCo does to run its fixed tables at another grid size
    (`interpolate_pos_embed`, bicubic, no antialiasing). The same grid is returned as is.
    """
    if tuple(old_grid) == tuple(new_grid):
        return table
    out = resample_abs_pos_embed(table[None], list(new_grid), list(old_grid),
                                 num_prefix_tokens=0, interpolation='bicubic',
                                 antialias=False)
    return out[0].to(table.dtype)


def sincos_pos_embed_3d(dim: int, grid: int, temperature: float = 10000.0) -> torch.Tensor:
    """`(grid, grid, grid, dim)` float32 table of NeRF-MAE's `get_3d_sincos_pos_embed`.

    Each third of the channels is a `sincos_1d` table of one axis: the first third encodes
    axis 1 (y), the second axis 0 (x), the last axis 2 (z), as upstream's numpy `meshgrid`
    with its default 'xy' indexing lays them out. `dim` must be a multiple of 6.
    """
    if dim % 6:
        raise ValueError(f'dim={dim} must be a multiple of 6 for a 3D sin-cos table '
                         '(three even thirds)')
    third = sincos_1d(torch.arange(grid), dim // 3, temperature)        # (grid, dim/3)
    x = third[:, None, None, :].expand(grid, grid, grid, -1)
    y = third[None, :, None, :].expand(grid, grid, grid, -1)
    z = third[None, None, :, :].expand(grid, grid, grid, -1)
    return torch.cat((y, x, z), dim=-1).to(torch.float32)
