"InstanceData against plain tensor indexing, and nms_per_class against torchvision's batched_nms."
import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

from learndet.structures import InstanceData, nms_per_class


def random_results(g, n):
    xy = torch.rand(n, 2, generator=g) * 100
    return InstanceData(bboxes=torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 40], 1),
                        scores=torch.rand(n, generator=g), labels=torch.randint(0, 3, (n,), generator=g),
                        names=[f'box{i}' for i in range(n)], areas=np.arange(n, dtype=np.float32))


@pytest.mark.parametrize('seed', range(10))
def test_indexing_takes_the_same_rows_of_every_field(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(0, 30, (1,), generator=g))
    r = random_results(g, n)
    mask = torch.rand(n, generator=g) > 0.5
    idx = torch.randint(0, max(n, 1), (int(torch.randint(0, 10, (1,), generator=g)),), generator=g) if n else torch.zeros(0, dtype=torch.long)
    for sel, ref in ((mask, mask.nonzero().view(-1)), (idx, idx), (slice(1, None, 2), torch.arange(n)[1::2])):
        s = r[sel]
        assert len(s) == len(ref)
        assert torch.equal(s.bboxes, r.bboxes[ref]) and torch.equal(s.labels, r.labels[ref])
        assert s.names == [r.names[i] for i in ref.tolist()]
        np.testing.assert_array_equal(s.areas, r.areas[ref.numpy()])
    both = InstanceData.cat([r, r[mask]])
    assert len(both) == n + int(mask.sum()) and torch.equal(both.scores[n:], r.scores[mask])
    assert both.names == r.names + [r.names[i] for i in mask.nonzero().view(-1).tolist()]


def test_fields_must_agree_in_length():
    r = InstanceData(scores=torch.ones(3))
    with pytest.raises(ValueError, match='labels has length 2, but the other fields have 3'):
        r.labels = torch.zeros(2)
    with pytest.raises(TypeError, match='must have a length'):
        r.count = 3
    assert 'InstanceData(num_instances=3, scores: Tensor(3,) float32)' == repr(r)


@pytest.mark.parametrize('seed', range(10))
def test_nms_per_class_matches_torchvision(seed):
    g = torch.Generator().manual_seed(seed)
    r = random_results(g, int(torch.randint(0, 200, (1,), generator=g)))
    thr, k = 0.3 + 0.4 * float(torch.rand(1, generator=g)), int(torch.randint(-1, 50, (1,), generator=g))
    kept = nms_per_class(r, dict(type='nms', iou_threshold=thr), max_per_img=k)
    ref = batched_nms(r.bboxes, r.scores, r.labels, thr)
    ref = ref[:k] if k > 0 else ref
    assert torch.equal(kept.bboxes, r.bboxes[ref]) and torch.equal(kept.scores, r.scores[ref])
    assert kept.names == [r.names[i] for i in ref.tolist()]
