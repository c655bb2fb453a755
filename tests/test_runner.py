"""Runner chapter (15, 15a, 15b, 16) checks that do not suit a notebook: the exact stage sequence of a run,
LR schedules in real training runs against their closed forms, resume exactness with every hook on (mid-epoch,
iteration-based), a checkpoint write killed mid-way, load_from, and the lr-find / analyze-logs commands."""
import json
import logging
import math
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch

from learndet.core import set_random_seed
import learndet  # noqa: F401  (registers every hook)
from learndet.runner import EpochBasedRunner, IterBasedRunner, Hook, build_runner, STAGES
from learndet.checkpoint import load_checkpoint
from learndet.dist_utils import get_logger
from learndet.hooks import EMAHook, TextLoggerHook, EvalHook, OptimizerHook, CheckpointHook
from toys import ToyDataset, ToyRegressor
from learndet.optim import build_optimizer

QUIET = get_logger('learndet.tests', log_level=logging.WARNING)


def make(seed=0, dropout=0.2, n=48, batch_size=8, lr=0.05, optimizer=None):
    set_random_seed(seed, deterministic=True)
    model = ToyRegressor(dropout=dropout)
    opt = build_optimizer(model, optimizer or dict(type='SGD', lr=lr, momentum=0.9, weight_decay=1e-4))
    loader = torch.utils.data.DataLoader(ToyDataset(n), batch_size=batch_size, shuffle=True)
    return model, opt, loader


# ---------------------------------------------------------------- hooks: order of stages and priorities
class Recorder(Hook):
    def __init__(self, log, name='rec'):
        self.log, self.name = log, name
    def __getattribute__(self, attr):
        if attr in STAGES:
            log, name = object.__getattribute__(self, 'log'), object.__getattribute__(self, 'name')
            return lambda runner: log.append((name, attr, runner.epoch, runner.inner_iter, runner.mode))
        return object.__getattribute__(self, attr)


def test_stage_sequence_epoch_runner():
    calls = []
    model, opt, _ = make(dropout=0.0)
    loader = torch.utils.data.DataLoader(ToyDataset(16), batch_size=8)
    val = torch.utils.data.DataLoader(ToyDataset(8, seed=1), batch_size=8)
    r = EpochBasedRunner(model, opt, max_epochs=2, logger=QUIET)
    r.register_hook(OptimizerHook())
    r.register_hook(Recorder(calls))
    r.run([loader, val], [('train', 1), ('val', 1)])
    stages = [c[1] for c in calls]
    epoch = (['before_train_epoch'] + ['before_train_iter', 'after_train_iter'] * 2 + ['after_train_epoch']
             + ['before_val_epoch', 'before_val_iter', 'after_val_iter', 'after_val_epoch'])
    assert stages == ['before_run'] + epoch * 2 + ['after_run']
    # counters seen by the hooks: epoch index during training, inner_iter per iteration
    train_iters = [(c[2], c[3]) for c in calls if c[1] == 'after_train_iter']
    assert train_iters == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert r.iter == 4 and r.epoch == 2


def test_priorities_and_ties_and_hook_info():
    calls = []
    r = EpochBasedRunner(ToyRegressor(), max_epochs=1, logger=QUIET)
    order = [('low', 'LOW'), ('n1', 'NORMAL'), ('hi', 'HIGHEST'), ('n2', 'NORMAL'), ('n3', 50), ('vl', 'VERY_LOW'),
             ('top', 0), ('n4', 'normal')]
    for name, prio in order:
        r.register_hook(Recorder(calls, name), prio)
    r.call_hook('after_train_iter')
    assert [c[0] for c in calls] == ['hi', 'top', 'n1', 'n2', 'n3', 'n4', 'low', 'vl']
    class Early(Hook):
        def before_run(self, runner): pass
    class Each(Hook):
        def after_iter(self, runner): pass      # the generic stage: train and val
    r2 = EpochBasedRunner(ToyRegressor(), max_epochs=1, logger=QUIET)
    r2.register_hook(Each(), 'LOW'); r2.register_hook(Early(), 'HIGHEST'); r2.register_hook(OptimizerHook())
    assert r2.hook_info().splitlines() == [
        'before_run:', '  (HIGHEST     ) Early', '  (ABOVE_NORMAL) OptimizerHook',
        'after_train_iter:', '  (ABOVE_NORMAL) OptimizerHook', '  (LOW         ) Each',
        'after_val_iter:', '  (LOW         ) Each']
    with pytest.raises(KeyError, match='unknown priority'):
        r.register_hook(Hook(), 'SOMETIMES')
    with pytest.raises(TypeError, match='expected a Hook'):
        r.register_hook(lambda runner: None)


def test_workflow_errors():
    model, opt, loader = make()
    r = EpochBasedRunner(model, opt, max_epochs=1, logger=QUIET)
    with pytest.raises(ValueError, match="workflow entry"):
        r.run([loader], [('test', 1)])
    with pytest.raises(ValueError, match='2 entries but 1 data loaders'):
        r.run([loader], [('train', 1), ('val', 1)])
    with pytest.raises(ValueError, match='not both'):
        EpochBasedRunner(model, opt, max_epochs=1, max_iters=3)


# ---------------------------------------------------------------- LR schedules during real training
class LrLog(Hook):
    priority = 'LOWEST'
    def __init__(self): self.lrs = []
    def before_train_iter(self, runner): self.lrs.append([g['lr'] for g in runner.optimizer.param_groups])


def test_step_warmup_in_training_with_paramwise_groups():
    """step [2] by epoch, linear warmup of 5 iterations, two parameter groups (bias_lr_mult=2): every group
    follows base_lr_group * warmup * gamma^k."""
    model, opt, loader = make(optimizer=dict(type='SGD', lr=0.1, momentum=0.9, paramwise_cfg=dict(bias_lr_mult=2.)))
    r = EpochBasedRunner(model, opt, max_epochs=3, logger=QUIET)
    r.register_training_hooks(dict(policy='step', step=[2], warmup='linear', warmup_iters=5, warmup_ratio=0.2),
                              dict(grad_clip=dict(max_norm=5.)))
    rec = r.register_hook(LrLog())
    r.run([loader], [('train', 1)])
    iters_per_epoch = len(loader)
    for i, lrs in enumerate(rec.lrs):
        epoch = i // iters_per_epoch
        warm = 1 - (1 - i / 5) * (1 - 0.2) if i < 5 else 1.0
        regular = 0.1 ** (1 + (epoch >= 2))   # lr 0.1, x0.1 at epoch 2
        expected = sorted([0.1 * warm * (0.1 if epoch >= 2 else 1), 0.2 * warm * (0.1 if epoch >= 2 else 1)])
        assert sorted(lrs) == pytest.approx(expected, rel=1e-12), (i, lrs, regular)


def test_cosine_by_iter_and_onecycle_in_iter_runner():
    model, opt, loader = make()
    r = IterBasedRunner(model, opt, max_iters=20, logger=QUIET)
    r.register_training_hooks(dict(policy='CosineAnnealing', min_lr=0.001, by_epoch=False, warmup='exp',
                                   warmup_iters=4, warmup_ratio=0.1), dict())
    rec = r.register_hook(LrLog())
    r.run([loader], [('train', 1)])
    for i, (lr,) in enumerate(rec.lrs):
        regular = 0.001 + (0.05 - 0.001) * (1 + math.cos(math.pi * i / 20)) / 2
        assert lr == pytest.approx(regular * (0.1 ** (1 - i / 4) if i < 4 else 1), rel=1e-12)


# ---------------------------------------------------------------- resume exactness
class Interrupt(Hook):
    "Simulate a killed job: raise right after the iteration `at` (after the checkpoint hook has saved)."
    priority = 'LOWEST'
    def __init__(self, at): self.at = at
    def after_train_iter(self, runner):
        if runner.iter + 1 == self.at:
            raise KeyboardInterrupt(f'interrupted after iteration {self.at}')


def full_hooks_runner(work_dir, runner_type, seed, by_epoch_ckpt, extra=(), optimizer_config=None):
    model, opt, loader = make(seed=seed)
    val = torch.utils.data.DataLoader(ToyDataset(16, seed=3), batch_size=8)
    runner_cfg = dict(type=runner_type, max_epochs=4) if runner_type == 'EpochBasedRunner' else \
        dict(type=runner_type, max_iters=22)
    r = build_runner(runner_cfg, dict(model=model, optimizer=opt, work_dir=work_dir, logger=QUIET,
                                      meta=dict(config='toy config text', seed=seed)))
    lr_cfg = (dict(policy='CosineAnnealing', min_lr_ratio=0.01, warmup='linear', warmup_iters=7, warmup_ratio=0.1)
              if runner_type == 'EpochBasedRunner' else
              dict(policy='cyclic', target_ratio=(5, 1e-3), cyclic_times=2))
    momentum_cfg = None if runner_type == 'EpochBasedRunner' else dict(policy='cyclic', cyclic_times=2)
    r.register_training_hooks(
        lr_cfg, optimizer_config or dict(grad_clip=dict(max_norm=1.0)),
        dict(interval=1 if by_epoch_ckpt else 5, by_epoch=by_epoch_ckpt, max_keep_ckpts=3),
        dict(interval=3, hooks=[dict(type='TextLoggerHook', by_epoch=runner_type == 'EpochBasedRunner')]),
        momentum_config=momentum_cfg,
        custom_hooks_config=[dict(type='EMAHook', momentum=0.05, warm_up=3, priority='ABOVE_NORMAL')])
    r.register_hook(EvalHook(val, metric='mae', save_best='mae',
                             by_epoch=runner_type == 'EpochBasedRunner', interval=1 if by_epoch_ckpt else 10))
    for h in extra:
        r.register_hook(h)
    return r, loader


def assert_same_state(a, b):
    for (na, pa), (nb, pb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert na == nb and torch.equal(pa, pb), na
    for pa, pb in zip(a.ema_model.state_dict().values(), b.ema_model.state_dict().values()):
        assert torch.equal(pa, pb)
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    for k in sa['state']:
        for name in sa['state'][k]:
            assert torch.equal(torch.as_tensor(sa['state'][k][name]), torch.as_tensor(sb['state'][k][name]))
    assert [g['lr'] for g in sa['param_groups']] == [g['lr'] for g in sb['param_groups']]
    assert (a.epoch, a.iter) == (b.epoch, b.iter)


@pytest.mark.parametrize('runner_type,by_epoch_ckpt,stop_at,resume_file', [
    ('EpochBasedRunner', True, 14, 'epoch_2.pth'),      # 6 iterations an epoch: killed during epoch 3
    ('EpochBasedRunner', False, 17, 'iter_15.pth'),     # a mid-epoch checkpoint (iteration 15 = epoch 3, batch 3)
    ('IterBasedRunner', False, 13, 'iter_10.pth'),      # iteration-based, mid-epoch of the loader
])
def test_resume_is_exact(tmp_path, runner_type, by_epoch_ckpt, stop_at, resume_file):
    full, loader = full_hooks_runner(str(tmp_path / 'full'), runner_type, 0, by_epoch_ckpt)
    full.run([loader], [('train', 1)])

    wd = str(tmp_path / 'split')
    first, loader = full_hooks_runner(wd, runner_type, 0, by_epoch_ckpt, extra=[Interrupt(stop_at)])
    with pytest.raises(KeyboardInterrupt):
        first.run([loader], [('train', 1)])
    set_random_seed(999)                                   # nothing may depend on the state of this process
    torch.rand(17)
    second, loader = full_hooks_runner(wd, runner_type, 123, by_epoch_ckpt)
    second.resume(osp.join(wd, resume_file))
    second.run([loader], [('train', 1)])
    assert_same_state(full, second)
    ckpt = torch.load(osp.join(wd, 'latest.pth'), weights_only=True)
    meta = ckpt['meta']
    assert meta['config'] == 'toy config text' and meta['CLASSES'] == ('y',)
    assert meta['model_class'] == 'ToyRegressor' and meta['optimizer_class'] == 'SGD'
    from learndet import __version__
    assert meta['learndet_version'] == __version__
    assert 'ema_state_dict' in ckpt['hooks']['EMAHook'] and 'rng' in ckpt   # the EMA weights are the hook's state


def test_resume_is_exact_with_fp16_scaler(tmp_path):
    """fp16 autocast + a dynamic GradScaler (on the CPU): the scaler's state is checkpointed and restored, so the
    resumed run skips the same steps and ends equal. The scale starts too high so that it backs off, then grows."""
    opt_cfg = dict(grad_clip=dict(max_norm=1.0), amp='fp16', loss_scale=dict(init_scale=2.**22, growth_interval=3))
    full, loader = full_hooks_runner(str(tmp_path / 'full'), 'EpochBasedRunner', 0, False, optimizer_config=opt_cfg)
    full.run([loader], [('train', 1)])
    wd = str(tmp_path / 'split')
    first, loader = full_hooks_runner(wd, 'EpochBasedRunner', 0, False, extra=[Interrupt(17)],
                                      optimizer_config=opt_cfg)
    with pytest.raises(KeyboardInterrupt):
        first.run([loader], [('train', 1)])
    saved = torch.load(osp.join(wd, 'iter_15.pth'), weights_only=True)['hooks']['OptimizerHook']['scaler']
    assert saved['scale'] != 2.**22                         # the scale had moved by then, so restoring it matters
    second, loader = full_hooks_runner(wd, 'EpochBasedRunner', 123, False, optimizer_config=opt_cfg)
    second.resume(osp.join(wd, 'iter_15.pth'))
    second.run([loader], [('train', 1)])
    assert_same_state(full, second)
    assert full.scaler.state_dict() == second.scaler.state_dict()


def test_resume_without_optimizer_state_is_refused(tmp_path):
    model, opt, loader = make()
    r = EpochBasedRunner(model, opt, work_dir=str(tmp_path), max_epochs=1, logger=QUIET)
    r.register_training_hooks(None, dict(), dict(interval=1, save_optimizer=False))
    r.run([loader], [('train', 1)])
    r2 = EpochBasedRunner(*make()[:2], work_dir=str(tmp_path), max_epochs=2, logger=QUIET)
    with pytest.raises(KeyError, match='saved without it'):
        r2.resume(osp.join(str(tmp_path), 'epoch_1.pth'))


def test_load_from_is_weights_only(tmp_path):
    model, opt, loader = make()
    r = EpochBasedRunner(model, opt, work_dir=str(tmp_path), max_epochs=2, logger=QUIET)
    r.register_training_hooks(None, dict(), dict(interval=1))
    r.run([loader], [('train', 1)])
    model2, opt2, _ = make(seed=5)
    r2 = EpochBasedRunner(model2, opt2, max_epochs=2, logger=QUIET)
    r2.load_checkpoint(osp.join(str(tmp_path), 'latest.pth'))
    assert (r2.epoch, r2.iter) == (0, 0) and opt2.state_dict()['state'] == {}
    for pa, pb in zip(model.parameters(), model2.parameters()):
        assert torch.equal(pa, pb)


# ---------------------------------------------------------------- atomic checkpoints
KILL_SCRIPT = textwrap.dedent('''
    import os, sys, torch
    sys.path.insert(0, sys.argv[2])
    from toys import ToyRegressor
    from learndet.checkpoint import save_checkpoint
    real_save = torch.save
    def dying_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)      # write it all to the temporary file ...
        f.flush(); f.truncate(f.tell() // 2)    # ... keep half of it, as if the disk filled or power went
        os._exit(9)                             # and die without any cleanup
    torch.save = dying_save
    torch.manual_seed(1)
    save_checkpoint(ToyRegressor(), sys.argv[1])
''')


def test_checkpoint_write_killed_midway_keeps_previous(tmp_path):
    path = str(tmp_path / 'epoch_1.pth')
    torch.manual_seed(0)
    model = ToyRegressor()
    from learndet.checkpoint import save_checkpoint
    save_checkpoint(model, path, meta=dict(epoch=1))
    before = open(path, 'rb').read()
    proc = subprocess.run([sys.executable, '-c', KILL_SCRIPT, path, osp.dirname(__file__)], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert open(path, 'rb').read() == before                      # untouched
    leftovers = [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]
    assert len(leftovers) == 1                                     # the half-written temporary file, never renamed
    with pytest.raises(Exception):
        torch.load(str(tmp_path / leftovers[0]), weights_only=True)  # it is indeed corrupt
    other = ToyRegressor()
    ckpt = load_checkpoint(other, path, strict=True)
    assert ckpt['meta']['epoch'] == 1
    for pa, pb in zip(model.parameters(), other.parameters()):
        assert torch.equal(pa, pb)


# ---------------------------------------------------------------- guards
def test_nan_guard_names_iteration_and_terms():
    class Bad(ToyRegressor):
        def forward(self, x, y=None, return_loss=True):
            out = super().forward(x, y, return_loss)
            if return_loss and self.training:
                self.n = getattr(self, 'n', 0) + 1
                if self.n == 5:
                    out['loss_mse'] = out['loss_mse'] * float('nan')
            return out
    set_random_seed(0)
    model = Bad()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    r = EpochBasedRunner(model, opt, max_epochs=2, logger=QUIET)
    r.register_training_hooks(None, dict())
    loader = torch.utils.data.DataLoader(ToyDataset(24), batch_size=8)
    with pytest.raises(FloatingPointError, match=r'iteration 5 \(epoch 2, iteration 2 of the epoch\): loss_mse=nan'):
        r.run([loader], [('train', 1)])
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---------------------------------------------------------------- commands
TOY_CONFIG = textwrap.dedent('''
    model = dict(type='ToyRegressor', hidden=16)
    data = dict(samples_per_gpu=16, workers_per_gpu=0, train=dict(type='ToyDataset', n=512))
    optimizer = dict(type='SGD', lr=0.01, momentum=0.9, paramwise_cfg=dict(bias_lr_mult=2.0))
''')


def test_lr_find_command(tmp_path, capsys):
    from learndet.cli import main
    cfg = tmp_path / 'toy.py'
    cfg.write_text(TOY_CONFIG)
    out = tmp_path / 'lr.png'
    code = main(['lr-find', str(cfg), '--num-iters', '60', '--start-lr', '1e-5', '--end-lr', '10',
                 '--out', str(out), '--device', 'cpu'])
    assert code == 0, capsys.readouterr()
    text = capsys.readouterr().out
    assert 'suggested lr' in text and out.is_file() and out.stat().st_size > 1000


def test_analyze_logs_commands(tmp_path, capsys):
    from learndet.cli import main
    model, opt, loader = make(dropout=0.0)
    r = EpochBasedRunner(model, opt, work_dir=str(tmp_path), max_epochs=3, logger=QUIET)
    r.register_training_hooks(None, dict(), None, dict(interval=2, hooks=[dict(type='TextLoggerHook')]))
    r.run([loader], [('train', 1)])
    log = [f for f in os.listdir(tmp_path) if f.endswith('.log.json')]
    assert len(log) == 1
    log = str(tmp_path / log[0])
    out = tmp_path / 'curve.png'
    assert main(['analyze-logs', 'plot_curve', log, '--keys', 'loss_mse', 'loss_l1', '--out', str(out)]) == 0
    assert out.is_file() and out.stat().st_size > 1000
    assert main(['analyze-logs', 'cal_train_time', log]) == 0
    text = capsys.readouterr().out
    assert 'average iter time' in text and 'slowest epoch' in text
    records = [json.loads(l) for l in open(log)][1:]
    assert [(x['epoch'], x['iter']) for x in records] == [(e, i) for e in (1, 2, 3) for i in (2, 4, 6)]
    assert main(['analyze-logs', 'plot_curve', log, '--keys', 'bbox_mAP', '--out', str(out)]) == 2  # a clear error
    assert 'no values for key' in capsys.readouterr().err


def test_progress_bar_and_iter_runner_defaults(tmp_path, capsys):
    """ProgressBarHook runs outside Jupyter (console bars); IterBasedRunner makes by_epoch=False the default
    of the LR, checkpoint and logger hooks, as mmcv does."""
    from learndet.hooks import ProgressBarHook
    model, opt, loader = make(dropout=0.0)
    r = IterBasedRunner(model, opt, work_dir=str(tmp_path), max_iters=10, logger=QUIET)
    r.register_training_hooks(dict(policy='step', step=[5]), dict(), dict(interval=4),
                              dict(interval=5, hooks=[dict(type='TextLoggerHook'), dict(type='ProgressBarHook')]))
    r.run([loader], [('train', 1)])
    by_epoch = {type(h).__name__: getattr(h, 'by_epoch', None) for h in r.hooks}
    assert by_epoch['StepLrUpdaterHook'] is False and by_epoch['CheckpointHook'] is False
    assert by_epoch['TextLoggerHook'] is False
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith('.pth')) == ['iter_10.pth', 'iter_4.pth', 'iter_8.pth',
                                                                            'latest.pth']
    assert r.current_lr() == [pytest.approx(0.005)]
    pb = next(h for h in r.hooks if isinstance(h, ProgressBarHook))
    assert len(pb.history['train_loss'][0]) == 10


@pytest.mark.parametrize('schedule,steps,epochs', [('schedule_1x.py', [8, 11], 12), ('schedule_2x.py', [16, 22], 24)])
def test_shipped_schedules_drive_the_runner(tmp_path, schedule, steps, epochs):
    "The shipped _base_ schedule + default_runtime configs register the expected hooks and give mmdetection's lr curve."
    from learndet.config import Config
    from learndet.lr_updater import simulate_lr
    base = osp.join(osp.dirname(learndet.hooks.__file__), 'configs', '_base_')
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(f"_base_ = ['{base}/schedules/{schedule}', '{base}/default_runtime.py']\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.runner.max_epochs == epochs and cfg.auto_scale_lr.base_batch_size == 16
    model = ToyRegressor()
    r = build_runner(cfg.runner, dict(model=model, optimizer=build_optimizer(model, cfg.optimizer),
                                      work_dir=str(tmp_path), logger=QUIET))
    r.register_training_hooks(cfg.lr_config, cfg.optimizer_config, cfg.checkpoint_config, cfg.log_config,
                              custom_hooks_config=cfg.custom_hooks)
    names = [type(h).__name__ for h in r.hooks]
    assert names == ['StepLrUpdaterHook', 'CheckInvalidLossHook', 'OptimizerHook', 'CheckpointHook', 'IterTimerHook',
                     'TextLoggerHook']
    lrs, _ = simulate_lr(cfg.lr_config, runner=cfg.runner, iters_per_epoch=100, lr=cfg.optimizer.lr)
    for i in (0, 250, 500, 799, steps[0] * 100, steps[1] * 100, epochs * 100 - 1):
        epoch = i // 100
        warm = 1 - (1 - i / 500) * (1 - 0.001) if i < 500 else 1
        assert lrs[i] == pytest.approx(0.02 * warm * 0.1 ** sum(epoch >= s for s in steps), rel=1e-12)
