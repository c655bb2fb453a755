"""Test-time augmentation (chapter 13): boxes mapped back by hand, flip-TTA of an exactly mirror-symmetric RetinaNet
equal to no TTA, one augmentation equal to `simple_test` (RetinaNet and FCOS, whose head has a third output), and a
`MultiScaleFlipAug(flip=True)` test pipeline end to end through the dataset, collate, `single_gpu_test`,
`learndet test` and `inference_detector`, checked against a merge written out with torchvision's NMS."""
import copy
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import learndet  # noqa: F401  (registers every component)
from learndet.apis import inference_detector, init_detector
from learndet.cli import load_config
from learndet.data import build_dataloader, build_dataset, collate, get_shapes_dataset
from learndet.data.transforms import MultiScaleFlipAug
from learndet.hooks import single_gpu_test
from learndet.models.detectors import bbox_mapping, bbox_mapping_back, build_detector, merge_aug_bboxes
from learndet.runner import save_checkpoint
from learndet.structures import InstanceData

TINY = 'retinanet/retinanet_tiny_r18_fpn_shapes.py'
FCOS_TINY = 'fcos/fcos_tiny_r18_fpn_shapes.py'
SHAPES = dict(num_images=10, img_size=256, seed=3)


# --- step 2 by hand ---------------------------------------------------------------------------------------------
# An augmented image of 60 rows x 100 columns, scale factor 2; the box [10, 5, 30, 25] in it. Undo the flip
# (x -> 100 - x, y -> 60 - y, ends swapped), then divide by 2.
@pytest.mark.parametrize('direction, expected', [
    (None, [5, 2.5, 15, 12.5]),
    ('horizontal', [35, 2.5, 45, 12.5]),          # [70, 5, 90, 25] / 2
    ('vertical', [5, 17.5, 15, 27.5]),            # [10, 35, 30, 55] / 2
    ('diagonal', [35, 17.5, 45, 27.5]),           # [70, 35, 90, 55] / 2
])
def test_bbox_mapping_back_by_hand(direction, expected):
    box = torch.tensor([[10., 5., 30., 25.]])
    back = bbox_mapping_back(box, (60, 100, 3), 2.0, direction is not None, direction)
    torch.testing.assert_close(back, torch.tensor([expected]))
    torch.testing.assert_close(bbox_mapping(back, (60, 100, 3), 2.0, direction is not None, direction), box)


def test_bbox_mapping_back_anisotropic_scale_and_errors():
    # Resize(keep_ratio=False): (w, h, w, h) = (2, 1.5, 2, 1.5); [10, 6, 30, 24] flipped in width 100 -> [70, 6, 90, 24]
    back = bbox_mapping_back(torch.tensor([[10., 6., 30., 24.]]), (60, 100, 3), np.array([2, 1.5, 2, 1.5]), True)
    torch.testing.assert_close(back, torch.tensor([[35., 4., 45., 16.]]))
    with pytest.raises(ValueError, match='scale_factor must be a float or 4'):
        bbox_mapping_back(torch.zeros(1, 4), (60, 100), [2., 2.], False)
    with pytest.raises(ValueError, match="'sideways'"):
        bbox_mapping_back(torch.zeros(1, 4), (60, 100), 2., True, 'sideways')


def test_merge_aug_bboxes_maps_each_augmentation_and_keeps_fields():
    r = InstanceData(bboxes=torch.tensor([[10., 5., 30., 25.]]), scores=torch.tensor([0.9]), labels=torch.tensor([2]))
    metas = [dict(img_shape=(60, 100, 3), scale_factor=2.0, flip=False, flip_direction=None),
             dict(img_shape=(60, 100, 3), scale_factor=2.0, flip=True, flip_direction='horizontal')]
    merged = merge_aug_bboxes([r, r], metas)
    torch.testing.assert_close(merged.bboxes, torch.tensor([[5, 2.5, 15, 12.5], [35, 2.5, 45, 12.5]]))
    assert merged.labels.tolist() == [2, 2] and merged.scores.tolist() == pytest.approx([0.9, 0.9])
    with pytest.raises(KeyError, match="augmentation 1 lacks \\['flip'\\]"):
        merge_aug_bboxes([r, r], [metas[0], dict(img_shape=(60, 100, 3), scale_factor=2.0)])
    with pytest.raises(KeyError, match='flip_direction'):
        merge_aug_bboxes([r], [dict(metas[1], flip_direction=None)])


# --- an exactly mirror-symmetric RetinaNet ---------------------------------------------------------------------
def mirror_symmetric_retinanet(centers=True, seed=0):
    """The tiny RetinaNet with every conv kernel even in x and y (the box deltas dx odd in x, dy odd in y), bilinear
    align_corners upsampling in the FPN, and anchors on pixel centres (centers=(0.5, 0.5)) unless `centers=False`.
    On images of 2^k + 1 pixels (no padding) its output on a flipped image is the flip of its output."""
    cfg = load_config(TINY).model
    cfg.neck.upsample_cfg = dict(mode='bilinear', align_corners=True)
    if centers:
        cfg.bbox_head.anchor_generator.centers = [(0.5, 0.5)] * 5
    torch.manual_seed(seed)
    model = build_detector(cfg).eval()
    even = lambda w, dim: (w + w.flip(dim)) / 2      # noqa: E731
    odd = lambda w, dim: (w - w.flip(dim)) / 2       # noqa: E731
    with torch.no_grad():
        for conv in [m for m in model.modules() if isinstance(m, nn.Conv2d)]:
            w = torch.randn_like(conv.weight) / conv.weight[0].numel() ** 0.5
            if conv is model.bbox_head.retina_reg:                    # (A*4, C, 3, 3): dx, dy, dw, dh per anchor
                w[0::4], w[1::4] = even(odd(w[0::4], -1), -2), odd(even(w[1::4], -1), -2)
                w[2::4], w[3::4] = even(even(w[2::4], -1), -2), even(even(w[3::4], -1), -2)
                conv.bias[0::4] = conv.bias[1::4] = 0
            else:
                w = even(even(w, -1), -2)
            conv.weight.copy_(w)
        model.bbox_head.retina_cls.bias.zero_()
    return model


def _meta(size, flip=False, direction=None, scale=1.0):
    shape = (size, size, 3)
    return dict(img_shape=shape, ori_shape=shape, pad_shape=shape, flip=flip, flip_direction=direction,
                scale_factor=np.full(4, scale, np.float32))


FLIPS = {'horizontal': (-1,), 'vertical': (-2,), 'diagonal': (-2, -1)}


@pytest.fixture(scope='module')
def symmetric_model():
    return mirror_symmetric_retinanet()


@pytest.mark.parametrize('directions', [['horizontal'], ['vertical'], ['diagonal'], list(FLIPS)])
def test_flip_tta_of_a_mirror_symmetric_model_equals_no_tta(symmetric_model, directions):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 129, 129)            # 129 -> 65 -> 33 -> 17 -> 9 -> 5 -> 3: odd before every stride 2
    imgs = [x] + [x.flip(FLIPS[d]) for d in directions]
    metas = [[_meta(129, scale=0.5)] * 2] + [[_meta(129, True, d, 0.5)] * 2 for d in directions]
    with torch.no_grad():
        plain = symmetric_model(x, metas[0], return_loss=False, rescale=True)
        tta = symmetric_model(imgs, metas, return_loss=False, rescale=True)
    for res_plain, res_tta in zip(plain, tta):
        assert sum(len(r) for r in res_plain) == 100             # max_per_img boxes: the check is not empty
        for a, b in zip(res_plain, res_tta):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)
        boxes = np.concatenate(res_plain)[:, :4]
        assert (boxes <= 129 / 0.5 + 1e-3).all()                 # rescale: in original pixels (ori = 258)


def _flip_shift(model, x):
    "Candidates of the horizontally flipped view, flip undone, minus their nearest unflipped twin (same class)."
    head = model.bbox_head
    with torch.no_grad():
        a = head.get_bboxes(*head(model.extract_feat(x)), img_metas=[_meta(129)], with_nms=False)[0]
        b = head.get_bboxes(*head(model.extract_feat(x.flip(-1))), img_metas=[_meta(129, True, 'horizontal')],
                            with_nms=False)[0]
    b_back = bbox_mapping_back(b.bboxes, (129, 129), 1.0, True, 'horizontal')
    inside = (a.bboxes[:, 0] > 1) & (a.bboxes[:, 2] < 128)        # clipping at the border hides a shift
    dist = torch.cdist(a.bboxes[inside], b_back) + 1e6 * (a.labels[inside, None] != b.labels[None])
    return b_back[dist.argmin(1)] - a.bboxes[inside]


def test_center_offset_zero_anchors_shift_flipped_boxes_by_one_pixel():
    """mmdetection's anchors (center_offset=0) sit half a pixel up-left of the pixel their cell looks at, so even an
    exactly mirror-symmetric network's flipped view comes back 1 px to the right; anchors at (0.5, 0.5) do not."""
    x = torch.randn(1, 3, 129, 129, generator=torch.Generator().manual_seed(2))
    shift0 = _flip_shift(mirror_symmetric_retinanet(centers=False), x)
    shift_half = _flip_shift(mirror_symmetric_retinanet(centers=True), x)
    assert len(shift0) > 100 and len(shift_half) > 100
    torch.testing.assert_close(shift0, torch.tensor([1., 0., 1., 0.]).expand_as(shift0), atol=1e-3, rtol=0)
    torch.testing.assert_close(shift_half, torch.zeros_like(shift_half), atol=1e-3, rtol=0)


# --- one augmentation = simple_test; heads with two and three outputs -----------------------------------------
def _spread_scores(model, seed=0):
    "Random classifier weights of a usual size: scores spread over (0, 1), so that no two boxes tie in NMS."
    head = model.bbox_head
    cls = getattr(head, 'retina_cls', None) or getattr(head, 'conv_cls')
    torch.manual_seed(seed)
    nn.init.normal_(cls.weight, std=0.05)
    nn.init.zeros_(cls.bias)
    return model.eval()


@pytest.mark.parametrize('config', [TINY, FCOS_TINY])
def test_one_augmentation_equals_simple_test(config):
    model = _spread_scores(build_detector(load_config(config).model))
    torch.manual_seed(0)
    x = torch.randn(2, 3, 96, 128)
    metas = [dict(_meta(0), img_shape=(90, 120, 3), ori_shape=(45, 60, 3), pad_shape=(96, 128, 3),
                  scale_factor=np.array([2., 2., 2., 2.], np.float32)) for _ in range(2)]
    with torch.no_grad():
        if config == FCOS_TINY:
            assert len(model.bbox_head(model.extract_feat(x))) == 3      # scores, boxes, centerness
        for rescale in (True, False):
            one = model.aug_test([x], [metas], rescale=rescale)
            ref = model.simple_test(x, metas, rescale=rescale)
            for res_one, res_ref in zip(one, ref):
                assert [r.shape for r in res_one] == [r.shape for r in res_ref]
                assert sum(len(r) for r in res_one) > 0
                for a, b in zip(res_one, res_ref):
                    np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-5)


def test_fcos_flip_and_scale_tta_runs():
    model = _spread_scores(build_detector(load_config(FCOS_TINY).model))
    x = torch.randn(1, 3, 96, 96)
    x2 = torch.nn.functional.interpolate(x, scale_factor=2)
    metas = [[_meta(96, scale=1.0)], [_meta(96, True, 'horizontal', 1.0)], [_meta(192, scale=2.0)]]
    with torch.no_grad():
        res = model([x, x.flip(-1), x2], metas, return_loss=False, rescale=True)[0]
    boxes = np.concatenate(res)
    assert len(res) == 4 and 0 < len(boxes) <= 100
    assert (boxes[:, :4] >= 0).all() and (boxes[:, :4] <= 96 + 1e-3).all()


# --- a MultiScaleFlipAug test pipeline end to end ------------------------------------------------------------
def tta_pipeline(img_scale, flip=True):
    img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
    return [dict(type='LoadImageFromFile'),
            dict(type='MultiScaleFlipAug', img_scale=img_scale, flip=flip, transforms=[
                dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'), dict(type='Normalize', **img_norm_cfg),
                dict(type='Pad', size_divisor=32), dict(type='ImageToTensor', keys=['img']),
                dict(type='Collect', keys=['img'])])]


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    return get_shapes_dataset(tmp_path_factory.mktemp('shapes') / 'set', **SHAPES)


@pytest.fixture(scope='module')
def tta_data(shapes_root):
    cfg = load_config(TINY)
    test = copy.deepcopy(cfg.data.test)
    test.update(ann_file=str(shapes_root / 'annotations/instances_val.json'), img_prefix=str(shapes_root / 'val'),
                generate=SHAPES, pipeline=tta_pipeline([(128, 128), (192, 192)]))
    dataset = build_dataset(test, dict(test_mode=True))
    return cfg, dataset, build_dataloader(dataset, 2, 0, dist=False, shuffle=False)


def test_tta_pipeline_through_collate_and_single_gpu_test(tta_data):
    cfg, dataset, loader = tta_data
    batch = next(iter(loader))
    assert len(batch['img']) == 4 and len(batch['img_metas']) == 4          # 2 scales x (unflipped, flipped)
    assert [tuple(i.shape[-2:]) for i in batch['img']] == [(128, 128), (128, 128), (192, 192), (192, 192)]
    assert [m[0]['flip'] for m in batch['img_metas']] == [False, True, False, True]
    model = _spread_scores(build_detector(cfg.model))
    model.bbox_head.test_cfg = dict(cfg.model.test_cfg, score_thr=0.0, max_per_img=7,
                                    nms=dict(type='nms', iou_threshold=0.3))
    results = single_gpu_test(model, loader)
    assert len(results) == len(dataset) >= 2
    for res in results:                                 # mmdetection's format, max_per_img, the test_cfg's NMS
        assert len(res) == 4 and all(r.dtype == np.float32 and r.ndim == 2 and r.shape[1] == 5 for r in res)
        assert sum(len(r) for r in res) == 7
        for r in res:
            iou = torchvision.ops.box_iou(torch.from_numpy(r[:, :4]), torch.from_numpy(r[:, :4])).fill_diagonal_(0)
            assert (iou <= 0.3 + 1e-6).all()
        boxes = np.concatenate(res)
        assert (boxes[:, :4] >= 0).all() and (boxes[:, :4] <= 256 + 1e-3).all()


def test_tta_merge_against_torchvision_and_rescale_false(tta_data):
    cfg, _, loader = tta_data
    model = _spread_scores(build_detector(cfg.model))
    batch = next(iter(loader))
    with torch.no_grad():
        res = model(return_loss=False, rescale=True, **batch)
        raw = model(return_loss=False, rescale=False, **batch)
        for i in range(len(batch['img'][0])):
            boxes, scores, labels = [], [], []
            for img, metas in zip(batch['img'], batch['img_metas']):        # 1. each augmentation, before NMS
                head = model.bbox_head
                cand = head.get_bboxes(*head(model.extract_feat(img)), img_metas=metas, with_nms=False)[i]
                meta, b = metas[i], cand.bboxes.clone()
                if meta['flip']:                                            # 2. undo the flip by hand ...
                    b[:, [0, 2]] = meta['img_shape'][1] - cand.bboxes[:, [2, 0]]
                boxes.append(b / torch.from_numpy(meta['scale_factor']))    # ... then the scale
                scores.append(cand.scores)
                labels.append(cand.labels)
            boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
            keep = torchvision.ops.batched_nms(boxes, scores, labels, cfg.model.test_cfg.nms.iou_threshold)
            keep = keep[:cfg.model.test_cfg.max_per_img]
            got = np.concatenate([np.c_[r, np.full(len(r), k)] for k, r in enumerate(res[i])])
            got = got[np.argsort(-got[:, 4], kind='stable')]
            want = np.c_[boxes[keep].numpy(), scores[keep].numpy(), labels[keep].numpy()]
            assert len(got) == len(want) > 0
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)
            sf0 = batch['img_metas'][0][i]['scale_factor']                  # 5. rescale=False: first augmentation
            for r, rr in zip(res[i], raw[i]):
                np.testing.assert_allclose(r[:, :4] * sf0, rr[:, :4], atol=1e-3, rtol=1e-5)
                np.testing.assert_allclose(r[:, 4], rr[:, 4])


def test_multiscaleflipaug_refuses_flip_without_randomflip():
    with pytest.raises(ValueError, match='needs a RandomFlip'):
        MultiScaleFlipAug([dict(type='Resize', keep_ratio=True)], img_scale=(128, 128), flip=True)


def test_aug_test_needs_nms_in_test_cfg(tta_data):
    cfg, _, loader = tta_data
    model = build_detector(cfg.model).eval()
    model.bbox_head.test_cfg = dict(score_thr=0.05, nms_pre=100)
    batch = next(iter(loader))
    with pytest.raises(KeyError, match='"nms"'):
        model(return_loss=False, **batch)
    model.bbox_head.test_cfg = cfg.model.test_cfg
    with pytest.raises(ValueError, match=r'image counts \[2, 1, 2, 2\]'):
        model.aug_test(batch['img'], [batch['img_metas'][0], batch['img_metas'][1][:1]] + batch['img_metas'][2:])


# --- from the command line and inference_detector ---------------------------------------------------------------
def test_learndet_test_and_inference_detector_with_flip_tta(tmp_path):
    repo_cfg = Path(learndet.__file__).parent / 'configs' / TINY
    config = tmp_path / 'tta.py'
    config.write_text(f'_base_ = {str(repo_cfg)!r}\n'
                      f'shapes_generate = {SHAPES!r}\n'
                      f'tta = {tta_pipeline([(160, 160), (256, 256)])!r}\n'
                      'data = dict(workers_per_gpu=0, val=dict(pipeline=tta, generate=shapes_generate),\n'
                      '            test=dict(pipeline=tta, generate=shapes_generate))\n')
    cfg = load_config(str(config))
    assert cfg.data.test.pipeline[1].flip is True and len(cfg.data.test.pipeline[1].img_scale) == 2
    ckpt = save_checkpoint(_spread_scores(build_detector(cfg.model)), str(tmp_path / 'random.pth'),
                           meta=dict(CLASSES=('circle', 'square', 'triangle', 'star')))
    exe = shutil.which('learndet')
    assert exe, 'the learndet console script is not installed (pip install -e ".[dev]")'
    r = subprocess.run([exe, 'test', str(config), ckpt, '--out', 'res.pkl', '--eval', 'bbox'], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'bbox_mAP' in r.stdout
    results = pickle.loads((tmp_path / 'res.pkl').read_bytes())
    n_val = len(list((tmp_path / 'data' / 'shapes' / 'val').glob('*.jpg')))
    assert len(results) == n_val > 0
    assert all(len(res) == 4 and all(r.shape[1] == 5 for r in res) for res in results)

    model = init_detector(str(config), ckpt, device='cpu')
    img = sorted((tmp_path / 'data' / 'shapes' / 'val').glob('*.jpg'))[0]
    result = inference_detector(model, str(img))
    boxes = np.concatenate(result)
    assert len(result) == 4 and 0 < len(boxes) <= 100
    assert (boxes[:, :4] >= 0).all() and (boxes[:, :4] <= 256 + 1e-3).all()
