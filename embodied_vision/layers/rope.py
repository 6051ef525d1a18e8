"""2D rotary position embedding (RoPE-2D) as used by CroCo v2 and DUSt3R.

CroCo v2 (arXiv 2211.10408) rotates queries and keys inside every attention by their patch
position instead of adding a position table to the tokens. Per head of dim `Dh`:

- the first `Dh/2` channels rotate with the row (y) position, the second `Dh/2` with the
  column (x) position;
- inside each half, channel `i` pairs with channel `i + Dh/4` (rotate-half / NeoX pairing,
  not interleaved);
- the angle of pair `j` is `position * base ** (-j / (Dh/4))`, `j = 0 .. Dh/4 - 1`
  (`base` = 100 for the released `RoPE100` models).

The rotation is `t * cos + rotate_half(t) * sin`. Everything here is pure torch without
data-dependent control flow, so it runs on any device and exports with `torch.export` and
to ONNX. `RoPE2D` computes the cos/sin tables of a patch grid once per grid size, device and
dtype and keeps them in a plain dict (never while tracing: exported graphs get them as
constants or as a handful of constant-foldable ops).
"""
import torch
from torch import nn

__all__ = ['RoPE2D', 'apply_rope_2d', 'grid_positions', 'rope_2d_tables']


def grid_positions(grid_h: int, grid_w: int, device=None) -> torch.Tensor:
    """`(grid_h * grid_w, 2)` integer (y, x) positions of a patch grid in row-major order."""
    ys, xs = torch.meshgrid(torch.arange(grid_h, device=device),
                            torch.arange(grid_w, device=device), indexing='ij')
    return torch.stack((ys, xs), dim=-1).flatten(0, 1)


def rope_2d_tables(positions: torch.Tensor, head_dim: int, base: float = 100.0,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The `(cos, signed_sin)` tables of `positions`, each `(..., head_dim)`.

    Args:
        positions: `(..., 2)` (y, x) positions (integer or float).
        head_dim: channels per head; a multiple of 4.
        base: frequency base (100 for CroCo v2).
        dtype: dtype of the returned tables.

    Returns:
        `cos` and `sin` laid out per channel, with the sign of the rotate-half folded into
        `sin` (negative on the first channel of every pair), as `apply_rope_2d` expects.
    """
    if head_dim % 4:
        raise ValueError(f'head_dim={head_dim} must be a multiple of 4 for 2D RoPE')
    quarter = head_dim // 4
    # float32 like the upstream tables the released weights were trained with
    exponent = torch.arange(quarter, device=positions.device, dtype=torch.float32) / quarter
    freqs = 1.0 / (base ** exponent)                                   # (q,)
    angles = positions.to(torch.float32)[..., None] * freqs            # (..., 2, q)
    cos, sin = angles.cos(), angles.sin()
    # Channel layout (axis, pair member, j): axis 0 = y, 1 = x; both members share the angle.
    cos = torch.stack((cos, cos), dim=-2).flatten(-3)
    sin = torch.stack((-sin, sin), dim=-2).flatten(-3)
    return cos.to(dtype), sin.to(dtype)


def apply_rope_2d(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `t` (`(..., N, head_dim)`) by tables from `rope_2d_tables` broadcast to it."""
    quarter = t.shape[-1] // 4
    # Within each half, swap the two pair members; the sign sits in `sin`.
    swapped = t.unflatten(-1, (2, 2, quarter)).flip(-2).flatten(-3)
    return torch.addcmul(t * cos.to(t.dtype), swapped, sin.to(t.dtype))


def _tracing() -> bool:
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() \
        or torch.jit.is_tracing()


class RoPE2D(nn.Module):
    """Cached 2D RoPE tables for patch grids; owns no parameters or buffers.

    Args:
        head_dim: channels per attention head (multiple of 4).
        base: frequency base; CroCo v2's `RoPE100` is 100.
    """

    def __init__(self, head_dim: int, base: float = 100.0):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f'head_dim={head_dim} must be a multiple of 4 for 2D RoPE')
        if base <= 0:
            raise ValueError(f'base={base} must be > 0')
        self.head_dim = head_dim
        self.base = float(base)
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def extra_repr(self) -> str:
        return f'head_dim={self.head_dim}, base={self.base:g}'

    def forward(self, grid_h: int, grid_w: int, device=None,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """`(cos, sin)` of shape `(grid_h * grid_w, head_dim)` for a row-major patch grid."""
        key = (int(grid_h), int(grid_w), torch.device(device or 'cpu'), dtype)
        tables = self._cache.get(key)
        if tables is None:
            if _tracing():  # tensors made while tracing are not real: never cache them
                return self._tables(grid_h, grid_w, device, dtype)
            # Normal tensors even under inference_mode, so that a table cached there can be
            # used later in autograd.
            with torch.inference_mode(False):
                tables = self._tables(grid_h, grid_w, device, dtype)
            self._cache[key] = tables
        return tables

    def _tables(self, grid_h, grid_w, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        positions = grid_positions(grid_h, grid_w, device=device)
        return rope_2d_tables(positions, self.head_dim, self.base, dtype)

    @staticmethod
    def select(tables: tuple[torch.Tensor, torch.Tensor],
               ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables of a token subset: `ids` `(B, n)` -> `(B, 1, n, head_dim)` (head axis 1)."""
        cos, sin = tables
        return cos[ids].unsqueeze(1), sin[ids].unsqueeze(1)
