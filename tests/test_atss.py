"""ATSS (chapter 12b): the R-50 config has mmdetection 2.x's checkpoint layout and loads such a checkpoint strictly,
the head's losses match independent references (torchvision, by-hand decoding) on random batches, empty images and
anchors without an object are harmless, and the tiny shapes config learns."""
import json
import math
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, generalized_box_iou_loss, sigmoid_focal_loss

import learndet  # noqa: F401  (registers every component)
from layouts import head_towers_layout, r50_fpn_layout, random_state
from learndet.apis import init_detector
from learndet.cli import load_config
from learndet.data.shapes import render_shapes_image
from learndet.models.dense_heads import ATSSHead
from learndet.models.detectors import build_detector

R50 = 'atss/atss_r50_fpn_1x_coco.py'
TINY = 'atss/atss_tiny_r18_fpn_shapes.py'


def mmdet_atss_r50_layout(num_classes=80):
    """The state-dict keys and shapes of mmdetection 2.x's atss_r50_fpn_1x_coco checkpoint, written from its
    architecture (mmdetection's ATSSHead, mmcv's ConvModule and FPN), not from learndet's code: torchvision's ResNet-50
    names for the backbone; the FPN with add_extra_convs='on_output' (P6 from P5's 256-channel output, not C5);
    the head's GN towers (ConvModule: `.conv` without bias when a norm follows, `.gn` weight and bias), one anchor
    per cell so `atss_cls` has 80 channels, `atss_reg` 4 and `atss_centerness` 1, and one `Scale` per level."""
    layout = {**r50_fpn_layout(p6_in_channels=256), **head_towers_layout(gn=True, conv_bias=False)}
    for name, c in (('atss_cls', num_classes), ('atss_reg', 4), ('atss_centerness', 1)):
        layout[f'bbox_head.{name}.weight'] = (c, 256, 3, 3)
        layout[f'bbox_head.{name}.bias'] = (c,)
    for i in range(5):
        layout[f'bbox_head.scales.{i}.scale'] = ()
    return layout


def test_r50_atss_has_mmdetection_layout():
    model = build_detector(load_config(R50).model)
    assert type(model).__name__ == 'ATSS' and type(model.bbox_head).__name__ == 'ATSSHead'
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = mmdet_atss_r50_layout()
    assert set(ours) - set(expected) == set() and set(expected) - set(ours) == set()
    assert ours == expected
    count = lambda prefix: sum(k.startswith(prefix) for k in ours)
    assert (count('backbone.'), count('neck.'), count('bbox_head.')) == (318, 16, 35)   # 369 tensors in all


def test_mmdetection_checkpoint_loads_strictly_and_gives_the_same_outputs(tmp_path):
    state = random_state(mmdet_atss_r50_layout())
    source = build_detector(load_config(R50).model)
    source.load_state_dict(state, strict=True)
    from learndet.data.datasets import COCO_CLASSES
    path = tmp_path / 'atss_r50_fpn_1x_coco.pth'
    torch.save(dict(meta=dict(mmdet_version='2.28.2', CLASSES=COCO_CLASSES), state_dict=state), path)
    loaded = init_detector(R50, str(path), device='cpu')           # strict=True by default
    assert len(loaded.CLASSES) == 80
    for k in ('bbox_head.atss_centerness.weight', 'bbox_head.scales.3.scale', 'bbox_head.cls_convs.0.gn.weight'):
        assert torch.equal(loaded.state_dict()[k], state[k]), k
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    source.eval()
    with torch.no_grad():
        a, b = source.bbox_head(source.extract_feat(x)), loaded.bbox_head(loaded.extract_feat(x))
    assert len(a) == len(b) == 3                                   # scores, deltas, centerness; 5 levels each
    for outs_a, outs_b in zip(a, b):
        for t_a, t_b in zip(outs_a, outs_b):
            assert torch.equal(t_a, t_b)
    broken = {k: v for k, v in state.items() if not k.startswith('bbox_head.atss_centerness')}
    torch.save(dict(state_dict=broken), tmp_path / 'bad.pth')
    with pytest.raises(RuntimeError, match='atss_centerness'):
        init_detector(R50, str(tmp_path / 'bad.pth'), device='cpu')


def test_tiny_config():
    cfg = load_config(TINY)
    head = cfg.model.bbox_head
    assert cfg.model.type == 'ATSS' and head.type == 'ATSSHead' and cfg.model.train_cfg.assigner.topk == 9
    assert head.bbox_coder.target_stds == [0.1, 0.1, 0.2, 0.2] and head.anchor_generator.ratios == [1.0]
    assert cfg.data.train.type == 'ShapesDataset' and cfg.optimizer.type == 'AdamW'
    model = build_detector(cfg.model)
    assert model.bbox_head.num_base_priors == [1] * 5 and model.bbox_head.cls_convs[1].gn.num_groups == 32


# ---- the head against independent references ----------------------------------------------------------------------

STRIDES = (8, 16, 32, 64, 128)
TRAIN_CFG = dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1, pos_weight=-1, debug=False)
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)


def make_head(num_classes=4, seed=0):
    torch.manual_seed(seed)
    return ATSSHead(num_classes, 16, feat_channels=64, stacked_convs=2, train_cfg=TRAIN_CFG, test_cfg=TEST_CFG)


def random_batch(rng, num_imgs, size, num_classes, empty=()):
    gts, labels = [], []
    for i in range(num_imgs):
        n = 0 if i in empty else int(rng.integers(1, 7))
        xy = rng.uniform(0, size - 12, (n, 2))
        wh = rng.uniform(6, size / 2, (n, 2))
        boxes = np.concatenate([xy, np.minimum(xy + wh, size)], 1)
        gts.append(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        labels.append(torch.tensor(rng.integers(0, num_classes, n), dtype=torch.long))
    meta = dict(img_shape=(size, size, 3), pad_shape=(size, size, 3), ori_shape=(size, size, 3), scale_factor=1.0)
    return gts, labels, [meta] * num_imgs


def reference_losses(head, outs, anchors, gts, labels, metas):
    """ATSS's three losses from independent pieces: the ATSS assignment (chapter 08's assigner, trusted here),
    torchvision's focal and GIoU losses, F.binary_cross_entropy_with_logits, deltas decoded and centerness written out
    by hand, and mmdetection 2.x's normalisation (num_pos with 1 per image without positives; box loss over the sum of
    centerness targets)."""
    K, num_level = head.num_classes, [len(a) for a in anchors]
    all_anchors = torch.cat(anchors)
    focal_sum, giou_sum, bce_sum, ctr_sum, num_pos = 0., 0., 0., 0., 0
    for i, (gt, lbl) in enumerate(zip(gts, labels)):
        def img(maps, c): return torch.cat([m[i].permute(1, 2, 0).reshape(-1, c) for m in maps])
        logits, deltas, ctr_logits = img(outs[0], K), img(outs[1], 4), img(outs[2], 1)[:, 0]
        gt_inds = head.assigner.assign(all_anchors, gt, None, lbl, num_level_priors=num_level).gt_inds
        pos = gt_inds > 0
        target = torch.zeros_like(logits)
        target[pos, lbl[gt_inds[pos] - 1]] = 1.
        focal_sum = focal_sum + sigmoid_focal_loss(logits, target, alpha=0.25, gamma=2.0, reduction='sum')
        num_pos += max(int(pos.sum()), 1)
        if not pos.any():
            continue
        a, box = all_anchors[pos], gt[gt_inds[pos] - 1]
        aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        acx, acy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
        d = deltas[pos] * torch.tensor([0.1, 0.1, 0.2, 0.2])
        cx, cy, w, h = acx + d[:, 0] * aw, acy + d[:, 1] * ah, aw * d[:, 2].exp(), ah * d[:, 3].exp()
        decoded = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        l, t, r, b = acx - box[:, 0], acy - box[:, 1], box[:, 2] - acx, box[:, 3] - acy
        ctr = torch.sqrt(torch.minimum(l, r) / torch.maximum(l, r) * torch.minimum(t, b) / torch.maximum(t, b))
        giou_sum = giou_sum + (generalized_box_iou_loss(decoded, box) * ctr).sum()
        bce_sum = bce_sum + F.binary_cross_entropy_with_logits(ctr_logits[pos], ctr, reduction='sum')
        ctr_sum += ctr.sum().item()
    return dict(loss_cls=focal_sum / num_pos, loss_bbox=2.0 * giou_sum / max(ctr_sum, 1.),
                loss_centerness=bce_sum / num_pos)


@pytest.mark.parametrize('seed', range(4))
def test_losses_match_independent_references(seed):
    rng = np.random.default_rng(seed)
    size, num_imgs = int(rng.choice([64, 96, 128])), int(rng.integers(1, 4))
    head = make_head(num_classes=int(rng.integers(1, 6)), seed=seed)
    gts, labels, metas = random_batch(rng, num_imgs, size, head.num_classes, empty=(1,))
    feats = [torch.randn(num_imgs, 16, math.ceil(size / s), math.ceil(size / s)) for s in STRIDES]
    outs = head(feats)
    anchors = head.prior_generator.grid_priors([f.shape[-2:] for f in feats])
    ours = head.loss(*outs, gts, labels, metas)
    ref = reference_losses(head, outs, anchors, gts, labels, metas)
    for k in ('loss_cls', 'loss_bbox', 'loss_centerness'):
        assert len(ours[k]) == 5
        torch.testing.assert_close(sum(ours[k]), torch.as_tensor(ref[k], dtype=torch.float32), rtol=1e-4, atol=1e-6,
                                   msg=lambda m: f'{k}: {m}')


def test_empty_images_never_give_nan():
    rng = np.random.default_rng(0)
    head = make_head()
    feats = [torch.randn(3, 16, 96 // s + (96 % s > 0), 96 // s + (96 % s > 0), requires_grad=True) for s in STRIDES]
    for empty in ((0, 1, 2), (1,), (0, 2)):
        gts, labels, metas = random_batch(rng, 3, 96, head.num_classes, empty=empty)
        losses = head.loss(*head(feats), gts, labels, metas)
        total = sum(sum(v) for v in losses.values())
        assert torch.isfinite(total), (empty, losses)
        head.zero_grad(); total.backward()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
        if len(empty) == 3:
            assert sum(losses['loss_bbox']).item() == 0 and sum(losses['loss_centerness']).item() == 0
            assert sum(losses['loss_cls']).item() > 0


def test_anchors_without_an_object_never_enter_the_box_loss():
    rng = np.random.default_rng(3)
    head = make_head()
    gts, labels, metas = random_batch(rng, 2, 128, head.num_classes)
    feats = [torch.randn(2, 16, 128 // s if s < 128 else 1, 128 // s if s < 128 else 1) for s in STRIDES]
    cls_scores, bbox_preds, centernesses = head(feats)
    anchors = head.prior_generator.grid_priors([f.shape[-2:] for f in feats])
    t = head.get_targets(anchors, head.get_priors([f.shape[-2:] for f in feats], metas)[1], gts, metas, None, labels)
    clean = head.loss(cls_scores, bbox_preds, centernesses, gts, labels, metas)
    poisoned = []
    for lvl, b in enumerate(bbox_preds):
        b = b.detach().clone()
        n, _, h, w = b.shape
        not_pos = (t.labels[lvl] == head.num_classes).reshape(n, 1, h, w).expand_as(b)
        b[not_pos] = float('nan')                    # every anchor that is not positive: NaN deltas
        poisoned.append(b.requires_grad_())
    bad = head.loss(cls_scores, poisoned, centernesses, gts, labels, metas)
    torch.testing.assert_close(sum(bad['loss_bbox']), sum(clean['loss_bbox']))
    sum(bad['loss_bbox']).backward()
    for lvl, b in enumerate(poisoned):
        not_pos = (t.labels[lvl] == head.num_classes).reshape(b.shape[0], 1, *b.shape[2:]).expand_as(b)
        assert b.grad[not_pos].abs().max() == 0


def test_centerness_targets_only_at_positives():
    rng = np.random.default_rng(5)
    head = make_head()
    gts, labels, metas = random_batch(rng, 2, 128, head.num_classes)
    sizes = [(math.ceil(128 / s),) * 2 for s in STRIDES]
    anchors, valid = head.get_priors(sizes, metas)
    t = head.get_targets(anchors, valid, gts, metas, None, labels)
    ctr, lbl = torch.cat(t.extras['centerness_targets'], 1), torch.cat(t.labels, 1)
    pos = lbl < head.num_classes
    assert (ctr[~pos] == 0).all() and (ctr[pos] > 0).all() and (ctr[pos] <= 1).all()


def test_detections_score_is_class_times_centerness():
    head = make_head(num_classes=3)
    feats = [torch.randn(1, 16, math.ceil(64 / s), math.ceil(64 / s)) for s in STRIDES]
    cls_scores, bbox_preds, centernesses = head(feats)
    meta = dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3), ori_shape=(64, 64, 3), scale_factor=1.0)
    dets = head.get_bboxes(cls_scores, bbox_preds, centernesses, img_metas=[meta],
                           cfg=dict(nms_pre=-1, score_thr=0.), with_nms=False)[0]
    scores = torch.cat([c[0].permute(1, 2, 0).reshape(-1, 3) for c in cls_scores]).sigmoid()
    ctr = torch.cat([c[0].permute(1, 2, 0).reshape(-1) for c in centernesses]).sigmoid()
    torch.testing.assert_close(dets.scores.sort().values, (scores * ctr[:, None]).flatten().detach().sort().values)


# ---- the tiny config learns -------------------------------------------------------------------------------------------

@pytest.mark.slow      # ~3 min of CPU; the chapter runs the same check (100 steps) by default
def test_tiny_config_overfits_one_batch():
    """Two 128 px shapes images, the tiny config's detector, 120 AdamW steps: classification and box loss fall by
    more than 90 %, and so does the centerness loss's excess over its floor (the entropy of its soft targets)."""
    torch.manual_seed(0)
    model = build_detector(load_config(TINY).model).train()
    rng = np.random.default_rng(11)
    batch = [render_shapes_image(rng, 128, 128, max_objects=4, empty_prob=0., noise=0., min_size=16, max_size=64)
             for _ in range(2)]
    mean, std = torch.tensor([123.675, 116.28, 103.53]), torch.tensor([58.395, 57.12, 57.375])
    x = torch.stack([(torch.from_numpy(im).float() - mean) / std for im, _ in batch]).permute(0, 3, 1, 2)
    gts, lbls = [torch.from_numpy(a['bboxes']) for _, a in batch], [torch.from_numpy(a['labels']) for _, a in batch]
    metas = [dict(img_shape=(128, 128, 3), pad_shape=(128, 128, 3), ori_shape=(128, 128, 3), scale_factor=1.0)] * 2
    head = model.bbox_head
    with torch.no_grad():
        sizes = [(128 // s, 128 // s) for s in STRIDES]
        t = head.get_targets(*head.get_priors(sizes, metas), gts, metas, None, lbls)
        c = torch.cat(t.extras['centerness_targets'], 1)
        entropy = -(c * c.clamp(min=1e-12).log() + (1 - c) * (1 - c).clamp(min=1e-12).log())
        floor = entropy.sum().item() / t.num_total_pos
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.)
    history = []
    for _ in range(120):
        losses = model.forward_train(x, metas, gts, lbls)
        terms = [sum(losses[k]) for k in ('loss_cls', 'loss_bbox', 'loss_centerness')]
        opt.zero_grad(); sum(terms).backward(); opt.step()
        history.append([v.item() for v in terms])
    h = np.array(history)
    first, last = h[:5].mean(0), h[-5:].mean(0)
    assert last[0] < 0.1 * first[0] and last[1] < 0.1 * first[1], (first, last)
    assert last[2] - floor < 0.1 * (first[2] - floor), (first, last, floor)
    assert (last[:2].sum() + last[2] - floor) < 0.1 * (first[:2].sum() + first[2] - floor)


@pytest.mark.slow
def test_train_then_test_from_the_command_line(tmp_path):
    "The tiny config trains and tests through `learndet train` / `learndet test` (a small run; its mAP is not asserted)."
    exe = shutil.which('learndet')
    assert exe, 'the learndet console script is not installed (pip install -e ".[dev]")'
    small = ['data.train.generate.num_images=16', 'data.val.generate.num_images=16', 'data.test.generate.num_images=16',
             'data.samples_per_gpu=4', 'data.workers_per_gpu=0', 'runner.max_epochs=1', 'log_config.interval=2',
             'lr_config.warmup_iters=2']
    r = subprocess.run([exe, 'train', TINY, '--work-dir', 'work', '--cfg-options', *small], capture_output=True,
                       text=True, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    logs = [json.loads(line) for line in next((tmp_path / 'work').glob('*.log.json')).read_text().splitlines()]
    assert all(np.isfinite(l['loss']) for l in logs if l.get('mode') == 'train')
    val = [l for l in logs if l.get('mode') == 'val']
    assert len(val) == 1 and 'bbox_mAP' in val[0]
    r = subprocess.run([exe, 'test', TINY, 'work/epoch_1.pth', '--cfg-options', *small], capture_output=True,
                       text=True, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'bbox_mAP' in r.stdout
