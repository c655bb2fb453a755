"""Property tests for learndet.losses (chapter 09): what is too long or too random for the notebook.

References: torchvision.ops (focal, box IoU, GIoU/DIoU/CIoU losses), torch.nn.functional losses, math identities,
torch.autograd.gradcheck (float64). The notebook holds the hand-worked values."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tvops
from hypothesis import given, settings, strategies as st

from learndet.losses import (GHMC, GHMR, BalancedL1Loss, BaseLoss, BoundedIoULoss, CIoULoss, CrossEntropyLoss, DIoULoss,
                             FocalLoss, GIoULoss, IoULoss, L1Loss, MSELoss, SmoothL1Loss, accuracy,
                             weight_reduce_loss, weighted_loss)
from learndet.registry import LOSSES, build_from_cfg

SETTINGS = dict(max_examples=25, deadline=None)


def random_boxes(n, seed, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    xy, wh = torch.rand(n, 2, generator=g) * 20, torch.rand(n, 2, generator=g) * 15 + 1
    target = torch.cat([xy, xy + wh], dim=1)
    pred = target + torch.randn(n, 4, generator=g) * spread
    pred[:, 2:] = torch.max(pred[:, 2:], pred[:, :2] + 0.5)
    return pred, target


# Each case: (name, module factory, input factory(n, seed) -> (pred, target, weight), per-element reduction?)
def _cls_inputs(n, seed, k=4):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k, generator=g) * 2, torch.randint(0, k + 1, (n,), generator=g),
            (torch.rand(n, generator=g) > 0.2).float())


def _softmax_inputs(n, seed, k=4):
    pred, labels, w = _cls_inputs(n, seed, k)
    return pred, labels.clamp(max=k - 1), w


def _reg_inputs(n, seed):
    g = torch.Generator().manual_seed(seed)
    w = (torch.rand(n, 1, generator=g) > 0.3).float().expand(n, 4).contiguous()
    return torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g), w


def _box_inputs(n, seed):
    pred, target = random_boxes(n, seed)
    w = (torch.rand(n, 1, generator=torch.Generator().manual_seed(seed)) > 0.3).float().expand(n, 4).contiguous()
    return pred, target, w


CASES = [
    ('CrossEntropyLoss', lambda **kw: CrossEntropyLoss(**kw), _softmax_inputs),
    ('CrossEntropyLoss-class_weight', lambda **kw: CrossEntropyLoss(class_weight=[1., 2., .5, 3.], **kw), _softmax_inputs),
    ('CrossEntropyLoss-sigmoid', lambda **kw: CrossEntropyLoss(use_sigmoid=True, **kw), _cls_inputs),
    ('FocalLoss', lambda **kw: FocalLoss(**kw), _cls_inputs),
    ('GHMC', lambda **kw: GHMC(**kw), _cls_inputs),
    ('L1Loss', lambda **kw: L1Loss(**kw), _reg_inputs),
    ('MSELoss', lambda **kw: MSELoss(**kw), _reg_inputs),
    ('SmoothL1Loss', lambda **kw: SmoothL1Loss(beta=1 / 9, **kw), _reg_inputs),
    ('BalancedL1Loss', lambda **kw: BalancedL1Loss(**kw), _reg_inputs),
    ('GHMR', lambda **kw: GHMR(**kw), lambda n, s: tuple(t * 0.05 if i < 2 else t for i, t in enumerate(_reg_inputs(n, s)))),
    ('IoULoss', lambda **kw: IoULoss(**kw), _box_inputs),
    ('IoULoss-linear', lambda **kw: IoULoss(mode='linear', **kw), _box_inputs),
    ('IoULoss-square', lambda **kw: IoULoss(mode='square', **kw), _box_inputs),
    ('GIoULoss', lambda **kw: GIoULoss(**kw), _box_inputs),
    ('DIoULoss', lambda **kw: DIoULoss(**kw), _box_inputs),
    ('CIoULoss', lambda **kw: CIoULoss(**kw), _box_inputs),
    ('BoundedIoULoss', lambda **kw: BoundedIoULoss(**kw), _box_inputs),
]
IDS = [c[0] for c in CASES]
GHM = ('GHMC', 'GHMR')


@pytest.mark.parametrize('name,make,inputs', CASES, ids=IDS)
def test_reductions_are_consistent(name, make, inputs):
    pred, target, weight = inputs(12, 0)
    loss = make()
    none = loss(pred, target, weight, reduction_override='none')
    total = loss(pred, target, weight, reduction_override='sum')
    torch.testing.assert_close(none.sum(), total)
    if name not in GHM:   # GHM's mean divides by its own count of valid elements; avg_factor is ignored there
        torch.testing.assert_close(loss(pred, target, weight, avg_factor=3.5), total / 3.5)
        torch.testing.assert_close(loss(pred, target, weight), none.sum() / none.numel())
        with pytest.raises(ValueError, match='avg_factor can not be used with reduction="sum"'):
            loss(pred, target, weight, avg_factor=2., reduction_override='sum')
    torch.testing.assert_close(make(loss_weight=2.5)(pred, target, weight), 2.5 * loss(pred, target, weight))
    torch.testing.assert_close(make(reduction='sum')(pred, target, weight), total)
    with pytest.raises(ValueError, match='reduction_override must be None'):
        loss(pred, target, weight, reduction_override='max')


@pytest.mark.parametrize('name,make,inputs', CASES, ids=IDS)
def test_gradcheck_float64(name, make, inputs):
    pred, target, weight = inputs(6, 1)
    if name == 'CIoULoss':   # alpha is a constant by design: check where it is 0 (IoU <= 0.5), see the notebook otherwise
        keep = tvops.box_iou(pred, target).diag() <= 0.5
        pred, target, weight = pred[keep], target[keep], weight[keep]
    pred = pred.double().requires_grad_()
    target = target.double() if target.is_floating_point() else target
    loss = make()
    assert torch.autograd.gradcheck(lambda p: loss(p, target, weight.double()), (pred,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize('name,make,inputs', CASES, ids=IDS)
@pytest.mark.parametrize('reduction', ['mean', 'sum', 'none'])
def test_empty_inputs_give_zero_with_a_gradient(name, make, inputs, reduction):
    pred, target, weight = inputs(0, 0)
    pred = pred.requires_grad_()
    loss = make()
    for kwargs in [dict(), dict(weight=weight), dict(weight=weight, avg_factor=0. if reduction != 'sum' else None)]:
        out = loss(pred, target, reduction_override=reduction, **kwargs)
        assert torch.isfinite(out).all() and out.sum().item() == 0
        out.sum().backward()
        assert pred.grad is not None and pred.grad.shape == pred.shape


@pytest.mark.parametrize('name', sorted({'CrossEntropyLoss', 'FocalLoss', 'GHMC', 'L1Loss', 'MSELoss', 'SmoothL1Loss',
                                          'BalancedL1Loss', 'GHMR', 'IoULoss', 'GIoULoss', 'DIoULoss', 'CIoULoss',
                                          'BoundedIoULoss'}))
def test_every_loss_buildable_from_a_config_file(name):
    from learndet.config import Config
    cfg = Config.fromstring(f"model = dict(bbox_head=dict(loss_x=dict(type='{name}', loss_weight=0.5)))", '.py')
    loss = build_from_cfg(cfg.model.bbox_head.loss_x, LOSSES)
    assert type(loss).__name__ == name and loss.loss_weight == 0.5
    assert LOSSES.get(name) is type(loss)


@settings(**SETTINGS)
@given(n=st.integers(0, 30), k=st.integers(1, 6), gamma=st.sampled_from([0., 0.5, 1., 2., 3.]),
       alpha=st.floats(0.05, 0.95), seed=st.integers(0, 10_000))
def test_focal_equals_torchvision(n, k, gamma, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 4
    labels = torch.randint(0, k + 1, (n,), generator=g)
    onehot = F.one_hot(labels, k + 1)[:, :k].float()
    ref = tvops.sigmoid_focal_loss(logits, onehot, alpha=alpha, gamma=gamma)
    ours = FocalLoss(gamma=gamma, alpha=alpha)(logits, labels, reduction_override='none')
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    num_pos = max((labels < k).sum().item(), 1)
    torch.testing.assert_close(FocalLoss(gamma=gamma, alpha=alpha)(logits, labels, avg_factor=num_pos),
                               ref.sum() / num_pos, rtol=1e-5, atol=1e-6)


@settings(**SETTINGS)
@given(n=st.integers(1, 40), seed=st.integers(0, 10_000), spread=st.floats(0.1, 20.))
def test_iou_family_equals_torchvision(n, seed, spread):
    pred, target = random_boxes(n, seed, spread)
    ious = tvops.box_iou(pred, target).diag()
    torch.testing.assert_close(IoULoss(mode='linear')(pred, target, reduction_override='none'), 1 - ious, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(GIoULoss()(pred, target, reduction_override='none'),
                               tvops.generalized_box_iou_loss(pred, target), rtol=1e-5, atol=1e-5)
    dious = tvops.distance_box_iou_loss(pred, target)
    torch.testing.assert_close(DIoULoss()(pred, target, reduction_override='none'), dious, rtol=1e-5, atol=1e-5)
    cious = CIoULoss()(pred, target, reduction_override='none')
    high = ious > 0.5
    torch.testing.assert_close(cious[high], tvops.complete_box_iou_loss(pred[high], target[high]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cious[~high], dious[~high], rtol=1e-5, atol=1e-5)


box_coord = st.floats(-50, 50, allow_nan=False, width=32)


@settings(**SETTINGS)
@given(data=st.lists(st.tuples(box_coord, box_coord, st.floats(0, 30, width=32), st.floats(0, 30, width=32),
                               box_coord, box_coord, st.floats(0, 30, width=32), st.floats(0, 30, width=32)),
                     min_size=1, max_size=10))
def test_iou_family_finite_for_degenerate_and_far_boxes(data):
    t = torch.tensor(data)
    pred = torch.stack([t[:, 0], t[:, 1], t[:, 0] + t[:, 2], t[:, 1] + t[:, 3]], 1)    # widths may be 0
    target = torch.stack([t[:, 4], t[:, 5], t[:, 4] + t[:, 6], t[:, 5] + t[:, 7]], 1)
    for loss in [IoULoss(), IoULoss(mode='linear'), GIoULoss(), DIoULoss(), CIoULoss(), BoundedIoULoss()]:
        p = pred.clone().requires_grad_()
        out = loss(p, target, reduction_override='none')
        out.sum().backward()
        assert torch.isfinite(out).all(), (loss, pred, target, out)
        assert torch.isfinite(p.grad).all(), (loss, pred, target, p.grad)


@settings(**SETTINGS)
@given(n=st.integers(1, 30), k=st.integers(2, 5), seed=st.integers(0, 10_000), ignore=st.booleans())
def test_softmax_cross_entropy_against_torch(n, k, seed, ignore):
    g = torch.Generator().manual_seed(seed)
    logits, labels = torch.randn(n, k, generator=g), torch.randint(0, k, (n,), generator=g)
    class_weight = torch.rand(k, generator=g) + 0.1
    ce = CrossEntropyLoss(class_weight=class_weight.tolist())
    per_sample = F.cross_entropy(logits, labels, weight=class_weight, reduction='none')
    torch.testing.assert_close(ce(logits, labels), per_sample.mean())        # mean over samples, not over weights
    if ignore:
        labels[0] = 255
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            ce_ign = CrossEntropyLoss(ignore_index=255, avg_non_ignore=True)
        if (labels != 255).any():
            torch.testing.assert_close(ce_ign(logits, labels), F.cross_entropy(logits, labels, ignore_index=255))


@settings(**SETTINGS)
@given(n=st.integers(1, 30), k=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_sigmoid_cross_entropy_background_row_is_all_negative(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    logits, labels = torch.randn(n, k, generator=g), torch.randint(0, k + 1, (n,), generator=g)
    onehot = F.one_hot(labels, k + 1)[:, :k].float()
    torch.testing.assert_close(CrossEntropyLoss(use_sigmoid=True)(logits, labels, reduction_override='none'),
                               F.binary_cross_entropy_with_logits(logits, onehot, reduction='none'))


@settings(**SETTINGS)
@given(n=st.integers(1, 60), seed=st.integers(0, 10_000), bins=st.integers(1, 30))
def test_ghmc_weights_sum_to_the_valid_count(n, seed, bins):
    g = torch.Generator().manual_seed(seed)
    logits, labels = torch.randn(n, 3, generator=g) * 3, torch.randint(0, 4, (n,), generator=g)
    bce = F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, 4)[:, :3].float(), reduction='none')
    per_element = GHMC(bins=bins)(logits, labels, reduction_override='none')
    weights = per_element / bce.clamp(min=1e-12)
    torch.testing.assert_close(weights.sum(), torch.tensor(3. * n), rtol=1e-3, atol=1e-3)
    # weights are constant within a bin: as many distinct weights as non-empty bins
    gnorm = (logits.sigmoid() - F.one_hot(labels, 4)[:, :3]).abs()
    nonempty = len(torch.unique(torch.clamp((gnorm * bins).long(), max=bins - 1)))
    assert len(torch.unique((weights * 1e3).round())) <= nonempty + 1


def test_weight_reduce_loss_and_decorator_basics():
    loss = torch.tensor([0.5, 1., 2., 4.])
    torch.testing.assert_close(weight_reduce_loss(loss, torch.tensor([1., 1., 1., 0.]), avg_factor=2), torch.tensor(1.75))

    @weighted_loss
    def absolute(pred, target):
        return (pred - target).abs()
    torch.testing.assert_close(absolute(loss, torch.zeros(4), reduction='sum'), torch.tensor(7.5))


def test_accuracy_against_a_loop():
    g = torch.Generator().manual_seed(0)
    scores, labels = torch.randn(50, 6, generator=g), torch.randint(0, 6, (50,), generator=g)
    for k in (1, 3):
        hits = sum(int(labels[i] in scores[i].argsort(descending=True)[:k]) for i in range(50))
        torch.testing.assert_close(accuracy(scores, labels, topk=k), torch.tensor([hits * 2.]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
@pytest.mark.parametrize('name,make,inputs', CASES, ids=IDS)
def test_cuda_matches_cpu(name, make, inputs):
    pred, target, weight = inputs(20, 3)
    cpu = make()(pred, target, weight)
    gpu = make().cuda()(pred.cuda(), target.cuda(), weight.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)


def test_benchmark_smoke(capsys):
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).parents[1] / 'benchmarks' / 'bench_losses.py'
    spec = importlib.util.spec_from_file_location('bench_losses', path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(['--anchors', '50', '--classes', '3', '--boxes', '20', '--repeats', '2'])
    out = capsys.readouterr().out
    assert out.count('\n| ') == 6 and 'FocalLoss vs torchvision' in out


def test_sees_all_priors_is_said_by_the_loss():
    "The flag a dense head reads instead of matching class names: True only for the losses built to see every prior."
    names = ['CrossEntropyLoss', 'FocalLoss', 'GHMC', 'L1Loss', 'MSELoss', 'SmoothL1Loss', 'BalancedL1Loss', 'GHMR',
             'IoULoss', 'GIoULoss', 'DIoULoss', 'CIoULoss', 'BoundedIoULoss']
    assert {n for n in names if getattr(LOSSES.get(n), 'sees_all_priors', False)} == {'FocalLoss', 'GHMC'}
    for n in names:
        loss = build_from_cfg(dict(type=n), LOSSES)
        assert isinstance(loss, BaseLoss) and loss.sees_all_priors == type(loss).sees_all_priors
    assert BaseLoss.sees_all_priors is False
    assert getattr(torch.nn.L1Loss(), 'sees_all_priors', False) is False      # a loss from elsewhere: the safe default
