# The "1x" schedule of mmdetection 2.x: 12 epochs, lr x0.1 at the start of epochs 9 and 12 (0-based 8 and 11),
# 500 iterations of linear warmup. lr=0.02 is for a batch of 16 images (8 GPUs x 2): see auto_scale_lr.
optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001)
optimizer_config = dict(grad_clip=None)
lr_config = dict(
    policy='step',
    warmup='linear',
    warmup_iters=500,
    warmup_ratio=0.001,
    step=[8, 11])
runner = dict(type='EpochBasedRunner', max_epochs=12)
