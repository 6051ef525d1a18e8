"""Tolerances derived from the computation, for fp32 results that took different kernels.

Two fp32 runs of the same network through different kernels (eager vs ONNX Runtime, ours vs
torchvision, oneDNN's AVX-512 vs AVX2 paths, AMD vs Intel) agree only up to rounding. Each
layer's dot products of `fan_in` terms carry a relative rounding error of about
`eps * sqrt(fan_in)` (random-walk accumulation), and relative errors add up over the layers
in sequence, so one fp32 run is within `eps * sqrt(fan_in) * layers * max|exact|` of the exact
result; two runs are within twice that of each other. That bound is the tolerance: it does
not depend on which CPU or kernel ran, and a wrong computation (a missing normalisation, a
wrong weight, a swapped axis) misses it by orders of magnitude.

Comparisons of one code path with itself (a save/load round trip, the same module twice)
stay exact or use torch's defaults; analytic float64 checks keep their own tolerances.
"""
import math

import numpy as np
import torch
from torch import nn

__all__ = ['EPS32', 'assert_fp32_close', 'fp32_tolerance', 'network_size']

EPS32 = float(torch.finfo(torch.float32).eps)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.ConvTranspose2d,
           nn.ConvTranspose3d, nn.MultiheadAttention)


def network_size(*modules: nn.Module) -> tuple[int, int]:
    """`(layers, largest fan-in)` over the convolutions and linear layers of `modules`.

    The layer count is an upper bound on the depth of the longest path (every layer counted
    once, branches included), which is what the error bound needs.
    """
    layers, fan_in = 0, 1
    for module in modules:
        for layer in module.modules():
            if not isinstance(layer, _LAYERS):
                continue
            layers += 1
            if isinstance(layer, nn.MultiheadAttention):
                fan_in = max(fan_in, layer.embed_dim)
            elif isinstance(layer, nn.Linear):
                fan_in = max(fan_in, layer.in_features)
            else:
                fan_in = max(fan_in, layer.weight[0].numel())
    if layers == 0:
        raise ValueError('no convolution or linear layer found: pass layers and fan_in')
    return layers, fan_in


def fp32_tolerance(scale: float, layers: int, fan_in: int, runs: int = 2) -> float:
    """Largest expected difference between `runs` fp32 results (2: each other; 1: exact)."""
    return runs * EPS32 * math.sqrt(fan_in) * layers * scale


def _as_float64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def assert_fp32_close(actual, expected, module: nn.Module | None = None,
                      layers: int | None = None, fan_in: int | None = None,
                      exact: bool = False, what: str = 'output') -> None:
    """Assert `actual` matches `expected` up to fp32 rounding of the network that made them.

    Args:
        actual, expected: tensors or arrays of the same shape (the output of two runs).
        module: the network (or networks) that produced them; its size sets the bound.
        layers, fan_in: the size, when no module describes it (e.g. an ONNX file's graph).
        exact: `expected` is a float64 computation (only `actual` carries fp32 rounding).
        what: named in the failure message.
    """
    if module is not None:
        layers, fan_in = network_size(*(module if isinstance(module, (list, tuple))
                                        else [module]))
    if layers is None or fan_in is None:
        raise ValueError('pass the module, or layers and fan_in')
    got, want = _as_float64(actual), _as_float64(expected)
    assert got.shape == want.shape, f'{what}: shape {got.shape} vs {want.shape}'
    assert np.isfinite(got).all(), f'{what}: non-finite values'
    scale = float(np.abs(want).max()) if want.size else 0.0
    tolerance = fp32_tolerance(scale, layers, fan_in, runs=1 if exact else 2)
    error = float(np.abs(got - want).max()) if want.size else 0.0
    assert error <= tolerance, (
        f'{what}: max abs difference {error:.3g} exceeds the fp32 bound {tolerance:.3g} '
        f'({layers} layers, fan-in {fan_in}, output scale {scale:.3g})')
