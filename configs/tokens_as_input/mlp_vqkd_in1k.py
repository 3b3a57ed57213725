# Tokens as input, MLP head, BEiT v2 VQ-KD tokens (store written with
# configs/_base_/tokenizers/vqkd_beitv2.py).
_base_ = ['./mlp_kclip_in1k.py']

token_store = 'data/tokens/in1k_vqkd'
train_pipeline = [
    dict(
        type='LoadVisualTokens',
        store=token_store + '/train',
        grid_size={{_base_.grid_size}},
        vocab_size={{_base_.vocab_size}},
        crop='center'),
    dict(type='PackInputs', input_key='visual_tokens'),
]
val_pipeline = [
    dict(
        type='LoadVisualTokens',
        store=token_store + '/val',
        grid_size={{_base_.grid_size}},
        vocab_size={{_base_.vocab_size}},
        crop='center'),
    dict(type='PackInputs', input_key='visual_tokens'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
