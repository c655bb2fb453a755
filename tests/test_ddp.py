"""DDP on CPU: two gloo processes, each with half of every batch through a DistributedSampler, must end with the
same parameters as one process given the combined batch (ToyRegressor has no batch statistics). Also checks
that only rank 0 writes checkpoints and logs, that seeds differ per rank, and that evaluation under DDP
does not hang."""
import json
import os
import os.path as osp
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from learndet.core import set_random_seed
from learndet.runner import (EpochBasedRunner, ToyDataset, ToyRegressor, get_logger, init_dist, rank_seed,
                             wrap_ddp, get_dist_info)
import learndet.hooks  # noqa: F401
import learndet.lr_updater  # noqa: F401
from learndet.hooks import EvalHook

PER_GPU, EPOCHS, N = 4, 3, 48


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def train(model, loader, work_dir, val_loader):
    import logging
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    r = EpochBasedRunner(model, opt, work_dir=work_dir, max_epochs=EPOCHS,
                         logger=get_logger('learndet.ddp', log_level=logging.WARNING))
    r.register_training_hooks(dict(policy='step', step=[2], warmup='linear', warmup_iters=4, warmup_ratio=0.1),
                              dict(grad_clip=dict(max_norm=10.0)), dict(interval=1),
                              dict(interval=2, hooks=[dict(type='TextLoggerHook')]))
    r.register_hook(EvalHook(val_loader, metric='mae'))
    r.run([loader], [('train', 1)])
    return r


def worker(rank, world_size, port, work_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    init_dist('gloo')
    try:
        assert get_dist_info() == (rank, world_size)
        set_random_seed(0, deterministic=True)           # the same initial model on every rank ...
        model = wrap_ddp(ToyRegressor())
        set_random_seed(rank_seed(0))                   # ... then a different stream per rank (augmentations)
        ds = ToyDataset(N)
        sampler = torch.utils.data.distributed.DistributedSampler(ds, shuffle=True, seed=0)
        loader = torch.utils.data.DataLoader(ds, batch_size=PER_GPU, sampler=sampler)
        val = torch.utils.data.DataLoader(ToyDataset(16, seed=1), batch_size=8)
        r = train(model, loader, work_dir, val)
        draws = torch.tensor([rank_seed(0), torch.randint(0, 10**6, ()).item()])
        gathered = [torch.zeros_like(draws) for _ in range(world_size)]
        dist.all_gather(gathered, draws)
        if rank == 0:
            torch.save(dict(state_dict=model.module.state_dict(), draws=[g.tolist() for g in gathered],
                            lr=r.current_lr()), osp.join(work_dir, 'rank0_result.pt'))
    finally:
        dist.destroy_process_group()


def single_process(work_dir):
    set_random_seed(0, deterministic=True)
    model = ToyRegressor()
    ds = ToyDataset(N)
    # the same permutation as the DistributedSampler (seed + epoch), whole: rank r takes positions r, r+2, ...
    # so two per-rank batches of PER_GPU together are one batch of 2*PER_GPU in this order
    sampler = torch.utils.data.distributed.DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=2 * PER_GPU, sampler=sampler)
    val = torch.utils.data.DataLoader(ToyDataset(16, seed=1), batch_size=8)
    train(model, loader, work_dir, val)
    return model


def test_ddp_gloo_two_processes_match_single_process(tmp_path):
    ddp_dir, single_dir = str(tmp_path / 'ddp'), str(tmp_path / 'single')
    os.makedirs(ddp_dir)
    mp.spawn(worker, args=(2, free_port(), ddp_dir), nprocs=2, join=True)
    result = torch.load(osp.join(ddp_dir, 'rank0_result.pt'), weights_only=True)
    reference = single_process(single_dir)
    for name, p in reference.state_dict().items():
        torch.testing.assert_close(result['state_dict'][name], p, rtol=1e-5, atol=1e-6, msg=name)
    moved = max((result['state_dict'][k] - v).abs().max().item() for k, v in ToyRegressor().state_dict().items())
    assert moved > 1e-3                                   # it did train (not two idle copies of the initial model)
    # seeds per rank: seed + rank, and the two ranks' generators really differ
    (s0, d0), (s1, d1) = result['draws']
    assert (s0, s1) == (0, 1) and d0 != d1
    # rank 0 alone wrote checkpoints and logs; keys have no DDP 'module.' prefix
    files = sorted(os.listdir(ddp_dir))
    assert [f for f in files if f.endswith('.log.json')].__len__() == 1, files
    assert {'epoch_1.pth', 'epoch_2.pth', 'epoch_3.pth', 'latest.pth'} <= set(files)
    ckpt = torch.load(osp.join(ddp_dir, 'latest.pth'), weights_only=True)
    assert not any(k.startswith('module.') for k in ckpt['state_dict']) and ckpt['meta']['world_size'] == 2
    # logged losses are averaged over the ranks: the same number of records as the single run
    log = [f for f in files if f.endswith('.log.json')][0]
    records = [json.loads(l) for l in open(osp.join(ddp_dir, log))][1:]
    assert [(r['mode'], r['epoch']) for r in records if r['mode'] == 'val'] == [('val', e) for e in (1, 2, 3)]
