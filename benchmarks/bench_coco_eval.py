"""Time learndet's COCO evaluator against pycocotools' COCOeval and faster-coco-eval on the same input.

    python benchmarks/bench_coco_eval.py                       # 5,000 images x 100 detections, 3 runs each
    python benchmarks/bench_coco_eval.py --images 200 --runs 1 # a quick look

Each evaluator starts from the same in-memory GT dict and results list and ends with the 12 summary stats
(loading the results, matching, accumulating, summarising). The script checks that the three agree
(learndet's precision/recall arrays must equal pycocotools' exactly), then prints medians and ratios
measured in the same run.
"""
import argparse, contextlib, copy, io, statistics, time

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from learndet.evaluation.coco import coco_eval, synthetic_coco


def run_pycocotools(gt, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(); coco_gt.dataset = gt; coco_gt.createIndex()
        E = COCOeval(coco_gt, coco_gt.loadRes(dets), 'bbox'); E.evaluate(); E.accumulate(); E.summarize()
    return E


def run_faster(gt, dets):
    from faster_coco_eval import COCO as FCOCO, COCOeval_faster
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = FCOCO(); coco_gt.dataset = gt; coco_gt.createIndex()
        E = COCOeval_faster(coco_gt, coco_gt.loadRes(dets), 'bbox'); E.evaluate(); E.accumulate(); E.summarize()
    return E


def median_time(fn, make_args, runs):
    times, out = [], None
    for _ in range(runs):
        args = make_args()                        # fresh copies: pycocotools' loadRes writes into the dicts
        t0 = time.perf_counter(); out = fn(*args); times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--images', type=int, default=5000)
    p.add_argument('--dets', type=int, default=100, help='detections per image')
    p.add_argument('--runs', type=int, default=3)
    p.add_argument('--skip-faster', action='store_true', help='leave out faster-coco-eval')
    a = p.parse_args(argv)
    gt, dets = synthetic_coco(a.images, a.dets, seed=0)
    fresh = lambda: (copy.deepcopy(gt), copy.deepcopy(dets))
    t_ours, ours = median_time(coco_eval, fresh, a.runs)
    t_ref, E = median_time(run_pycocotools, fresh, a.runs)
    exact = all(np.array_equal(ours[k], E.eval[k]) for k in ('precision', 'recall', 'scores'))
    stats_diff = float(np.abs(ours['stats'] - E.stats).max())
    rows = [('learndet coco_eval', t_ours, exact, stats_diff), ('pycocotools COCOeval', t_ref, True, 0.0)]
    if not a.skip_faster:
        try:
            t_fast, F = median_time(run_faster, fresh, a.runs)
            rows.append(('faster-coco-eval', t_fast, None, float(np.abs(np.asarray(F.stats[:12]) - E.stats).max())))
        except ImportError:
            print('faster-coco-eval is not installed: skipped')
    print(f'\n{a.images} images x {a.dets} detections ({len(gt["annotations"])} GTs, {len(dets)} detections), '
          f'median of {a.runs} run(s)\n')
    print('| evaluator | time (s) | speed-up vs pycocotools | vs learndet | arrays equal to pycocotools | max |stats diff| |')
    print('|---|---|---|---|---|---|')
    for name, t, eq, diff in rows:
        print(f'| {name} | {t:.3f} | {t_ref / t:.1f}x | {t / t_ours:.2f}x | {"-" if eq is None else eq} | {diff:.1e} |')
    return rows


if __name__ == '__main__':
    main()
