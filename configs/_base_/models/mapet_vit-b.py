# MaPeT ViT-B/16 (paper Table 8): 12 layers, 768 dims, 12 heads, FFN 3072,
# layer scale 0.1, drop path 0.1, absolute position embeddings; cutting
# point c = 60 context patches (136 of 196 patches predicted).
vocab_size = 8192  # k-CLIP and VQ-KD codebooks
model = dict(
    type='MaPeT',
    backbone=dict(
        type='MaPeTViT',
        arch='deit-b',  # = mmpretrain VisionTransformer 'deit-base'
        img_size=224,
        patch_size=16,
        mode='mapet',
        cutting_point=60,
        drop_rate=0.,
        drop_path_rate=0.1,
        layer_scale_init_value=0.1,
        final_norm=True,
        out_type='raw',
        init_cfg=[
            dict(type='TruncNormal', std=0.02, layer='Linear'),
            dict(type='TruncNormal', std=0.02, layer='Conv2d'),
            dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
        ]),
    head=dict(
        type='VisualTokenHead',
        embed_dims=768,
        num_embed=vocab_size,
        loss=dict(type='CrossEntropyLoss')))
