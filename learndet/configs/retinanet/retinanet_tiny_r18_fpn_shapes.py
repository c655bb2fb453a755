# A RetinaNet small enough to train on a laptop CPU: the R-50 RetinaNet's design at a quarter of the width
# (ResNet-18 with 16 base channels, FPN and head 64 wide, 2 stacked head convs), trained from scratch on the
# synthetic shapes set (256 px images, objects 8-150 px, 4 classes). Everything not set here is the R-50 config's.
_base_ = [
    '../_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/shapes_detection.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        depth=18,
        base_channels=16,                 # stage widths 16, 32, 64, 128 (ResNet-18: 64 ... 512)
        stem_channels=16,
        frozen_stages=-1,                 # from scratch: every stage learns
        norm_eval=False,                  # ... and so do the BatchNorm statistics (batch 8)
        init_cfg=None),                   # no ImageNet weights
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=64),
    bbox_head=dict(
        num_classes=4,
        in_channels=64,
        feat_channels=64,
        stacked_convs=2,
        anchor_generator=dict(octave_base_scale=2)))   # anchors 16-25 px at stride 8: the shapes are small
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
optimizer_config = dict(_delete_=True, grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(warmup_iters=100)
log_config = dict(interval=10)
