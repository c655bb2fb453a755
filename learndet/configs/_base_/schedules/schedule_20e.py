# mmdetection 2.x's 20-epoch schedule: the 1x schedule to epoch 20, lr x0.1 at epochs 16 and 19 (0-based).
_base_ = 'schedule_1x.py'
lr_config = dict(step=[16, 19])
runner = dict(max_epochs=20)
