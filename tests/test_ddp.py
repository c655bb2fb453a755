"""DDP on CPU: two gloo processes, each with half of every batch through a DistributedSampler, must end with the
same parameters as one process given the combined batch (ToyRegressor has no batch statistics). Also checks
that only rank 0 writes checkpoints and logs, that seeds differ per rank, and that evaluation under DDP
does not hang.
The tiny RetinaNet: `learndet train --launcher pytorch` under torchrun (2 gloo processes) end to end, and 2 processes
x B images ending with the same parameters as 1 process x 2B images (GroupNorm, see `equivalence_cfg`), with a
sampled cross-entropy and with RetinaNet's own focal loss, whose normaliser (the number of positives) is averaged
across the processes (`train_cfg.sync_avg_factor`, on by default; off, the two runs differ)."""
import json
import os
import os.path as osp
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from learndet.core import set_random_seed
import learndet  # noqa: F401  (registers every hook)
from learndet.runner import EpochBasedRunner
from learndet.dist_utils import get_dist_info, get_logger, init_dist, rank_seed, wrap_ddp
from learndet.hooks import EvalHook
from toys import ToyDataset, ToyRegressor

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


# ---------------------------------------------------------------------------------------------------------------
# The tiny RetinaNet under DDP: `learndet train --launcher pytorch` with torchrun end to end, and the parameter
# equivalence of 2 processes x B images with 1 process x 2B images.
# ---------------------------------------------------------------------------------------------------------------
import subprocess
import sys
from pathlib import Path

import learndet  # noqa: F401  (registers every model, dataset and pipeline step)
from learndet.config import load_config
from learndet.config import Config
from learndet.data.datasets import build_dataset
from learndet.data.loader import DistributedGroupSampler, build_dataloader
from learndet.data.shapes import get_shapes_dataset
from learndet.models.detectors import build_detector
from learndet.optim import build_optimizer

TINY = 'retinanet/retinanet_tiny_r18_fpn_shapes.py'
N_IMAGES, IMG = 20, 128          # 16 train + 4 val images of 128 px (val_fraction 0.2)
N_TRAIN, B = 16, 2               # images per process per iteration
# the set's parameters: the fixture generates it, and the configs' `generate` must say the same (ShapesDataset
# refuses a set on disk that disagrees with its `generate`); empty_prob=0: see equivalence_cfg
SHAPES = dict(num_images=N_IMAGES, img_size=IMG, seed=0, empty_prob=0.0)


@pytest.fixture(scope='module')
def shapes_cwd(tmp_path_factory):
    """A working directory whose data/shapes/ (the config's data_root) holds a small shapes set, generated here
    once, before any training process starts (the configs' `generate` names the same parameters, see SHAPES)."""
    cwd = tmp_path_factory.mktemp('ddp_shapes')
    # empty_prob=0: every image has objects (see equivalence_cfg for why the DDP equivalence needs that)
    root = get_shapes_dataset(cwd / 'data' / 'shapes', **SHAPES)
    assert len(os.listdir(root / 'train')) == N_TRAIN
    return cwd


def _learndet_script(tmp: Path) -> str:
    "The venv's `learndet` console script (what a user runs), or an equivalent launcher if it isn't installed."
    script = Path(sys.executable).parent / 'learndet'
    if script.is_file():
        return str(script)
    launcher = tmp / 'learndet_main.py'
    launcher.write_text('import sys\nfrom learndet.cli import main\nsys.exit(main())\n')
    return str(launcher)


def test_cli_train_torchrun_two_processes(shapes_cwd, tmp_path):
    work_dir = tmp_path / 'work'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
           f'--master_port={free_port()}', _learndet_script(tmp_path), 'train', TINY, '--launcher', 'pytorch',
           '--device', 'cpu', '--work-dir', str(work_dir), '--cfg-options', f'data.samples_per_gpu={B}',
           'data.workers_per_gpu=0', 'runner.max_epochs=1', 'lr_config.warmup_iters=2', 'log_config.interval=1',
           f'data.train.pipeline.2.img_scale=({IMG},{IMG})', f'data.val.pipeline.1.img_scale=({IMG},{IMG})',
           *[f'data.{split}.generate.{k}={v}' for split in ('train', 'val', 'test') for k, v in SHAPES.items()]]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=shapes_cwd, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    iters = N_TRAIN // (2 * B)                  # 4: each rank takes half of the 16 images, 2 per iteration
    # only rank 0 logs (console, text log, JSON log) and saves checkpoints: one copy of each line and file
    assert out.count(f'Epoch [1][{iters}/{iters}]') == 1, out[-4000:]
    assert f'Epoch [1][{iters + 1}/' not in out and f'/{2 * iters}]' not in out   # not the whole set per rank
    files = sorted(os.listdir(work_dir))
    logs, jsons = [f for f in files if f.endswith('.log')], [f for f in files if f.endswith('.log.json')]
    assert len(logs) == 1 and len(jsons) == 1, files
    assert {'epoch_1.pth', 'latest.pth', osp.basename(TINY)} <= set(files), files
    records = [json.loads(l) for l in open(work_dir / jsons[0])][1:]
    train = [r for r in records if r['mode'] == 'train']
    assert [r['iter'] for r in train] == list(range(1, iters + 1)), records     # each iteration logged once
    assert [r['mode'] for r in records].count('val') == 1 and 'bbox_mAP' in records[-1]   # rank 0 evaluated
    # the ranks' shares: the distributed group sampler that `learndet train` uses (shuffle, seed 0) splits the
    # 16 training images into two disjoint halves of 8 -> 4 iterations of 2 per rank, as the log shows
    cfg = Config.fromfile(str(work_dir / osp.basename(TINY)))
    cwd = os.getcwd()
    os.chdir(shapes_cwd)                        # the dumped config's data paths are relative to the run's cwd
    try:
        dataset = build_dataset(cfg.data.train)
    finally:
        os.chdir(cwd)
    shares = [list(DistributedGroupSampler(dataset, B, num_replicas=2, rank=r, seed=0)) for r in (0, 1)]
    assert [len(s) for s in shares] == [iters * B] * 2
    assert not set(shares[0]) & set(shares[1]) and set(shares[0]) | set(shares[1]) == set(range(N_TRAIN))
    # the checkpoint: plain keys, loads strictly into a fresh model built from the dumped config
    ckpt = torch.load(work_dir / 'latest.pth', map_location='cpu', weights_only=False)
    assert not [k for k in ckpt['state_dict'] if k.startswith('module.')]
    assert ckpt['meta']['world_size'] == 2 and ckpt['meta']['iter'] == iters and ckpt['meta']['epoch'] == 1
    fresh = build_detector(cfg.model)
    fresh.load_state_dict(ckpt['state_dict'], strict=True)       # torch's own strict load: no prefix stripping
    assert set(ckpt['state_dict']) == set(fresh.state_dict())


def equivalence_cfg(root: Path) -> dict:
    """The tiny config, made so that 2 processes x B images must equal 1 process x 2B images:
    - GroupNorm instead of BatchNorm (per-image statistics, the same however the batch is split);
    - no random flip; all images 128x128, so the padded batch size doesn't depend on the split;
    - a loss whose normaliser is the same per image: RetinaNet's focal loss divides by the number of positive
      anchors, which mmdetection 2.x counts *per process* (two processes with different numbers of positives then
      average differently from one process; learndet averages the count across processes, tested with the focal
      loss in `test_ddp_retinanet_focal_loss_two_by_b_equals_one_by_2b`). With a sigmoid cross-entropy the head "samples" (PseudoSampler) and
      divides by positives + negatives, and with neg_iou_thr == pos_iou_thr every anchor is one or the other:
      the normaliser is (anchors per image) x (images), proportional to the batch -- provided no image is
      empty, since an image without positives counts max(0, 1) = 1 extra (hence empty_prob=0 in the fixture);
      cross-entropy's gradients are then ~50x smaller than focal loss's, hence loss_weight=50;
    - SGD rather than AdamW, whose update divides by sqrt(v) and can blow float-rounding noise in near-zero
      gradients up to a full lr-sized step."""
    cfg = load_config(TINY)
    cfg.merge_from_dict({
        'model.backbone.norm_cfg': dict(type='GN', num_groups=4, requires_grad=True),
        'model.bbox_head.loss_cls': dict(_delete_=True, type='CrossEntropyLoss', use_sigmoid=True, loss_weight=50.0),
        'model.train_cfg.assigner.neg_iou_thr': 0.5,
        'data.train.ann_file': str(root / 'annotations' / 'instances_train.json'),
        'data.train.img_prefix': str(root / 'train') + '/',
        'data.train.pipeline.2.img_scale': (IMG, IMG),
        'data.train.generate': dict(SHAPES),
        'data.train.pipeline.3.flip_ratio': 0.0,
        'optimizer': dict(_delete_=True, type='SGD', lr=0.2, momentum=0.9, weight_decay=1e-4),
        'lr_config.warmup_iters': 2,
        'lr_config.warmup_ratio': 0.1,
    })
    return cfg.to_dict()


def run_detector(cfg: dict, loader, work_dir: str, distributed: bool):
    """Train one epoch with the library's runner and hooks (lr warmup, grad clipping); return the detector and
    the file names its forward passes saw, batch by batch."""
    import logging
    set_random_seed(0, deterministic=True)               # the same initial weights everywhere
    model = build_detector(cfg['model'])
    model.init_weights()
    seen = []
    model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append([osp.basename(meta['filename']) for meta in kwargs['img_metas']]),
        with_kwargs=True)
    optimizer = build_optimizer(model, cfg['optimizer'])
    net = wrap_ddp(model) if distributed else model
    runner = EpochBasedRunner(net, optimizer, work_dir=work_dir, max_epochs=1,
                              logger=get_logger('learndet.ddp', log_level=logging.WARNING))
    runner.register_training_hooks(cfg['lr_config'], cfg['optimizer_config'])
    runner.run([loader], [('train', 1)])
    return model, seen


def detector_worker(rank, world_size, port, cfg, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    init_dist('gloo')
    try:
        dataset = build_dataset(cfg['data']['train'])
        # shuffle=False: DistributedSampler deals image k to rank k % 2, so iteration i takes images
        # 4i, 4i+2 (rank 0) and 4i+1, 4i+3 (rank 1): together exactly the i-th batch of 4 of one process
        loader = build_dataloader(dataset, B, 0, dist=True, shuffle=False, seed=0)
        model, seen = run_detector(cfg, loader, osp.join(out_dir, 'work'), distributed=True)
        torch.save(dict(state_dict=model.state_dict() if rank == 0 else None, seen=seen),
                   osp.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def test_ddp_detector_two_by_b_equals_one_by_2b(shapes_cwd, tmp_path):
    cfg = equivalence_cfg(shapes_cwd / 'data' / 'shapes')
    mp.spawn(detector_worker, args=(2, free_port(), cfg, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1)]
    ddp_state = ranks[0]['state_dict']

    dataset = build_dataset(cfg['data']['train'])
    single, single_seen = run_detector(cfg, build_dataloader(dataset, 2 * B, 0, shuffle=False),
                                       str(tmp_path / 'single'), distributed=False)
    # the premise: the ranks saw disjoint images, and at every iteration their union is the single run's batch
    iters = N_TRAIN // (2 * B)
    seen0, seen1 = ranks[0]['seen'], ranks[1]['seen']
    assert len(seen0) == len(seen1) == len(single_seen) == iters
    assert not {f for b in seen0 for f in b} & {f for b in seen1 for f in b}
    assert [sorted(a + b) for a, b in zip(seen0, seen1)] == [sorted(s) for s in single_seen]
    # the strong check: the same parameters after 4 SGD steps (with momentum, warmup, clipping)
    for name, p in single.state_dict().items():
        torch.testing.assert_close(ddp_state[name], p, rtol=1e-4, atol=1e-5, msg=name)
    # ... and the check can fail: training moved the weights well beyond the tolerance ...
    set_random_seed(0, deterministic=True)
    init = build_detector(cfg['model'])
    init.init_weights()
    moved = max((ddp_state[k] - v).abs().max().item() for k, v in init.state_dict().items())
    assert moved > 1e-2, moved
    # ... and rank 0's images alone (what DDP would give without averaging the gradients) end elsewhere
    alone, _ = run_detector(cfg, build_dataloader(dataset, B, 0, dist=True, num_replicas=2, rank=0, shuffle=False),
                            str(tmp_path / 'alone'), distributed=False)
    off = max((ddp_state[k] - v).abs().max().item() for k, v in alone.state_dict().items())
    assert off > 1e-3, off


# ---------------------------------------------------------------------------------------------------------------
# RetinaNet as configured (focal loss averaged over the positives): the normaliser is averaged across the processes
# (`BaseDenseHead.avg_factor`, `train_cfg.sync_avg_factor`, on by default), so 2 x B equals 1 x 2B -- and with the
# flag off it does not, which shows that the check can fail.
# ---------------------------------------------------------------------------------------------------------------
from learndet.runner import Hook


def focal_equivalence_cfg(root: Path, sync_avg_factor: bool) -> dict:
    """The tiny RetinaNet with its own losses (FocalLoss over the positives, L1) and assigner (pos 0.5 / neg 0.4),
    made free of batch statistics and of randomness that depends on the split: GroupNorm in the backbone (the
    neck and head have no norm), no random flip, 128x128 images (one padded size however the batch is split), SGD
    (see `equivalence_cfg`)."""
    cfg = load_config(TINY)
    cfg.merge_from_dict({
        'model.backbone.norm_cfg': dict(type='GN', num_groups=4, requires_grad=True),
        'model.train_cfg': dict(sync_avg_factor=sync_avg_factor),   # merged into the base's train_cfg
        'data.train.ann_file': str(root / 'annotations' / 'instances_train.json'),
        'data.train.img_prefix': str(root / 'train') + '/',
        'data.train.pipeline.2.img_scale': (IMG, IMG),
        'data.train.generate': dict(SHAPES),
        'data.train.pipeline.3.flip_ratio': 0.0,
        'optimizer': dict(_delete_=True, type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
        'lr_config.warmup_iters': 2,
        'lr_config.warmup_ratio': 0.1,
    })
    return cfg.to_dict()


class RecordFirstGrads(Hook):
    "After the first iteration's optimizer step, keep a copy of every gradient (under DDP: the averaged one)."
    def __init__(self, model):
        self.model, self.grads = model, None

    def after_train_iter(self, runner):
        if self.grads is None:
            self.grads = {n: p.grad.detach().clone() for n, p in self.model.named_parameters() if p.grad is not None}


def run_recorded(cfg: dict, loader, work_dir: str, distributed: bool):
    """`run_detector` plus what the comparison needs: the first step's gradients and, per iteration, the number of
    positive anchors the head counted in this process's images (`DenseTargets.num_total_pos`)."""
    import logging
    set_random_seed(0, deterministic=True)
    model = build_detector(cfg['model'])
    model.init_weights()
    head, num_pos = model.bbox_head, []
    get_targets = head.get_targets
    def counting_get_targets(*args, **kwargs):
        targets = get_targets(*args, **kwargs)
        num_pos.append(targets.num_total_pos)
        return targets
    head.get_targets = counting_get_targets                       # this instance only
    optimizer = build_optimizer(model, cfg['optimizer'])
    net = wrap_ddp(model) if distributed else model
    runner = EpochBasedRunner(net, optimizer, work_dir=work_dir, max_epochs=1,
                              logger=get_logger('learndet.ddp', log_level=logging.WARNING))
    runner.register_training_hooks(cfg['lr_config'], cfg['optimizer_config'])
    grads = RecordFirstGrads(model)
    runner.register_hook(grads, priority='LOWEST')                # after the optimizer hook's step
    runner.run([loader], [('train', 1)])
    return dict(state_dict=model.state_dict(), grads=grads.grads, num_pos=num_pos)


def focal_worker(rank, world_size, port, cfgs, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    init_dist('gloo')
    try:
        results = {}
        for name, cfg in cfgs.items():
            dataset = build_dataset(cfg['data']['train'])
            loader = build_dataloader(dataset, B, 0, dist=True, shuffle=False, seed=0)   # rank r: images r, r+2, ...
            results[name] = run_recorded(cfg, loader, osp.join(out_dir, f'work_{name}'), distributed=True)
        torch.save(results, osp.join(out_dir, f'focal_rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def _max_rel_diff(a: dict, b: dict) -> float:
    "The largest |a - b| over all tensors, relative to the largest |b| of that tensor."
    return max(((a[k] - v).abs().max() / v.abs().max().clamp_min(1e-12)).item() for k, v in b.items())


def test_ddp_retinanet_focal_loss_two_by_b_equals_one_by_2b(shapes_cwd, tmp_path):
    root = shapes_cwd / 'data' / 'shapes'
    cfgs = {'sync': focal_equivalence_cfg(root, True), 'nosync': focal_equivalence_cfg(root, False)}
    mp.spawn(focal_worker, args=(2, free_port(), cfgs, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f'focal_rank{r}.pt', weights_only=False) for r in (0, 1)]
    # one process, 2B images per iteration: the flag changes nothing outside DDP (reduce_mean of one process is
    # the number itself), so one run is the reference for both
    dataset = build_dataset(cfgs['sync']['data']['train'])
    single = run_recorded(cfgs['sync'], build_dataloader(dataset, 2 * B, 0, shuffle=False), str(tmp_path / 'single'),
                          distributed=False)
    iters = N_TRAIN // (2 * B)
    sync0, sync1 = ranks[0]['sync'], ranks[1]['sync']
    # the premise: the two halves hold different numbers of positives at every step we compare (else the
    # normaliser could not matter), and together exactly the single run's
    assert len(sync0['num_pos']) == len(sync1['num_pos']) == len(single['num_pos']) == iters
    assert sync0['num_pos'][0] != sync1['num_pos'][0], (sync0['num_pos'], sync1['num_pos'])
    assert [a + b for a, b in zip(sync0['num_pos'], sync1['num_pos'])] == single['num_pos']
    # synchronised normaliser: the first step's (averaged) gradient is the one-process gradient ...
    assert set(sync0['grads']) == set(single['grads'])
    for name, g in single['grads'].items():
        torch.testing.assert_close(sync0['grads'][name], g, rtol=1e-4, atol=1e-6, msg=name)
    # ... and after 4 SGD steps (momentum, warmup, clipping) the parameters are the same, on both ranks
    for name, p in single['state_dict'].items():
        torch.testing.assert_close(sync0['state_dict'][name], p, rtol=1e-4, atol=1e-5, msg=name)
        torch.testing.assert_close(sync1['state_dict'][name], p, rtol=1e-4, atol=1e-5, msg=name)
    set_random_seed(0, deterministic=True)
    init = build_detector(cfgs['sync']['model'])
    init.init_weights()
    moved = max((single['state_dict'][k] - v).abs().max().item() for k, v in init.state_dict().items())
    assert moved > 1e-2, moved                                    # training moved the weights well past tolerance
    # each process's own normaliser (mmdetection 2.x's behaviour): the gradient is off by a visible fraction
    nosync0 = ranks[0]['nosync']
    assert nosync0['num_pos'] == sync0['num_pos']                 # the same data: only the normaliser differs
    grad_off = _max_rel_diff(nosync0['grads'], single['grads'])
    assert grad_off > 0.01, grad_off
    param_off = max((nosync0['state_dict'][k] - v).abs().max().item() for k, v in single['state_dict'].items())
    assert param_off > 1e-3, param_off
    print(f'positives per rank {sync0["num_pos"]} / {sync1["num_pos"]}; synced: first-step grad max rel diff '
          f'{_max_rel_diff(sync0["grads"], single["grads"]):.1e}; per process: grad {grad_off:.3f}, '
          f'params {param_off:.4f} (moved {moved:.3f})', end=' ')
