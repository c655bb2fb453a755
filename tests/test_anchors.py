"Anchors and points (chapter 06): hand-worked numbers, torchvision as an independent reference, properties, widget."
import math

import matplotlib
matplotlib.use('Agg')
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from learndet.anchors import (AnchorGenerator, SSDAnchorGenerator, MlvlPointGenerator, anchor_inside_flags,
                              anchor_view, anchor_widget_update, anchor_widget, _toy_image)
from learndet.registry import PRIOR_GENERATORS, build_from_cfg


def tv_anchors(sizes, ratios, img_hw, featmap_sizes):
    tv = TVAnchorGenerator(sizes=sizes, aspect_ratios=(tuple(ratios),) * len(sizes))
    feats = [torch.zeros(1, 1, h, w) for h, w in featmap_sizes]
    return tv(ImageList(torch.zeros(1, 3, *img_hw), [img_hw]), feats)[0]


def test_hand_worked_p2():
    gen = AnchorGenerator(strides=[4], ratios=[0.5, 1, 2], scales=[8, 16])
    s2 = math.sqrt(2)
    w = [4 * 8 * s2, 4 * 16 * s2, 32, 64, 4 * 8 / s2, 4 * 16 / s2]
    h = [4 * 8 / s2, 4 * 16 / s2, 32, 64, 4 * 8 * s2, 4 * 16 * s2]
    expected = torch.tensor([[-a / 2, -b / 2, a / 2, b / 2] for a, b in zip(w, h)])
    torch.testing.assert_close(gen.base_anchors[0], expected)
    anchors = gen.grid_priors([(160, 160)])[0]
    assert anchors.shape == (160 * 160 * 6, 4)
    # anchor k: cell k // 6 (row-major), base anchor k % 6
    k = (7 * 160 + 11) * 6 + 4
    torch.testing.assert_close(anchors[k], expected[4] + torch.tensor([44., 28., 44., 28.]))


@pytest.mark.parametrize('sizes,ratios,img,fmaps', [
    (((32, 64),), [0.5, 1., 2.], (640, 640), [(160, 160)]),
    (((32,), (64,), (128,)), [0.25, 1., 4.], (256, 384), [(32, 48), (16, 24), (8, 12)]),
    (((30, 45), (90, 100)), [0.3, 1., 2.7], (128, 192), [(16, 24), (8, 12)]),
])
def test_torchvision_reference(sizes, ratios, img, fmaps):
    "torchvision rounds its base anchors: equal after rounding ours, within half a pixel before."
    strides = [img[0] // h for h, _ in fmaps]
    base = strides[0]
    # our scales are sizes / base size (= stride)
    ours_levels = []
    for lvl, s in enumerate(strides):
        g = AnchorGenerator(strides=[s], ratios=ratios, scales=[x / s for x in sizes[lvl]])
        ours_levels.append((g, fmaps[lvl]))
    ref = tv_anchors(sizes, ratios, img, fmaps)
    ours = torch.cat([g.grid_priors([f])[0] for g, f in ours_levels])
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() <= 0.5 + 1e-4
    rounded = []
    for g, f in ours_levels:
        g.base_anchors = [b.round() for b in g.base_anchors]
        rounded.append(g.grid_priors([f])[0])
    torch.testing.assert_close(torch.cat(rounded), ref)


def test_exact_integer_case_matches_torchvision_without_rounding():
    "Ratios 1/4, 1, 4 and even sizes give integer base anchors: no rounding, exact equality."
    g = AnchorGenerator(strides=[8, 16], ratios=[0.25, 1., 4.], scales=[4, 8])
    ref = tv_anchors(((32, 64), (64, 128)), [0.25, 1., 4.], (64, 96), [(8, 12), (4, 6)])
    torch.testing.assert_close(torch.cat(g.grid_priors([(8, 12), (4, 6)])), ref)


@settings(max_examples=40, deadline=None)
@given(base=st.integers(2, 64), ratios=st.lists(st.floats(0.1, 10), min_size=1, max_size=4),
       scales=st.lists(st.floats(0.5, 16), min_size=1, max_size=3), scale_major=st.booleans(),
       offset=st.sampled_from([0., 0.5, 1.]))
def test_base_anchor_properties(base, ratios, scales, scale_major, offset):
    g = AnchorGenerator(strides=[base], ratios=ratios, scales=scales, scale_major=scale_major, center_offset=offset)
    b = g.base_anchors[0].double()
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    pairs = [(r, s) for r in ratios for s in scales] if scale_major else [(r, s) for s in scales for r in ratios]
    r = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    s = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    torch.testing.assert_close(h / w, r, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(w * h, (base * s) ** 2, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close((b[:, 0] + b[:, 2]) / 2, torch.full_like(w, offset * base), rtol=0, atol=1e-3)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), stride=st.integers(1, 32), pad_h=st.integers(1, 300),
       pad_w=st.integers(1, 300))
def test_grid_order_and_valid_flags(h, w, stride, pad_h, pad_w):
    g = AnchorGenerator(strides=[stride], ratios=[0.5, 2.], scales=[1., 3.])
    A = 4
    anchors = g.grid_priors([(h, w)])[0]
    k = torch.arange(h * w * A)
    cell, a = k // A, k % A
    shift = torch.stack([(cell % w) * stride, (cell // w) * stride] * 2, 1).float()
    torch.testing.assert_close(anchors, g.base_anchors[0][a] + shift)
    flags = g.valid_flags([(h, w)], (pad_h, pad_w, 3))[0]
    vh, vw = min(math.ceil(pad_h / stride), h), min(math.ceil(pad_w / stride), w)
    assert int(flags.sum()) == vh * vw * A
    rows, cols = (cell // w), (cell % w)
    assert torch.equal(flags, (rows < vh) & (cols < vw))


def test_inside_flags_by_definition():
    g = torch.Generator().manual_seed(0)
    anchors = torch.rand(500, 2, generator=g) * 120 - 10
    anchors = torch.cat([anchors, anchors + torch.rand(500, 2, generator=g) * 40], 1)
    valid = torch.rand(500, generator=g) > 0.3
    for border in (0, 5):
        flags = anchor_inside_flags(anchors, valid, (90, 100, 3), border)
        for i in range(500):
            x1, y1, x2, y2 = anchors[i].tolist()
            expect = bool(valid[i]) and x1 >= -border and y1 >= -border and x2 < 100 + border and y2 < 90 + border
            assert bool(flags[i]) == expect
    assert torch.equal(anchor_inside_flags(anchors, valid, (90, 100), -1), valid)


def test_ssd300_counts_and_order():
    ssd = SSDAnchorGenerator(strides=[8, 16, 32, 64, 100, 300], ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                             basesize_ratio_range=(0.15, 0.9), input_size=300, scale_major=False)
    assert ssd.min_sizes == [21, 45, 99, 153, 207, 261] and ssd.max_sizes == [45, 99, 153, 207, 261, 315]
    priors = ssd.grid_priors([(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)])
    assert sum(len(p) for p in priors) == 8732
    for lvl, b in enumerate(ssd.base_anchors):     # first: side min_size, second: sqrt(min * max), both square
        side = b[:, 2] - b[:, 0]
        torch.testing.assert_close(side[0], torch.tensor(float(ssd.min_sizes[lvl])))
        torch.testing.assert_close(side[1], torch.tensor(math.sqrt(ssd.min_sizes[lvl] * ssd.max_sizes[lvl])))
        torch.testing.assert_close(b[:2, 3] - b[:2, 1], side[:2])
        centre = (b[:, :2] + b[:, 2:]) / 2
        torch.testing.assert_close(centre, torch.full_like(centre, ssd.strides[lvl][0] / 2))
    with pytest.raises(ValueError, match='input_size=320'):
        SSDAnchorGenerator([8, 16, 32], [[2], [2], [2]], input_size=320)


def test_points_and_registry():
    pts = MlvlPointGenerator([(8, 4)]).grid_priors([(2, 2)], with_stride=True)[0]
    assert pts.tolist() == [[4., 2., 8., 4.], [12., 2., 8., 4.], [4., 6., 8., 4.], [12., 6., 8., 4.]]
    for name in ('AnchorGenerator', 'SSDAnchorGenerator', 'MlvlPointGenerator'):
        assert name in PRIOR_GENERATORS
    g = build_from_cfg(dict(type='AnchorGenerator', strides=[16], ratios=[1.], scales=[2]), PRIOR_GENERATORS)
    torch.testing.assert_close(g.base_anchors[0], torch.tensor([[-16., -16., 16., 16.]]))
    with pytest.raises(ValueError, match='2 feature map sizes for 1 levels'):
        g.grid_priors([(2, 2), (1, 1)])


def test_float64_and_device_arguments():
    g = AnchorGenerator(strides=[8], ratios=[1.], scales=[4])
    a64 = g.grid_priors([(3, 3)], dtype=torch.float64, device='cpu')[0]
    assert a64.dtype == torch.float64
    torch.testing.assert_close(a64.float(), g.grid_priors([(3, 3)])[0])


def test_anchor_widget_logic():
    img = _toy_image(200, 300)
    view, ax = anchor_widget_update(img, (8, 16, 32), '0.5, 1, 2', '4', level=2, row=0, col=0)
    assert view['counts'][2]['featmap'] == (7, 10)
    assert [c['anchors'] for c in view['counts']] == [25 * 38 * 3, 13 * 19 * 3, 7 * 10 * 3]
    for c in view['counts']:
        assert c['inside'] + c['outside'] == c['anchors']
    assert not view['inside'].any()                      # cell (0, 0): anchors centred on the corner
    assert len(ax.patches) == 3
    v = anchor_view(img.shape, AnchorGenerator([8], [1.], scales=[1.]), 0, (12, 18))
    assert v['inside'].all() and v['cell'] == (12, 18)
    with pytest.raises(ValueError, match='scales: expected positive numbers'):
        anchor_widget_update(img, (8,), '1', '-2', 0, 0, 0)
    import matplotlib.pyplot as plt
    plt.close('all')


def test_anchor_widget_builds_and_updates():
    w = anchor_widget({'toy': _toy_image(96, 128)}, strides=(8, 16))
    children = {c.description: c for box in w.children if hasattr(box, 'children') for c in box.children
                if hasattr(c, 'description')}
    table = w.children[-1]                                 # the counts-per-level table

    def changes(name, value):
        before = table.value
        children[name].value = value
        return table.value != before

    # the table counts anchors per level: a level change alone leaves it, a change of ratios changes it
    assert changes('ratios', '1, 3')                      # 2 ratios x 3 scales instead of 3 x 3
    assert str(2 * 3 * 12 * 16) in table.value             # level 0: 12x16 cells x 6 anchors
    assert changes('allowed_border', 16)                  # anchors near the edge now count as inside
    children['level'].value = 1
    children['row'].value = 2
    children['ratios'].value = 'oops'                    # error shown in the widget, not raised
    html = [c for c in w.children if c.__class__.__name__ == 'HTML']
    assert any('expected comma-separated numbers' in h.value for h in html)
    import matplotlib.pyplot as plt
    plt.close('all')
