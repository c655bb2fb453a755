# ATSS R-50-FPN, 1x schedule on COCO (mmdetection 2.x's configs/atss/atss_r50_fpn_1x_coco.py; box AP 39.4 in its
# model zoo). The model is _base_/models/atss_r50_fpn.py. lr 0.01 for 8 GPUs x 2 images.
_base_ = [
    '../_base_/models/atss_r50_fpn.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001)
