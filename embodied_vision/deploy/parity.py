"""Parity gate: a compiled runtime is compared with the eager fp32 model on a probe batch.

The report records the max abs error, the reference scale and the worst cosine similarity;
a runtime whose error exceeds `atol + rtol * max|reference|` is refused.
"""
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

__all__ = ['DEFAULT_TOLERANCES', 'ParityError', 'ParityReport', 'measure_parity']

# (atol, rtol) per precision. fp16/bf16 follow the deploy notes' advice for ViTs.
DEFAULT_TOLERANCES = {'fp32': (1e-4, 1e-3), 'fp16': (1e-3, 2e-2), 'bf16': (1e-3, 5e-2)}


class ParityError(RuntimeError):
    """A compiled runtime whose outputs drift from eager past the tolerance."""


@dataclass(frozen=True)
class ParityReport:
    """How far a runtime's output is from eager fp32 on the probe batch."""

    max_abs_error: float
    reference_max: float
    min_cosine: float
    tolerance: float
    probe_shape: tuple[int, ...]

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.tolerance

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f'max abs error {self.max_abs_error:.3g} (tolerance {self.tolerance:.3g}, '
                f'reference max {self.reference_max:.3g}), min cosine {self.min_cosine:.6f}')


@torch.inference_mode()
def measure_parity(reference: Callable, candidate: Callable, inputs: tuple[torch.Tensor, ...],
                   precision: str = 'fp32', atol: float | None = None,
                   rtol: float | None = None) -> ParityReport:
    """Run both callables on `inputs` and report the difference (nothing is raised)."""
    if precision not in DEFAULT_TOLERANCES:
        raise ValueError(f'precision={precision!r} is not one of {sorted(DEFAULT_TOLERANCES)}')
    default_atol, default_rtol = DEFAULT_TOLERANCES[precision]
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    ref = reference(*inputs).float().cpu()
    out = candidate(*inputs).float().cpu()
    if out.shape != ref.shape:
        raise ParityError(f'runtime output shape {tuple(out.shape)} differs from eager '
                          f'{tuple(ref.shape)}')
    ref_flat, out_flat = ref.flatten(1), out.flatten(1)
    cosine = torch.nn.functional.cosine_similarity(ref_flat, out_flat, dim=1, eps=1e-12)
    reference_max = ref.abs().max().item()
    return ParityReport(
        max_abs_error=(out - ref).abs().max().item(),
        reference_max=reference_max,
        min_cosine=cosine.min().item(),
        tolerance=atol + rtol * reference_max,
        probe_shape=tuple(inputs[0].shape),
    )
