# Tokens as input (paper Table 7): classify ImageNet-1k from the 14 x 14
# k-CLIP tokens alone with ViT-T.
_base_ = [
    '../_base_/models/token_vit-t.py',
    '../_base_/datasets/imagenet_tokens_kclip.py',
    '../_base_/schedules/tokens_as_input_adamw_100e.py',
    '../_base_/default_runtime.py',
]
