# MaPeT ViT-T/16, k-CLIP tokens, cutting point 50, 300 epochs on ImageNet-1k.
# Launch: tools/dist_train.sh configs/mapet/mapet_vit-t_300e_in1k.py 64
_base_ = [
    '../_base_/models/mapet_vit-t.py',
    '../_base_/datasets/imagenet_mapet_pretrain.py',
    '../_base_/schedules/mapet_pretrain_300e.py',
    '../_base_/default_runtime.py',
]
