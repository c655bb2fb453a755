"""Assigners and samplers (chapter 08): independent loop references, torchvision's Matcher, properties, edge cases,
the assignment widget's logic and a smoke run of benchmarks/bench_assign.py."""
import math
import runpy
import warnings
from pathlib import Path

import matplotlib
matplotlib.use('Agg')
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_iou

from learndet.assigners import (ASSIGN_FIRST_GT, ASSIGN_IGNORE, ASSIGN_NEGATIVE, AssignResult, ATSSAssigner,
                                FCOSAssigner, MaxIoUAssigner, max_iou_assign,
                                assignment_view, assignment_widget_update, assignment_widget)
from learndet.anchors import AnchorGenerator, MlvlPointGenerator
from learndet.coders import DistancePointBBoxCoder
from learndet.boxes import bbox_overlaps
from learndet.registry import BBOX_ASSIGNERS, BBOX_SAMPLERS, build_from_cfg
from learndet.samplers import PseudoSampler, RandomSampler

ROOT = Path(__file__).resolve().parents[1]


def random_boxes(n, g, size=100., grid=None):
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 1
    b = torch.cat([xy, xy + wh], 1)
    return (b / grid).round() * grid if grid else b


def reference_max_iou(overlaps, pos_thr, neg_thr, min_pos_iou, gt_max_assign_all, match_low_quality):
    "mmdetection 2.x's MaxIoU rule written as plain Python loops over a list-of-lists matrix."
    ov = overlaps.tolist()
    G, N = overlaps.shape
    if G == 0:
        return [0] * N
    lo, hi = (0., neg_thr) if not isinstance(neg_thr, tuple) else neg_thr
    out = [-1] * N
    best = [max(range(G), key=lambda i: (ov[i][j], -i)) for j in range(N)]   # first GT reaching the max
    for j in range(N):
        m = ov[best[j]][j]
        if lo <= m < hi:
            out[j] = 0
        if m >= pos_thr:
            out[j] = best[j] + 1
    if match_low_quality:
        for i in range(G):
            gmax = max(ov[i])
            if gmax >= min_pos_iou:
                if gt_max_assign_all:
                    for j in range(N):
                        if ov[i][j] == gmax:
                            out[j] = i + 1
                else:
                    out[ov[i].index(gmax)] = i + 1
    return out


def test_codes_are_named():
    assert (ASSIGN_IGNORE, ASSIGN_NEGATIVE, ASSIGN_FIRST_GT) == (-1, 0, 1)


@pytest.mark.parametrize('kw', [
    dict(pos_thr=0.5, neg_thr=0.4, min_pos_iou=0., gt_max_assign_all=True, match_low_quality=True),
    dict(pos_thr=0.7, neg_thr=0.3, min_pos_iou=0.3, gt_max_assign_all=True, match_low_quality=True),
    dict(pos_thr=0.5, neg_thr=(0.1, 0.5), min_pos_iou=0.2, gt_max_assign_all=False, match_low_quality=True),
    dict(pos_thr=0.6, neg_thr=0.4, min_pos_iou=0., gt_max_assign_all=True, match_low_quality=False),
])
def test_max_iou_equals_loop_reference(kw):
    g = torch.Generator().manual_seed(0)
    for trial in range(60):
        G, N = int(torch.randint(0, 6, (1,), generator=g)), int(torch.randint(1, 120, (1,), generator=g))
        gts, priors = random_boxes(G, g, grid=4), random_boxes(N, g, grid=4)      # coarse grid: many ties
        ov = bbox_overlaps(gts, priors)      # with eps: grid-rounded boxes can be flat, box_iou would give 0/0
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            ours = max_iou_assign(ov, None, kw['pos_thr'], kw['neg_thr'], kw['min_pos_iou'],
                                  kw['gt_max_assign_all'], kw['match_low_quality'])
        assert ours.gt_inds.tolist() == reference_max_iou(ov, **kw), (trial, kw)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), num_gts=st.integers(1, 8), min_pos_iou=st.sampled_from([0., 0.1, 0.3]))
def test_every_qualifying_gt_keeps_its_best_anchors(seed, num_gts, min_pos_iou):
    "The property of step 4: GT i's best anchors are positive, for i or a later GT sharing that best anchor."
    g = torch.Generator().manual_seed(seed)
    gts, priors = random_boxes(num_gts, g, grid=2), random_boxes(200, g, grid=2)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        res = MaxIoUAssigner(0.5, 0.4, min_pos_iou=min_pos_iou).assign(priors, gts)
    ov = bbox_overlaps(gts, priors)
    gmax = ov.max(1).values
    for i in range(num_gts):
        if gmax[i] < min_pos_iou:
            continue
        best = torch.nonzero(ov[i] == gmax[i]).flatten()
        owner = res.gt_inds[best] - 1
        assert (owner >= i).all() and (ov[owner, best] == gmax[owner]).all()
        if (owner == i).any():
            assert (res.gt_inds == i + 1).any()          # a best anchor not taken by a later GT: GT i has a positive


def test_matches_torchvision_matcher():
    g = torch.Generator().manual_seed(3)
    m = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    for _ in range(40):
        gts, priors = random_boxes(int(torch.randint(1, 10, (1,), generator=g)), g), random_boxes(400, g)
        res = MaxIoUAssigner(0.5, 0.4, min_pos_iou=0.).assign(priors, gts)
        tv = m(box_iou(gts, priors))
        assert torch.equal(res.gt_inds == 0, tv == Matcher.BELOW_LOW_THRESHOLD)
        assert torch.equal(res.gt_inds == -1, tv == Matcher.BETWEEN_THRESHOLDS)
        assert torch.equal(res.gt_inds > 0, tv >= 0)
        confident = res.max_overlaps >= 0.5                # above the threshold both pick the argmax GT
        assert torch.equal(res.gt_inds[confident] - 1, tv[confident])


def test_assignment_on_a_big_prior_set_equals_the_one_broadcast_assignment():
    "50 GTs x 50,000 priors: bbox_overlaps works in pieces there; the assignment must be the one-broadcast one exactly."
    g = torch.Generator().manual_seed(4)
    gts, priors = random_boxes(50, g), random_boxes(50_000, g)
    priors[:10, 2:] = priors[:10, :2] - 1                    # inverted boxes
    priors[10:20] = gts[:10]                                # exact matches: ties at IoU 1
    res = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.).assign(priors, gts)
    ref = max_iou_assign(bbox_overlaps(gts, priors, chunk_pairs=0), None, 0.5, 0.4, 0.)
    assert torch.equal(res.gt_inds, ref.gt_inds) and torch.equal(res.max_overlaps, ref.max_overlaps)


def test_ignore_regions_and_labels():
    priors = torch.tensor([[0., 0., 10., 10.], [40., 40., 50., 50.], [100., 100., 110., 110.]])
    gts, labels = torch.tensor([[0., 0., 10., 10.]]), torch.tensor([4])
    a = MaxIoUAssigner(0.5, 0.4, ignore_iof_thr=0.5)
    res = a.assign(priors, gts, torch.tensor([[38., 38., 60., 60.]]), labels)
    assert res.gt_inds.tolist() == [1, -1, 0] and res.labels.tolist() == [4, -1, -1]
    assert res.max_overlaps[1] == -1                       # the ignored column
    # an ignore box covering the positive too: the GT's best IoU is now 0 (the far prior), which min_pos_iou=0
    # lets it claim (mmdetection's behaviour, with a warning); with min_pos_iou > 0 it claims nothing
    ignore_all = torch.tensor([[-1., -1., 60., 60.]])
    with pytest.warns(UserWarning, match='overlap no prior'):
        assert a.assign(priors, gts, ignore_all, labels).gt_inds.tolist() == [-1, -1, 1]
    strict = MaxIoUAssigner(0.5, 0.4, min_pos_iou=0.1, ignore_iof_thr=0.5)
    assert strict.assign(priors, gts, ignore_all, labels).gt_inds.tolist() == [-1, -1, 0]


def test_edge_cases_and_errors():
    priors = torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.]])
    a = MaxIoUAssigner(0.5, 0.4)
    r = a.assign(priors, torch.zeros(0, 4), gt_labels=torch.zeros(0, dtype=torch.long))
    assert r.gt_inds.tolist() == [0, 0] and r.labels.tolist() == [-1, -1] and r.max_overlaps.tolist() == [0., 0.]
    r = a.assign(torch.zeros(0, 4), priors)
    assert r.num_preds == 0 and r.num_gts == 2
    with pytest.warns(UserWarning, match=r'ground truth\(s\) \[0\] overlap no prior'):
        a.assign(priors, torch.tensor([[5., 5., 5., 9.]]))
    with pytest.raises(ValueError, match='priors on cpu, gt_bboxes on meta'):
        a.assign(priors, priors.to('meta'))
    with pytest.raises(ValueError, match='gt_bboxes_ignore on meta'):
        MaxIoUAssigner(0.5, 0.4, ignore_iof_thr=0.5).assign(priors, priors, priors.to('meta'))
    with pytest.raises(ValueError, match=r'gt_bboxes must have shape \(n, 4\)'):
        a.assign(priors, torch.zeros(2, 5))
    with pytest.raises(ValueError, match='priors on cpu, gt_bboxes on meta'):
        FCOSAssigner([(-1, 64)], strides=[8]).assign(torch.zeros(2, 2), priors.to('meta'), num_level_priors=[2])


def test_gpu_assign_thr_path(monkeypatch):
    "Above gpu_assign_thr the work is moved to the CPU and the result moved back: checked by recording .cpu() calls."
    g = torch.Generator().manual_seed(5)
    gts, priors = random_boxes(6, g), random_boxes(300, g)
    plain = MaxIoUAssigner(0.5, 0.4).assign(priors, gts)
    thr = MaxIoUAssigner(0.5, 0.4, gpu_assign_thr=5)
    assert thr.assign_on_cpu(6) and not thr.assign_on_cpu(5)
    calls = []
    orig = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, 'cpu', lambda self, *a, **k: calls.append(tuple(self.shape)) or orig(self, *a, **k))
    res = thr.assign(priors, gts)
    assert (300, 4) in calls and (6, 4) in calls
    calls.clear()
    MaxIoUAssigner(0.5, 0.4, gpu_assign_thr=6).assign(priors, gts)
    assert calls == []
    assert torch.equal(res.gt_inds, plain.gt_inds)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_gpu_assign_thr_on_gpu():
    g = torch.Generator().manual_seed(6)
    gts, priors = random_boxes(6, g).cuda(), random_boxes(300, g).cuda()
    res = MaxIoUAssigner(0.5, 0.4, gpu_assign_thr=2).assign(priors, gts, gt_labels=torch.arange(6).cuda())
    assert res.gt_inds.is_cuda and res.labels.is_cuda and res.max_overlaps.is_cuda
    assert torch.equal(res.gt_inds.cpu(), MaxIoUAssigner(0.5, 0.4).assign(priors.cpu(), gts.cpu()).gt_inds)


def test_atss_properties():
    g = torch.Generator().manual_seed(7)
    for _ in range(25):
        levels = [int(x) for x in torch.randint(5, 80, (3,), generator=g)]
        bb, gts = random_boxes(sum(levels), g), random_boxes(int(torch.randint(1, 6, (1,), generator=g)), g)
        res = ATSSAssigner(9).assign(bb, gts, gt_labels=torch.arange(len(gts)), num_level_priors=levels)
        ov, centres = box_iou(bb, gts), (bb[:, :2] + bb[:, 2:]) / 2
        dist = torch.cdist(centres, (gts[:, :2] + gts[:, 2:]) / 2)
        qualifies = torch.zeros(len(bb), len(gts), dtype=torch.bool)
        for j in range(len(gts)):
            cand, start = torch.zeros(len(bb), dtype=torch.bool), 0
            for n in levels:
                cand[start + dist[start:start + n, j].argsort()[:min(9, n)]] = True
                start += n
            thr = ov[cand, j].mean() + ov[cand, j].std()
            pos = res.gt_inds == j + 1
            assert cand[pos].all() and (ov[pos, j] >= thr - 1e-6).all()
            inside = ((centres - gts[j, :2]).min(1).values > 0.01) & ((gts[j, 2:] - centres).min(1).values > 0.01)
            assert inside[pos].all()
            qualifies[:, j] = cand & (ov[:, j] >= thr) & inside
        # and the other way round: every prior that qualifies for some GT is positive, for the qualifying GT of
        # highest IoU (an assigner that assigned nothing would fail here)
        assert torch.equal(res.gt_inds > 0, qualifies.any(1))
        best = ov.masked_fill(~qualifies, -1).argmax(1)
        assert torch.equal(res.gt_inds[res.gt_inds > 0] - 1, best[res.gt_inds > 0])
        assert torch.equal(res.labels[res.gt_inds > 0], res.gt_inds[res.gt_inds > 0] - 1)


def reference_fcos(points, gts, labels, level_of_point, ranges, strides, num_classes, radius=None):
    "FCOS's rule written per point and per GT."
    out_labels, out_inds = [], []
    for p in range(len(points)):
        x, y = points[p].tolist()
        lo, hi = ranges[level_of_point[p]]
        best, best_area = None, None
        for i, (x1, y1, x2, y2) in enumerate(gts.tolist()):
            l, t, r, b = x - x1, y - y1, x2 - x, y2 - y
            if radius is None:
                inside = min(l, t, r, b) > 0
            else:
                s = strides[level_of_point[p]] * radius
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                cx1, cy1, cx2, cy2 = max(cx - s, x1), max(cy - s, y1), min(cx + s, x2), min(cy + s, y2)
                inside = min(x - cx1, y - cy1, cx2 - x, cy2 - y) > 0
            area = (x2 - x1) * (y2 - y1)
            if inside and lo <= max(l, t, r, b) <= hi and (best is None or area < best_area):
                best, best_area = i, area
        out_labels.append(num_classes if best is None else int(labels[best]))
        out_inds.append(0 if best is None else best + 1)
    return out_labels, out_inds


@pytest.mark.parametrize('radius', [None, 1.5])
@pytest.mark.parametrize('with_stride', [False, True])
def test_fcos_equals_reference(radius, with_stride):
    g = torch.Generator().manual_seed(8)
    strides, sizes = [8, 16, 32], [(16, 16), (8, 8), (4, 4)]
    pts = MlvlPointGenerator(strides).grid_priors(sizes, with_stride=with_stride)
    level_of_point = sum(([i] * len(p) for i, p in enumerate(pts)), [])
    priors = torch.cat(pts)
    points = priors[:, :2]
    ranges = [(-1, 32), (32, 64), (64, 1e8)]
    assigner = FCOSAssigner(ranges, center_sampling=radius is not None, center_sample_radius=radius or 1.5,
                            strides=strides)
    for _ in range(10):
        gts = (random_boxes(int(torch.randint(0, 6, (1,), generator=g)), g, size=128.) / 2).round() * 2
        labels = torch.randint(0, 3, (len(gts),), generator=g)
        res = assigner.assign(priors, gts, None, labels, num_level_priors=[len(p) for p in pts])
        ref_labels, ref_inds = reference_fcos(points, gts, labels, level_of_point, ranges, strides, 3, radius)
        assert res.gt_inds.tolist() == ref_inds and len(res) == len(points)
        assert torch.where(res.pos_mask, res.labels, 3).tolist() == ref_labels      # -1 -> background K = 3
        assert res.max_overlaps.eq(0).all()
        pos = res.gt_inds > 0
        if pos.any():       # what the head regresses: distances from each positive point to its GT's sides
            gt = gts[res.gt_inds[pos] - 1]
            p = points[pos]
            torch.testing.assert_close(DistancePointBBoxCoder().encode(p, gt), torch.stack(
                [p[:, 0] - gt[:, 0], p[:, 1] - gt[:, 1], gt[:, 2] - p[:, 0], gt[:, 3] - p[:, 1]], 1))


def test_fcos_hand_fixture():
    "Worked by hand in chapter 08: points x = 4, 12, 20, 28 (y = 4), GT A (0, 0, 24, 8) area 192, GT B (10, 0, 30, 8) area 160."
    pts = torch.tensor([[4., 4.], [12., 4.], [20., 4.], [28., 4.]])
    two, labels = torch.tensor([[0., 0., 24., 8.], [10., 0., 30., 8.]]), torch.tensor([0, 1])
    res = FCOSAssigner([(-1, 64)], strides=[8]).assign(pts, two, gt_labels=labels, num_level_priors=[4])
    assert res.gt_inds.tolist() == [1, 2, 2, 2] and res.labels.tolist() == [0, 1, 1, 1]   # point 12: the smaller B
    narrow = FCOSAssigner([(-1, 16)], strides=[8]).assign(pts, two, gt_labels=labels, num_level_priors=[4])
    assert narrow.gt_inds.tolist() == [0, 1, 2, 0] and narrow.labels.tolist() == [-1, 0, 1, -1]
    # a flat GT (0, 0, 40, 6), radius 12 px: the centre region clipped to the box keeps 3 first-row points, not 6
    rows = MlvlPointGenerator([8]).grid_priors([(2, 6)])[0]
    flat = FCOSAssigner([(-1, 64)], center_sampling=True, strides=[8]).assign(
        rows, torch.tensor([[0., 0., 40., 6.]]), num_level_priors=[12])
    assert rows[flat.gt_inds > 0].tolist() == [[12., 4.], [20., 4.], [28., 4.]]
    empty = FCOSAssigner([(-1, 64)], strides=[8]).assign(pts, two[:0], gt_labels=labels[:0], num_level_priors=[4])
    assert empty.gt_inds.tolist() == [0] * 4 and empty.labels.tolist() == [-1] * 4
    with pytest.raises(ValueError, match='FCOSAssigner.assign needs num_level_priors='):
        FCOSAssigner([(-1, 64)], strides=[8]).assign(pts, two)
    with pytest.raises(ValueError, match='their strides are not'):
        FCOSAssigner([(-1, 64)], strides=[8]).assign(torch.cat([pts, pts + 8], 1), two, num_level_priors=[4])


def test_atss_takes_num_level_priors():
    shifted = torch.tensor([[0., 0., 10., 10.], [2., 0., 12., 10.], [4., 0., 14., 10.], [8., 0., 18., 10.]])
    one_gt = torch.tensor([[0., 0., 10., 10.]])
    res = ATSSAssigner(3).assign(shifted, one_gt, None, torch.tensor([7]), num_level_priors=[4])
    assert res.gt_inds.tolist() == [1, 0, 0, 0] and res.labels.tolist() == [7, -1, -1, -1]
    # two levels of two, topk=1 per level: candidates 0 (IoU 1) and 2 (60/140 = 0.429); mean 0.714 + std 0.404 = 1.118
    # is above every IoU, so nothing is positive; topk=2 per level takes all four: 0.552 + 0.376 = 0.927, anchor 0
    assert ATSSAssigner(1).assign(shifted, one_gt, num_level_priors=[2, 2]).gt_inds.tolist() == [0, 0, 0, 0]
    assert ATSSAssigner(2).assign(shifted, one_gt, num_level_priors=[2, 2]).gt_inds.tolist() == [1, 0, 0, 0]
    with pytest.raises(ValueError, match='ATSSAssigner.assign needs num_level_priors='):
        ATSSAssigner(3).assign(shifted, one_gt)
    with pytest.raises(ValueError, match='add up to 3, but there are 4 priors'):
        ATSSAssigner(3).assign(shifted, one_gt, num_level_priors=[1, 2])
    with pytest.raises(TypeError):          # the old positional order (priors, num_level_bboxes, gt_bboxes) is refused
        ATSSAssigner(3).assign(shifted, [4], one_gt)


def _protocol_cases():
    "For every registered assigner: a config and the per-level priors its heads use, on a 64x64 image."
    sizes = [(8, 8), (4, 4)]
    anchors = AnchorGenerator([8, 16], [0.5, 1., 2.], octave_base_scale=4, scales_per_octave=1).grid_priors(sizes)
    return {'MaxIoUAssigner': (dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, ignore_iof_thr=0.5), anchors),
            'ATSSAssigner': (dict(type='ATSSAssigner', topk=9, ignore_iof_thr=0.5), anchors),
            'FCOSAssigner': (dict(type='FCOSAssigner', regress_ranges=[(-1, 32), (32, 1e8)], strides=[8, 16]),
                             MlvlPointGenerator([8, 16]).grid_priors(sizes, with_stride=True))}


def test_every_registered_assigner_takes_the_same_call():
    cases = _protocol_cases()
    assert set(cases) == set(BBOX_ASSIGNERS), 'a new assigner: add it to _protocol_cases'
    g = torch.Generator().manual_seed(11)
    for name, (cfg, levels) in cases.items():
        assigner, priors = build_from_cfg(cfg, BBOX_ASSIGNERS), torch.cat(levels)
        num_level = [len(level) for level in levels]
        for n in (0, 1, 4):
            gts = (random_boxes(n, g, size=48.) + 4).round()
            labels = torch.randint(0, 5, (n,), generator=g)
            ignore = torch.tensor([[40., 0., 64., 16.]])
            res = assigner.assign(priors, gts, ignore, labels, num_level_priors=num_level)
            assert isinstance(res, AssignResult) and len(res) == len(priors) == res.num_preds, name
            assert res.num_gts == n and res.max_overlaps.shape == (len(priors),)
            assert ((res.gt_inds >= ASSIGN_IGNORE) & (res.gt_inds <= n)).all()
            pos = res.gt_inds >= ASSIGN_FIRST_GT
            assert torch.equal(res.labels[pos], labels[res.gt_inds[pos] - ASSIGN_FIRST_GT])
            assert (res.labels[~pos] == -1).all()
            if n == 0:
                assert (res.gt_inds[res.gt_inds != ASSIGN_IGNORE] == ASSIGN_NEGATIVE).all()
            # without labels: the same codes, labels None
            same = assigner.assign(priors, gts, ignore, num_level_priors=num_level)
            assert torch.equal(same.gt_inds, res.gt_inds) and same.labels is None


def test_samplers_counts_and_properties():
    g = torch.Generator().manual_seed(9)
    torch.manual_seed(0)
    for _ in range(30):
        gts, priors = random_boxes(int(torch.randint(0, 6, (1,), generator=g)), g), random_boxes(500, g)
        labels = torch.randint(0, 4, (len(gts),), generator=g)
        res = MaxIoUAssigner(0.5, 0.3, min_pos_iou=0.3).assign(priors, gts, gt_labels=labels)
        n_pos, n_neg = int(res.pos_mask.sum()), int(res.neg_mask.sum())
        s = PseudoSampler().sample(res, priors, gts)
        assert len(s.pos_inds) == n_pos and len(s.neg_inds) == n_neg
        for num, frac, ub, add in ((64, 0.25, -1, False), (32, 0.5, 1, False), (128, 0.25, -1, True)):
            r = AssignResult(res.num_gts, res.gt_inds.clone(), res.max_overlaps.clone(), res.labels.clone())
            s = RandomSampler(num, frac, ub, add).sample(r, priors, gts, labels)
            total_pos = n_pos + (len(gts) if add else 0)
            assert len(s.pos_inds) == min(total_pos, int(num * frac))
            want_neg = num - len(s.pos_inds)
            if ub >= 0:
                want_neg = min(want_neg, int(ub * max(1, len(s.pos_inds))))
            assert len(s.neg_inds) == min(n_neg, want_neg)
            assert len(torch.cat([s.pos_inds, s.neg_inds]).unique()) == len(s.pos_inds) + len(s.neg_inds)
            assert (r.gt_inds[s.pos_inds] > 0).all() and (r.gt_inds[s.neg_inds] == 0).all()
            if len(gts):
                torch.testing.assert_close(s.pos_gt_bboxes, gts[s.pos_assigned_gt_inds])
                assert torch.equal(s.pos_gt_labels, labels[s.pos_assigned_gt_inds])
            assert torch.equal(s.pos_is_gt.bool(), s.pos_inds < (len(gts) if add else 0))


def test_registries():
    for name in ('MaxIoUAssigner', 'ATSSAssigner', 'FCOSAssigner'):
        assert name in BBOX_ASSIGNERS
    for name in ('PseudoSampler', 'RandomSampler'):
        assert name in BBOX_SAMPLERS
    a = build_from_cfg(dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                            ignore_iof_thr=-1), BBOX_ASSIGNERS)
    assert a.pos_iou_thr == 0.5


def test_assignment_widget_logic():
    from learndet.assigners import _shapes_sample
    img, gts = _shapes_sample(1, size=160)
    for kind in ('MaxIoU', 'ATSS', 'FCOS'):
        view, axs = assignment_widget_update(img, gts, kind)
        c = view['counts']
        assert c['positive'] + c['negative'] + c['ignored'] == len(view['priors'])
        assert int(view['pos_per_gt'].sum()) == c['positive']
        assert view['gts_without_positive'] == torch.nonzero(view['pos_per_gt'] == 0).flatten().tolist()
    loose = assignment_view(img.shape, gts, 'MaxIoU', 0.5, 0.4, 0., True)
    assert loose['gts_without_positive'] == [] or len(gts) == 0
    strict = assignment_view(img.shape, gts, 'MaxIoU', 0.95, 0.4, 0.95, True)
    assert strict['counts']['positive'] <= loose['counts']['positive']
    with pytest.raises(ValueError, match='must not exceed'):
        assignment_widget_update(img, gts, 'MaxIoU', 0.3, 0.5)
    import ipywidgets
    import matplotlib.pyplot as plt
    w = assignment_widget({'one': (img, gts)})
    sliders = [c for box in w.children if hasattr(box, 'children') for c in box.children
               if isinstance(c, ipywidgets.FloatSlider)]
    table = w.children[-1]
    before = table.value
    sliders[0].value = 0.95          # pos_iou_thr: fewer positives, so the positives-per-GT table changes
    plt.close('all')
    assert table.value != before


def test_bench_smoke(capsys):
    import learndet.coders  # noqa: F401
    ns = runpy.run_path(str(ROOT / 'benchmarks' / 'bench_assign.py'))
    ratio = ns['main'](['--batch', '1', '--height', '128', '--width', '160', '--gts', '3', '--repeats', '1'])
    out = capsys.readouterr().out
    assert ratio > 0 and '| total |' in out
