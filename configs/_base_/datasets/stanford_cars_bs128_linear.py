# Stanford-Cars linear probe (paper Table 5): the ImageNet linear-probe
# pipeline on mmpretrain's `StanfordCars` (196 classes, train/test split).
_base_ = './imagenet_bs128_linear.py'

dataset_type = 'StanfordCars'
data_root = 'data/stanfordcars'
data_preprocessor = dict(num_classes=196)
train_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, split='train'))
val_dataloader = dict(
    dataset=dict(type=dataset_type, data_root=data_root, split='test'))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
