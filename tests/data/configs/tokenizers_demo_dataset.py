# Demo dataset (tools/dataset_converters/make_demo_dataset.py) in mmpretrain
# format, for the tokenizer tool tests. Paths are relative to the repo root;
# tests pass --data-root.
dataset_type = 'CustomDataset'
data_root = 'data/demo'
train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='train',
        pipeline=[]))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/val.txt',
        data_prefix='val',
        pipeline=[]))
