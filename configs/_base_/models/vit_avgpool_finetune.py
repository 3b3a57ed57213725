# ViT classifier for fine-tuning a pre-trained backbone (paper section 5.1,
# Table 9): stock mmpretrain VisionTransformer, average pooling of the final
# patch tokens (BEiT/MAE style: no final norm, a fresh LayerNorm `ln2` on the
# pooled feature), then a linear softmax classifier. ViT-B by default; the
# paper's architectures are 12 layers, patch 16, layer scale 0.1.
embed_dims = 768
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch='deit-base',  # 768 / 3072 / 12 heads; deit-small, deit-tiny
        img_size=224,
        patch_size=16,
        layer_scale_init_value=0.1,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(
            type='Pretrained',
            # set it with --cfg-options model.backbone.init_cfg.checkpoint=...
            checkpoint='work_dirs/pretrain/epoch_300.pth',
            prefix='backbone.')),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=embed_dims,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5)]),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))

# `PretrainedInit` loads with strict=False and only logs mismatches; this hook
# re-checks the load before the first iteration and fails on anything else.
# Allowed: the pre-training final norm `ln1` and `mask_token` are dropped
# (average pooling uses the fresh `ln2` instead, as BEiT's fc_norm).
custom_hooks = [
    dict(
        type='PretrainedLoadCheckHook',
        allowed_missing=['ln2.*'],
        allowed_unexpected=['ln1.*', 'mask_token'])
]
