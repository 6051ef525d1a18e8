"""Benchmark helpers: work counted per call, interleaved rows, the matmul ceiling."""
import torch
from torch import nn

from embodied_vision import create_encoder
from embodied_vision.deploy.bench import benchmark_encoder, count_flops, matmul_peak_gflops


def test_count_flops_matches_the_multiply_adds_of_linear_and_conv_layers():
    linear = nn.Linear(64, 32)
    assert count_flops(linear, (torch.randn(8, 64),)) == 2 * 8 * 64 * 32
    conv = nn.Conv2d(3, 16, 3, padding=1)
    assert count_flops(conv, (torch.randn(2, 3, 10, 12),)) == 2 * 2 * 16 * 10 * 12 * 3 * 9


def test_rows_report_the_work_and_rate_of_every_backend(one_thread):
    encoder = create_encoder('r3m_resnet18')
    rows = benchmark_encoder(encoder, ['eager'], (1, 2), (32, 48), iterations=2, rounds=2,
                             pause=0.0)
    assert [(r['backend'], r['batch']) for r in rows] == [('eager', 1), ('eager', 2)]
    one, two = (r['gflop'] for r in rows)
    assert one > 0 and abs(two - 2 * one) < 1e-9  # per-call work scales with the batch
    for r in rows:
        assert r['size'] == '32x48' and r['speedup'] == 1.0
        assert abs(r['gflops_per_s'] - r['gflop'] / (r['median_ms'] / 1e3)) < 1e-6


def test_matmul_peak_is_a_positive_rate(one_thread):
    assert matmul_peak_gflops(sizes=(64, 128), repeats=2) > 0
