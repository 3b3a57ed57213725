# ImageNet-1k weighted k-NN of a frozen pre-trained ViT-S/16 (DINO's
# protocol: cosine similarity, k = 20 neighbours, votes weighted
# exp(s / 0.07); no trained parameter). Same backbone, representation
# (final norm + average pooling) and val split as the linear probe
# ./vit-s-p16_linear-8xb128-coslr-50e_in1k.py; the train split is read with
# the evaluation pipeline (no augmentation) as the k-NN keys.
#   torchrun --nproc_per_node 8 tools/analysis_tools/knn_eval.py \
#       configs/benchmarks/classification/vit-s-p16_knn-k20-t0.07_in1k.py \
#       --checkpoint work_dirs/mapet_vit-s/backbone.pth --out knn.json
_base_ = './vit-s-p16_linear-8xb128-coslr-50e_in1k.py'

knn = dict(k=20, temperature=0.07, chunk_size=1024)
knn_train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    dataset=dict(
        _base_.train_dataloader.dataset, pipeline=_base_.test_pipeline))
