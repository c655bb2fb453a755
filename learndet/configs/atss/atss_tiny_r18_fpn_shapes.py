# An ATSS small enough to train on a laptop CPU: the R-50 ATSS's design (atss_r50_fpn_1x_coco.py) at a quarter of
# the width (ResNet-18 with 16 base channels, FPN and head 64 wide, 2 stacked GN head convs), trained from scratch
# on the synthetic shapes set (256 px images, objects 8-150 px, 4 classes) with the tiny RetinaNet's optimizer
# (retinanet/retinanet_tiny_r18_fpn_shapes.py). Everything not set here is the R-50 model's.
_base_ = [
    '../_base_/models/atss_r50_fpn.py',
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
        stacked_convs=2,
        feat_channels=64,                 # GroupNorm: 32 groups of 2 channels
        anchor_generator=dict(octave_base_scale=4)))   # one 32 px anchor at stride 8 (R-50: 64 px): the shapes are small
# Measured with `learndet train atss/atss_tiny_r18_fpn_shapes.py` on the shapes set (400 train / 100 val images,
# 256 px), 2-core CPU shared with another training run and the test suite, so the wall time is an upper bound:
# 12 epochs took 35 min (about 3 min in all when the CPU is free) and reached bbox_mAP 0.166, mAP@0.5 0.271
# (epoch by epoch: 0.030, 0.035, 0.091, 0.092, 0.117, 0.130, 0.140, 0.148, 0.158, 0.164, 0.164, 0.166). Same data,
# schedule and optimizer: the tiny FCOS 0.140 / 0.261, the tiny RetinaNet 0.136 / 0.250 (benchmarks/README.md).
optimizer = dict(_delete_=True, type='AdamW', lr=0.001, weight_decay=0.05)
optimizer_config = dict(_delete_=True, grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(warmup_iters=100, step=[8, 11])
runner = dict(type='EpochBasedRunner', max_epochs=12)
checkpoint_config = dict(interval=1, max_keep_ckpts=3)
log_config = dict(interval=10)
