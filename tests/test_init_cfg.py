"""mmcv-style `init_cfg` (learndet.models.layers.initialize): each initialiser against a hand check or a statistical
property, `layer` matching by class and direct base-class names, `override` rules, lists in order, the errors and
warnings; and mmdetection 2.x configs that set `init_cfg` in the backbone, neck and head building as written."""
import math
import os
import warnings

import pytest
import torch
from torch import nn

import learndet  # noqa: F401  (registers every model, and the Pretrained initialiser)
from learndet.config import load_config
from learndet.models.backbones import BasicBlock, Bottleneck, ResNet
from learndet.models.dense_heads import BaseDenseHead, RetinaHead
from learndet.models.detectors import build_detector
from learndet.models.layers import INITIALIZERS, ConvModule, initialize, layer_names
from learndet.models.necks import FPN


@pytest.fixture(autouse=True)
def seeded():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


def big_linear():
    return nn.Linear(500, 400)          # fan_in 500, fan_out 400, 200k weights: sampling error of a std ~0.2 %


# ---- the initialisers ------------------------------------------------------------------------------------------
def test_constant_exact():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(2, 2, bias=False))
    initialize(m, dict(type='Constant', val=0.25, bias=-3, layer=['Conv2d', 'Linear']))
    assert m[0].weight.unique().tolist() == [0.25] and m[0].bias.unique().tolist() == [-3.]
    assert m[1].weight.unique().tolist() == [0.25] and m[1].bias is None


def test_uniform_range_and_moments():
    m = big_linear()
    initialize(m, dict(type='Uniform', a=-2., b=4., bias=0.5, layer='Linear'))
    w = m.weight
    assert w.min() >= -2 and w.max() <= 4 and w.max() - w.min() > 5.99
    assert abs(w.mean().item() - 1.) < 0.02 and abs(w.std().item() - 6 / math.sqrt(12)) < 0.01
    assert m.bias.unique().tolist() == [0.5]


def test_normal_mean_std():
    m = big_linear()
    initialize(m, dict(type='Normal', mean=3., std=0.5, layer='Linear'))
    assert abs(m.weight.mean().item() - 3.) < 0.005 and abs(m.weight.std().item() - 0.5) < 0.005
    assert m.bias.abs().max().item() == 0                        # bias defaults to 0


def test_trunc_normal_range_and_std():
    m = big_linear()
    initialize(m, dict(type='TruncNormal', mean=0., std=1., a=-1., b=1., layer='Linear'))
    assert m.weight.min() >= -1 and m.weight.max() <= 1
    # variance of a standard normal truncated to [-1, 1]: 1 - 2 phi(1) / (Phi(1) - Phi(-1))
    phi = math.exp(-0.5) / math.sqrt(2 * math.pi)
    mass = math.erf(1 / math.sqrt(2))
    assert abs(m.weight.std().item() - math.sqrt(1 - 2 * phi / mass)) < 0.005


@pytest.mark.parametrize('gain', [1., 2.])
def test_xavier_uniform_bound_and_normal_std(gain):
    m = big_linear()
    initialize(m, dict(type='Xavier', gain=gain, distribution='uniform', layer='Linear'))
    bound = gain * math.sqrt(6 / (500 + 400))
    assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.99 * bound
    initialize(m, dict(type='Xavier', gain=gain, layer='Linear'))                  # distribution='normal'
    assert abs(m.weight.std().item() - gain * math.sqrt(2 / (500 + 400))) < 0.005 * gain


def test_kaiming_fans_and_slope():
    m = big_linear()
    initialize(m, dict(type='Kaiming', layer='Linear'))                              # fan_out, relu, normal
    assert abs(m.weight.std().item() / math.sqrt(2 / 400) - 1) < 0.01
    initialize(m, dict(type='Kaiming', a=0.5, mode='fan_in', nonlinearity='leaky_relu', distribution='uniform',
                       layer='Linear'))
    bound = math.sqrt(2 / (1 + 0.25)) * math.sqrt(3 / 500)
    assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.99 * bound


def test_caffe2_xavier_is_kaiming_uniform_slope_one_fan_in():
    a, b = big_linear(), big_linear()
    torch.manual_seed(5); initialize(a, dict(type='Caffe2Xavier', layer='Linear'))
    torch.manual_seed(5); nn.init.kaiming_uniform_(b.weight, a=1, mode='fan_in', nonlinearity='leaky_relu')
    assert torch.equal(a.weight, b.weight) and a.bias.abs().max() == 0
    assert a.weight.abs().max() <= math.sqrt(3 / 500)


def test_bias_prob():
    m = nn.Conv2d(4, 3, 1)
    initialize(m, dict(type='Normal', std=0.01, bias_prob=0.01, layer='Conv2d'))
    torch.testing.assert_close(m.bias, torch.full((3,), -math.log((1 - 0.01) / 0.01)))
    assert torch.allclose(m.bias.sigmoid(), torch.full((3,), 0.01))
    with pytest.raises(TypeError, match='bias_prob must be a float'):
        initialize(m, dict(type='Normal', bias_prob=1, layer='Conv2d'))
    with pytest.raises(TypeError, match='bias must be a number'):
        initialize(m, dict(type='Normal', bias='zero', layer='Conv2d'))


# ---- which submodules -------------------------------------------------------------------------------------------
def test_layer_matches_class_and_direct_bases_only():
    class MyBN(nn.BatchNorm2d):
        pass
    net = nn.Sequential(nn.BatchNorm2d(4), nn.SyncBatchNorm(4), MyBN(4), nn.GroupNorm(2, 4), nn.Conv1d(2, 2, 1),
                        ConvModule(2, 4, 1))
    initialize(net, dict(type='Constant', val=7, layer='_BatchNorm'))
    assert [m.weight.unique().tolist() for m in net[:4]] == [[7.], [7.], [1.], [1.]]   # MyBN's base is BatchNorm2d
    initialize(net, dict(type='Constant', val=5, layer='BatchNorm2d'))
    assert net[2].weight.unique().tolist() == [5.] and net[0].weight.unique().tolist() == [5.]
    initialize(net, dict(type='Constant', val=3, layer='_ConvNd'))                      # Conv1d and the inner Conv2d
    assert net[4].weight.unique().tolist() == [3.] and net[5].conv.weight.unique().tolist() == [3.]
    assert 'Conv2d' not in layer_names(net[5]) and layer_names(nn.Conv2d(1, 1, 1)) == ['Conv2d', '_ConvNd']


def test_list_applies_in_order():
    m = nn.Conv2d(2, 2, 1)
    initialize(m, [dict(type='Constant', val=1, layer='Conv2d'), dict(type='Constant', val=2, layer='Conv2d')])
    assert m.weight.unique().tolist() == [2.]
    initialize(m, (dict(type='Constant', val=2, layer='Conv2d'), dict(type='Constant', val=1, layer='Conv2d')))
    assert m.weight.unique().tolist() == [1.]


# ---- override ----------------------------------------------------------------------------------------------------
class FooNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 8, 3)
        self.reg = nn.Conv2d(8, 4, 3)
        self.tower = nn.Sequential(nn.Conv2d(8, 8, 3), nn.GroupNorm(2, 8))


def test_override_with_its_own_type():
    m = FooNet()
    initialize(m, dict(type='Constant', val=1, bias=2, layer='Conv2d',
                       override=dict(type='Constant', name='reg', val=3, bias=4)))
    assert (m.feat.weight.unique().item(), m.feat.bias.unique().item()) == (1, 2)
    assert (m.reg.weight.unique().item(), m.reg.bias.unique().item()) == (3, 4)


def test_override_with_only_a_name_reuses_the_outer_config_and_reaches_the_whole_module():
    m = FooNet()
    with pytest.warns(UserWarning, match='matched no layer'):             # no Linear: only the override acts
        initialize(m, dict(type='Constant', val=5, bias_prob=0.5, layer='Linear', override=dict(name='tower')))
    # nothing is a Linear, but the override touches every submodule of `tower`, GroupNorm included (whole module)
    assert m.tower[0].weight.unique().tolist() == [5.] and m.tower[1].weight.unique().tolist() == [5.]
    assert m.tower[1].bias.abs().max().item() < 1e-7                                  # bias_prob 0.5 -> bias 0
    assert m.feat.weight.unique().numel() > 1                                          # untouched


def test_override_errors():
    m = FooNet()
    with pytest.raises(ValueError, match='no "type"'):
        initialize(m, dict(type='Constant', val=1, layer='Conv2d', override=dict(name='reg', val=3)))
    with pytest.raises(ValueError, match='needs a "name"'):
        initialize(m, dict(type='Constant', val=1, layer='Conv2d', override=dict(type='Constant', val=3)))
    with pytest.raises(KeyError, match=r"names 'cls'.*children: \['feat', 'reg', 'tower'\]"):
        initialize(m, dict(type='Constant', val=1, layer='Conv2d', override=dict(type='Constant', name='cls', val=3)))
    with pytest.raises(TypeError, match='init_cfg override must be a dict or a list of dicts'):
        initialize(m, dict(type='Constant', val=1, layer='Conv2d', override='reg'))


# ---- errors and warnings -----------------------------------------------------------------------------------------
def test_unknown_type_names_it_and_lists_the_known_ones():
    with pytest.raises(KeyError) as e:
        initialize(FooNet(), dict(type='Gaussian', layer='Conv2d'))
    msg = str(e.value)
    assert "'Gaussian'" in msg
    for name in ('Constant', 'Xavier', 'Normal', 'TruncNormal', 'Uniform', 'Kaiming', 'Caffe2Xavier', 'Pretrained'):
        assert name in msg and name in INITIALIZERS


def test_bad_arguments_and_bad_init_cfg():
    with pytest.raises(TypeError, match="unexpected keyword argument 'sigma'.*It accepts: mean, std"):
        initialize(FooNet(), dict(type='Normal', sigma=1, layer='Conv2d'))
    with pytest.raises(ValueError, match="distribution must be one of"):
        initialize(FooNet(), dict(type='Kaiming', distribution='gaussian', layer='Conv2d'))
    with pytest.raises(TypeError, match='init_cfg must be a dict or a list of dicts'):
        initialize(FooNet(), 'Normal')
    with pytest.raises(KeyError, match='"type"'):
        initialize(FooNet(), dict(layer='Conv2d'))


def test_a_layer_that_matches_nothing_and_a_config_that_does_nothing_warn():
    with pytest.warns(UserWarning, match=r"matched no layer of FooNet: \['Conv'\]"):
        initialize(FooNet(), dict(type='Normal', layer='Conv'))
    with pytest.warns(UserWarning, match='neither "layer" nor "override"'):
        initialize(FooNet(), dict(type='Normal'))
    with warnings.catch_warnings():
        warnings.simplefilter('error')               # a partial match ('_BatchNorm' here) is not a warning
        initialize(FooNet(), dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm']))


def test_pretrained_through_initialize(tmp_path):
    src = FPN([8, 16], 4, num_outs=2)
    path = os.fspath(tmp_path / 'det.pth')
    torch.save(dict(state_dict={f'neck.{k}': v for k, v in src.state_dict().items()}), path)
    dst = FPN([8, 16], 4, num_outs=2, init_cfg=dict(type='Pretrained', checkpoint=path, prefix='neck.'))
    dst.init_weights()
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in dst.state_dict().items())
    with pytest.raises(TypeError, match="unexpected keyword argument 'strict'"):
        initialize(dst, dict(type='Pretrained', checkpoint=path, strict=False))


# ---- mmdetection 2.x configs as written ----------------------------------------------------------------------------
RESNET_MMDET = [dict(type='Kaiming', layer='Conv2d'), dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]


@pytest.mark.parametrize('depth, block, last', [(18, BasicBlock, 'norm2'), (50, Bottleneck, 'norm3')])
def test_resnet_default_is_mmdetection_init_cfg_plus_zero_init_blocks(depth, block, last):
    "init_cfg=None: mmdetection's list, then each block's Constant(0) override of its last norm -- bit for bit."
    torch.manual_seed(1); ours = ResNet(depth, base_channels=8)
    torch.manual_seed(1); ref = ResNet(depth, base_channels=8)
    torch.manual_seed(2); ours.init_weights()
    torch.manual_seed(2)
    initialize(ref, RESNET_MMDET)
    for m in ref.modules():
        if isinstance(m, block):
            initialize(m, dict(type='Constant', val=0, override=dict(name=last)))
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in ours.state_dict().items())
    assert getattr(ours.layer1[0], last).weight.abs().max() == 0


def test_resnet_given_mmdetection_list_builds_and_has_no_zero_init():
    r = ResNet(18, base_channels=8, norm_cfg=dict(type='GN', num_groups=4), init_cfg=RESNET_MMDET)
    r.init_weights()
    assert r.layer1[0].gn2.weight.unique().tolist() == [1.]              # mmdetection: a user's init_cfg replaces both
    w = r.layer2[0].conv1.weight                                          # Kaiming fan_out: std sqrt(2 / (16 * 9))
    assert abs(w.std().item() / math.sqrt(2 / (16 * 9)) - 1) < 0.1


def test_retina_head_mmdetection_init_cfg_and_fpn_default():
    head_cfg = dict(type='Normal', layer='Conv2d', std=0.01,
                    override=dict(type='Normal', name='retina_cls', std=0.01, bias_prob=0.01))
    head = RetinaHead(4, 32, feat_channels=32, init_cfg=head_cfg)
    torch.testing.assert_close(head.retina_cls.bias, torch.full_like(head.retina_cls.bias, math.log(0.01 / 0.99)))
    assert head.retina_reg.bias.abs().max() == 0 and abs(head.cls_convs[0].conv.weight.std().item() - 0.01) < 0.001
    neck = FPN([64, 128, 256], 64, num_outs=3)
    bound = math.sqrt(6 / (64 * 9 * 2))
    assert neck.fpn_convs[0].conv.weight.abs().max() <= bound


def test_a_new_head_gets_init_cfg_without_code():
    "A BaseDenseHead subclass (as FCOS/ATSS are) declares an init_cfg; the base applies all of it."
    class PointHead(BaseDenseHead):
        def _init_layers(self):
            self.tower = nn.Sequential(ConvModule(self.in_channels, 8, 3, padding=1, norm_cfg=dict(type='GN', num_groups=2)))
            self.conv_cls = nn.Conv2d(8, self.cls_out_channels, 1)
            self.conv_reg = nn.Conv2d(8, 4, 1)
    cfg = [dict(type='Normal', layer='Conv2d', std=0.01, override=dict(type='Normal', name='conv_cls', std=0.01,
                                                                       bias_prob=0.01)),
           dict(type='Constant', val=0.5, layer='GroupNorm')]
    head = PointHead(3, 4, dict(type='MlvlPointGenerator', strides=[8, 16]),
                     dict(type='FocalLoss', use_sigmoid=True), dict(type='IoULoss'),
                     bbox_coder=dict(type='DistancePointBBoxCoder'), init_cfg=cfg)
    assert torch.allclose(head.conv_cls.bias.sigmoid(), torch.full((3,), 0.01))
    assert head.tower[0].gn.weight.unique().tolist() == [0.5]
    with pytest.raises(KeyError, match="names 'retina_cls'"):
        PointHead(3, 4, dict(type='MlvlPointGenerator', strides=[8]), dict(type='FocalLoss', use_sigmoid=True),
                  dict(type='IoULoss'), init_cfg=dict(type='Normal', layer='Conv2d', override=dict(name='retina_cls')))


def test_detector_config_with_init_cfg_everywhere_builds():
    "The tiny RetinaNet config with mmdetection-style init_cfgs in backbone, neck and head: built as written."
    cfg = load_config('retinanet/retinanet_tiny_r18_fpn_shapes.py')
    cfg.merge_from_dict({
        'model.backbone.init_cfg': RESNET_MMDET,
        'model.neck': dict(init_cfg=dict(type='Caffe2Xavier', layer='Conv2d')),
        'model.bbox_head': dict(init_cfg=dict(type='Normal', layer='Conv2d', std=0.02,
                                              override=[dict(type='Normal', name='retina_cls', std=0.01, bias_prob=0.05),
                                                        dict(type='Constant', name='retina_reg', val=0)])),
    })
    model = build_detector(cfg.model)
    model.init_weights()
    head = model.bbox_head
    assert torch.allclose(head.retina_cls.bias.sigmoid(), torch.full_like(head.retina_cls.bias, 0.05))
    assert head.retina_reg.weight.abs().max() == 0 and abs(head.cls_convs[0].conv.weight.std().item() - 0.02) < 0.002
    fan_in = 64 * 9                                                     # an fpn conv: 64 -> 64, 3x3
    assert model.neck.fpn_convs[0].conv.weight.abs().max() <= math.sqrt(3 / fan_in)
    assert model.backbone.layer1[0].bn2.weight.unique().tolist() == [1.]
