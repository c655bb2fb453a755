"""Property tests for `learndet.coders`: round trips on random boxes and agreement with torchvision's BoxCoder.

Run: pytest tests/test_coders.py -q
"""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder

from learndet.coders import DeltaXYWHBBoxCoder, DistancePointBBoxCoder, TBLRBBoxCoder, bbox2delta, delta2bbox
from learndet.registry import BBOX_CODERS, build_from_cfg

SETTINGS = settings(max_examples=300, deadline=None, database=None)


@st.composite
def box_pairs(draw, max_n=50):
    "Anchors and ground truths (n, 4) with sides in [1, 400] px, positioned anywhere in a 1000 px square."
    n = draw(st.integers(0, max_n))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    def boxes():
        xy = torch.rand(n, 2, generator=g) * 1000 - 100
        return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g) * 399], 1).double()
    return boxes(), boxes()


stds4 = st.tuples(*[st.floats(0.05, 2.)] * 4)
means4 = st.tuples(*[st.floats(-0.5, 0.5)] * 4)


@SETTINGS
@given(box_pairs(), means4, stds4)
def test_delta_round_trip(pair, means, stds):
    anchors, gts = pair
    coder = DeltaXYWHBBoxCoder(means, stds)
    # no clip: the largest size ratio here is 400, log(400) < log(1e4)
    decoded = coder.decode(anchors, coder.encode(anchors, gts), wh_ratio_clip=1e-4)
    torch.testing.assert_close(decoded, gts.float(), atol=1e-2, rtol=1e-4)


@SETTINGS
@given(box_pairs(), st.tuples(*[st.floats(0.5, 20.)] * 4))
def test_delta_matches_torchvision_boxcoder(pair, weights):
    anchors, gts = pair
    anchors, gts = anchors.float(), gts.float()
    tv = BoxCoder(weights=weights)
    coder = DeltaXYWHBBoxCoder(target_stds=[1 / w for w in weights])
    torch.testing.assert_close(coder.encode(anchors, gts), tv.encode_single(gts, anchors), atol=1e-4, rtol=1e-4)
    deltas = torch.randn(len(anchors), 4) * torch.tensor(weights)     # raw deltas ~N(0, 1): no clip is hit
    torch.testing.assert_close(coder.decode(anchors, deltas), tv.decode_single(deltas, anchors), atol=1e-2, rtol=1e-4)


@SETTINGS
@given(box_pairs(), st.floats(0.5, 10.), st.integers(1, 4))
def test_batched_decode_equals_per_image(pair, normalizer, batch):
    anchors, gts = pair
    anchors = anchors.float().expand(batch, -1, -1) + torch.arange(batch).view(-1, 1, 1)
    deltas = torch.randn(batch, anchors.shape[1], 4)
    shapes = [(300 + 100 * i, 500 + 50 * i) for i in range(batch)]
    for coder in (DeltaXYWHBBoxCoder((0.,) * 4, (0.1, 0.1, 0.2, 0.2)), TBLRBBoxCoder(normalizer)):
        out = coder.decode(anchors, deltas, max_shape=shapes)
        for i in range(batch):
            torch.testing.assert_close(out[i], coder.decode(anchors[i], deltas[i], max_shape=shapes[i]))


@SETTINGS
@given(box_pairs())
def test_tblr_and_point_round_trips(pair):
    anchors, gts = pair
    tblr = TBLRBBoxCoder()
    torch.testing.assert_close(tblr.decode(anchors, tblr.encode(anchors, gts)), gts, atol=1e-6, rtol=1e-9)
    points = (anchors[:, :2] + anchors[:, 2:]) / 2
    pc = DistancePointBBoxCoder()
    torch.testing.assert_close(pc.decode(points, pc.encode(points, gts)), gts, atol=1e-6, rtol=1e-9)


def test_decoded_boxes_are_bounded_by_wh_ratio_clip():
    anchors = torch.tensor([[0., 0., 100., 50.]]).expand(200, 4)
    deltas = torch.randn(200, 4) * 50                                     # wild outputs, as from an untrained head
    boxes = DeltaXYWHBBoxCoder().decode(anchors, deltas)
    ratio = (boxes[:, 2:] - boxes[:, :2]) / torch.tensor([100., 50.])
    assert torch.isfinite(boxes).all()
    assert (ratio <= 1000 / 16 * (1 + 1e-3)).all() and (ratio >= 16 / 1000 * (1 - 1e-3)).all()   # float32 corners


def test_hand_worked_deltas_and_config_build():
    coder = build_from_cfg(dict(type='DeltaXYWHBBoxCoder', target_stds=(0.1, 0.1, 0.2, 0.2)), BBOX_CODERS)
    anchor, gt = torch.tensor([[100., 100., 200., 150.]]), torch.tensor([[110., 90., 230., 170.]])
    expected = torch.tensor([[0.2 / 0.1, 0.1 / 0.1, math.log(1.2) / 0.2, math.log(1.6) / 0.2]])
    torch.testing.assert_close(coder.encode(anchor, gt), expected)
    # the functional form and a (N, 4k) multi-class decode
    torch.testing.assert_close(bbox2delta(anchor, gt), torch.tensor([[0.2, 0.1, math.log(1.2), math.log(1.6)]]))
    multi = delta2bbox(anchor, torch.cat([bbox2delta(anchor, gt)] * 3, 1))
    torch.testing.assert_close(multi, gt.repeat(1, 3))
