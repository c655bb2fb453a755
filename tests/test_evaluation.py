"""learndet.evaluation against pycocotools, by property-based testing (hypothesis).

Random scenes: several images (some without GTs, some without detections), several categories (some without
GTs), crowd regions, GT `area` fields that differ from the box area, boxes of all three COCO sizes, detections
copied from GTs with jitter or placed at random, scores drawn from a small set (ties), and varied maxDets /
IoU thresholds / use_cats. The stats and the precision, recall and scores arrays must equal pycocotools' to 1e-9.

    pytest tests/test_evaluation.py                      # ~300 scenes per property, about a minute
    LEARNDET_SLOW=1 pytest tests/test_evaluation.py      # 10x more
"""
import contextlib, copy, io, json, os, sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from learndet.evaluation import average_precision, coco_eval, eval_map, eval_recalls, tpfp_default
from learndet.evaluation.coco import coco_rec_thrs

SLOW = bool(os.environ.get('LEARNDET_SLOW'))
EXAMPLES = 3000 if SLOW else 300
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def pycoco(gt, dets, use_cats=True, max_dets=(1, 10, 100), iou_thrs=None):
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO(); cg.dataset = copy.deepcopy(gt); cg.createIndex()
        E = COCOeval(cg, cg.loadRes(copy.deepcopy(dets)), 'bbox')
        E.params.useCats = int(use_cats); E.params.maxDets = list(max_dets)
        if iou_thrs is not None: E.params.iouThrs = np.asarray(iou_thrs)
        E.evaluate(); E.accumulate(); E.summarize()
    return E


@st.composite
def scenes(draw):
    n_img = draw(st.integers(1, 6)); n_cat = draw(st.integers(1, 3))
    img_ids = draw(st.lists(st.integers(0, 10_000), min_size=n_img, max_size=n_img, unique=True))
    cat_ids = draw(st.lists(st.integers(1, 90), min_size=n_cat, max_size=n_cat, unique=True))
    size = st.sampled_from([4, 10, 25, 31, 32, 33, 40, 60, 96, 97, 120, 150])   # around the 32 / 96 area limits
    coord = st.integers(0, 120)
    score = st.sampled_from([0.9, 0.5, 0.5, 0.3, 0.1, 0.75, 0.2])
    anns, dets = [], []
    for img in img_ids:
        boxes = []
        for _ in range(draw(st.integers(0, 6))):
            b = [float(draw(coord)), float(draw(coord)), float(draw(size)), float(draw(size))]
            boxes.append(b)
            area = b[2] * b[3] * draw(st.sampled_from([1.0, 1.0, 0.7, 1.3]))
            anns.append(dict(id=len(anns) + 1, image_id=img, category_id=draw(st.sampled_from(cat_ids)), bbox=b,
                             area=area, iscrowd=int(draw(st.integers(0, 9)) == 0)))
        for _ in range(draw(st.integers(0, 12))):
            if boxes and draw(st.booleans()):
                b = list(draw(st.sampled_from(boxes)))
                j = draw(st.lists(st.integers(-5, 5), min_size=4, max_size=4))
                b = [b[0] + j[0], b[1] + j[1], max(1.0, b[2] + j[2]), max(1.0, b[3] + j[3])]
            else:
                b = [float(draw(coord)), float(draw(coord)), float(draw(size)), float(draw(size))]
            dets.append(dict(image_id=img, category_id=draw(st.sampled_from(cat_ids)), bbox=b, score=draw(score)))
    gt = dict(images=[dict(id=i) for i in img_ids], categories=[dict(id=c, name=str(c)) for c in cat_ids], annotations=anns)
    return gt, dets


def check_equal(res, E):
    for key in ('precision', 'recall', 'scores'):
        assert res[key].shape == E.eval[key].shape, key
        np.testing.assert_allclose(res[key], E.eval[key], rtol=0, atol=1e-9, err_msg=key)
    np.testing.assert_allclose(res['stats'], E.stats, rtol=0, atol=1e-9)


@SETTINGS
@given(scenes())
def test_coco_eval_equals_pycocotools(scene):
    gt, dets = scene
    if not dets: return                     # pycocotools' loadRes can't read an empty result list
    check_equal(coco_eval(gt, dets), pycoco(gt, dets))


@SETTINGS
@given(scenes(), st.sampled_from([(1, 10, 100), (1, 2, 3), (1, 3, 5), (2, 4, 8)]), st.booleans(),
       st.sampled_from([None, (0.5,), (0.3, 0.5, 0.75), (0.5, 0.75, 0.95, 1.0)]))
def test_coco_eval_options_equal_pycocotools(scene, max_dets, use_cats, iou_thrs):
    gt, dets = scene
    if not dets: return
    res = coco_eval(gt, dets, max_dets=max_dets, use_cats=use_cats, iou_thrs=iou_thrs)
    check_equal(res, pycoco(gt, dets, use_cats, max_dets, iou_thrs))


def test_no_detections():
    gt = dict(images=[dict(id=1)], categories=[dict(id=1)], annotations=[
        dict(id=1, image_id=1, category_id=1, bbox=[0, 0, 10, 10], area=100, iscrowd=0)])
    res = coco_eval(gt, [])
    assert res['stats'][0] == 0 and res['stats'][8] == 0 and res['stats'][5] == -1


# --- VOC vs COCO where the protocols coincide --------------------------------------------------------------

@st.composite
def separated_scenes(draw):
    """GTs on a grid 100 px apart (at most 40x40), detections jittered from them or far from all: a detection
    can overlap at most one GT, so VOC's 'best GT only' rule and COCO's 'best free GT' rule give the same
    TP/FP; no crowds, no ignored GTs, fewer than 100 detections per image and class."""
    n_img, n_cls = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    det_results, annotations, images, anns, dets = [], [], [], [], []
    for i in range(n_img):
        cells = draw(st.lists(st.integers(0, 15), max_size=6, unique=True))
        gb, gl = [], []
        per_cls = [[] for _ in range(n_cls)]
        for c in cells:
            x, y = 100 * (c % 4) + 10, 100 * (c // 4) + 10
            w, h = draw(st.integers(10, 40)), draw(st.integers(10, 40))
            lab = draw(st.integers(0, n_cls - 1))
            gb.append([x, y, x + w, y + h]); gl.append(lab)
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=lab + 1, bbox=[x, y, w, h], area=w * h, iscrowd=0))
            for _ in range(draw(st.integers(0, 3))):
                j = draw(st.lists(st.integers(-4, 4), min_size=4, max_size=4))
                per_cls[draw(st.sampled_from([lab, lab, draw(st.integers(0, n_cls - 1))]))].append(
                    [x + j[0], y + j[1], x + w + j[2], y + h + j[3], draw(st.sampled_from([.9, .6, .6, .3, .1]))])
        for _ in range(draw(st.integers(0, 3))):      # background, at the far corner of a cell
            c = draw(st.integers(0, 15)); x, y = 100 * (c % 4) + 70, 100 * (c // 4) + 70
            per_cls[draw(st.integers(0, n_cls - 1))].append([x, y, x + 20, y + 20, draw(st.sampled_from([.8, .6, .2]))])
        det_results.append([np.array(p, np.float32).reshape(-1, 5) for p in per_cls])
        annotations.append(dict(bboxes=np.array(gb, np.float32).reshape(-1, 4), labels=np.array(gl, np.int64)))
        images.append(dict(id=i + 1))
        for c, p in enumerate(per_cls):
            for b in p:
                dets.append(dict(image_id=i + 1, category_id=c + 1, bbox=[b[0], b[1], b[2] - b[0], b[3] - b[1]], score=b[4]))
    gt = dict(images=images, categories=[dict(id=c + 1) for c in range(n_cls)], annotations=anns)
    return det_results, annotations, gt, dets


def coco_101_point(recall, precision):
    "COCO's interpolation applied to a VOC PR curve."
    if len(recall) == 0: return np.zeros(101)
    env = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, coco_rec_thrs(), side='left')
    return np.where(idx < len(env), env[np.minimum(idx, len(env) - 1)], 0)


@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=list(HealthCheck))
@given(separated_scenes())
def test_eval_map_agrees_with_coco_eval(scene):
    det_results, annotations, gt, dets = scene
    _, results = eval_map(det_results, annotations, logger='silent', nproc=1)
    res = coco_eval(gt, dets, iou_thrs=[0.5])
    for k, r in enumerate(results):
        if r['num_gts'] == 0:
            assert (res['precision'][0, :, k, 0, -1] == -1).all(); continue
        # same TP/FP sequence -> same PR points -> same 101-point precision (up to the eps in the division)
        np.testing.assert_allclose(coco_101_point(r['recall'], r['precision']), res['precision'][0, :, k, 0, -1], atol=1e-6)
        np.testing.assert_allclose(res['recall'][0, k, 0, -1], r['recall'][-1] if len(r['recall']) else 0, atol=1e-6)
        # area AP vs 101-point AP: the 101-point sum is a right Riemann-type sampling of the same step function
        assert abs(float(r['ap']) - res['precision'][0, :, k, 0, -1].mean()) <= 1 / 101 + 1e-6


# --- VOC parts ---------------------------------------------------------------------------------------------

@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(st.booleans(), max_size=40), st.integers(0, 5))
def test_average_precision_is_area_under_envelope(flags, extra_gts):
    flags = np.array(flags, bool); n_pos = int(flags.sum()) + extra_gts
    if n_pos == 0: return
    ctp = np.cumsum(flags); rc = ctp / n_pos; pr = ctp / np.arange(1, len(flags) + 1)
    # exact: sum over recall steps of (step width) x (best precision at that recall or later)
    ref = sum((rc[i] - (rc[i - 1] if i else 0)) * pr[i:].max() for i in range(len(flags)) if flags[i])
    assert abs(float(average_precision(rc, pr)) - ref) < 1e-5
    ap11 = float(average_precision(rc, pr, '11points'))
    ref11 = np.mean([pr[rc >= t].max() if (rc >= t).any() else 0 for t in np.arange(0, 1.001, 0.1)])
    assert abs(ap11 - ref11) < 1e-6


def test_eval_map_pool_equals_serial():
    rng = np.random.default_rng(0)
    dets, anns = [], []
    for _ in range(12):
        g = rng.uniform(0, 60, (4, 4)).astype(np.float32); g[:, 2:] += g[:, :2] + 5
        lab = rng.integers(0, 2, 4)
        dets.append([np.c_[g[lab == c] + rng.normal(0, 2, (int((lab == c).sum()), 4)), rng.random(int((lab == c).sum()))].astype(np.float32) for c in range(2)])
        anns.append(dict(bboxes=g, labels=lab))
    assert eval_map(dets, anns, nproc=1, logger='silent')[0] == eval_map(dets, anns, nproc=2, logger='silent')[0]


def test_eval_recalls_shape_and_bounds():
    rng = np.random.default_rng(1)
    gts = [rng.uniform(0, 50, (5, 4)) + [0, 0, 60, 60] for _ in range(3)]
    props = [np.c_[g + rng.normal(0, 3, g.shape), rng.random(5)] for g in gts]
    r = eval_recalls(gts, props, [1, 5, 10], [0.5, 0.7, 0.9], logger='silent')
    assert r.shape == (3, 3) and (r >= 0).all() and (r <= 1).all()
    assert (np.diff(r, axis=0) >= 0).all() and (np.diff(r, axis=1) <= 0).all()   # more proposals help; stricter IoU hurts


def test_benchmark_smoke():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))
    import bench_coco_eval
    rows = bench_coco_eval.main(['--images', '20', '--dets', '30', '--runs', '1'])
    assert rows[0][2] is True and rows[0][3] < 1e-9


def test_evaluation_after_filtering_maps_results_to_the_kept_images(tmp_path):
    "Three images, the middle one without boxes, test_mode=False: the dataset keeps two, and perfect detections of"
    "those two score mAP 1.0 (mmdetection 2.x's answer; pairing results with the unfiltered ids scored 0.0)."
    boxes = {1: [10., 12., 30., 20.], 3: [5., 5., 40., 50.]}                     # xywh
    coco = dict(images=[dict(id=i, file_name=f'{i}.jpg', width=64, height=64) for i in (1, 2, 3)],
                annotations=[dict(id=10 + i, image_id=i, category_id=7, bbox=b, area=b[2] * b[3], iscrowd=0)
                             for i, b in boxes.items()],
                categories=[dict(id=7, name='square')])
    ann_file = tmp_path / 'three.json'
    ann_file.write_text(json.dumps(coco))
    from learndet.data.datasets import CocoDataset
    ds = CocoDataset(str(ann_file), classes=['square'], test_mode=False)
    assert len(ds) == 2 and ds.img_ids == [1, 3]
    results = [[np.array([[x, y, x + w, y + h, 0.9]], np.float32)] for x, y, w, h in (boxes[1], boxes[3])]
    metrics = ds.evaluate(results, metric='bbox', logger='silent')
    assert metrics['bbox_mAP'] == pytest.approx(1.0)
