"""State-dict layouts of mmdetection 2.x checkpoints, written from mmdetection's and mmcv's architecture (not from
learndet's code), and random state dicts built to them: shared by the detectors' strict-loading tests."""
import torch


def r50_fpn_layout(p6_in_channels: int = 256) -> dict:
    """`backbone.*` and `neck.*` of a ResNet-50 + FPN (start_level=1, 5 outputs): torchvision's ResNet-50 names and
    shapes (mmdetection uses the same; the caffe style moves a stride, not a weight), mmcv ConvModule names
    (`.conv.`) in the FPN, whose P6 conv reads `p6_in_channels` (2048: on C5, RetinaNet; 256: on P5's output)."""
    import torchvision
    layout = {f'backbone.{k}': tuple(v.shape) for k, v in torchvision.models.resnet50().state_dict().items()
              if not k.startswith('fc.')}
    for i, c in enumerate([512, 1024, 2048]):                  # start_level=1: C3..C5
        layout[f'neck.lateral_convs.{i}.conv.weight'] = (256, c, 1, 1)
        layout[f'neck.lateral_convs.{i}.conv.bias'] = (256,)
    for i in range(5):                                          # P3..P5 outputs, then P6 and P7
        layout[f'neck.fpn_convs.{i}.conv.weight'] = (256, p6_in_channels if i == 3 else 256, 3, 3)
        layout[f'neck.fpn_convs.{i}.conv.bias'] = (256,)
    return layout


def head_towers_layout(gn: bool, conv_bias: bool, stacked_convs: int = 4, channels: int = 256) -> dict:
    "`bbox_head.{cls,reg}_convs.i.*`: ConvModules, `.conv` (with a bias if `conv_bias`), then `.gn` if `gn`."
    layout = {}
    for branch in ('cls_convs', 'reg_convs'):
        for i in range(stacked_convs):
            layout[f'bbox_head.{branch}.{i}.conv.weight'] = (channels, channels, 3, 3)
            if conv_bias:
                layout[f'bbox_head.{branch}.{i}.conv.bias'] = (channels,)
            if gn:
                layout[f'bbox_head.{branch}.{i}.gn.weight'] = (channels,)
                layout[f'bbox_head.{branch}.{i}.gn.bias'] = (channels,)
    return layout


def random_state(layout: dict, seed: int = 0, std: float = 0.02) -> dict:
    "Random tensors of the layout's shapes: positive running variances and scales, zero batch counters."
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in layout.items():
        if k.endswith('num_batches_tracked'):
            state[k] = torch.tensor(0)
        elif k.endswith('running_var') or k.endswith('.scale'):
            state[k] = torch.rand(shape, generator=g) + 0.5
        else:
            state[k] = torch.randn(shape, generator=g) * std
    return state
