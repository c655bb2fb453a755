"""Time `learndet.boxes.bbox_overlaps` against `torchvision.ops.box_iou` / `generalized_box_iou`, in one run.

    python benchmarks/bench_iou.py                        # full sizes, CPU
    python benchmarks/bench_iou.py --device cuda          # on a GPU (bbox_overlaps never chunks there)
    python benchmarks/bench_iou.py --small --repeats 2    # smoke run (tests/test_boxes.py)

Cases on both sides of the chunking threshold (2**21 pairs). Three columns per case, timed interleaved (the order is shuffled each round, so load drift hits all three) and
reported as medians: the library's `bbox_overlaps` (which, on the CPU, computes matrices of at least
`learndet.boxes.CHUNK_MIN_PAIRS` pairs in cache-sized pieces), the same arithmetic as one broadcast over the
whole matrix (`bbox_overlaps(..., chunk_pairs=0)`), and torchvision. Each case also checks the three agree:
the library equals the single broadcast bit for bit, and torchvision to 1e-5.
"""
import argparse
import inspect
import math
import random
import statistics
import time

import torch
from torchvision import ops

from learndet.anchors import AnchorGenerator
from learndet.boxes import bbox_overlaps

HAS_CHUNKS = 'chunk_pairs' in inspect.signature(bbox_overlaps).parameters   # False for the version before chunking


def broadcast(b1, b2, mode='iou'):
    "The whole matrix as one broadcast (the library's arithmetic, no pieces)."
    return bbox_overlaps(b1, b2, mode, chunk_pairs=0) if HAS_CHUNKS else bbox_overlaps(b1, b2, mode)


def timeit(fns: dict, repeats: int, device) -> dict:
    "Median milliseconds of each function; every round runs all of them once, in a shuffled order."
    for fn in fns.values():
        fn()                                                   # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        names = list(fns)
        random.shuffle(names)
        for k in names:
            if device.type == 'cuda':
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fns[k]()
            if device.type == 'cuda':
                torch.cuda.synchronize()
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def gt_boxes(n, device, gen, w=1333., h=800.):
    "n ground-truth-like boxes in a w x h image, sides log-uniform in [8, 400]."
    wh = torch.exp(torch.empty(n, 2).uniform_(math.log(8), math.log(400), generator=gen))
    xy = torch.rand(n, 2, generator=gen) * (torch.tensor([w, h]) - wh)
    return torch.cat([xy, xy + wh], 1).to(device)


def retina_anchors(device, small=False):
    "RetinaNet's anchors for an 800 x 1333 input (201,600), or for 100 x 168 with --small."
    sizes = [(13, 21), (7, 11), (4, 6), (2, 3), (1, 2)] if small else [(100, 168), (50, 84), (25, 42), (13, 21), (7, 11)]
    gen = AnchorGenerator([8, 16, 32, 64, 128], [0.5, 1., 2.], octave_base_scale=4, scales_per_octave=3)
    return torch.cat(gen.grid_priors(sizes)).to(device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=9)
    parser.add_argument('--small', action='store_true', help='tiny sizes, for a smoke test')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    device, gen = torch.device(args.device), torch.Generator().manual_seed(args.seed)
    random.seed(args.seed)
    anchors = retina_anchors(device, args.small)
    s = 10 if args.small else 1
    cases = [  # (name, bboxes1, bboxes2, mode)
        (f'MaxIoU: 50 GTs x {len(anchors):,} anchors', gt_boxes(50, device, gen), anchors, 'iou'),
        (f'MaxIoU: 20 GTs x {len(anchors):,} anchors', gt_boxes(20, device, gen), anchors, 'iou'),
        (f'{len(anchors):,} anchors x 5 boxes (IoU)', anchors, gt_boxes(5, device, gen), 'iou'),
        (f'{3000 // s} x {3000 // s} proposals', gt_boxes(3000 // s, device, gen), gt_boxes(3000 // s, device, gen), 'iou'),
        (f'{1500 // s} x {1500 // s} proposals', gt_boxes(1500 // s, device, gen), gt_boxes(1500 // s, device, gen), 'iou'),
        (f'{1000 // s} x {1000 // s} proposals', gt_boxes(1000 // s, device, gen), gt_boxes(1000 // s, device, gen), 'iou'),
        (f'{300 // s} x {300 // s} boxes', gt_boxes(300 // s, device, gen), gt_boxes(300 // s, device, gen), 'iou'),
        (f'GIoU {2000 // s} x {2000 // s}', gt_boxes(2000 // s, device, gen), gt_boxes(2000 // s, device, gen), 'giou'),
        ('GIoU 100 x 20 (a DETR matching)', gt_boxes(100, device, gen), gt_boxes(20, device, gen), 'giou'),
    ]
    peers = {'iou': ops.box_iou, 'giou': ops.generalized_box_iou}
    rows = []
    for name, b1, b2, mode in cases:
        ours, one, peer = bbox_overlaps(b1, b2, mode), broadcast(b1, b2, mode), peers[mode](b1, b2)
        assert torch.equal(ours, one), f'{name}: bbox_overlaps differs from the single broadcast'
        torch.testing.assert_close(ours, peer, atol=1e-5, rtol=1e-5, msg=f'{name}: differs from torchvision')
        t = timeit({'ours': lambda: bbox_overlaps(b1, b2, mode), 'one': lambda: broadcast(b1, b2, mode),
                    'peer': lambda: peers[mode](b1, b2)}, args.repeats, device)
        rows.append((name, t['ours'], t['one'], t['peer']))
    print(f'device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.repeats}, '
          f'bbox_overlaps {"with" if HAS_CHUNKS else "without"} chunking')
    print('| case | bbox_overlaps (ms) | one broadcast (ms) | torchvision (ms) | vs broadcast | vs torchvision |')
    print('|---|---:|---:|---:|---:|---:|')
    for name, ours, one, peer in rows:
        print(f'| {name} | {ours:.2f} | {one:.2f} | {peer:.2f} | {ours / one:.2f} | {ours / peer:.2f} |')
    return rows


if __name__ == '__main__':
    main()
