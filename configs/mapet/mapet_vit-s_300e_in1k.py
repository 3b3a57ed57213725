# MaPeT ViT-S/16, k-CLIP tokens, cutting point 50, 300 epochs on ImageNet-1k.
# Launch (on each of 8 nodes): NNODES=8 NODE_RANK=$i MASTER_ADDR=$HEAD tools/dist_train.sh configs/mapet/mapet_vit-s_300e_in1k.py 8
_base_ = [
    '../_base_/models/mapet_vit-s.py',
    '../_base_/datasets/imagenet_mapet_pretrain.py',
    '../_base_/schedules/mapet_pretrain_300e.py',
    '../_base_/default_runtime.py',
]
