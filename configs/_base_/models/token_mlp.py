# Tokens as input (paper Table 7), MLP head: embedding of the 8192-entry
# token vocabulary, Linear to 192, ReLU, average pool, Linear to 1000.
num_classes = 1000
hidden_dims = 192

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(type='TokenDataPreprocessor'),
    backbone=dict(
        type='TokenMLP',
        vocab_size=8192,
        embed_dims=hidden_dims,
        hidden_dims=hidden_dims,
        init_cfg=dict(
            type='TruncNormal', layer=['Linear', 'Embedding'], std=0.02)),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=hidden_dims,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
