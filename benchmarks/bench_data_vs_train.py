#!/usr/bin/env python
"""Does data loading keep up with training? For a detector config on the shapes set, on this machine:

    python benchmarks/bench_data_vs_train.py                                  # the tiny shapes RetinaNet
    python benchmarks/bench_data_vs_train.py --config retinanet/retinanet_r50_fpn_1x_coco.py ...
    python benchmarks/bench_data_vs_train.py --cfg-options "data.train.pipeline.2.img_scale=(512,512)"
    python benchmarks/bench_data_vs_train.py --iters 4 --repeats 1 --num-images 16   # smoke run

Three measurements, each the median of --repeats:
1. loading alone: images/s of the train loader (config's workers, persistent), nothing else running;
2. training alone: images/s of train steps (forward, losses, backward, SGD step) on batches held in memory;
3. a real run: the runner trains with the loader's workers running beside it (they share the CPU cores), and
   we report the share of each iteration spent waiting for data (IterTimerHook's data_time / time).
Loading keeps up when (1) is well above (2) and the waiting share in (3) is small.
"""
import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import learndet  # noqa: F401
except ImportError:  # run from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import learndet  # noqa: F401

import torch

from learndet.config import load_config
from learndet.core import get_device, set_random_seed, to_device
from learndet.data.datasets import build_dataset
from learndet.data.loader import build_dataloader
from learndet.models.detectors import build_detector
from learndet.optim import build_optimizer
from learndet.dist_utils import get_logger
from learndet.runner import parse_losses


def loader_rate(dataset, batch, workers, batches, repeats):
    "Images/s of `batches` batches from one persistent loader, per pass; the first pass (start-up) is dropped."
    loader = build_dataloader(dataset, batch, workers, seed=0, persistent_workers=workers > 0)
    rates = []
    for r in range(repeats + 1):
        loader.sampler.set_epoch(r)
        it, n = iter(loader), 0
        t0 = time.perf_counter()
        for _ in range(batches):
            n += next(it)['img'].shape[0]
        rates.append(n / (time.perf_counter() - t0))
        del it
    return rates[1:]


def step_rate(model, optimizer, batches, device, repeats):
    "Images/s of training steps on batches already in memory (and on the device)."
    model.train()
    batches = [to_device(b, device) for b in batches]
    def step(b):
        loss, _ = parse_losses(model(**b))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    step(batches[0])                                        # warm-up
    rates = []
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in batches:
            step(b)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        rates.append(sum(len(b['img_metas']) for b in batches) / (time.perf_counter() - t0))
    return rates


def real_run(model, optimizer, dataset, batch, workers, iters, repeats):
    """Per repeat: the share of each iteration spent waiting for data (data_time / time) and images/s, over
    `iters` runner iterations after the first (which starts the workers)."""
    from learndet.runner import IterBasedRunner
    from learndet.hooks import IterTimerHook, OptimizerHook
    shares, rates = [], []
    for r in range(repeats):
        runner = IterBasedRunner(model, optimizer, max_iters=iters + 1,
                                 logger=get_logger('bench', log_level=logging.WARNING))
        runner.register_hook(OptimizerHook())
        runner.register_hook(IterTimerHook(), priority='LOW')
        runner.run([build_dataloader(dataset, batch, workers, seed=r)], [('train', 1)])
        h = runner.log_buffer.val_history
        data_t, it_t = sum(h['data_time'][1:]), sum(h['time'][1:])
        shares.append(data_t / it_t)
        rates.append(batch * (len(h['time']) - 1) / it_t)
    return shares, rates


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default='retinanet/retinanet_tiny_r18_fpn_shapes.py')
    p.add_argument('--num-images', type=int, default=96, help='images in the generated shapes train split')
    p.add_argument('--iters', type=int, default=8, help='batches per measured pass')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--device', default='cpu')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='config overrides, e.g. "data.train.pipeline.2.img_scale=(512,512)" data.workers_per_gpu=0')
    args = p.parse_args(argv)
    device = get_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / 'shapes'
        cfg = load_config(args.config, args.cfg_options)
        train = cfg.data.train
        train.ann_file, train.img_prefix = str(root / 'annotations/instances_train.json'), str(root / 'train')
        train.generate = dict(train.get('generate', {}), num_images=args.num_images)
        batch, workers = cfg.data.samples_per_gpu, cfg.data.workers_per_gpu
        dataset = build_dataset(train)
        set_random_seed(0)
        model = build_detector(cfg.model).to(device)
        optimizer = build_optimizer(model, cfg.optimizer)
        loading = loader_rate(dataset, batch, workers, args.iters, args.repeats)
        held = list(b for b, _ in zip(build_dataloader(dataset, batch, 0, seed=0), range(args.iters)))
        training = step_rate(model, optimizer, held, device, args.repeats)
        shares, run_rates = real_run(model, optimizer, dataset, batch, workers, args.iters, args.repeats)
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    img = cfg.data.train.pipeline[2].get('img_scale')
    print(f'{args.config}: {n_params:.2f} M parameters, batch {batch}, {workers} loader workers, images {img}, '
          f'{device.type}, {torch.get_num_threads()} torch threads; medians of {args.repeats} passes of '
          f'{args.iters} batches\n')
    print('| measurement | images/s (min-max) |')
    print('|---|---:|')
    for name, rates in (('loading alone', loading), ('training steps alone (batches in memory)', training),
                        ('real run: training with the loader beside it', run_rates)):
        print(f'| {name} | {statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f}) |')
    print(f'\nloading / training = {statistics.median(loading) / statistics.median(training):.1f}x; '
          f'in the real run {100 * statistics.median(shares):.1f}% of each iteration is spent waiting for data '
          f'(min-max {100 * min(shares):.1f}-{100 * max(shares):.1f}%)')
    return dict(loading=loading, training=training, shares=shares, run=run_rates)


if __name__ == '__main__':
    main()
