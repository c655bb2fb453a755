# RetinaNet with a ResNet-50 + FPN, as mmdetection 2.x's _base_/models/retinanet_r50_fpn.py: same keys, same values,
# so a 2.x checkpoint of this model loads strictly. The backbone starts from ImageNet weights, which learndet
# never downloads: put torchvision's resnet50 file in the torch hub cache or give checkpoint=PATH.
model = dict(
    type='RetinaNet',
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,                          # the stem and stage 1 keep their ImageNet weights
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,                           # BatchNorm statistics stay as pretrained (batches are small)
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(
        type='FPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,                            # P3..P5 from C3..C5; C2 is not used
        add_extra_convs='on_input',               # P6, P7 by stride-2 convs, the first on C5
        num_outs=5),
    bbox_head=dict(
        type='RetinaHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=4,                  # anchor size = stride x 4 x 2^(i/3), i = 0, 1, 2
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.4,
            min_pos_iou=0,
            ignore_iof_thr=-1),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100))
