"""3D shifted-window attention and patch merging against torchvision and brute force."""
import itertools

import pytest
import torch
from torch import nn
from torchvision.models.video.swin_transformer import (
    ShiftedWindowAttention3d,
    _compute_attention_mask_3d,
)

from embodied_vision.layers.swin3d import (
    PatchMerging3d,
    WindowAttention3d,
    relative_position_index_3d,
    shift_window_mask,
    swin_block_3d,
    window_and_shift,
)


def test_relative_position_index_is_torchvisions_flattened_and_the_formula():
    tv = ShiftedWindowAttention3d(8, [4, 4, 4], [2, 2, 2], 2)
    assert torch.equal(relative_position_index_3d((4, 4, 4)), tv.relative_position_index.flatten())
    window = (2, 3, 4)  # non-cubic: check the row formula token pair by token pair
    coords = list(itertools.product(*(range(w) for w in window)))
    index = relative_position_index_3d(window).view(len(coords), len(coords))
    for a, ca in enumerate(coords):
        for b, cb in enumerate(coords):
            d = [p - q + w - 1 for p, q, w in zip(ca, cb, window)]
            assert index[a, b] == d[0] * (2 * window[1] - 1) * (2 * window[2] - 1) \
                + d[1] * (2 * window[2] - 1) + d[2]


def test_window_and_shift_follow_nerf_mae_not_torchvision():
    # 5 -> 8 keeps the shift, 4 is covered (shift dropped), 2 is padded up to 4 (dropped)
    assert window_and_shift((5, 4, 2), (4, 4, 4), (2, 2, 2)) == ((8, 4, 4), (2, 0, 0))
    assert window_and_shift((10, 9, 1), (4, 4, 4), (2, 2, 2)) == ((12, 12, 4), (2, 2, 0))


@pytest.mark.parametrize('padded,shift', [((8, 8, 8), (2, 2, 2)), ((12, 8, 4), (2, 2, 0)),
                                          ((4, 8, 12), (0, 2, 2))])
def test_shift_mask_equals_torchvisions_slices(padded, shift):
    x = torch.zeros(1)
    ours = shift_window_mask(padded, (4, 4, 4), shift)
    theirs = _compute_attention_mask_3d(x, padded, (4, 4, 4), shift)
    assert torch.equal(ours, theirs)


def _brute_force(attn: WindowAttention3d, x: torch.Tensor) -> torch.Tensor:
    """Window attention from its definition, token pair by token pair (float64)."""
    window = attn.window_size
    padded, shift = window_and_shift(x.shape[1:4], window, attn.shift_size)
    b, sx, sy, sz, c = x.shape
    heads, hd = attn.num_heads, c // attn.num_heads
    xp = torch.zeros(b, *padded, c, dtype=x.dtype)
    xp[:, :sx, :sy, :sz] = x
    xp = torch.roll(xp, [-s for s in shift], dims=(1, 2, 3))
    qkv = attn.qkv(xp).view(b, *padded, 3, heads, hd)
    table = attn.relative_position_bias_table

    def region(p, axis):
        size, w, s = padded[axis], window[axis], shift[axis]
        return 0 if not s else int(p >= size - w) + int(p >= size - s)

    out = torch.zeros(b, *padded, heads, hd, dtype=x.dtype)
    starts = itertools.product(*(range(0, p, w) for p, w in zip(padded, window)))
    for start in starts:
        cells = [tuple(s + o for s, o in zip(start, off))
                 for off in itertools.product(*(range(w) for w in window))]
        for ci in cells:
            logits = []
            for cj in cells:
                d = [p - q + w - 1 for p, q, w in zip(ci, cj, window)]
                row = d[0] * (2 * window[1] - 1) * (2 * window[2] - 1) \
                    + d[1] * (2 * window[2] - 1) + d[2]
                same = all(region(ci[a], a) == region(cj[a], a) for a in range(3))
                q, k = qkv[:, ci[0], ci[1], ci[2], 0], qkv[:, cj[0], cj[1], cj[2], 1]
                logits.append((q * k).sum(-1) / hd ** 0.5 + table[row] + (0 if same else -100))
            weights = torch.softmax(torch.stack(logits, -1), dim=-1)    # (b, heads, N)
            values = torch.stack([qkv[:, c0, c1, c2, 2] for c0, c1, c2 in cells], -2)
            out[:, ci[0], ci[1], ci[2]] = (weights[..., None] * values).sum(-2)
    out = attn.proj(out.reshape(b, *padded, c))
    out = torch.roll(out, list(shift), dims=(1, 2, 3))
    return out[:, :sx, :sy, :sz]


@pytest.mark.parametrize('impl', ['sdpa', 'reference'])
@pytest.mark.parametrize('size,shift', [((5, 3, 4), (2, 2, 2)), ((2, 2, 2), (0, 0, 0))])
def test_window_attention_equals_its_definition(impl, size, shift):
    torch.manual_seed(0)
    attn = WindowAttention3d(8, (4, 4, 4), shift, num_heads=2, attention=impl).double()
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()  # a bias that matters
    x = torch.randn(2, *size, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), _brute_force(attn, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('size', [(5, 5, 5), (4, 4, 4), (6, 3, 9), (2, 2, 2)])
def test_sdpa_kernel_matches_the_official_numerics_values_and_gradients(size):
    torch.manual_seed(1)
    ref = WindowAttention3d(12, (4, 4, 4), (2, 2, 2), num_heads=3, attention='reference')
    ref = ref.double()
    fast = WindowAttention3d(12, (4, 4, 4), (2, 2, 2), num_heads=3).double()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, *size, 12, dtype=torch.float64, requires_grad=True)
    out_ref, out_fast = ref(x), fast(x)
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-10, atol=1e-10)
    grad_ref = torch.autograd.grad(out_ref.square().sum(), [x, ref.qkv.weight,
                                                            ref.relative_position_bias_table])
    grad_fast = torch.autograd.grad(out_fast.square().sum(), [x, fast.qkv.weight,
                                                              fast.relative_position_bias_table])
    for a, b in zip(grad_fast, grad_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_block_has_the_checkpoint_names_and_a_residual_path():
    block = swin_block_3d(12, 3, (4, 4, 4), (2, 2, 2), stochastic_depth_prob=0.0)
    names = set(block.state_dict())
    assert {'norm1.weight', 'attn.qkv.weight', 'attn.proj.bias', 'attn.relative_position_index',
            'attn.relative_position_bias_table', 'norm2.bias', 'mlp.0.weight',
            'mlp.3.weight'} <= names
    assert block.attn.relative_position_index.shape == (64 * 64,)
    x = torch.randn(1, 5, 4, 3, 12)
    assert block(x).shape == x.shape


@pytest.mark.parametrize('size', [(4, 6, 2), (5, 3, 7)])
def test_patch_merging_gathers_neighbours_in_upstream_order(size):
    merge = PatchMerging3d(3)
    merge.norm, merge.reduction = nn.Identity(), nn.Identity()  # look at the 8C concatenation
    x = torch.randn(2, *size, 3)
    pad = [s % 2 for s in size]
    xp = torch.nn.functional.pad(x, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))
    order = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1),
             (1, 1, 1)]
    expected = torch.cat([xp[:, i::2, j::2, k::2] for i, j, k in order], dim=-1)
    assert torch.equal(merge(x), expected)


def test_patch_merging_reduces_without_bias():
    merge = PatchMerging3d(6)
    assert merge.reduction.bias is None and merge.reduction.weight.shape == (12, 48)
    assert PatchMerging3d(6, expand_dim=False).reduction.weight.shape == (6, 48)
    assert merge(torch.randn(1, 4, 4, 4, 6)).shape == (1, 2, 2, 2, 12)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match='attention'):
        WindowAttention3d(8, (4, 4, 4), (0, 0, 0), 2, attention='flash')
    with pytest.raises(ValueError, match='divisible'):
        WindowAttention3d(10, (4, 4, 4), (0, 0, 0), 3)
    with pytest.raises(ValueError, match='3 values'):
        WindowAttention3d(8, (4, 4), (0, 0), 2)
