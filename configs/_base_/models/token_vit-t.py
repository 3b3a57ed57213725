# Tokens as input (paper Table 7), ViT-T (DeiT-tiny: 12 layers, 192 dims,
# 3 heads) over embeddings of the 14 x 14 tokens (8192-entry vocabulary),
# average pooled; the MLP model with its backbone swapped.
_base_ = './token_mlp.py'

vit_dims = 192
model = dict(
    backbone=dict(
        _delete_=True,
        type='TokenViT',
        vocab_size=8192,
        grid_size=14,
        arch='deit-tiny',
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=[
            dict(type='TruncNormal', layer=['Linear', 'Embedding'], std=0.02),
            dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0),
        ]),
    neck=None,
    head=dict(in_channels=vit_dims))
