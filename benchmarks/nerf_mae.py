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
the median / best time over interleaved runs and the peak resident memory one call adds
(measured in a fresh process per row and side, `--no-memory` skips it).

    .venv/bin/python benchmarks/nerf_mae.py [--iterations 3] [--sizes 64 160] [--json out]
"""
import argparse
import json
import os
from pathlib import Path
import platform
import random
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F  # noqa: N812

from embodied_vision import create_encoder
from embodied_vision.deploy.bench import interleaved, side_by_side


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
def _rss_mib() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def peak_memory(row: str, variant: str, size: int) -> float:
    """Peak resident memory (MiB) one call of `row` adds, measured in a fresh process: its
    high-water mark (`ru_maxrss`) minus its resident size once models and inputs exist (in
    this process freed memory stays resident and would hide the next call's peak)."""
    out = subprocess.run([sys.executable, __file__, '--child', row, variant, str(size)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _child(row: str, variant: str, size: int) -> None:
    fns = _row_functions(size)[row]
    fn = fns[variant]
    before = _rss_mib()
    fn()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(max(peak - before, 0.0))


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


def _row_functions(size: int) -> dict:
    """Row name -> {'baseline': fn, 'ours': fn}, the same weights and inputs on both sides."""
    ours, base = _models(size)
    grids = _grids(size, 1)
    x = torch.stack(grids)
    grids2 = _grids(size, 2, seed=1)
    x2 = torch.stack(grids2)
    opt_b = torch.optim.AdamW(base.parameters(), lr=1e-4, weight_decay=1e-3)
    opt_o = torch.optim.AdamW(ours.parameters(), lr=1e-4, weight_decay=1e-3)
    rng = random.Random(2)

    @torch.inference_mode()
    def encoder(model):
        return model.forward_features(x)

    @torch.inference_mode()
    def forward_baseline():
        return baseline_forward_loss(
            base, grids, loop_token_mask(base.tokens, 0.75, random.Random(1), 1))

    @torch.inference_mode()
    def forward_ours():
        return ours.forward_loss(x)

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

    return {f'encoder forward {size}^3 b1': {'baseline': lambda: encoder(base),
                                              'ours': lambda: encoder(ours)},
            f'pretrain forward {size}^3 b1': {'baseline': forward_baseline,
                                               'ours': forward_ours},
            f'train step {size}^3 b2': {'baseline': step_baseline, 'ours': step_ours}}


def agreement(size: int) -> float:
    """Max abs difference of prediction and loss, baseline vs ours, on one shared mask."""
    ours, base = _models(size)
    grids = _grids(size, 1)
    mask = loop_token_mask(ours.tokens, 0.75, random.Random(0), 1)
    with torch.inference_mode():
        loss_b, pred_b = baseline_forward_loss(base, grids, mask)
        loss_o, pred_o = ours_forward_loss(ours, grids, mask)
    return max(float((pred_b - pred_o).abs().max()), float((loss_b - loss_o).abs()))


def bench_size(size: int, iterations: int, train: bool, memory: bool) -> list[dict]:
    rows = []
    for row, fns in _row_functions(size).items():
        if row.startswith('train') and not train:
            continue
        result = interleaved(fns, iterations)
        entry = {'row': row, **side_by_side(result)}
        if row.startswith('pretrain'):
            entry['max_abs_diff'] = agreement(size)
        if memory:
            for variant in ('baseline', 'ours'):
                entry[f'{variant}_peak_mib'] = peak_memory(row, variant, size)
        rows.append(entry)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iterations', type=int, default=3)
    parser.add_argument('--sizes', type=int, nargs='+', default=[64, 160])
    parser.add_argument('--train-size', type=int, default=64)
    parser.add_argument('--json', type=Path)
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory '
                        'child processes')
    parser.add_argument('--child', nargs=3, metavar=('ROW', 'VARIANT', 'SIZE'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], int(args.child[2]))
        return
    print(f'{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, '
          f'torch {torch.__version__}, ATen {torch.backends.cpu.get_cpu_capability()}')
    rows = []
    for size in args.sizes:
        rows += bench_size(size, args.iterations, train=size == args.train_size,
                           memory=not args.no_memory)
    print(f'{"row":<28} {"baseline ms":>12} {"ours ms":>10} {"speedup":>8} '
          f'{"base MiB":>9} {"ours MiB":>9} {"max |diff|":>11}')
    for r in rows:
        diff = f'{r["max_abs_diff"]:.1e}' if 'max_abs_diff' in r else ''
        mem = [f'{r[k]:>9.0f}' if k in r else f'{"":>9}'
               for k in ('baseline_peak_mib', 'ours_peak_mib')]
        print(f'{r["row"]:<28} {r["baseline_ms"]:>12.0f} {r["ours_ms"]:>10.0f} '
              f'{r["speedup"]:>7.2f}x {mem[0]} {mem[1]} {diff:>11}')
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
    main()
