# Runtime settings shared by every config (mmdetection 2.x's default_runtime.py).
checkpoint_config = dict(interval=1)               # CheckpointHook: every epoch
log_config = dict(
    interval=50,                                   # average and log every 50 iterations
    hooks=[
        dict(type='TextLoggerHook'),               # console + {work_dir}/{timestamp}.log.json
        # dict(type='ProgressBarHook', plot=True), # fastprogress bars and a live loss plot in Jupyter
    ])
custom_hooks = []                                  # e.g. [dict(type='EMAHook', momentum=0.0002, priority='ABOVE_NORMAL')]
dist_params = dict(backend='nccl')                 # 'gloo' on CPU
log_level = 'INFO'
load_from = None                                   # weights only, training starts at epoch 0
resume_from = None                                 # model, optimizer, schedule, counters and random state
workflow = [('train', 1)]                          # e.g. [('train', 1), ('val', 1)] to log validation losses
# Linear scaling rule: lr is set for base_batch_size images per iteration (8 GPUs x 2 images).
# With enable=True the training script scales it to num_gpus x samples_per_gpu.
auto_scale_lr = dict(enable=False, base_batch_size=16)
