# FCOS with a caffe-style ResNet-50 + FPN and a GN head: the model of mmdetection 2.x's
# configs/fcos/fcos_r50_caffe_fpn_gn-head_1x_coco.py (mmdetection keeps it in that one file; learndet puts it here so
# that the COCO configs and the tiny shapes config share it). Same keys, same values, so a 2.x checkpoint loads
# strictly. The caffe-style backbone puts the stride on the 1x1 conv, freezes BatchNorm and wants BGR input minus the
# mean, std 1; its weights (open-mmlab://detectron/resnet50_caffe) learndet never downloads: give checkpoint=PATH
# to a converted file.
model = dict(
    type='FCOS',
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),   # caffe weights: BatchNorm frozen as affine layers
        norm_eval=True,
        style='caffe',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron/resnet50_caffe')),
    neck=dict(
        type='FPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        add_extra_convs='on_output',                    # P6 from P5 (not C5), P7 from P6
        num_outs=5,
        relu_before_extra_convs=True),
    bbox_head=dict(
        type='FCOSHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        strides=[8, 16, 32, 64, 128],                   # regress_ranges: the default (-1,64) ... (512, 1e8)
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='IoULoss', loss_weight=1.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    # mmdetection's file also has train_cfg.assigner=MaxIoUAssigner(...), which its FCOSHead never uses (the head
    # assigns points itself); learndet warns about it, so it is left out here.
    train_cfg=dict(allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100))
