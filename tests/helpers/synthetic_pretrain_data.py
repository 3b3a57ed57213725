"""A synthetic MaPeT pre-training dataset for engine tests (no files).

``SyntheticPermutationDataset`` yields packed samples (uint8 image, a
permutation and visual tokens), deterministic per index, so a config can
train MaPeT without images or a token store. Registered into mmpretrain's
DATASETS when a config lists this module in ``custom_imports``.
"""
import torch
from mmpretrain.registry import DATASETS
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset


@DATASETS.register_module()
class SyntheticPermutationDataset(Dataset):
    """``length`` samples of (3, size, size) uint8 images with a random
    permutation of ``num_patches`` and tokens in ``[0, vocab)``."""

    def __init__(self, length=8, size=32, num_patches=16, vocab=32,
                 pipeline=None, **kwargs):
        self.length, self.size = length, size
        self.num_patches, self.vocab = num_patches, vocab
        self.metainfo = {}

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(1000 + i)
        sample = DataSample()
        sample.set_field(torch.randperm(self.num_patches, generator=g),
                         'permutation')
        sample.set_field(
            torch.randint(self.vocab, (self.num_patches, ), generator=g),
            'visual_tokens')
        img = torch.randint(
            256, (3, self.size, self.size), generator=g, dtype=torch.uint8)
        return dict(inputs=img, data_samples=sample)
