"""Latency measurement for compiled encoders, side by side with eager in the same run.

Figures are medians and 90th percentiles of wall time per call (CUDA synchronised), and the
speed-up is eager median / backend median, since shared machines are noisy in absolute terms.
Each row also carries the model's floating-point work per call (`torch.utils.flop_counter`)
and the rate it ran at, and `matmul_peak_gflops` measures what one large matrix product
reaches on the same device: together they say how far from the hardware's ceiling a runtime
is, and so how much speed-up over eager any fp32 runtime could still give.
"""
from collections.abc import Callable, Sequence
from dataclasses import dataclass
import statistics
import time

import torch

__all__ = ['Latency', 'benchmark_encoder', 'count_flops', 'format_table', 'interleaved',
           'matmul_peak_gflops', 'measure_latency', 'side_by_side']


@dataclass(frozen=True)
class Latency:
    """Per-call wall time in milliseconds."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    iterations: int


def _sync(device: str) -> None:
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def _timed_calls(fn: Callable, inputs: Sequence[torch.Tensor], warmup: int, iterations: int,
                 min_seconds: float, device: str) -> list[float]:
    with torch.inference_mode():
        for _ in range(warmup):
            fn(*inputs)
        _sync(device)
        times = []
        begin = time.perf_counter()
        while len(times) < iterations or time.perf_counter() - begin < min_seconds:
            start = time.perf_counter()
            fn(*inputs)
            _sync(device)
            times.append((time.perf_counter() - start) * 1e3)
    return times


def _latency(times: list[float]) -> Latency:
    ordered = sorted(times)
    return Latency(median_ms=statistics.median(ordered),
                   p90_ms=ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
                   mean_ms=statistics.fmean(ordered), iterations=len(ordered))


def measure_latency(fn: Callable, inputs: Sequence[torch.Tensor], warmup: int = 3,
                    iterations: int = 20, min_seconds: float = 0.0,
                    device: str = 'cpu') -> Latency:
    """Time `fn(*inputs)`: `warmup` untimed calls, then at least `iterations` timed ones."""
    return _latency(_timed_calls(fn, inputs, warmup, iterations, min_seconds, device))


def interleaved(fns: dict[str, Callable[[], object]], iterations: int,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each of `fns`, which take turns (`warmup` untimed calls each
    first), so a load change on a shared machine hits every side rather than one."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(iterations):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def side_by_side(times: dict[str, list[float]], baseline: str = 'baseline',
                 ours: str = 'ours') -> dict:
    """Median and best ms of two sides of `interleaved` and the median speed-up."""
    b, o = times[baseline], times[ours]
    return {f'{baseline}_ms': 1e3 * statistics.median(b), f'{ours}_ms': 1e3 * statistics.median(o),
            f'{baseline}_best_ms': 1e3 * min(b), f'{ours}_best_ms': 1e3 * min(o),
            'speedup': statistics.median(b) / statistics.median(o)}


def count_flops(fn: Callable, inputs: Sequence[torch.Tensor]) -> int:
    """Floating-point operations of one `fn(*inputs)` call (a multiply-add counts 2), as
    `torch.utils.flop_counter` counts them: matrix products and convolutions."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        fn(*inputs)
    return int(counter.get_total_flops())


def matmul_peak_gflops(sizes: Sequence[int] = (2048, 3072, 4096), repeats: int = 3,
                       device: str = 'cpu', dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of the fastest square matrix product over `sizes` (best of `repeats` each,
    this process's torch threads): what a well-tuned kernel gets from this device, to judge
    how much room a model's rate leaves. Shared machines vary; take it as an estimate."""
    generator = torch.Generator(device=device).manual_seed(0)
    best = 0.0
    for size in sizes:
        a = torch.randn(size, size, generator=generator, device=device, dtype=dtype)
        b = torch.randn(size, size, generator=generator, device=device, dtype=dtype)
        seconds = min(_timed_calls(torch.mm, (a, b), 1, repeats, 0.0, device)) * 1e-3
        best = max(best, 2 * size ** 3 / seconds / 1e9)
    return best


def benchmark_encoder(encoder, backends: Sequence[str], batch_sizes: Sequence[int] = (1, 8),
                      input_size: tuple[int, ...] | None = None, device: str = 'cpu',
                      warmup: int = 3, iterations: int = 20, rounds: int = 3,
                      pause: float = 0.2, **compile_options) -> list[dict]:
    """One row per (backend, batch): latency, speed-up over eager and parity error.

    The backends take turns: `rounds` blocks of about `iterations / rounds` calls each (one
    untimed call opens every block, after a `pause` in seconds that lets the previous
    runtime's busy-waiting threads stop), so a load change on a shared machine hits every
    backend rather than whichever was being timed at that moment.
    """
    from embodied_vision.deploy.compile import compile as compile_encoder
    size = tuple(input_size or encoder.input_contract.default_size)
    runners = {}
    from tqdm import tqdm
    name = getattr(encoder, 'name', type(encoder).__name__)
    for backend in tqdm(dict.fromkeys(['eager', *backends]), desc=f'bench {name}: compile',
                        disable=None, leave=False):
        runners[backend] = compile_encoder(encoder, backend, device=device, input_size=size,
                                           **compile_options)
    rows = []
    generator = torch.Generator().manual_seed(1)
    rounds = max(1, min(rounds, iterations))
    for batch in tqdm(batch_sizes, desc=f'bench {name}: batches', disable=None, leave=False):
        inputs = encoder.example_inputs(batch_size=batch, size=size, generator=generator)
        inputs = tuple(x.round().to(torch.uint8) for x in inputs) \
            if encoder.input_contract.value_range == (0.0, 255.0) else inputs
        times = {backend: [] for backend in runners}
        for index in range(rounds):
            for backend, runner in runners.items():
                time.sleep(pause)  # the previous runtime's spinning threads go to sleep
                times[backend] += _timed_calls(runner, inputs, warmup if index == 0 else 1,
                                               -(-iterations // rounds), 0.0, device)
        baseline = _latency(times['eager'])
        flops = count_flops(runners['eager'], inputs)
        for backend, runner in runners.items():
            latency = _latency(times[backend])
            rows.append({
                'encoder': encoder.name, 'backend': backend, 'batch': batch,
                'size': 'x'.join(map(str, size)), 'median_ms': latency.median_ms,
                'p90_ms': latency.p90_ms, 'speedup': baseline.median_ms / latency.median_ms,
                'parity_max_abs': runner.parity.max_abs_error if runner.parity else 0.0,
                'gflop': flops / 1e9, 'gflops_per_s': flops / 1e9 / (latency.median_ms / 1e3),
            })
    return rows


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of `benchmark_encoder` rows."""
    header = (f'{"encoder":<16} {"backend":<12} {"batch":>5} {"size":>8} {"median ms":>10} '
              f'{"p90 ms":>9} {"vs eager":>9} {"max abs err":>12} {"GFLOP":>7} {"GFLOP/s":>8}')
    lines = [header, '-' * len(header)]
    for r in rows:
        lines.append(f'{r["encoder"]:<16} {r["backend"]:<12} {r["batch"]:>5} {r["size"]:>8} '
                     f'{r["median_ms"]:>10.2f} {r["p90_ms"]:>9.2f} {r["speedup"]:>8.2f}x '
                     f'{r["parity_max_abs"]:>12.2e} {r["gflop"]:>7.1f} {r["gflops_per_s"]:>8.0f}')
    return '\n'.join(lines)
