"""UNETR blocks in channels-last memory against the upstream formulation (contiguous NCDHW,
nn.InstanceNorm3d), values and gradients, in float64."""
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from embodied_vision.layers.unetr import UnetResBlock, UnetrUpBlock, instance_norm_3d


def _upstream_res_block(block, x):
    norm = nn.InstanceNorm3d(block.conv1.out_channels)
    out = F.leaky_relu(norm(block.conv1(x.contiguous())), 0.01)
    out = norm(block.conv2(out))
    residual = x if block.conv3 is None else norm(block.conv3(x))
    return F.leaky_relu(out + residual, 0.01)


@pytest.mark.parametrize('channels_last', [True, False])
def test_instance_norm_is_torchs(channels_last):
    x = torch.randn(2, 5, 6, 7, 4, dtype=torch.float64) * 3 + 2
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    expected = nn.InstanceNorm3d(5)(x)
    torch.testing.assert_close(instance_norm_3d(x), expected, rtol=1e-12, atol=1e-12)
    out = instance_norm_3d(x, inplace=True)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(x, out)  # x's memory holds the output (no second grid)


@pytest.mark.parametrize('cin,cout', [(8, 4), (4, 4)])
def test_res_block_matches_upstream_values_and_gradients(cin, cout):
    torch.manual_seed(0)
    block = UnetResBlock(cin, cout).double()
    assert (block.conv3 is None) == (cin == cout)
    x = torch.randn(2, cin, 6, 5, 4, dtype=torch.float64, requires_grad=True)
    ours, theirs = block(x), _upstream_res_block(block, x)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    g_ours = torch.autograd.grad(ours.square().sum(), [x, block.conv1.weight])
    g_theirs = torch.autograd.grad(theirs.square().sum(), [x, block.conv1.weight])
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    with torch.no_grad():  # the in-place inference path computes the same
        torch.testing.assert_close(block(x), theirs, rtol=1e-10, atol=1e-10)


def test_up_block_concatenates_the_skip_and_names_its_weights():
    torch.manual_seed(1)
    up = UnetrUpBlock(8, 4, upsample_kernel_size=2).double()
    x = torch.randn(1, 8, 3, 3, 3, dtype=torch.float64)
    skip = torch.randn(1, 4, 6, 6, 6, dtype=torch.float64)
    expected = _upstream_res_block(up.conv_block,
                                   torch.cat((up.transp_conv(x), skip), dim=1))
    torch.testing.assert_close(up(x, skip), expected, rtol=1e-10, atol=1e-10)
    assert set(up.state_dict()) == {
        'transp_conv.weight', 'transp_conv.bias', 'conv_block.conv1.weight',
        'conv_block.conv1.bias', 'conv_block.conv2.weight', 'conv_block.conv2.bias',
        'conv_block.conv3.weight', 'conv_block.conv3.bias'}
    with pytest.raises(ValueError, match='skip'):
        up(x)
