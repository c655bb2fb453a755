"""FCOS (chapter 12a): an mmdetection 2.x checkpoint layout loads strictly, the targets equal a loop written from the
paper's rule, empty images and unassigned points are harmless, the tiny shapes config overfits one batch, and the
benchmark runs. `-m slow`: a short training run on the shapes set reaches a stated mAP."""
import importlib.util
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import learndet  # noqa: F401  (registers every component)
from layouts import head_towers_layout, r50_fpn_layout, random_state
from learndet.apis import init_detector
from learndet.cli import load_config
from learndet.core import set_random_seed
from learndet.data.shapes import render_shapes_image
from learndet.models.dense_heads import FCOSHead
from learndet.models.detectors import build_detector

R50 = 'fcos/fcos_r50_caffe_fpn_gn-head_1x_coco.py'
R50_GIOU = 'fcos/fcos_center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_1x_coco.py'
TINY = 'fcos/fcos_tiny_r18_fpn_shapes.py'


def mmdet_fcos_r50_layout(num_classes=80, conv_bias=False):
    """The state-dict keys and shapes of mmdetection 2.x's fcos_r50_caffe_fpn_gn-head_1x_coco checkpoint, written from
    its code (mmdet/models/dense_heads/anchor_free_head.py, fcos_head.py; not from learndet's): the caffe ResNet-50
    has torchvision's ResNet-50 names and shapes (the stride moves, not the weights); FPN with
    add_extra_convs='on_output' builds P6 from P5 (256 channels in); the head's towers are mmcv ConvModules with a GN
    (`.conv.`, `.gn.`; no conv bias unless conv_bias=True), then conv_cls, conv_reg, conv_centerness (3x3) and one
    `Scale` (a scalar `.scale`) per level."""
    layout = {**r50_fpn_layout(p6_in_channels=256), **head_towers_layout(gn=True, conv_bias=conv_bias)}
    for name, out in (('conv_cls', num_classes), ('conv_reg', 4), ('conv_centerness', 1)):
        layout[f'bbox_head.{name}.weight'] = (out, 256, 3, 3)
        layout[f'bbox_head.{name}.bias'] = (out,)
    for i in range(5):
        layout[f'bbox_head.scales.{i}.scale'] = ()
    return layout


def test_r50_fcos_has_mmdetection_layout():
    model = build_detector(load_config(R50).model)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == mmdet_fcos_r50_layout()
    model = build_detector(load_config(R50_GIOU).model)        # conv_bias=True: the tower convs have biases
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == mmdet_fcos_r50_layout(conv_bias=True)


def raw_outputs(model, x):
    with torch.no_grad():
        return model.bbox_head(model.extract_feat(x))


def test_state_dict_of_that_layout_loads_strictly_and_gives_the_same_outputs(tmp_path):
    "A state dict generated from the layout (random values) loads strictly; saved and loaded again, nothing changes."
    from learndet.data.datasets import COCO_CLASSES
    state = random_state(mmdet_fcos_r50_layout())
    model = build_detector(load_config(R50).model).eval()
    model.load_state_dict(state, strict=True)
    path = tmp_path / 'fcos_r50_caffe_fpn_gn-head_1x_coco.pth'
    torch.save(dict(meta=dict(mmdet_version='2.28.2', CLASSES=COCO_CLASSES), state_dict=model.state_dict()), path)
    loaded = init_detector(R50, str(path), device='cpu')
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    for a, b in zip(raw_outputs(model, x), raw_outputs(loaded, x)):   # cls_scores, bbox_preds, centernesses
        assert len(a) == 5 and all(torch.equal(u, v) for u, v in zip(a, b))
    assert torch.equal(loaded.state_dict()['bbox_head.scales.3.scale'], state['bbox_head.scales.3.scale'])
    broken = {k: v for k, v in state.items() if 'conv_centerness' not in k}
    torch.save(dict(state_dict=broken), tmp_path / 'bad.pth')
    with pytest.raises(RuntimeError, match='conv_centerness'):
        init_detector(R50, str(tmp_path / 'bad.pth'), device='cpu')


# ---------------------------------------------------------------- targets against a loop over points and GTs
def loop_targets(points, strides, ranges, gt_bboxes, gt_labels, num_classes, center_sampling, radius=1.5):
    "FCOS's rule written from the paper, one point and one GT at a time: (labels (P,), ltrb (P, 4))."
    labels, ltrb = [], []
    for (x, y), s, (lo, hi) in zip(points.tolist(), strides, ranges):
        best = None
        for j, (x1, y1, x2, y2) in enumerate(gt_bboxes.tolist()):
            d = (x - x1, y - y1, x2 - x, y2 - y)
            if center_sampling:
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                rx1, ry1 = max(cx - radius * s, x1), max(cy - radius * s, y1)
                rx2, ry2 = min(cx + radius * s, x2), min(cy + radius * s, y2)
                inside = min(x - rx1, y - ry1, rx2 - x, ry2 - y) > 0
            else:
                inside = min(d) > 0
            area = (x2 - x1) * (y2 - y1)
            if inside and lo <= max(d) <= hi and (best is None or area < best[0]):
                best = (area, j, d)
        labels.append(num_classes if best is None else int(gt_labels[best[1]]))
        ltrb.append((0., 0., 0., 0.) if best is None else best[2])
    return torch.tensor(labels), torch.tensor(ltrb)


def small_head(**kw):
    return FCOSHead(3, 8, feat_channels=8, stacked_convs=1, strides=[8, 16, 32],
                    regress_ranges=[(-1, 32), (32, 64), (64, 1e8)], norm_cfg=dict(type='GN', num_groups=4), **kw)


@pytest.mark.parametrize('center_sampling', [False, True])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_targets_equal_a_loop_over_points_and_gts(center_sampling, seed):
    g = torch.Generator().manual_seed(seed)
    n = 12
    xy = torch.rand(n, 2, generator=g) * 110
    gt = torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * 90], 1).clamp(max=128)
    labels = torch.randint(0, 3, (n,), generator=g)
    head = small_head(center_sampling=center_sampling)
    sizes = [(16, 16), (8, 8), (4, 4)]
    meta = dict(img_shape=(128, 128, 3), pad_shape=(128, 128, 3))
    points, flags = head.get_priors(sizes, [meta])
    t = head.get_targets(points, flags, [gt], [meta], None, [labels])
    strides = sum(([s] * h * w for s, (h, w) in zip(head.strides, sizes)), [])
    ranges = sum(([r] * h * w for r, (h, w) in zip(head.regress_ranges, sizes)), [])
    ref_labels, ref_ltrb = loop_targets(torch.cat(points), strides, ranges, gt, labels, 3, center_sampling)
    ours_labels = torch.cat(t.labels, 1)[0]
    assert torch.equal(ours_labels, ref_labels)
    assert (ref_labels < 3).sum() > 10                                      # the case is not trivial
    assert torch.allclose(torch.cat(t.bbox_targets, 1)[0], ref_ltrb, atol=1e-4)
    pos = ref_labels < 3
    lr, tb = ref_ltrb[pos][:, [0, 2]], ref_ltrb[pos][:, [1, 3]]
    ref_c = torch.sqrt(lr.min(1).values / lr.max(1).values * tb.min(1).values / tb.max(1).values)
    c = torch.cat(t.extras['centerness'], 1)[0]
    assert torch.allclose(c[pos], ref_c, atol=1e-6) and (c[~pos] == 0).all()


# ---------------------------------------------------------------- the loss at the edges
def head_outputs(head, n=2, size=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(n, 8, size // s, size // s, generator=g) for s in head.strides]
    return head(feats)


def test_empty_gt_images_never_give_nan():
    set_random_seed(0)
    head = small_head(center_sampling=True, norm_on_bbox=True, loss_bbox=dict(type='GIoULoss', loss_weight=1.0))
    meta = dict(img_shape=(128, 128, 3), pad_shape=(128, 128, 3))
    gt = torch.tensor([[10., 20., 70., 90.], [60., 60., 120., 100.]])
    empty = torch.zeros(0, 4)
    for gts in ([gt, empty], [empty, empty]):
        head.zero_grad()
        outs = head_outputs(head)
        labels = [torch.tensor([0, 2]) if len(b) else torch.zeros(0, dtype=torch.long) for b in gts]
        losses = head.loss(*outs, gts, labels, [meta, meta])
        assert all(torch.isfinite(v) for v in losses.values()), losses
        sum(losses.values()).backward()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
        if not len(gts[0]):
            assert losses['loss_bbox'].item() == 0 and losses['loss_centerness'].item() == 0
            assert losses['loss_cls'].item() > 0                 # the scores are still pushed down


def test_unassigned_points_never_enter_the_box_loss():
    "Distances at points assigned to no box can be anything (NaN here): the box and centerness losses do not change."
    head = small_head(center_sampling=True)
    meta = dict(img_shape=(128, 128, 3), pad_shape=(128, 128, 3))
    gts, labels = [torch.tensor([[10., 20., 70., 90.]]), torch.tensor([[30., 30., 60., 50.]])], [torch.tensor([1]), torch.tensor([2])]
    cls_scores, bbox_preds, centernesses = head_outputs(head)
    losses = head.loss(cls_scores, bbox_preds, centernesses, gts, labels, [meta, meta])
    points, flags = head.get_priors([c.shape[-2:] for c in cls_scores], [meta, meta])
    t = head.get_targets(points, flags, gts, [meta, meta], None, labels)
    poisoned_b, poisoned_c = [], []
    for b, c, lab in zip(bbox_preds, centernesses, t.labels):       # lab (N, H*W) -> (N, 1, H, W)
        neg = (lab == head.num_classes).reshape(c.shape)
        poisoned_b.append(torch.where(neg, torch.full_like(b, float('nan')), b))
        poisoned_c.append(torch.where(neg, torch.full_like(c, float('nan')), c))
    assert sum(int((lab < head.num_classes).sum()) for lab in t.labels) > 0
    again = head.loss(cls_scores, poisoned_b, poisoned_c, gts, labels, [meta, meta])
    for k in ('loss_bbox', 'loss_centerness'):
        assert torch.isfinite(again[k]) and torch.equal(again[k], losses[k]), k


def test_bad_arguments_are_refused():
    with pytest.raises(NotImplementedError, match='dcn_on_last_conv'):
        FCOSHead(4, 16, dcn_on_last_conv=True)
    with pytest.raises(ValueError, match='3 regress_ranges for 5 strides'):
        FCOSHead(4, 16, strides=[8, 16, 32, 64, 128], regress_ranges=[(-1, 64), (64, 128), (128, 1e8)])
    with pytest.warns(UserWarning, match='train_cfg.assigner'):
        FCOSHead(4, 32, train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4)))


# ---------------------------------------------------------------- the tiny config learns
def centerness_entropy(head, gts, labels, metas, sizes):
    "The lowest value the centerness BCE can reach: the entropy of its soft targets, averaged like the loss."
    points, flags = head.get_priors(sizes, metas)
    t = head.get_targets(points, flags, gts, metas, None, labels)
    c = torch.cat(t.extras['centerness'], 1).reshape(-1)
    c = c[torch.cat(t.labels, 1).reshape(-1) < head.num_classes].double().clamp(1e-12, 1 - 1e-12)
    return float(-(c * c.log() + (1 - c) * (1 - c).log()).sum() / len(c))


@pytest.mark.slow
def test_tiny_config_overfits_one_batch():
    """80 AdamW steps on a batch of two 128x128 images (10 minutes on a shared, loaded 2-core CPU; the chapter overfits
    one image in 60 steps): what the losses can still learn falls by more than 90 %."""
    torch.set_num_threads(2)
    set_random_seed(0)
    model = build_detector(load_config(TINY).model)
    model.init_weights()
    model.train()
    imgs, gts, labels = [], [], []
    for seed in (3, 4):
        img, ann = render_shapes_image(np.random.default_rng(seed), 128, 128, max_objects=4, empty_prob=0., noise=0.,
                                       min_size=16, max_size=80)
        imgs.append((torch.from_numpy(img).permute(2, 0, 1).float() - 120) / 60)
        gts.append(torch.from_numpy(ann['bboxes'])); labels.append(torch.from_numpy(ann['labels']))
    x = torch.stack(imgs)
    metas = [dict(img_shape=(128, 128, 3), pad_shape=(128, 128, 3), ori_shape=(128, 128, 3), scale_factor=1.0)
             for _ in imgs]
    floor = centerness_entropy(model.bbox_head, gts, labels, metas, [(128 // s, 128 // s) for s in (8, 16, 32, 64, 128)])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.)
    history = []
    for _ in range(80):
        losses = model.forward_train(x, [dict(m) for m in metas], gts, labels)
        opt.zero_grad(); sum(losses.values()).backward(); opt.step()
        history.append(sum(v.item() for v in losses.values()) - floor)   # what is left to learn
    assert history[-1] < 0.1 * history[0], (history[0], history[-1], floor)


# ---------------------------------------------------------------- the benchmark script
def test_bench_fcos_small_runs(capsys):
    path = Path(__file__).resolve().parents[1] / 'benchmarks' / 'bench_fcos.py'
    spec = importlib.util.spec_from_file_location('bench_fcos', path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(['--small', '--repeats', '1'])
    assert len(rows) == 2 and all(t_ours > 0 and t_peer > 0 for _, t_ours, t_peer in rows)
    assert '| FCOS R-50-FPN | learndet ms | torchvision ms | ratio |' in capsys.readouterr().out


# ---------------------------------------------------------------- slow: a short run on the shapes set
@pytest.mark.slow
def test_tiny_fcos_trains_on_shapes(tmp_path):
    """`learndet train` with the tiny config, 8 epochs: measured bbox mAP 0.114, mAP@0.5 0.229 (2 minutes on a free
    2-core CPU, 44 on a loaded one); asserted with a margin for other seeds and thread counts."""
    exe = shutil.which('learndet')
    assert exe, 'the learndet console script is not installed'
    r = subprocess.run([exe, 'train', TINY, '--work-dir', 'work', '--device', 'cpu', '--cfg-options',
                        'runner.max_epochs=8', 'lr_config.step=[6,7]', 'data.workers_per_gpu=1'],
                       capture_output=True, text=True, cwd=tmp_path, timeout=4 * 3600)
    assert r.returncode == 0, r.stderr[-3000:]
    logs = [json.loads(line) for line in next((tmp_path / 'work').glob('*.log.json')).read_text().splitlines()]
    val = [l for l in logs if l.get('mode') == 'val']
    assert len(val) == 8 and val[-1]['bbox_mAP'] > 0.08 and val[-1]['bbox_mAP_50'] > 0.17, val[-1]
