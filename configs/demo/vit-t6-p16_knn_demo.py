# Weighted k-NN (k = 20, T = 0.07, DINO's protocol; no trained parameter) of
# the demo backbone: the model and val split of the demo linear probe
# (configs/demo/vit-t6-p16_linear_demo.py); the train split is read with the
# evaluation pipeline (no augmentation) as the k-NN keys.
#   python tools/analysis_tools/knn_eval.py configs/demo/vit-t6-p16_knn_demo.py \
#       --checkpoint work_dirs/demo/pretrain/epoch_12.pth
_base_ = './vit-t6-p16_linear_demo.py'

knn = dict(k=20, temperature=0.07, chunk_size=1024)
knn_train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    dataset=dict(
        type='CustomDataset',
        data_root='data/demo/',
        with_label=True,
        ann_file='meta/train.txt',
        data_prefix='train',
        pipeline={{_base_.test_pipeline}}))
