# FGVC-Aircraft linear probe (paper Table 5): the ImageNet linear-probe
# pipeline on mmpretrain's `FGVCAircraft` (100 variants, trainval/test).
_base_ = './imagenet_bs128_linear.py'

dataset_type = 'FGVCAircraft'
data_root = 'data/fgvc_aircraft'
data_preprocessor = dict(num_classes=100)
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, split='trainval'))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, split='test'))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
