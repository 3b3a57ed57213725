# Tiny MaPeT pre-training on a fixed batch of 8 demo images (32 px, 8x8
# patches, cutting point 4), no colour jitter: the workload of the core
# training test.
_base_ = './_tiny_mapet_base.py'

max_iters = 30

train_dataloader = dict(
    sampler=dict(shuffle=False),
    # The same 8 images in every batch; repeated so that the infinite
    # iterator does not restart (and sleep) every iteration.
    dataset=dict(
        _delete_=True,
        type='RepeatDataset',
        times=max_iters,
        dataset=dict(
            _base_.train_dataloader.dataset,
            indices=8,
            pipeline=[
                t for t in _base_.train_dataloader.dataset.pipeline
                if t['type'] != 'ColorJitter'
            ])))

train_cfg = dict(max_iters=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
