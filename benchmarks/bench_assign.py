"""Benchmark: anchors + MaxIoU assignment + box encoding for a batch, learndet vs torchvision, in one run.

RetinaNet settings (5 levels, strides 8..128, octave_base_scale=4, scales_per_octave=3, ratios [0.5, 1, 2],
pos 0.5 / neg 0.4 / min_pos_iou 0, deltas with means 0 and stds 1), a batch of `--batch` images of `--height` x
`--width` padded to a multiple of 32, `--gts` random ground truths per image. Both sides get the same images,
feature-map sizes and ground truths and do the same work per batch:

- learndet: `AnchorGenerator.grid_priors` once, then per image `valid_flags` + `anchor_inside_flags`,
  `MaxIoUAssigner.assign`, `PseudoSampler.sample` and `DeltaXYWHBBoxCoder.encode` of the positives;
- torchvision: `AnchorGenerator` (anchors for the batch), then per image `box_iou` + `Matcher` (low-quality matches
  allowed) and `BoxCoder.encode_single` of the positives (what torchvision's RetinaNet head does).

Prints a markdown table of medians over `--repeats` runs (after one warm-up) and the ratio learndet / torchvision.
Run: `python benchmarks/bench_assign.py` (add `--device cuda` on a GPU).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch


def make_inputs(batch, height, width, num_gts, device, seed=0):
    "Ground truths `(num_gts, 4)` per image, inside the image, sizes from 8 px to half the image."
    g = torch.Generator().manual_seed(seed)
    gts, labels = [], []
    for _ in range(batch):
        wh = torch.exp(torch.empty(num_gts, 2).uniform_(math.log(8), math.log(min(height, width) / 2), generator=g))
        xy = torch.rand(num_gts, 2, generator=g) * (torch.tensor([width, height]) - wh)
        gts.append(torch.cat([xy, xy + wh], 1).to(device))
        labels.append(torch.randint(0, 80, (num_gts,), generator=g).to(device))
    return gts, labels


def sync(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()


def learndet_side(device):
    from learndet.anchors import AnchorGenerator, anchor_inside_flags
    from learndet.assigners import MaxIoUAssigner
    from learndet.samplers import PseudoSampler
    from learndet.coders import DeltaXYWHBBoxCoder
    gen = AnchorGenerator(strides=[8, 16, 32, 64, 128], ratios=[0.5, 1.0, 2.0], octave_base_scale=4, scales_per_octave=3)
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1)
    sampler = PseudoSampler()
    coder = DeltaXYWHBBoxCoder(target_means=(0., 0., 0., 0.), target_stds=(1., 1., 1., 1.))

    def run(featmap_sizes, img_shape, pad_shape, gts, labels):
        times = {}
        t = time.perf_counter()
        flat = torch.cat(gen.grid_priors(featmap_sizes, device=device))                      # (A, 4)
        sync(device); times['anchors'] = time.perf_counter() - t
        t = time.perf_counter()
        assigned = []
        for gt, lab in zip(gts, labels):
            valid = torch.cat(gen.valid_flags(featmap_sizes, pad_shape, device=device))
            inside = anchor_inside_flags(flat, valid, img_shape, allowed_border=-1)          # RetinaNet: all valid
            anchors = flat if bool(inside.all()) else flat[inside]
            res = assigner.assign(anchors, gt, None, lab)
            assigned.append((anchors, sampler.sample(res, anchors, gt)))
        sync(device); times['assign'] = time.perf_counter() - t
        t = time.perf_counter()
        targets = [coder.encode(s.pos_bboxes, s.pos_gt_bboxes) for _, s in assigned]
        sync(device); times['encode'] = time.perf_counter() - t
        return times, [s.pos_inds for _, s in assigned], targets
    return run


def torchvision_side(device, featmap_sizes):
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection._utils import BoxCoder, Matcher
    from torchvision.models.detection.image_list import ImageList
    from torchvision.ops import box_iou
    sizes = tuple(tuple(s * 4 * 2 ** (i / 3) for i in range(3)) for s in (8, 16, 32, 64, 128))
    gen = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)
    matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
    feats = [torch.empty(1, 1, h, w, device=device) for h, w in featmap_sizes]   # only the shapes are read

    def run(batch_tensor, image_sizes, gts):
        times = {}
        t = time.perf_counter()
        anchors = gen(ImageList(batch_tensor, image_sizes), feats)
        sync(device); times['anchors'] = time.perf_counter() - t
        t = time.perf_counter()
        matched = []
        for a, gt in zip(anchors, gts):
            matched.append(matcher(box_iou(gt, a)))
        sync(device); times['assign'] = time.perf_counter() - t
        t = time.perf_counter()
        targets = []
        for a, gt, m in zip(anchors, gts, matched):
            fg = torch.nonzero(m >= 0).squeeze(1)
            targets.append(coder.encode_single(gt[m[fg]], a[fg]))
        sync(device); times['encode'] = time.perf_counter() - t
        return times, [torch.nonzero(m >= 0).squeeze(1) for m in matched], targets
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--height', type=int, default=800)
    p.add_argument('--width', type=int, default=1333)
    p.add_argument('--gts', type=int, default=50)
    p.add_argument('--repeats', type=int, default=7)
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0: leave as is)')
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    pad_h, pad_w = (math.ceil(args.height / 32) * 32, math.ceil(args.width / 32) * 32)
    featmap_sizes = [(math.ceil(pad_h / s), math.ceil(pad_w / s)) for s in (8, 16, 32, 64, 128)]
    gts, labels = make_inputs(args.batch, args.height, args.width, args.gts, device)
    batch_tensor = torch.empty(args.batch, 1, pad_h, pad_w, device=device)        # only its shape is read
    ours, theirs = learndet_side(device), torchvision_side(device, featmap_sizes)
    img_shape, pad_shape = (args.height, args.width, 3), (pad_h, pad_w, 3)

    rows = {'learndet': [], 'torchvision': []}
    for rep in range(args.repeats + 1):           # run both in turn, so that both see the same machine load
        t_ours, pos_ours, _ = ours(featmap_sizes, img_shape, pad_shape, gts, labels)
        t_tv, pos_tv, _ = theirs(batch_tensor, [(args.height, args.width)] * args.batch, gts)
        if rep > 0:                               # the first run is a warm-up
            rows['learndet'].append(t_ours); rows['torchvision'].append(t_tv)
    # sanity: the positives agree on the levels where both use the same strides (torchvision infers stride
    # P6/P7 as pad // featmap, e.g. 800 // 13 = 61, and rounds base anchors, so only counts are compared)
    n_ours, n_tv = sum(len(p) for p in pos_ours), sum(len(p) for p in pos_tv)

    def med(name, key):
        return statistics.median(r[key] if key != 'total' else sum(r.values()) for r in rows[name]) * 1000
    num_anchors = sum(h * w * 9 for h, w in featmap_sizes)
    print(f'anchors + MaxIoU assignment + encoding: batch {args.batch} x {args.height}x{args.width} '
          f'(padded {pad_h}x{pad_w}, {num_anchors} anchors/image), {args.gts} GTs/image, device {device}, '
          f'{torch.get_num_threads()} threads, median of {args.repeats} runs (ms)\n')
    print('| stage | learndet | torchvision | ratio |')
    print('|---|---|---|---|')
    for key in ('anchors', 'assign', 'encode', 'total'):
        a, b = med('learndet', key), med('torchvision', key)
        print(f'| {key} | {a:.1f} | {b:.1f} | {a / b:.2f} |')
    print(f'\npositives: learndet {n_ours}, torchvision {n_tv} (differences come from torchvision\'s rounded base '
          f'anchors and inferred strides)')
    ratio = med('learndet', 'total') / med('torchvision', 'total')
    print(f'ratio (learndet / torchvision, total): {ratio:.3f}')
    return ratio


if __name__ == '__main__':
    main(sys.argv[1:])
