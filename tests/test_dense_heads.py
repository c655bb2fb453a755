"""Dense heads against independent references: torchvision's RetinaNet (targets, losses, detections) over many random
images, sizes, class counts and batches; the sampled and decoded-box loss paths against hand-written losses."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import _utils as tv_det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead
from torchvision.ops import box_iou, generalized_box_iou_loss

from learndet.boxes import bbox_overlaps
from learndet.models.dense_heads import (AnchorHead, BaseDenseHead, DenseTargets, RetinaHead, filter_scores_and_topk,
                                         flatten_levels)

STRIDES = (8, 16, 32, 64, 128)
RETINA = dict(
    loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
    loss_bbox=dict(type='L1Loss', loss_weight=1.0),
    train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                                 ignore_iof_thr=-1), allowed_border=-1, pos_weight=-1),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                  max_per_img=100))


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)     # tiny tensors on a shared CPU
    yield
    torch.set_num_threads(n)


def to_torchvision(head):
    tv_head = RetinaNetHead(head.in_channels, head.anchors_per_cell(), head.num_classes)
    names = {'classification_head.cls_logits': 'retina_cls', 'regression_head.bbox_reg': 'retina_reg'}
    for i in range(4):
        names[f'classification_head.conv.{i}.0'] = f'cls_convs.{i}.conv'
        names[f'regression_head.conv.{i}.0'] = f'reg_convs.{i}.conv'
    sd = head.state_dict()
    tv_head.load_state_dict({f'{tv}.{p}': sd[f'{ours}.{p}'] for tv, ours in names.items() for p in ('weight', 'bias')})
    gen = head.prior_generator
    sizes = tuple(tuple(float(s) * min(st) for s in gen.scales) for st in gen.strides)
    tv_gen = TVAnchorGenerator(sizes, (tuple(gen.ratios.tolist()),) * gen.num_levels)
    tv_gen.cell_anchors = [b.clone() for b in gen.base_anchors]
    backbone = nn.Identity()
    backbone.out_channels = head.in_channels
    cfg = head.test_cfg
    return RetinaNet(backbone, head.num_classes, anchor_generator=tv_gen, head=tv_head, score_thresh=cfg['score_thr'],
                     nms_thresh=cfg['nms']['iou_threshold'], detections_per_img=cfg['max_per_img'],
                     topk_candidates=cfg['nms_pre']).eval()


def random_boxes(g, n, h, w):
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w - 8., h - 8.])
    wh = 4 + torch.rand(n, 2, generator=g) * (torch.tensor([w, h]) - xy) * 0.9
    return torch.cat([xy, torch.minimum(xy + wh, torch.tensor([float(w), float(h)]))], 1)


def explained_by_claim_rule(ours, tv, overlaps):
    """Anchors where our (mmdetection) positive GT differs from torchvision's must be anchors that the GT we chose
    claims as one of its best (low-quality match), while torchvision gave them their own best GT."""
    diff = torch.nonzero(ours != tv).flatten()
    for j in diff.tolist():
        g = int(ours[j])
        if g < 0 or tv[j] < 0:
            return False
        if overlaps[g, j] != overlaps[g].max() or int(overlaps[:, j].argmax()) != int(tv[j]):
            return False
    return True


def canonical(rows):
    "Rows (x1, y1, x2, y2, label, score) sorted by score, then label and box: tied scores may come in either order."
    rows = rows.detach()
    order = np.lexsort([rows[:, i].numpy() for i in (3, 2, 1, 0, 4)] + [-rows[:, 5].numpy().round(5)])
    return rows[torch.from_numpy(order)]


@pytest.mark.parametrize('seed', range(12))
def test_retina_head_matches_torchvision(seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    num_classes = int(torch.randint(1, 7, (1,), generator=g))
    num_imgs = 1 + seed % 2
    h, w = (int(v) for v in torch.randint(64, 330, (2,), generator=g))
    pad_h, pad_w = math.ceil(h / 128) * 128, math.ceil(w / 128) * 128
    head = RetinaHead(num_classes, 8, feat_channels=8, **RETINA)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.05)
    tv = to_torchvision(head)
    featmap_sizes = [(pad_h // s, pad_w // s) for s in STRIDES]
    feats = [torch.randn(num_imgs, 8, fh, fw) for fh, fw in featmap_sizes]
    metas = [dict(img_shape=(h, w, 3), pad_shape=(pad_h, pad_w, 3), scale_factor=1.0) for _ in range(num_imgs)]
    num_gts = [int(torch.randint(0 if seed % 4 == 3 else 1, 9, (1,), generator=g)) for _ in range(num_imgs)]
    gt_bboxes = [random_boxes(g, n, h, w) for n in num_gts]
    gt_labels = [torch.randint(0, num_classes, (n,), generator=g) for n in num_gts]

    cls_scores, bbox_preds = head(feats)
    tv_out = tv.head(feats)
    test_anchors = tv.anchor_generator(ImageList(torch.zeros(num_imgs, 3, pad_h, pad_w), [(h, w)] * num_imgs), feats)
    anchors = torch.cat(head.prior_generator.grid_priors(featmap_sizes))
    assert torch.equal(test_anchors[0], anchors)
    # outputs, in torchvision's (N, H*W*A, C) layout
    ours_cls = torch.cat([c.permute(0, 2, 3, 1).reshape(num_imgs, -1, num_classes) for c in cls_scores], 1)
    torch.testing.assert_close(ours_cls, tv_out['cls_logits'])

    # targets: torchvision's matcher against our assignment
    matched = []
    for i in range(num_imgs):
        res = head.assigner.assign(anchors, gt_bboxes[i], None, gt_labels[i]).gt_inds
        ours = torch.where(res > 0, res - 1, torch.where(res == 0, -1, -2))
        if num_gts[i]:
            overlaps = box_iou(gt_bboxes[i], anchors)
            tv_matched = tv.proposal_matcher(overlaps)
            assert explained_by_claim_rule(ours, tv_matched, overlaps)
        else:
            assert (ours == -1).all()
        matched.append(ours)

    # losses: torchvision's per-image losses given our assignment; ours normalises by the batch's positives
    losses = head.loss(cls_scores, bbox_preds, gt_bboxes, gt_labels, metas)
    per_image = []
    for i in range(num_imgs):
        out_i = {k: v[i:i + 1] for k, v in tv_out.items()}
        per_image.append(tv.head.compute_loss([dict(boxes=gt_bboxes[i], labels=gt_labels[i])], out_i, [anchors],
                                              [matched[i]]))
    num_pos = [max(int((m >= 0).sum()), 1) for m in matched]
    for ours_key, tv_key in (('loss_cls', 'classification'), ('loss_bbox', 'bbox_regression')):
        expected = sum(l[tv_key] * n for l, n in zip(per_image, num_pos)) / sum(num_pos)
        torch.testing.assert_close(sum(losses[ours_key]), expected, rtol=1e-5, atol=1e-6)
    assert all(torch.isfinite(v).all() for vs in losses.values() for v in vs)

    # detections
    split = [fh * fw * head.anchors_per_cell() for fh, fw in featmap_sizes]
    tv_dets = tv.postprocess_detections({k: list(v.split(split, 1)) for k, v in tv_out.items()},
                                        [list(anchors.split(split))] * num_imgs, [(h, w)] * num_imgs)
    results = head.get_bboxes(cls_scores, bbox_preds, img_metas=metas)
    for r, ref in zip(results, tv_dets):
        dets, labels = torch.cat([r.bboxes, r.scores[:, None]], 1), r.labels
        assert len(dets) == len(ref['boxes'])
        torch.testing.assert_close(dets[:, 4], ref['scores'])       # same scores, in the same (descending) order
        ours = canonical(torch.cat([dets[:, :4], labels[:, None].float(), dets[:, 4:]], 1))
        theirs = canonical(torch.cat([ref['boxes'], ref['labels'][:, None].float(), ref['scores'][:, None]], 1))
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-3)


def test_claim_rule_differs_from_torchvision():
    "GT 1 lies inside GT 0 and both have anchor 0 as their best: mmdetection gives it to GT 1, torchvision to GT 0."
    head = RetinaHead(2, 8, feat_channels=8, **RETINA)
    anchors = torch.tensor([[0., 0., 32., 32.], [16., 0., 48., 32.]])
    gts = torch.tensor([[0., 0., 32., 32.], [4., 4., 30., 30.]])
    assert head.assigner.assign(anchors, gts).gt_inds.tolist() == [2, 0]
    assert tv_det_utils.Matcher(0.5, 0.4, True)(box_iou(gts, anchors)).tolist() == [0, -1]


def tiny_inputs(num_classes, cls_channels, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats_hw = [(12, 12), (6, 6)]
    cls_scores = [torch.randn(1, 3 * cls_channels, *hw, generator=g, requires_grad=True) for hw in feats_hw]
    bbox_preds = [(0.2 * torch.randn(1, 3 * 4, *hw, generator=g)).requires_grad_() for hw in feats_hw]
    gt = torch.tensor([[10., 12., 50., 60.], [40., 40., 90., 70.]])
    labels = torch.tensor([0, num_classes - 1])
    meta = dict(img_shape=(96, 96, 3), pad_shape=(96, 96, 3), scale_factor=1.0)
    return cls_scores, bbox_preds, gt, labels, meta


def small_anchor_head(**kwargs):
    return AnchorHead(3, 4, anchor_generator=dict(type='AnchorGenerator', strides=[8, 16], ratios=[0.5, 1., 2.],
                                                  scales=[4]), **kwargs)


def flat(level_outputs, channels):
    return torch.cat([o.permute(0, 2, 3, 1).reshape(-1, channels) for o in level_outputs])


def test_sampled_sigmoid_ce_is_averaged_over_sampled_anchors():
    train_cfg = dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.3, min_pos_iou=0.3),
                     sampler=dict(type='RandomSampler', num=64, pos_fraction=0.5, neg_pos_ub=-1,
                                  add_gt_as_proposals=False), allowed_border=0, pos_weight=-1)
    head = small_anchor_head(train_cfg=train_cfg)       # default losses: sigmoid CE + smooth L1 (beta 1/9)
    assert head.sampling
    cls_scores, bbox_preds, gt, labels, meta = tiny_inputs(3, 3)
    torch.manual_seed(0)
    losses = head.loss(cls_scores, bbox_preds, [gt], [labels], [meta])
    torch.manual_seed(0)                                 # the same random sample again
    mlvl_anchors, valid = head.get_priors([(12, 12), (6, 6)], [meta])
    t = head.get_targets(mlvl_anchors, valid, [gt], [meta], None, [labels])
    lab, lw = torch.cat(t.labels, 1)[0], torch.cat(t.label_weights, 1)[0]
    sampled = lw > 0
    assert int(sampled.sum()) == t.num_total_pos + t.num_total_neg <= 64
    onehot = F.one_hot(lab, 4)[:, :3].float()             # background (3) -> all zeros
    bce = F.binary_cross_entropy_with_logits(flat(cls_scores, 3), onehot, reduction='none').sum(1)
    torch.testing.assert_close(sum(losses['loss_cls']), bce[sampled].sum() / sampled.sum())
    pos = lab < 3
    sl1 = F.smooth_l1_loss(flat(bbox_preds, 4)[pos], torch.cat(t.bbox_targets, 1)[0][pos], beta=1 / 9,
                           reduction='sum')
    torch.testing.assert_close(sum(losses['loss_bbox']), sl1 / sampled.sum())


def test_sampler_adding_gts_is_refused():
    train_cfg = dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.3),
                     sampler=dict(type='RandomSampler', num=64, pos_fraction=0.5), allowed_border=0, pos_weight=-1)
    with pytest.raises(ValueError, match='add_gt_as_proposals=False'):
        small_anchor_head(train_cfg=train_cfg)


def test_softmax_classifier():
    train_cfg = dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0),
                     allowed_border=-1, pos_weight=-1)
    head = small_anchor_head(loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                             train_cfg=train_cfg, test_cfg=RETINA['test_cfg'])
    assert head.cls_out_channels == 4 and head.conv_cls.out_channels == 12
    cls_scores, bbox_preds, gt, labels, meta = tiny_inputs(3, 4)
    losses = head.loss(cls_scores, bbox_preds, [gt], [labels], [meta])
    mlvl_anchors, valid = head.get_priors([(12, 12), (6, 6)], [meta])
    t = head.get_targets(mlvl_anchors, valid, [gt], [meta], None, [labels])
    lab, lw = torch.cat(t.labels, 1)[0], torch.cat(t.label_weights, 1)[0]
    ce = F.cross_entropy(flat(cls_scores, 4), lab, reduction='none')
    torch.testing.assert_close(sum(losses['loss_cls']), (ce * lw).sum() / (t.num_total_pos + t.num_total_neg))
    # test time: softmax over K + 1, background column dropped
    r, = head.get_bboxes(cls_scores, bbox_preds, img_metas=[meta], cfg=dict(score_thr=0.05, nms_pre=-1), with_nms=False)
    dets, det_labels = torch.cat([r.bboxes, r.scores[:, None]], 1), r.labels
    probs = flat(cls_scores, 4).softmax(-1)[:, :3]
    assert len(dets) == int((probs > 0.05).sum()) and det_labels.max() < 3
    torch.testing.assert_close(dets[:, 4].sort().values, probs[probs > 0.05].sort().values)


def test_decoded_box_loss_matches_torchvision_giou():
    train_cfg = dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0),
                     allowed_border=-1, pos_weight=-1)
    head = small_anchor_head(loss_cls=RETINA['loss_cls'], loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
                             reg_decoded_bbox=True, train_cfg=train_cfg)
    cls_scores, bbox_preds, gt, labels, meta = tiny_inputs(3, 3)
    losses = head.loss(cls_scores, bbox_preds, [gt], [labels], [meta])
    mlvl_anchors, valid = head.get_priors([(12, 12), (6, 6)], [meta])
    t = head.get_targets(mlvl_anchors, valid, [gt], [meta], None, [labels])
    anchors = torch.cat(mlvl_anchors)
    pos = torch.cat(t.labels, 1)[0] < 3
    targets = torch.cat(t.bbox_targets, 1)[0][pos]
    assert bbox_overlaps(targets, gt).max(1).values.min() == 1        # targets are the GT boxes themselves
    decoded = head.bbox_coder.decode(anchors[pos], flat(bbox_preds, 4)[pos])
    expected = 2.0 * generalized_box_iou_loss(decoded, targets, reduction='sum') / t.num_total_pos
    torch.testing.assert_close(sum(losses['loss_bbox']), expected, rtol=1e-4, atol=1e-5)
    sum(losses['loss_bbox']).backward()
    assert all(torch.isfinite(b.grad).all() for b in bbox_preds)


def test_no_inside_anchor_gives_zero_loss():
    "allowed_border=0 on an image smaller than every anchor: nothing to learn from, but a finite loss (mmdetection returns None)."
    train_cfg = dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0),
                     allowed_border=0, pos_weight=-1)
    head = AnchorHead(2, 4, anchor_generator=dict(type='AnchorGenerator', strides=[16], ratios=[1.], scales=[8]),
                      loss_cls=RETINA['loss_cls'], loss_bbox=RETINA['loss_bbox'], train_cfg=train_cfg)
    meta = dict(img_shape=(32, 32, 3), pad_shape=(32, 32, 3))
    losses = head.forward_train([torch.randn(1, 4, 2, 2)], [meta], [torch.tensor([[2., 2., 30., 30.]])],
                                [torch.tensor([1])])
    assert sum(losses['loss_cls']).item() == 0 and sum(losses['loss_bbox']).item() == 0


def test_built_from_shipped_config():
    from learndet.config import Config
    from learndet.registry import HEADS, build_from_cfg
    import importlib.resources as res
    path = res.files('learndet') / 'configs' / '_base_' / 'models' / 'retinanet_r50_fpn.py'
    if not path.is_file():
        pytest.skip('the RetinaNet base config is not shipped yet')
    cfg = Config.fromfile(str(path))
    bbox_head = dict(cfg.model.bbox_head, num_classes=3, in_channels=8, feat_channels=8)
    head = build_from_cfg(bbox_head, HEADS, dict(train_cfg=cfg.model.train_cfg, test_cfg=cfg.model.test_cfg))
    assert isinstance(head, RetinaHead) and not head.sampling and head.num_base_priors == [9] * 5
    assert sorted(k for k in head.state_dict() if 'retina' in k) == [
        'retina_cls.bias', 'retina_cls.weight', 'retina_reg.bias', 'retina_reg.weight']


def test_rpn_style_targets_without_labels():
    "gt_labels=None (an RPN): positives get label 0, the single 'object' class."
    train_cfg = dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3),
                     allowed_border=-1, pos_weight=-1)
    head = AnchorHead(1, 4, anchor_generator=dict(type='AnchorGenerator', strides=[8, 16], ratios=[0.5, 1., 2.],
                                                  scales=[4]), train_cfg=train_cfg)
    cls_scores, bbox_preds, gt, _, meta = tiny_inputs(1, 1)
    losses = head.loss(cls_scores, bbox_preds, [gt], None, [meta])
    mlvl_anchors, valid = head.get_priors([(12, 12), (6, 6)], [meta])
    t = head.get_targets(mlvl_anchors, valid, [gt], [meta])
    labels = torch.cat(t.labels, 1)[0]
    assert set(labels.unique().tolist()) == {0, 1} and t.num_total_pos == int((labels == 0).sum())
    assert all(torch.isfinite(v).all() for vs in losses.values() for v in vs)


@pytest.mark.parametrize('seed', range(20))
def test_flatten_levels_and_filter_scores_and_topk_against_brute_force(seed):
    "flatten_levels against index arithmetic; filter_scores_and_topk against a sorted list of (score, prior, class)."
    g = torch.Generator().manual_seed(seed)
    n, a, c, h, w = (int(v) for v in torch.randint(1, 5, (5,), generator=g))
    x = torch.randn(n, a * c, h, w, generator=g)
    flat_x = flatten_levels(x, c)
    assert flat_x.shape == (n, h * w * a, c)
    for _ in range(10):   # row (i*w + j)*a + k of image m is channel block k of cell (i, j)
        m, i, j, k = (int(torch.randint(0, d, (1,), generator=g)) for d in (n, h, w, a))
        assert torch.equal(flat_x[m, (i * w + j) * a + k], x[m, k * c:(k + 1) * c, i, j])
    scores = torch.rand(int(torch.randint(0, 60, (1,), generator=g)), c, generator=g)
    thr, topk = float(torch.rand(1, generator=g)) * 0.8, int(torch.randint(-1, 20, (1,), generator=g))
    kept, prior_inds, labels = filter_scores_and_topk(scores, thr, topk)
    pairs = sorted(((scores[p, k].item(), p, k) for p in range(len(scores)) for k in range(c)
                    if scores[p, k] > thr), key=lambda t: -t[0])
    if topk > 0:
        pairs = pairs[:topk]
    assert kept.tolist() == pytest.approx([s for s, _, _ in pairs])
    assert torch.equal(scores[prior_inds, labels], kept)          # each kept score is the score of its pair
    assert len(set(zip(prior_inds.tolist(), labels.tolist()))) == len(kept)


def test_dense_targets_split_a_heads_extras_per_level():
    "A head that adds an extra per-prior target (as FCOS/ATSS add centerness) gets it split per level like the rest."
    class ExtraHead(AnchorHead):
        def get_targets_single(self, flat_priors, *args):
            t = super().get_targets_single(flat_priors, *args)
            t.extras['prior_x'] = flat_priors[:, 0].clone()         # something checkable: each prior's x1
            return t
    train_cfg = dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0))
    head = ExtraHead(3, 4, anchor_generator=dict(type='AnchorGenerator', strides=[8, 16], ratios=[1.], scales=[4]),
                     train_cfg=train_cfg)
    meta = dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3))
    mlvl, valid = head.get_priors([(8, 8), (4, 4)], [meta, meta])
    t = head.get_targets(mlvl, valid, [torch.tensor([[0., 0., 30., 30.]])] * 2, [meta, meta],
                         gt_labels=[torch.tensor([1])] * 2)
    assert isinstance(t, DenseTargets) and list(t.extras) == ['prior_x']
    assert [tuple(x.shape) for x in t.extras['prior_x']] == [(2, 64), (2, 16)] == [tuple(l.shape) for l in t.labels]
    for lvl in range(2):
        assert torch.equal(t.extras['prior_x'][lvl][1], mlvl[lvl][:, 0])
    assert t.num_total_pos == sum(len(r.pos_inds) for r in t.sampling_results)


def test_base_head_serves_points():
    "The base head's targets and post-processing with points for priors (a minimal FCOS-like head, no anchors)."
    class PointHead(BaseDenseHead):
        def _init_layers(self):
            self.conv_cls = nn.Conv2d(self.in_channels, self.cls_out_channels, 1)
            self.conv_reg = nn.Conv2d(self.in_channels, 4, 1)
        def forward_single(self, x): return self.conv_cls(x), self.conv_reg(x).exp()
        def decode(self, priors, bbox_pred, img_shape=None):
            return self.bbox_coder.decode(priors, bbox_pred, max_shape=img_shape)
    head = PointHead(2, 4, dict(type='MlvlPointGenerator', strides=[8, 16]), RETINA['loss_cls'],
                     dict(type='IoULoss', loss_weight=1.0), bbox_coder=dict(type='DistancePointBBoxCoder'),
                     reg_decoded_bbox=True,
                     train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4)),
                     test_cfg=RETINA['test_cfg'])
    assert head.num_base_priors == [1, 1]
    meta = dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3), scale_factor=1.0)
    feats = [torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4, 4)]
    mlvl, valid = head.get_priors([(8, 8), (4, 4)], [meta])
    assert [tuple(p.shape) for p in mlvl] == [(64, 2), (16, 2)]
    dets = head.simple_test(feats, [meta])[0]
    cls, reg = head(feats)
    # every detection is a point's decoded box: distances (l, t, r, b) around the point
    points = torch.cat(mlvl)
    dist = torch.cat([flatten_levels(r, 4)[0] for r in reg])
    boxes = torch.cat([points - dist[:, :2], points + dist[:, 2:]], 1).clamp(0, 64)
    assert len(dets) > 0 and all(bbox_overlaps(dets.bboxes[i:i + 1], boxes).max() > 0.9999 for i in range(len(dets)))
