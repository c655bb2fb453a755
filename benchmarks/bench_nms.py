"""Time learndet's box operations against their peers, in one run, on the CPU (or --device cuda).

    python benchmarks/bench_nms.py                 # full sizes
    python benchmarks/bench_nms.py --small --repeats 2   # smoke run (tests/test_bench_nms.py)

Prints a markdown table: median milliseconds over --repeats runs and the ratio learndet / peer measured in the
same run (< 1: learndet is faster). "hand NMS" is the chapter's vectorised teaching version (IoU matrix + Python
loop over boxes), which is why the library calls torchvision's kernel instead.
"""
import argparse
import statistics
import time

import torch
from torchvision import ops

from learndet.boxes import batched_nms, bbox_overlaps, multiclass_nms, nms, soft_nms


def hand_nms(boxes, scores, iou_threshold):
    "The chapter's vectorised NMS: IoU matrix once, then a loop over the sorted boxes."
    order = scores.argsort(descending=True)
    ious = bbox_overlaps(boxes[order], boxes[order])
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= ious[i] > iou_threshold
    return order[keep]


def timeit_pair(fn_ours, fn_peer, repeats, device):
    "Median milliseconds of both functions, runs interleaved (ours, peer, ours, ...) so that load drift hits both."
    fn_ours(); fn_peer()                                    # warm-up
    times = ([], [])
    for _ in range(repeats):
        for fn, bucket in zip((fn_ours, fn_peer), times):
            if device.type == 'cuda':
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == 'cuda':
                torch.cuda.synchronize()
            bucket.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def random_boxes(n, device, extent=800., size=150.):
    xy = torch.rand(n, 2, device=device) * extent
    return torch.cat([xy, xy + torch.rand(n, 2, device=device) * size + 2], 1)


def distinct_scores(n, device):
    "Scores without ties, so that both implementations keep boxes in the same order."
    return (torch.randperm(n, device=device).float() + 1) / n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=7)
    p.add_argument('--small', action='store_true', help='tiny sizes, for a smoke test')
    p.add_argument('--device', default='cpu')
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    n_nms, n_batched, n_dense, n_iou = (200, 500, 100, (500, 20)) if args.small else (2000, 10000, 1000, (100000, 50))
    rows = []

    boxes, scores = random_boxes(n_nms, dev), distinct_scores(n_nms, dev)
    assert torch.equal(nms(boxes, scores, 0.5)[1], ops.nms(boxes, scores, 0.5))
    assert torch.equal(hand_nms(boxes, scores, 0.5), ops.nms(boxes, scores, 0.5))
    rows.append((f'NMS, {n_nms} boxes', 'learndet.nms', 'torchvision.ops.nms',
                 *timeit_pair(lambda: nms(boxes, scores, 0.5), lambda: ops.nms(boxes, scores, 0.5), args.repeats, dev)))
    rows.append((f'NMS, {n_nms} boxes', 'hand NMS (chapter)', 'torchvision.ops.nms',
                 *timeit_pair(lambda: hand_nms(boxes, scores, 0.5), lambda: ops.nms(boxes, scores, 0.5),
                              max(1, args.repeats // 2), dev)))

    boxes, scores = random_boxes(n_batched, dev), distinct_scores(n_batched, dev)
    idxs = torch.randint(0, 80, (n_batched,), device=dev)
    cfg = dict(type='nms', iou_threshold=0.5)
    assert torch.equal(batched_nms(boxes, scores, idxs, cfg)[1], ops.batched_nms(boxes, scores, idxs, 0.5))
    rows.append((f'batched NMS, {n_batched} boxes, 80 classes', 'learndet.batched_nms', 'torchvision batched_nms',
                 *timeit_pair(lambda: batched_nms(boxes, scores, idxs, cfg),
                              lambda: ops.batched_nms(boxes, scores, idxs, 0.5), args.repeats, dev)))

    # a RetinaNet-like test step: 1000 top boxes, 80 classes + background, score_thr 0.05, keep 100
    dense_boxes = random_boxes(n_dense, dev)
    dense_scores = torch.cat([distinct_scores(n_dense * 80, dev).view(n_dense, 80) ** 8, torch.zeros(n_dense, 1, device=dev)], 1)

    def tv_multiclass():
        s = dense_scores[:, :-1]
        mask = s > 0.05
        box_idx, labels = mask.nonzero(as_tuple=True)
        keep = ops.batched_nms(dense_boxes[box_idx], s[mask], labels, 0.5)[:100]
        return dense_boxes[box_idx][keep], labels[keep]

    assert torch.equal(multiclass_nms(dense_boxes, dense_scores, 0.05, cfg, 100)[1], tv_multiclass()[1])
    rows.append((f'multiclass NMS, {n_dense} x 80 scores', 'learndet.multiclass_nms', 'torchvision (same steps)',
                 *timeit_pair(lambda: multiclass_nms(dense_boxes, dense_scores, 0.05, cfg, 100), tv_multiclass,
                              args.repeats, dev)))

    b1, b2 = random_boxes(n_iou[0], dev), random_boxes(n_iou[1], dev)
    rows.append((f'IoU matrix {n_iou[0]} x {n_iou[1]}', 'learndet.bbox_overlaps', 'torchvision.ops.box_iou',
                 *timeit_pair(lambda: bbox_overlaps(b1, b2), lambda: ops.box_iou(b1, b2), args.repeats, dev)))

    sb, ss = random_boxes(n_nms // 2, dev), distinct_scores(n_nms // 2, dev)
    rows.append((f'Soft-NMS (linear), {n_nms // 2} boxes', 'learndet.soft_nms', 'learndet.nms (hard)',
                 *timeit_pair(lambda: soft_nms(sb, ss, 0.3), lambda: nms(sb, ss, 0.3), max(1, args.repeats // 2), dev)))

    print(f'device: {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.repeats} runs\n')
    print('| case | learndet | ms | peer | ms | ratio |')
    print('|---|---|---:|---|---:|---:|')
    for case, ours, peer, t_ours, t_peer in rows:
        print(f'| {case} | {ours} | {t_ours:.2f} | {peer} | {t_peer:.2f} | {t_ours / t_peer:.2f} |')
    return rows


if __name__ == '__main__':
    main()
