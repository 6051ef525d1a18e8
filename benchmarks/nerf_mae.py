"""NeRF-MAE swin_s, fp32 CPU: our model against a baseline with the official numerics choices.

The baseline runs the same weights through the official implementation's choices
(zubair-irshad/NeRF-MAE `swin_mae3d.py`): window attention as explicit
`softmax(q k^T * scale + bias + mask) v` (torchvision's `shifted_window_attention_3d`, which
upstream's function matches), the shift mask rebuilt by slice assignment in every shifted
block, each grid padded on its own and concatenated, the token mask drawn by a Python loop
over the 4^3-token blocks (`random.random()` per block, slice assignment) and applied by
boolean indexing, the UNETR decoder on contiguous NCDHW tensors with `nn.InstanceNorm3d`, and
the loss on patchified tensors. Ours: SDPA with the bias and shift mask as one additive mask,
a vectorised mask, the decoder in channels-last memory (`layers/unetr.py`), the loss on the
grids. The two agree to 1e-5 (max
abs difference of prediction and loss, printed).

Rows: encoder forward (batch 1), full-MAE pretraining forward (batch 1, inference mode) at
64^3 and 160^3, a training step at 64^3 (batch 2: forward, loss, backward, AdamW), each with
the median / best time over interleaved runs and the peak resident memory above the
pre-call level (sampled every 2 ms).

    .venv/bin/python benchmarks/nerf_mae.py [--iterations 3] [--sizes 64 160] [--json out]
"""
import argparse
import json
import os
from pathlib import Path
import platform
import random
import statistics
import threading
import time

import torch
import torch.nn.functional as F  # noqa: N812

from embodied_vision import create_encoder


# ------------------------------------------------------------ upstream-style baseline
def loop_token_mask(tokens: int, prob: float, rng: random.Random, batch: int,
                    block: int = 4) -> torch.Tensor:
    """Upstream `window_masking_3d`: `(B, T, T, T, 1)` float mask, one draw per block."""
    mask = torch.zeros((batch, tokens, tokens, tokens, 1))
    for x in range(0, tokens - block + 1, block):
        for y in range(0, tokens - block + 1, block):
            for z in range(0, tokens - block + 1, block):
                if rng.random() < prob:
                    mask[:, x:x + block, y:y + block, z:z + block, :] = 1
    return mask


def _patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    n, c, h, w, d = x.shape
    x = x.reshape(n, c, h // p, p, w // p, p, d // p, p).permute(0, 2, 4, 6, 3, 5, 7, 1)
    return x.reshape(n, h // p, w // p, d // p, p ** 3, c)


def _baseline_res_block(block, x):
    """Upstream `UnetResBlock` on contiguous NCDHW: conv, nn.InstanceNorm3d, LeakyReLU."""
    def norm(y):
        return F.instance_norm(y, eps=1e-5)
    out = F.leaky_relu(norm(block.conv1(x)), 0.01)
    out = norm(block.conv2(out))
    residual = x if block.conv3 is None else norm(block.conv3(x))
    return F.leaky_relu(out + residual, 0.01)


def _baseline_up(up, x, skip=None):
    out = up.transp_conv(x.contiguous())
    if skip is not None:
        out = torch.cat((out, skip.contiguous()), dim=1)
    return _baseline_res_block(up.conv_block, out)


def baseline_decode(model, maps):
    """Upstream's UNETR decoder on the channels-first stage maps (contiguous tensors)."""
    f0, f1, f2, f3 = (m.permute(0, 4, 1, 2, 3).contiguous() for m in maps)
    x = _baseline_up(model.decoder4, f3, f2)
    x = _baseline_up(model.decoder2, _baseline_up(model.decoder3, x, f1), f0)
    return model.out.conv(_baseline_up(model.decoder1, x))


def baseline_forward_loss(model, grids: list, mask: torch.Tensor):
    """Upstream `forward`: per-grid padding, masking by indexing, patchified loss."""
    r, p = model.resolution, model.patch_size[0]
    padded, valid = [], []
    for grid in grids:
        pad = (0, r - grid.shape[3], 0, r - grid.shape[2], 0, r - grid.shape[1])
        padded.append(torch.nn.functional.pad(grid, pad)[None])
        valid.append(torch.nn.functional.pad(torch.ones_like(grid), pad)[None])
    x, valid = torch.cat(padded), torch.cat(valid)
    tokens = model.patch_partition(x) + model.pos_embed.clone().detach()
    masked = tokens.clone()
    masked[mask.bool().expand(-1, -1, -1, -1, tokens.shape[-1])] = 0
    masked[mask.bool().squeeze(-1), :] = model.mask_token
    pred = baseline_decode(model, model.run_stages(masked))
    target, valid_p = _patchify(x, p), _patchify(valid, p)[..., 0]
    pred_p = _patchify(pred, p)
    remove = (valid_p * mask)[..., None]          # mask (B, T, T, T, 1) broadcasts on p^3
    occupied = target[..., 3:] > 0.01
    loss_rgb = ((pred_p[..., :3] - target[..., :3]) ** 2 * occupied).sum() / occupied.sum()
    loss_alpha = ((torch.sigmoid(pred_p[..., 3:]) - target[..., 3:]) ** 2 * remove).sum() \
        / remove.sum()
    return loss_rgb + loss_alpha, pred


def ours_forward_loss(model, grids: list, mask: torch.Tensor):
    loss, out = model.forward_loss(torch.stack(grids), token_mask=mask[0, ..., 0].bool())
    return loss, out['pred']


# ----------------------------------------------------------------------------- timing
class PeakRSS:
    """Peak resident memory above the level at entry, sampled by a thread."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2 ** 20


def _rss() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _interleaved(fns: dict, iterations: int) -> dict:
    for fn in fns.values():
        fn()  # warm-up: allocations, oneDNN primitives
    times = {name: [] for name in fns}
    memory = dict.fromkeys(fns, 0.0)
    for _ in range(iterations):
        for name, fn in fns.items():
            with PeakRSS() as peak:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
            memory[name] = max(memory[name], peak.mib)
    return {name: {'median_s': statistics.median(t), 'best_s': min(t), 'peak_mib': memory[name]}
            for name, t in times.items()}


def _models(size: int):
    torch.manual_seed(0)
    ours = create_encoder('nerf_mae_pretrain_swin_s', resolution=size).eval()
    base = create_encoder('nerf_mae_pretrain_swin_s', resolution=size,
                          attention='reference').eval()
    base.load_state_dict(ours.state_dict())
    return ours, base


def _grids(size: int, batch: int, seed: int = 0) -> list:
    gen = torch.Generator().manual_seed(seed)
    extent = (size, size * 7 // 8, size // 2)  # a sim grid's proportions, padded inside
    grids = []
    for _ in range(batch):
        grid = torch.rand((4, *extent), generator=gen)
        grid[3] = torch.where(grid[3] > 0.7, grid[3], torch.zeros(()))
        grids.append(grid)
    return grids


def bench_size(size: int, iterations: int, train: bool) -> list[dict]:
    ours, base = _models(size)
    rows = []
    grids = _grids(size, 1)
    mask = loop_token_mask(ours.tokens, 0.75, random.Random(0), 1)
    with torch.inference_mode():
        loss_b, pred_b = baseline_forward_loss(base, grids, mask)
        loss_o, pred_o = ours_forward_loss(ours, grids, mask)
        agree = max(float((pred_b - pred_o).abs().max()), float((loss_b - loss_o).abs()))
        x = torch.stack(grids)
        enc = _interleaved({'baseline': lambda: base.forward_features(x),
                            'ours': lambda: ours.forward_features(x)}, iterations)
        rows.append({'row': f'encoder forward {size}^3 b1', **_pair(enc)})
        fwd = _interleaved({
            'baseline': lambda: baseline_forward_loss(
                base, grids, loop_token_mask(base.tokens, 0.75, random.Random(1), 1)),
            'ours': lambda: ours.forward_loss(x)}, iterations)
        rows.append({'row': f'pretrain forward {size}^3 b1', 'max_abs_diff': agree, **_pair(fwd)})
    if train:
        grids2 = _grids(size, 2, seed=1)
        x2 = torch.stack(grids2)
        opt_b = torch.optim.AdamW(base.parameters(), lr=1e-4, weight_decay=1e-3)
        opt_o = torch.optim.AdamW(ours.parameters(), lr=1e-4, weight_decay=1e-3)
        rng = random.Random(2)

        def step_baseline():
            loss, _ = baseline_forward_loss(base.train(), grids2,
                                            loop_token_mask(base.tokens, 0.75, rng, 2))
            opt_b.zero_grad()
            loss.backward()
            opt_b.step()

        def step_ours():
            loss, _ = ours.train().forward_loss(x2)
            opt_o.zero_grad()
            loss.backward()
            opt_o.step()

        step = _interleaved({'baseline': step_baseline, 'ours': step_ours}, iterations)
        rows.append({'row': f'train step {size}^3 b2', **_pair(step)})
    return rows


def _pair(result: dict) -> dict:
    b, o = result['baseline'], result['ours']
    return {'baseline_ms': 1e3 * b['median_s'], 'ours_ms': 1e3 * o['median_s'],
            'baseline_best_ms': 1e3 * b['best_s'], 'ours_best_ms': 1e3 * o['best_s'],
            'speedup': b['median_s'] / o['median_s'],
            'baseline_peak_mib': b['peak_mib'], 'ours_peak_mib': o['peak_mib']}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iterations', type=int, default=3)
    parser.add_argument('--sizes', type=int, nargs='+', default=[64, 160])
    parser.add_argument('--train-size', type=int, default=64)
    parser.add_argument('--json', type=Path)
    args = parser.parse_args()
    print(f'{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, '
          f'torch {torch.__version__}, ATen {torch.backends.cpu.get_cpu_capability()}')
    rows = []
    for size in args.sizes:
        rows += bench_size(size, args.iterations, train=size == args.train_size)
    print(f'{"row":<28} {"baseline ms":>12} {"ours ms":>10} {"speedup":>8} '
          f'{"base MiB":>9} {"ours MiB":>9} {"max |diff|":>11}')
    for r in rows:
        diff = f'{r["max_abs_diff"]:.1e}' if 'max_abs_diff' in r else ''
        print(f'{r["row"]:<28} {r["baseline_ms"]:>12.0f} {r["ours_ms"]:>10.0f} '
              f'{r["speedup"]:>7.2f}x {r["baseline_peak_mib"]:>9.0f} {r["ours_peak_mib"]:>9.0f} '
              f'{diff:>11}')
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
    main()
