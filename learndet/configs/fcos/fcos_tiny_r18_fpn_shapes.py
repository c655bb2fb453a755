# An FCOS small enough to train on a laptop CPU: the improved R-50 FCOS (center sampling, stride-normalised
# distances, centerness on the regression tower, GIoU) at a quarter of the width (ResNet-18 with 16 base channels,
# FPN and head 64 wide, 2 stacked head convs, GN with 16 groups), trained from scratch on the synthetic shapes set
# (256 px images, objects 8-150 px, 4 classes) with the RetinaNet tiny config's AdamW recipe. Everything not set
# here is the R-50 model's (_base_/models/fcos_r50_caffe_fpn_gn-head.py).
_base_ = [
    '../_base_/models/fcos_r50_caffe_fpn_gn-head.py',
    '../_base_/datasets/shapes_detection.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        depth=18,
        base_channels=16,                 # stage widths 16, 32, 64, 128
        stem_channels=16,
        frozen_stages=-1,                 # from scratch: every stage and the BatchNorm statistics learn
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=64),
    bbox_head=dict(
        num_classes=4,
        in_channels=64,
        stacked_convs=2,
        feat_channels=64,
        norm_cfg=dict(type='GN', num_groups=16, requires_grad=True),
        center_sampling=True,             # the improved FCOS's tricks (fcos_center-normbbox-centeronreg-giou_...)
        norm_on_bbox=True,
        centerness_on_reg=True,
        conv_bias=True,
        loss_bbox=dict(type='GIoULoss', loss_weight=1.0)),
    test_cfg=dict(nms=dict(type='nms', iou_threshold=0.6)))
# Measured with `learndet train fcos/fcos_tiny_r18_fpn_shapes.py` on the shapes set (400 train / 100 val images,
# 256 px), 2-core CPU shared with another training run and the test suite, so the wall time is an upper bound:
# 12 epochs took 31 min (0.2 s/iteration, about 2.5 min in all, when the CPU is free) and reached bbox_mAP 0.140,
# mAP@0.5 0.261 (epoch by epoch: 0.013, 0.033, 0.048, 0.057, 0.079, 0.084, 0.111, 0.122, 0.131, 0.136, 0.137,
# 0.140). Same data, schedule and optimizer: the tiny ATSS 0.166 / 0.271, the tiny RetinaNet 0.136 / 0.250
# (benchmarks/README.md, "FCOS, ATSS and RetinaNet side by side").
optimizer = dict(_delete_=True, type='AdamW', lr=0.001, weight_decay=0.05)
optimizer_config = dict(_delete_=True, grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(warmup_iters=100, step=[8, 11])
runner = dict(type='EpochBasedRunner', max_epochs=12)
checkpoint_config = dict(interval=1, max_keep_ckpts=3)
log_config = dict(interval=10)
