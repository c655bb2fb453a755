#!/usr/bin/env python
"""Data-loading throughput of the shapes training pipeline (images/s), by number of DataLoader workers.

    python benchmarks/bench_dataloading.py                       # 512 px, workers 0 and 2, median of 5 runs
    python benchmarks/bench_dataloading.py --num-images 16 --repeats 1 --img-size 128   # smoke run

"fresh loader": one full pass with a new loader (worker start-up included, as in an epoch without persistent
workers); "persistent workers": later passes of one loader (start-up excluded). Medians of --repeats passes; the
ratio column compares the persistent figure with the first worker count, measured in the same run.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import learndet  # noqa: F401
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from learndet.data.datasets import CocoDataset
from learndet.data.loader import build_dataloader
from learndet.data.shapes import DEFAULT_CLASSES, make_shapes

IMG_NORM_CFG = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)


def train_pipeline(img_size):
    "The shapes train pipeline of learndet/configs/_base_/datasets/shapes_detection.py at `img_size`."
    return [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', img_scale=(img_size, img_size), keep_ratio=True),
            dict(type='RandomFlip', flip_ratio=0.5), dict(type='Normalize', **IMG_NORM_CFG),
            dict(type='Pad', size_divisor=32), dict(type='DefaultFormatBundle'),
            dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels'])]


def one_pass(dataset, workers, batch_size, seed):
    "Images/s of one full pass over `dataset` with a fresh loader (worker start-up included)."
    t0 = time.perf_counter()
    loader = build_dataloader(dataset, samples_per_gpu=batch_size, workers_per_gpu=workers, seed=seed)
    n = sum(batch['img'].shape[0] for batch in loader)
    return n / (time.perf_counter() - t0)


def persistent_passes(dataset, workers, batch_size, repeats):
    "Images/s of passes 2.. of one loader with persistent workers (start-up excluded)."
    loader = build_dataloader(dataset, samples_per_gpu=batch_size, workers_per_gpu=workers, seed=0,
                              persistent_workers=True)
    rates = []
    for r in range(repeats + 1):
        loader.sampler.set_epoch(r)
        t0 = time.perf_counter()
        n = sum(batch['img'].shape[0] for batch in loader)
        rates.append(n / (time.perf_counter() - t0))
    return rates[1:]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--img-size', type=int, default=512)
    p.add_argument('--num-images', type=int, default=96, help='images in the (generated) train split')
    p.add_argument('--workers', type=int, nargs='+', default=[0, 2])
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--repeats', type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(1)   # the pipeline is NumPy/PIL work; keep the main process from competing with workers
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = make_shapes(Path(tmp) / 'shapes', num_images=args.num_images, img_size=args.img_size, seed=0,
                           val_fraction=0.)
        gen_s = time.perf_counter() - t0
        ds = CocoDataset(str(root / 'annotations/instances_train.json'), train_pipeline(args.img_size),
                         img_prefix=str(root / 'train'), classes=DEFAULT_CLASSES, filter_empty_gt=False)
        rows = []
        for workers in args.workers:
            one_pass(ds, workers, args.batch_size, seed=0)                         # warm-up (file cache, imports)
            fresh = [one_pass(ds, workers, args.batch_size, seed=r) for r in range(args.repeats)]
            steady = persistent_passes(ds, workers, args.batch_size, args.repeats) if workers else fresh
            rows.append((workers, statistics.median(fresh), statistics.median(steady), min(steady), max(steady)))
    print(f'shapes train pipeline, {args.img_size} px, {len(ds)} images, batch {args.batch_size}, '
          f'median of {args.repeats} passes (generation of the set: {gen_s:.1f} s, '
          f'{args.num_images / gen_s:.0f} images/s)\n')
    print('| workers | fresh loader, images/s | persistent workers, images/s (min-max) | ms/image | ratio vs first |')
    print('|---:|---:|---:|---:|---:|')
    for workers, fresh, med, lo, hi in rows:
        print(f'| {workers} | {fresh:.1f} | {med:.1f} ({lo:.1f}-{hi:.1f}) | {1000 / med:.1f} | {med / rows[0][2]:.2f} |')
    return rows


if __name__ == '__main__':
    main()
