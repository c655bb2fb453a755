"""Time learndet's FCOS R-50-FPN against torchvision's `fcos_resnet50_fpn`, in one run, on the CPU (or --device cuda).

    python benchmarks/bench_fcos.py                       # 2 images of 512x512, 5 repeats
    python benchmarks/bench_fcos.py --small --repeats 1   # smoke run (tests/test_fcos.py)

Both models are built untrained (torchvision: weights=None, weights_backbone=None, so its ResNet-50 has plain
trainable BatchNorm in every stage; learndet: the improved FCOS config — center sampling, stride-normalised
distances, centerness on the regression tower, GIoU, as torchvision's FCOS does — with the same trainable
pytorch-style backbone). They get the same images (torchvision's transform is set to keep the size) and the same
boxes. A training step is forward + loss + backward + an SGD step; inference is a no-grad forward with
post-processing. Prints a markdown table of median milliseconds over --repeats runs (interleaved) and the ratio
learndet / torchvision (< 1: learndet is faster).
"""
import argparse
import sys
from pathlib import Path

import torch
import torchvision

import learndet  # noqa: F401  (registers every component)
from learndet.cli import load_config
from learndet.models.detectors import build_detector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nms import timeit_pair  # noqa: E402  (median of interleaved runs, shared by the benchmarks)

CONFIG = 'fcos/fcos_center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_1x_coco.py'


def build_models(num_classes, size, device):
    cfg = load_config(CONFIG)
    cfg.model.backbone.update(style='pytorch', frozen_stages=-1, norm_eval=False, init_cfg=None,
                              norm_cfg=dict(type='BN', requires_grad=True))
    cfg.model.bbox_head.num_classes = num_classes
    ours = build_detector(cfg.model)
    ours.init_weights()
    peer = torchvision.models.detection.fcos_resnet50_fpn(weights=None, weights_backbone=None,
                                                          num_classes=num_classes, min_size=size, max_size=size)
    return ours.to(device), peer.to(device)


def make_batch(n, size, num_classes, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.rand(n, 3, size, size, generator=g)
    boxes, labels = [], []
    for _ in range(n):
        xy = torch.rand(5, 2, generator=g) * size * 0.6
        boxes.append(torch.cat([xy, xy + 16 + torch.rand(5, 2, generator=g) * size * 0.35], 1).to(device))
        labels.append(torch.randint(1, num_classes, (5,), generator=g).to(device))
    metas = [dict(img_shape=(size, size, 3), pad_shape=(size, size, 3), ori_shape=(size, size, 3), scale_factor=1.0)
             for _ in range(n)]
    return imgs.to(device), boxes, labels, metas


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--small', action='store_true', help='one 128x128 image, for a smoke test')
    p.add_argument('--size', type=int, default=512)
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: leave the default)')
    p.add_argument('--device', default='cpu')
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size, n = (128, 1) if args.small else (args.size, args.batch)
    dev, num_classes = torch.device(args.device), 80
    torch.manual_seed(0)
    ours, peer = build_models(num_classes, size, dev)
    imgs, boxes, labels, metas = make_batch(n, size, num_classes, dev)
    opt_ours = torch.optim.SGD(ours.parameters(), lr=1e-4, momentum=0.9)
    opt_peer = torch.optim.SGD(peer.parameters(), lr=1e-4, momentum=0.9)
    targets = [dict(boxes=b, labels=l) for b, l in zip(boxes, labels)]

    def step_ours():
        losses = ours(imgs, [dict(m) for m in metas], gt_bboxes=boxes, gt_labels=labels)
        opt_ours.zero_grad(); sum(losses.values()).backward(); opt_ours.step()

    def step_peer():
        losses = peer(list(imgs), targets)
        opt_peer.zero_grad(); sum(losses.values()).backward(); opt_peer.step()

    def infer_ours():
        with torch.no_grad():
            return ours(imgs, [dict(m) for m in metas], return_loss=False, rescale=True)

    def infer_peer():
        with torch.no_grad():
            return peer(list(imgs))

    ours.train(); peer.train()
    rows = [('training step', *timeit_pair(step_ours, step_peer, args.repeats, dev))]
    ours.eval(); peer.eval()
    assert len(infer_ours()) == n and len(infer_peer()) == n
    rows.append(('inference', *timeit_pair(infer_ours, infer_peer, args.repeats, dev)))
    print(f'{n} image(s) of {size}x{size}, {args.repeats} repeats, {torch.get_num_threads()} threads, {args.device}\n')
    print('| FCOS R-50-FPN | learndet ms | torchvision ms | ratio |')
    print('|---|---|---|---|')
    for name, t_ours, t_peer in rows:
        print(f'| {name} | {t_ours:.0f} | {t_peer:.0f} | {t_ours / t_peer:.2f} |')
    return rows


if __name__ == '__main__':
    main()
