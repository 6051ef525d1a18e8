"""I2P-MAE base model (2048 points), fp32 CPU: ours against a baseline with the official
numerics choices.

The baseline runs the same weights through the upstream implementation's choices
(ZrrSkywalker/I2P-MAE `models/I2P_MAE.py`, `modules.py`), with pure-torch stand-ins of the
same semantics for its CUDA ops: pointnet2's FPS as a per-step loop at **every** scale,
kNN by `torch.cdist` + `topk` (knn_cuda), the mini-PointNet as Conv1d over `(B*G, C, K)` with
the group max concatenated, each sample's visible tokens packed by a Python loop into
zero-padded tensors with a `(B, L, L)` mask of ones outside the visible block,
`softmax(q k^T * scale + mask * -1e5) v` written out, the write-back by boolean indexing,
3-NN interpolation from `cdist` and Chamfer-L2 from `cdist` both ways. Ours: one FPS (the
coarser scales are its prefixes; fpsample on CPU), the mini-PointNet as matrix products with
the group max applied once per group, vectorised packing, SDPA with an additive key mask.

Rows: encoder forward (the SVM feature, eval-mode visibility) at batch 1 and 8, and a
pretraining step (Point-M2AE's 3D loss: forward, backward, AdamW) at batch 8 on the same
masks; the median / best time over interleaved runs, and the largest difference between the
two sides' outputs (embedding; loss and predictions of the step's forward).

    .venv/bin/python benchmarks/i2p_mae.py [--iterations 3] [--batches 1 8] [--json out]
"""
import argparse
import json
from pathlib import Path
import platform

import torch

from embodied_vision import create_encoder
from embodied_vision.deploy.bench import interleaved, side_by_side
from embodied_vision.layers.point_ops import farthest_point_sample
from embodied_vision.layers.point_tokens import PointGroups, propagate_visibility
from embodied_vision.layers.point_transformer import MASK_VALUE


# ------------------------------------------------------------ upstream-style baseline
def baseline_group(points, num_groups, group_sizes):
    """FPS (torch loop) and cdist kNN at every scale, on the previous scale's centers."""
    scales, source = [], points
    for g, k in zip(num_groups, group_sizes):
        index = farthest_point_sample(source, g, backend='torch')
        centers = torch.stack([source[b, index[b]] for b in range(len(source))])
        knn = torch.cdist(centers, source).topk(k, dim=2, largest=False).indices
        members = torch.stack([source[b][knn[b]] for b in range(len(source))])
        scales.append(PointGroups(centers, members - centers[:, :, None], members, knn,
                                  n_source=source.shape[1]))
        source = centers
    return scales


def baseline_embed(embed, members):
    b, g, k, c = members.shape
    x = embed.first_conv(members.reshape(b * g, k, c).transpose(1, 2))
    x = torch.cat([x.amax(dim=2, keepdim=True).expand(-1, -1, k), x], dim=1)
    return embed.second_conv(x).amax(dim=2).reshape(b, g, -1)


def baseline_block(block, x, mask):
    h = block.norm1(x)
    b, n, c = h.shape
    heads = block.attn.num_heads
    q, k, v = block.attn.qkv(h).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    attn = (q @ k.transpose(-2, -1)) * (c // heads) ** -0.5
    if mask is not None:
        attn = attn + mask[:, None] * MASK_VALUE
    x = x + block.drop_path(block.attn.proj((attn.softmax(-1) @ v).transpose(1, 2)
                                            .reshape(b, n, c)))
    return x + block.drop_path(block.mlp(block.norm2(x)))


def baseline_encoder(h, scales, visible):
    """Per-sample packing into padded tensors, explicit masked attention, write-back by
    boolean indexing; returns per scale (normed tokens, valid rows)."""
    outputs, full = [], None
    for i, groups in enumerate(scales):
        if i == 0:
            tokens = baseline_embed(h.token_embed[0], groups.neighborhood)
        else:
            b, g1, c = full.shape
            flat = full.reshape(b * g1, c)[groups.flat_index.reshape(-1)]
            tokens = baseline_embed(h.token_embed[i], flat.reshape(b, -1, groups.index.shape[2],
                                                                   c))
        vis = visible[i]
        count = vis.sum(1)
        length = int(count.max())
        b, _, c = tokens.shape
        x = torch.zeros(b, length, c)
        centers = torch.zeros(b, length, 3)
        mask = torch.ones(b, length, length)
        for s in range(b):
            n = int(count[s])
            x[s, :n] = tokens[s][vis[s]]
            centers[s, :n] = groups.centers[s][vis[s]]
            mask[s, :n, :n] = 0
        pos = h.encoder_pos_embeds[i](centers)
        for block in h.encoder_blocks[i].blocks:
            x = baseline_block(block, x + pos, mask)
        valid = ~mask[:, :, 0].bool()
        outputs.append((h.encoder_norms[i](x), valid))
        tokens = tokens.clone()
        tokens[vis] = x[valid]
        full = tokens
    return outputs


def baseline_visibility(coarse, scales):
    """Finer visibility by a loop over the visible groups' members."""
    masks = [coarse]
    for i in range(len(scales) - 1, 0, -1):
        finer = torch.zeros(coarse.shape[0], scales[i].n_source, dtype=torch.bool)
        for b in range(coarse.shape[0]):
            finer[b, scales[i].index[b][masks[0][b]].reshape(-1)] = True
        masks.insert(0, finer)
    return masks


def baseline_embedding(model, points):
    scales = baseline_group(points, model.num_groups, model.group_sizes)
    coarse = torch.ones(points.shape[0], model.num_groups[2], dtype=torch.bool)
    tokens, _ = baseline_encoder(model.h_encoder, scales, baseline_visibility(coarse,
                                                                               scales))[-1]
    return tokens.amax(dim=1)


def _scatter(rows, valid, visible, fill):
    full = fill.clone()
    full[visible] = rows[valid]
    return full


def baseline_pretrain_loss(model, points, coarse_visible):
    """Point-M2AE's objective the upstream way: decoder blocks written out, 3-NN from
    cdist, Chamfer-L2 from cdist both ways."""
    scales = baseline_group(points, model.num_groups, model.group_sizes)
    visible = baseline_visibility(coarse_visible, scales)
    encoded = baseline_encoder(model.h_encoder, scales, visible)
    coarse, fine = scales[2], scales[1]
    b = points.shape[0]
    x = _scatter(encoded[2][0], encoded[2][1], visible[2],
                 model.mask_token.expand(b, coarse.centers.shape[1], -1))
    pos = model.decoder_pos_embeds[0](coarse.centers)
    for block in model.h_decoder[0].blocks:
        x = baseline_block(block, x + pos, None)
    skip = _scatter(encoded[1][0], encoded[1][1], visible[1],
                    torch.zeros(b, fine.centers.shape[1], encoded[1][0].shape[2]))
    d, idx = torch.cdist(fine.centers, coarse.centers).square().topk(3, dim=2, largest=False)
    w = 1.0 / (d + 1e-8)
    w = w / w.sum(dim=2, keepdim=True)
    up = torch.stack([(x[s][idx[s]] * w[s][..., None]).sum(1) for s in range(b)])
    prop = model.token_prop[0]
    y = prop.fuse.net(torch.cat([skip, up], dim=2).transpose(1, 2))
    block = prop.extraction.operation[0]
    y = prop.act(block.net2(block.net1(y)) + y).transpose(1, 2)
    pos = model.decoder_pos_embeds[1](fine.centers)
    for blk in model.h_decoder[1].blocks:
        y = baseline_block(blk, y + pos, None)
    y = model.decoder_norm(y).transpose(1, 2)
    k = model.group_sizes[1]
    pred = model.rec_head_3d(y).transpose(1, 2).reshape(b, -1, k, 3)
    hidden = ~visible[1]
    p, t = pred[hidden], fine.neighborhood[hidden]
    dist = torch.cdist(p, t).square()
    return dist.min(2).values.mean() + dist.min(1).values.mean(), pred


# ----------------------------------------------------------------------------- timing
def _points(batch: int, seed: int = 0) -> torch.Tensor:
    x = torch.randn(batch, 2048, 3, generator=torch.Generator().manual_seed(seed))
    x = x * torch.tensor([1.0, 0.5, 0.7])  # an ellipsoid's proportions
    return x / x.norm(dim=-1).amax(dim=1)[:, None, None]


def rows(batches: list[int], iterations: int, train_batch: int) -> list[dict]:
    torch.manual_seed(0)
    ours = create_encoder('i2p_mae_pretrain').eval()
    base = create_encoder('i2p_mae_pretrain').eval()
    base.load_state_dict(ours.state_dict())
    out = []
    for batch in batches:
        points = _points(batch)
        with torch.inference_mode():
            diff = float((baseline_embedding(base, points) - ours(points)).abs().max())
            result = interleaved({'baseline': lambda x=points: baseline_embedding(base, x),
                                   'ours': lambda x=points: ours(x)}, iterations)
        out.append({'row': f'encoder forward 2048 pts b{batch}', **side_by_side(result),
                    'max_abs_diff': diff})
    points = _points(train_batch, seed=1)
    scales = ours.group(points)
    coarse = ours.draw_visibility(scales, generator=torch.Generator().manual_seed(0))[-1]
    with torch.no_grad():
        loss_b, pred_b = baseline_pretrain_loss(base, points, coarse)
        visible = propagate_visibility(coarse, scales)
        loss_o, out_o = ours.forward_loss(points, visible=visible)
    diff = max(float((loss_b - loss_o).abs()), float((pred_b - out_o['pred_3d']).abs().max()))
    opt_b = torch.optim.AdamW(base.parameters(), lr=1e-3, weight_decay=0.05)
    opt_o = torch.optim.AdamW(ours.parameters(), lr=1e-3, weight_decay=0.05)

    def step(model, optimizer, loss_fn):
        model.train()
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    result = interleaved({
        'baseline': lambda: step(base, opt_b,
                                 lambda: baseline_pretrain_loss(base, points, coarse)[0]),
        'ours': lambda: step(ours, opt_o,
                             lambda: ours.forward_loss(points, visible=visible)[0])},
        iterations)
    out.append({'row': f'pretrain step 2048 pts b{train_batch}', **side_by_side(result),
                'max_abs_diff': diff})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iterations', type=int, default=3)
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--train-batch', type=int, default=8)
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    parser.add_argument('--json', type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'{platform.processor() or platform.machine()}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads')
    table = rows(args.batches, args.iterations, args.train_batch)
    print(f'{"row":34} {"baseline ms":>12} {"ours ms":>10} {"speedup":>8} {"max |diff|":>11}')
    for r in table:
        print(f'{r["row"]:34} {r["baseline_ms"]:12.1f} {r["ours_ms"]:10.1f} '
              f'{r["speedup"]:7.2f}x {r["max_abs_diff"]:11.1e}')
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + '\n')


if __name__ == '__main__':
    main()
