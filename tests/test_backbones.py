"""Tests for learndet.models.backbones and learndet.models.necks (chapters 10a, 11) that are too slow or too
repetitive for the notebooks.

References: torchvision.models.resnet101/152 (weights=None: random weights, nothing downloaded) for names,
structure and numbers; torchvision.ops.FeaturePyramidNetwork for the FPN; torch.nn.functional for the
configurations torchvision does not have."""
import os

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from learndet.models.backbones import ResNet, ResNetV1d, load_pretrained
from learndet.models.necks import FPN
from learndet.registry import BACKBONES, NECKS, build_from_cfg


def randomise_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)


def torchvision_stages(tv, x):
    x = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
    outs = []
    for layer in (tv.layer1, tv.layer2, tv.layer3, tv.layer4):
        x = layer(x)
        outs.append(x)
    return outs


@pytest.mark.parametrize('depth', [101, 152])
def test_deep_resnets_match_torchvision(depth):
    tv = getattr(torchvision.models, f'resnet{depth}')(weights=None).eval()
    randomise_bn(tv, depth)
    ours = ResNet(depth)
    ours.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith('fc.')}, strict=True)
    n_fc = sum(p.numel() for p in tv.fc.parameters())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in tv.parameters()) - n_fc
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours.eval()(x), torchvision_stages(tv, x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_group_norm_and_frozen_affine():
    gn = ResNet(50, base_channels=16, norm_cfg=dict(type='GN', num_groups=4))
    keys = list(gn.state_dict())
    assert 'gn1.weight' in keys and 'layer1.0.gn3.weight' in keys and 'layer1.0.downsample.1.weight' in keys
    assert not any('bn' in k for k in keys)
    gn.train()
    assert gn.layer1[0].gn1.training              # norm_eval only concerns BatchNorm
    out = gn(torch.randn(2, 3, 64, 64))
    assert [o.shape[1] for o in out] == [64, 128, 256, 512]
    frozen_bn = ResNet(18, base_channels=8, norm_cfg=dict(type='BN', requires_grad=False))
    assert all(not p.requires_grad for n, p in frozen_bn.named_parameters() if 'bn' in n or 'downsample.1' in n)
    assert all(p.requires_grad for n, p in frozen_bn.named_parameters() if 'conv' in n)


def test_caffe_style_matches_functional():
    """A caffe-style bottleneck with stride 2 rebuilt from F.conv2d: the stride sits on the first 1x1 conv."""
    torch.manual_seed(0)
    net = ResNet(50, base_channels=8, style='caffe', zero_init_residual=False).eval()
    randomise_bn(net)
    block = net.layer2[0]
    bn = lambda t, m: F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0., m.eps)
    x = torch.randn(1, 32, 16, 16)
    out = F.relu(bn(F.conv2d(x, block.conv1.weight, stride=2), block.bn1))
    out = F.relu(bn(F.conv2d(out, block.conv2.weight, padding=1), block.bn2))
    out = bn(F.conv2d(out, block.conv3.weight), block.bn3)
    short = bn(F.conv2d(x, block.downsample[0].weight, stride=2), block.downsample[1])
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(out + short), rtol=1e-5, atol=1e-5)


def test_train_step_respects_frozen_stages_and_norm_eval():
    torch.manual_seed(0)
    backbone = ResNet(18, base_channels=8, frozen_stages=2, norm_eval=True)
    neck = FPN([8, 16, 32, 64], 16, num_outs=5, start_level=1, add_extra_convs='on_input')
    model = nn.ModuleList([backbone, neck]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        sum(o.square().mean() for o in neck(backbone(torch.randn(2, 3, 64, 64)))).backward()
        opt.step()
    after = model.state_dict()
    for k, v in after.items():
        frozen = k.startswith(('0.conv1', '0.bn1', '0.layer1.', '0.layer2.')) or 'running' in k or 'num_batches' in k
        if frozen:
            assert torch.equal(v, before[k]), k
    assert not torch.equal(after['0.layer3.0.conv1.weight'], before['0.layer3.0.conv1.weight'])
    assert not torch.equal(after['1.fpn_convs.3.conv.weight'], before['1.fpn_convs.3.conv.weight'])


def test_load_pretrained_for_a_neck_with_prefix(tmp_path):
    src = FPN([8, 16], 4, num_outs=3, add_extra_convs='on_output')
    state = {**{f'neck.{k}': v for k, v in src.state_dict().items()}, 'backbone.conv1.weight': torch.zeros(1)}
    path = os.fspath(tmp_path / 'det.pth')
    torch.save(dict(meta={}, state_dict=state), path)
    dst = FPN([8, 16], 4, num_outs=3, add_extra_convs='on_output')
    load_pretrained(dst, path, prefix='neck.')
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in dst.state_dict().items())
    wrong = FPN([8, 16], 4, num_outs=3, add_extra_convs='on_input')    # P6 conv reads 16 channels, not 4
    with pytest.raises(KeyError, match=r'shape mismatch 1: fpn_convs.2.conv.weight: file \(4, 4, 3, 3\) vs model \(4, 16, 3, 3\)'):
        load_pretrained(wrong, path, prefix='neck.')


def test_old_checkpoint_without_bn_counters(tmp_path):
    """Checkpoints from before PyTorch 0.4.1 (such as the ImageNet ResNet files) have no num_batches_tracked."""
    src = ResNet(18, base_channels=8)
    path = os.fspath(tmp_path / 'old.pth')
    torch.save({k: v for k, v in src.state_dict().items() if not k.endswith('num_batches_tracked')}, path)
    dst = ResNet(18, base_channels=8)
    load_pretrained(dst, path)
    assert torch.equal(dst.layer2[0].conv2.weight, src.layer2[0].conv2.weight)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('hello')
    with pytest.raises(RuntimeError, match=r'notes\.pth \(5 bytes\): not a PyTorch checkpoint'):
        load_pretrained(ResNet(18, base_channels=8), path)
    torch.save([1, 2], path)
    with pytest.raises(TypeError, match='expected a state dict'):
        load_pretrained(ResNet(18, base_channels=8), path)


def _tv_copy(ours, extra):
    used = ours.in_channels[ours.start_level:ours.backbone_end_level]
    tv = FeaturePyramidNetwork(used, ours.out_channels, extra_blocks=extra)
    pairs = [(tv.inner_blocks[i][0], ours.lateral_convs[i].conv) for i in range(len(used))]
    pairs += [(tv.layer_blocks[i][0], ours.fpn_convs[i].conv) for i in range(len(used))]
    if isinstance(extra, LastLevelP6P7):
        pairs += [(extra.p6, ours.fpn_convs[len(used)].conv), (extra.p7, ours.fpn_convs[len(used) + 1].conv)]
    with torch.no_grad():
        for dst, src in pairs:
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    return tv


@pytest.mark.parametrize('levels,start,extra', [(3, 0, 'pool'), (4, 1, 'pool'), (5, 2, 'pool'),
                                                (3, 0, 'input'), (4, 1, 'input'), (4, 2, 'output'), (5, 1, 'output')])
def test_fpn_matches_torchvision(levels, start, extra):
    g = torch.Generator().manual_seed(levels * 10 + start)
    chans = [int(c) for c in torch.randint(3, 20, (levels,), generator=g)]
    out = 7
    if extra == 'output':
        chans[-1] = out                       # torchvision's P6P7 reads P5 only when C5 has out_channels channels
    used = levels - start
    if extra == 'pool':
        ours = FPN(chans, out, num_outs=used + 1, start_level=start)
        block = LastLevelMaxPool()
    else:
        ours = FPN(chans, out, num_outs=used + 2, start_level=start, relu_before_extra_convs=True,
                   add_extra_convs='on_input' if extra == 'input' else 'on_output')
        block = LastLevelP6P7(chans[-1], out)
    size = 2 ** (levels + 2)
    inputs = [torch.randn(2, c, size // 2 ** i, (size * 3 // 4) // 2 ** i) for i, c in enumerate(chans)]
    tv = _tv_copy(ours, block)
    with torch.no_grad():
        expected = list(tv({str(i): x for i, x in enumerate(inputs[start:])}).values())
        got = ours(inputs)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_registered_on_package_import():
    import learndet  # noqa: F401  (registers every module)
    assert BACKBONES.get('ResNet') is ResNet and BACKBONES.get('ResNetV1d') is ResNetV1d and NECKS.get('FPN') is FPN
    neck = build_from_cfg(dict(type='FPN', in_channels=[16, 32, 64, 128], out_channels=64, start_level=1,
                               add_extra_convs='on_input', num_outs=5), NECKS)
    backbone = build_from_cfg(dict(type='ResNet', depth=18, base_channels=16, stem_channels=16, frozen_stages=-1,
                                   norm_eval=False, init_cfg=None), BACKBONES)
    outs = neck(backbone(torch.randn(1, 3, 128, 128)))
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
