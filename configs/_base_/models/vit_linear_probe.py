# Linear probe of a frozen pre-trained ViT (paper, supplementary section 8):
# every backbone parameter frozen, the final (pre-trained) LayerNorm applied,
# patch tokens average-pooled, then one linear layer. ViT-B by default.
embed_dims = 768
num_layers = 12
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch='deit-base',
        img_size=224,
        patch_size=16,
        layer_scale_init_value=0.1,
        frozen_stages=num_layers,
        out_type='featmap',
        final_norm=True,
        init_cfg=dict(
            type='Pretrained',
            # set it with --cfg-options model.backbone.init_cfg.checkpoint=...
            checkpoint='work_dirs/pretrain/epoch_300.pth',
            prefix='backbone.')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=embed_dims,
        loss=dict(type='CrossEntropyLoss'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.01)]))

# Everything but the pre-training-only `mask_token` must load.
custom_hooks = [
    dict(type='PretrainedLoadCheckHook', allowed_unexpected=['mask_token'])
]
