# The "2x" schedule of mmdetection 2.x: the 1x schedule run twice as long, lr x0.1 at epochs 16 and 22 (0-based).
_base_ = 'schedule_1x.py'
lr_config = dict(step=[16, 22])
runner = dict(max_epochs=24)
