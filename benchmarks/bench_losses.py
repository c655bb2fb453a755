"""Benchmark: learndet's losses against their nearest well-kept peers, forward + backward, in one run.

RetinaNet-sized inputs: `--anchors` anchors x `--classes` classes for classification, `--boxes` positive boxes for
regression. Each row times one forward + backward (the work a training step does) and compares with the peer:

- FocalLoss (class indices, K = background, avg_factor) vs torchvision `sigmoid_focal_loss` on one-hot targets (sum / n);
- the hand-written smooth L1 (`torch.where`, the chapter's first version) vs learndet's `SmoothL1Loss` (`F.smooth_l1_loss`);
- GIoULoss / DIoULoss / CIoULoss vs torchvision's `generalized_box_iou_loss` / `distance_box_iou_loss` / `complete_box_iou_loss`.

Prints a markdown table of medians over `--repeats` interleaved runs (after one warm-up) and the ratio learndet / peer.
Run: `python benchmarks/bench_losses.py` (add `--device cuda` on a GPU).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision.ops as tvops

from learndet.losses import CIoULoss, DIoULoss, FocalLoss, GIoULoss, SmoothL1Loss


def sync(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()


def time_pair(fn_a, fn_b, x, repeats, device):
    "Median seconds of `fn(x).backward()` for two functions, runs interleaved (a, b, a, b, ...) after a warm-up."
    times = ([], [])
    for i in range(repeats + 1):
        for fn, out in zip((fn_a, fn_b), times):
            x.grad = None
            sync(device)
            start = time.perf_counter()
            fn(x).backward()
            sync(device)
            if i:
                out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def smooth_l1_where(pred, target, beta):
    diff = (pred - target).abs()
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta).mean()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--anchors', type=int, default=100_000)
    parser.add_argument('--classes', type=int, default=80)
    parser.add_argument('--boxes', type=int, default=20_000)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    dev = args.device
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(args.anchors, args.classes, generator=g) * 3).to(dev).requires_grad_()
    labels = torch.randint(0, args.classes + 1, (args.anchors,), generator=g).to(dev)
    num_pos = max(int((labels < args.classes).sum()), 1)
    xy, wh = torch.rand(args.boxes, 2, generator=g) * 500, torch.rand(args.boxes, 2, generator=g) * 200 + 4
    target = torch.cat([xy, xy + wh], 1).to(dev)
    pred = (target + torch.randn(args.boxes, 4, generator=g).to(dev) * 10).requires_grad_()
    deltas, deltas_t = torch.randn(args.boxes, 4, generator=g).to(dev).requires_grad_(), torch.randn(args.boxes, 4, generator=g).to(dev)

    focal = FocalLoss()

    def tv_focal(x):
        onehot = F.one_hot(labels, args.classes + 1)[:, :args.classes].to(x.dtype)
        return tvops.sigmoid_focal_loss(x, onehot, reduction='sum') / num_pos

    rows = [
        ('FocalLoss vs torchvision sigmoid_focal_loss', logits, lambda x: focal(x, labels, avg_factor=num_pos), tv_focal),
        ('SmoothL1Loss (F.smooth_l1_loss) vs torch.where version', deltas,
         lambda x: SmoothL1Loss(beta=1 / 9)(x, deltas_t), lambda x: smooth_l1_where(x, deltas_t, 1 / 9)),
        ('GIoULoss vs torchvision generalized_box_iou_loss', pred, lambda x: GIoULoss()(x, target),
         lambda x: tvops.generalized_box_iou_loss(x, target, reduction='mean')),
        ('DIoULoss vs torchvision distance_box_iou_loss', pred, lambda x: DIoULoss()(x, target),
         lambda x: tvops.distance_box_iou_loss(x, target, reduction='mean')),
        ('CIoULoss vs torchvision complete_box_iou_loss', pred, lambda x: CIoULoss()(x, target),
         lambda x: tvops.complete_box_iou_loss(x, target, reduction='mean')),
    ]
    print(f'device {dev}, {args.anchors} anchors x {args.classes} classes, {args.boxes} boxes, '
          f'median of {args.repeats} forward+backward runs\n')
    print('| loss | learndet (ms) | peer (ms) | learndet / peer |')
    print('|---|---|---|---|')
    for name, x, ours, peer in rows:
        t_ours, t_peer = time_pair(ours, peer, x, args.repeats, dev)
        print(f'| {name} | {t_ours * 1e3:.2f} | {t_peer * 1e3:.2f} | {t_ours / t_peer:.2f} |')


if __name__ == '__main__':
    main()
