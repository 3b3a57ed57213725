# ImageNet-1k linear-probe data (paper, supplementary section 8): random
# resized crop + horizontal flip for training, centre crop for evaluation.
# 128 images per GPU x 8 GPUs = the recipe's batch of 1024.
_base_ = './imagenet_bs128_finetune.py'

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale={{_base_.img_size}},
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
