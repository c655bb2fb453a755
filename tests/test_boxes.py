"""Property tests for `learndet.boxes` against torchvision on thousands of random cases
(empty sets, zero-area boxes, identical boxes, negative coordinates included).

Run: pytest tests/test_boxes.py -q   (about 45 CPU-seconds; LEARNDET_HYPOTHESIS_EXAMPLES=200 for a quick run)
"""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torchvision import ops
from torchvision.ops.boxes import _box_inter_union

from learndet.boxes import (CHUNK_MIN_PAIRS, batched_nms, bbox2distance, bbox2result, bbox_clip, bbox_flip,
                            bbox_overlaps, bbox_overlaps_np, distance2bbox, multiclass_nms, nms, soft_nms)

MANY = settings(max_examples=int(os.environ.get('LEARNDET_HYPOTHESIS_EXAMPLES', 1500)), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SOME = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

@st.composite
def box_sets(draw, min_size=0, max_size=40, integer=False):
    """A (n, 4) float32 tensor of valid xyxy boxes (x2 >= x1, y2 >= y1). Hypothesis picks the structure (how many,
    how clustered, how large, how many degenerate or duplicated); a seeded torch generator fills in the numbers,
    which keeps thousands of cases fast. A side is either exactly 0 (a line or a point) or at least 0.01 px, so
    every union is 0 or well above bbox_overlaps' eps floor (1e-6), where the two libraries agree by definition."""
    n = draw(st.integers(min_size, max_size))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    spread = draw(st.sampled_from([5., 50., 250.]))           # clustered ... scattered
    size = draw(st.sampled_from([1., 30., 150.]))              # small ... large boxes
    p_degenerate = draw(st.sampled_from([0., 0.2, 1.]))        # share of zero-length sides
    p_duplicate = draw(st.sampled_from([0., 0.3]))             # identical boxes: the classic NMS edge case
    xy = torch.rand(n, 2, generator=g) * spread - 50
    wh = torch.rand(n, 2, generator=g) * size + 0.01
    if integer:
        xy, wh = xy.round(), wh.round()
    wh[torch.rand(n, 2, generator=g) < p_degenerate] = 0
    boxes = torch.cat([xy, xy + wh], 1)
    dup = torch.rand(n, generator=g) < p_duplicate
    if n and dup.any():
        boxes[dup] = boxes[torch.randint(0, n, (int(dup.sum()),), generator=g)]
    return boxes


def distinct_scores(draw, n):
    "n distinct scores in (0, 1]: ties would make the NMS order implementation-defined."
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return (torch.randperm(n, generator=g).float() + 1) / (n + 1)


# ---------------------------------------------------------------------------------------------- bbox_overlaps
@MANY
@given(box_sets(), box_sets())
def test_iou_and_giou_match_torchvision(b1, b2):
    iou = bbox_overlaps(b1, b2)
    assert iou.shape == (len(b1), len(b2))
    inter, union = _box_inter_union(b1, b2)
    ok = union > 1e-6                                    # where torchvision is defined (no 0 / 0)
    torch.testing.assert_close(iou[ok], ops.box_iou(b1, b2)[ok], atol=1e-5, rtol=1e-4)
    assert (iou[~ok] == 0).all()                         # zero-area pairs: 0, not NaN
    assert ((iou >= 0) & (iou <= 1 + 1e-6)).all()
    torch.testing.assert_close(iou, bbox_overlaps(b2, b1).T)        # symmetric
    giou = bbox_overlaps(b1, b2, mode='giou')
    lt = torch.minimum(b1[:, None, :2], b2[None, :, :2]); rb = torch.maximum(b1[:, None, 2:], b2[None, :, 2:])
    enclose = (rb - lt).prod(-1)
    ok = ok & (enclose > 1e-6)
    if len(b1) and len(b2):
        torch.testing.assert_close(giou[ok], ops.generalized_box_iou(b1, b2)[ok], atol=1e-5, rtol=1e-4)
    assert ((giou >= -1 - 1e-6) & (giou <= iou + 1e-6)).all()      # GIoU <= IoU, bounded by -1


@MANY
@given(box_sets(), box_sets())
def test_iof_is_intersection_over_first_area(b1, b2):
    iof = bbox_overlaps(b1, b2, mode='iof')
    inter, _ = _box_inter_union(b1, b2)
    area1 = ops.box_area(b1)[:, None].expand_as(inter)
    ok = area1 > 1e-6
    torch.testing.assert_close(iof[ok], (inter / area1)[ok], atol=1e-5, rtol=1e-4)
    assert (iof[~ok] == 0).all()


@SOME
@given(st.data())
def test_aligned_and_batched_agree_with_the_matrix(data):
    n = data.draw(st.integers(0, 20))
    b1, b2 = data.draw(box_sets(n, n)), data.draw(box_sets(n, n))
    for mode in ('iou', 'iof', 'giou'):
        full = bbox_overlaps(b1, b2, mode)
        torch.testing.assert_close(bbox_overlaps(b1, b2, mode, is_aligned=True), full.diagonal())
        batched = bbox_overlaps(torch.stack([b1, b2]), torch.stack([b2, b1]), mode)
        torch.testing.assert_close(batched, torch.stack([full, bbox_overlaps(b2, b1, mode)]))


@SOME
@given(st.data())
def test_pieces_equal_one_broadcast_bit_for_bit(data):
    "Computing the matrix in pieces (of rows or of columns, any size) gives exactly the single broadcast's bits."
    b1, b2 = data.draw(box_sets(max_size=30)), data.draw(box_sets(max_size=30))
    flip1 = torch.rand(len(b1)) < 0.2                      # some inverted boxes (x2 < x1, y2 < y1) too
    b1[flip1] = b1[flip1][:, [2, 3, 0, 1]]
    chunk = data.draw(st.integers(1, 300))
    for mode in ('iou', 'iof', 'giou'):
        whole = bbox_overlaps(b1, b2, mode, chunk_pairs=0)
        assert torch.equal(bbox_overlaps(b1, b2, mode, chunk_pairs=chunk), whole)
        assert torch.equal(bbox_overlaps(b2, b1, mode, chunk_pairs=chunk), bbox_overlaps(b2, b1, mode, chunk_pairs=0))
        if len(b1) == len(b2):
            pair = torch.stack([b1, b2]), torch.stack([b2, b1])
            assert torch.equal(bbox_overlaps(*pair, mode, chunk_pairs=chunk), bbox_overlaps(*pair, mode, chunk_pairs=0))


def test_big_cpu_matrix_is_computed_in_pieces_and_matches_torchvision(monkeypatch):
    import learndet.boxes as boxes_module
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(40_000, 2, generator=g) * 1000
    many = torch.cat([xy, xy + torch.rand(40_000, 2, generator=g) * 200 + 1], 1)
    few = many[:60] + 5                                      # 60 x 40,000 = 2.4M pairs >= CHUNK_MIN_PAIRS
    assert len(few) * len(many) >= CHUNK_MIN_PAIRS
    calls = []
    real = boxes_module._overlaps_in_pieces
    monkeypatch.setattr(boxes_module, '_overlaps_in_pieces', lambda *a: calls.append(1) or real(*a))
    for mode, peer in (('iou', ops.box_iou), ('giou', ops.generalized_box_iou)):
        auto = bbox_overlaps(few, many, mode)
        assert torch.equal(auto, bbox_overlaps(few, many, mode, chunk_pairs=0))
        torch.testing.assert_close(auto, peer(few, many), atol=1e-5, rtol=1e-5)
    assert len(calls) == 2                                   # the automatic path took the pieces, twice
    bbox_overlaps(few[:2], many[:100])                       # small: one broadcast
    assert len(calls) == 2


@MANY
@given(box_sets(), box_sets(), st.booleans())
def test_numpy_twin_matches_torch(b1, b2, legacy):
    flip = torch.rand(len(b1)) < 0.2                        # inverted boxes count as empty in both
    b1[flip] = b1[flip][:, [2, 3, 0, 1]]
    shift = torch.tensor([0., 0., 1., 1.]) if legacy else torch.zeros(4)   # legacy: +1 on x2, y2 (pixels)
    for mode in ('iou', 'iof'):
        ours = bbox_overlaps_np(b1.numpy(), b2.numpy(), mode, use_legacy_coordinate=legacy)
        assert ours.dtype == np.float32 and ours.shape == (len(b1), len(b2))
        np.testing.assert_allclose(ours, bbox_overlaps(b1 + shift, b2 + shift, mode).numpy(), atol=1e-6, rtol=1e-6)


def test_bench_iou_small_runs(capsys):
    "Smoke run of benchmarks/bench_iou.py at tiny sizes (it asserts agreement inside; no timing assertions)."
    path = Path(__file__).resolve().parents[1] / 'benchmarks' / 'bench_iou.py'
    spec = importlib.util.spec_from_file_location('bench_iou', path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(['--small', '--repeats', '1'])
    assert len(rows) == 9 and all(min(t[1:]) > 0 for t in rows)
    assert '| case | bbox_overlaps (ms) | one broadcast (ms) | torchvision (ms) |' in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- NMS
@MANY
@given(st.data())
def test_nms_and_hand_written_soft_nms_naive_match_torchvision(data):
    boxes = data.draw(box_sets(max_size=60))
    scores = distinct_scores(data.draw, len(boxes))
    thr = data.draw(st.floats(0.05, 0.95))
    ref = ops.nms(boxes, scores, thr)
    dets, keep = nms(boxes, scores, thr)
    assert torch.equal(keep, ref)
    assert torch.equal(dets, torch.cat([boxes[ref], scores[ref, None]], 1))
    # soft_nms is written in plain torch (no torchvision): with method='naive' it must be hard NMS
    assert torch.equal(soft_nms(boxes, scores, thr, method='naive')[1], ref)
    # score_threshold / max_num: torchvision on the pre-filtered boxes, then truncated
    st_thr, max_num = data.draw(st.floats(0., 1.)), data.draw(st.integers(-1, 10))
    valid = (scores > st_thr).nonzero().view(-1) if st_thr > 0 else torch.arange(len(scores))
    expected = valid[ops.nms(boxes[valid], scores[valid], thr)]
    expected = expected[:max_num] if max_num > 0 else expected
    assert torch.equal(nms(boxes, scores, thr, score_threshold=st_thr, max_num=max_num)[1], expected)


@MANY
@given(st.data())
def test_batched_nms_matches_torchvision(data):
    boxes = data.draw(box_sets(max_size=80))
    boxes = boxes - boxes.min().clamp(max=0) if len(boxes) else boxes    # torchvision's offset needs coords >= 0
    scores = distinct_scores(data.draw, len(boxes))
    idxs = torch.tensor(data.draw(st.lists(st.integers(0, 6), min_size=len(boxes), max_size=len(boxes))),
                        dtype=torch.long)
    thr = data.draw(st.floats(0.05, 0.95))
    ref = ops.batched_nms(boxes, scores, idxs, thr)
    dets, keep = batched_nms(boxes, scores, idxs, dict(type='nms', iou_threshold=thr))
    assert torch.equal(keep, ref)
    assert torch.equal(dets, torch.cat([boxes[ref], scores[ref, None]], 1))
    assert torch.equal(batched_nms(boxes, scores, idxs, dict(type='nms', iou_threshold=thr), class_agnostic=True)[1],
                       ops.nms(boxes, scores, thr))


def per_class_nms_reference(boxes, scores, idxs, thr):
    "One torchvision NMS per class, merged by score: the definition of batched NMS."
    keep = [torch.nonzero(idxs == c).view(-1)[ops.nms(boxes[idxs == c], scores[idxs == c], thr)] for c in idxs.unique()]
    keep = torch.cat(keep) if keep else torch.zeros(0, dtype=torch.long)
    return keep[scores[keep].argsort(descending=True)]


@MANY
@given(st.data())
def test_batched_nms_with_negative_coordinates_and_split(data):
    # integer coordinates: shifting classes apart is then exact, so the offset trick equals the per-class loop
    boxes = data.draw(box_sets(max_size=80, integer=True))
    scores = distinct_scores(data.draw, len(boxes))
    idxs = torch.tensor(data.draw(st.lists(st.integers(0, 4), min_size=len(boxes), max_size=len(boxes))),
                        dtype=torch.long)
    thr = data.draw(st.floats(0.05, 0.95))
    ref = per_class_nms_reference(boxes, scores, idxs, thr)
    cfg = dict(type='nms', iou_threshold=thr)
    assert torch.equal(batched_nms(boxes, scores, idxs, cfg)[1], ref)
    assert torch.equal(batched_nms(boxes, scores, idxs, dict(cfg, split_thr=0))[1], ref)


@SOME
@given(st.data())
def test_multiclass_nms_matches_a_per_class_torchvision_reference(data):
    n, k = data.draw(st.integers(0, 30)), data.draw(st.integers(1, 4))
    boxes = data.draw(box_sets(n, n))
    per_class = data.draw(st.booleans())
    multi_bboxes = boxes.repeat(1, k) + torch.arange(k).repeat_interleave(4).float() if per_class else boxes
    # distinct scores for every (box, class) pair; background column last
    multi_scores = torch.cat([distinct_scores(data.draw, n * k).view(n, k), torch.rand(n, 1)], 1)
    score_thr, thr, max_num = data.draw(st.floats(0., 0.9)), data.draw(st.floats(0.05, 0.95)), data.draw(st.integers(-1, 20))
    dets, labels = multiclass_nms(multi_bboxes, multi_scores, score_thr, dict(type='nms', iou_threshold=thr), max_num)
    all_boxes = multi_bboxes.view(n, multi_bboxes.shape[1] // 4, 4).expand(n, k, 4).reshape(-1, 4)
    all_scores, all_labels = multi_scores[:, :k].reshape(-1), torch.arange(k).repeat(n)
    valid = all_scores > score_thr
    b, s, l = all_boxes[valid], all_scores[valid], all_labels[valid]
    keep = per_class_nms_reference(b, s, l, thr) if len(s) else torch.zeros(0, dtype=torch.long)
    keep = keep[:max_num] if max_num > 0 else keep
    assert torch.equal(labels, l[keep])
    torch.testing.assert_close(dets, torch.cat([b[keep], s[keep, None]], 1))


@SOME
@given(box_sets(max_size=30), st.floats(0.1, 0.9), st.sampled_from(['linear', 'gaussian']))
def test_soft_nms_properties(boxes, thr, method):
    scores = torch.linspace(1, 0.1, len(boxes))
    dets, keep = soft_nms(boxes, scores, thr, method=method, min_score=1e-3)
    assert len(set(keep.tolist())) == len(keep)                      # no box twice
    assert (dets[:, 4] <= scores[keep] + 1e-6).all()                 # scores only decay
    assert (dets[:, 4] >= 1e-3).all()
    assert torch.equal(dets[:, :4], boxes[keep])
    if len(boxes):
        assert keep[0] == 0                                          # the best box is kept first, untouched
    # boxes that overlap nothing keep their score
    alone = bbox_overlaps(boxes, boxes).fill_diagonal_(0).amax(1) == 0 if len(boxes) else torch.zeros(0, dtype=torch.bool)
    for i in alone.nonzero().view(-1).tolist():
        assert i in keep.tolist() and dets[keep.tolist().index(i), 4] == scores[i]


# ---------------------------------------------------------------------------------------------- geometry
@SOME
@given(box_sets(), st.integers(1, 300), st.integers(1, 300))
def test_clip_flip_and_distances(boxes, h, w):
    clipped = bbox_clip(boxes, (h, w))
    assert (clipped[:, 0::2] >= 0).all() and (clipped[:, 0::2] <= w).all()
    assert (clipped[:, 1::2] >= 0).all() and (clipped[:, 1::2] <= h).all()
    inside = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= w) & (boxes[:, 3] <= h)
    assert torch.equal(clipped[inside], boxes[inside])
    for direction in ('horizontal', 'vertical', 'diagonal'):
        flipped = bbox_flip(clipped, (h, w), direction)
        torch.testing.assert_close(ops.box_area(flipped), ops.box_area(clipped), atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(bbox_flip(flipped, (h, w), direction), clipped, atol=1e-4, rtol=0)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    torch.testing.assert_close(distance2bbox(centres, bbox2distance(centres, boxes)), boxes, atol=1e-4, rtol=0)


def test_bbox2result_partitions_by_label():
    dets = torch.rand(50, 5); labels = torch.randint(0, 4, (50,))
    res = bbox2result(dets, labels, 4)
    assert len(res) == 4 and all(r.dtype == np.float32 and r.shape[1] == 5 for r in res)
    assert sum(len(r) for r in res) == 50
    for c in range(4):
        np.testing.assert_array_equal(res[c], dets[labels == c].numpy())


def test_bad_inputs_name_the_problem():
    b = torch.rand(3, 4)
    with pytest.raises(ValueError, match="mode must be"):
        bbox_overlaps(b, b, mode='diou')
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n, 4\)"):
        bbox_overlaps(b[:, :2], b)
    with pytest.raises(ValueError, match=r"bboxes2 must have shape \(n, 4\), got \(3, 2\)"):
        bbox_overlaps_np(b.numpy(), b[:, :2].numpy())
    with pytest.raises(ValueError, match="unknown NMS type 'fancy'"):
        batched_nms(b, torch.rand(3), torch.zeros(3, dtype=torch.long), dict(type='fancy'))
