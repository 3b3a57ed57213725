"""Check, once before training, that visual-token targets fit the model.

Three places name a vocabulary: the head (or CAE neck) of the model, the
token store (``LoadVisualTokens(vocab_size=...)``, itself checked against the
store's manifest when the transform is built) and an online tokenizer
(``target_generator.vocab_size``). They must agree, and the stored tokens
are aligned with the fixed crop only if no geometric transform moves the
pixels after ``LoadVisualTokens``. Both are checked here, when the runner
builds the training loop, so the per-step path checks nothing.
"""
from typing import Any, Iterator, List, Optional

from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmcv.transforms import RandomFlip as MMCVRandomFlip
from mmcv.transforms import RandomResize as MMCVRandomResize
from mmpretrain.datasets import transforms as mmpretrain_transforms

from mapet.datasets.transforms import LoadVisualTokens

__all__ = [
    'TargetMismatchError', 'check_visual_token_targets', 'flatten_transforms',
    'leaf_pipelines'
]

# Transforms that move pixels relative to the fixed crop the tokens were
# extracted on (flips, random crops and resizes, geometric augmentations).
GEOMETRIC_TRANSFORMS = (
    MMCVRandomFlip,
    MMCVRandomResize,
    mmpretrain_transforms.RandomFlip,
    mmpretrain_transforms.RandomResize,
    mmpretrain_transforms.RandomResizedCrop,
    mmpretrain_transforms.RandomResizedCropAndInterpolationWithTwoPic,
    mmpretrain_transforms.MAERandomResizedCrop,
    mmpretrain_transforms.RandomCrop,
    mmpretrain_transforms.EfficientNetRandomCrop,
    mmpretrain_transforms.RandomTranslatePad,
    mmpretrain_transforms.RandAugment,
    mmpretrain_transforms.AutoAugment,
    mmpretrain_transforms.Rotate,
    mmpretrain_transforms.Shear,
    mmpretrain_transforms.Translate,
)


class TargetMismatchError(ValueError):
    """Visual-token targets would not match the model or the pixels."""


def flatten_transforms(transforms: Any) -> Iterator[Any]:
    """Every transform of a pipeline, unwrapping Compose/PerSampleRNG."""
    inner = getattr(transforms, 'transforms', None)
    if isinstance(inner, (list, tuple)):
        for t in inner:
            yield from flatten_transforms(t)
    elif inner is not None and inner is not transforms:
        yield from flatten_transforms(inner)
    else:
        yield transforms


def leaf_pipelines(dataset: Any) -> List[Any]:
    if hasattr(dataset, 'datasets'):
        return [p for d in dataset.datasets for p in leaf_pipelines(d)]
    if hasattr(dataset, 'dataset') and not hasattr(dataset, 'pipeline'):
        return leaf_pipelines(dataset.dataset)
    pipeline = getattr(dataset, 'pipeline', None)
    return [] if pipeline is None else [pipeline]


def check_visual_token_targets(model: Any, dataset: Any) -> None:
    """Raise if the targets' vocabulary or alignment is wrong.

    Args:
        model: The (unwrapped) model; one with a ``vocab_size`` attribute
            predicts visual tokens, others are not checked.
        dataset: The training dataset.

    Raises:
        TargetMismatchError: Naming the two disagreeing settings, or the
            geometric transform that follows ``LoadVisualTokens``.
    """
    for pipeline in leaf_pipelines(dataset):
        transforms = list(flatten_transforms(pipeline))
        loaders = [
            i for i, t in enumerate(transforms)
            if isinstance(t, LoadVisualTokens)
        ]
        if not loaders:
            continue
        for t in transforms[:loaders[0]]:
            if isinstance(t, MMCVLoadImageFromFile):
                raise TargetMismatchError(
                    f'{type(t).__name__} loads the images of a pipeline '
                    'with LoadVisualTokens: it decodes with mmcv/cv2, but '
                    'the tokens were extracted from images decoded by '
                    f'mapet ({transforms[loaders[0]].decoder!r}); EXIF-'
                    'rotated, 16-bit, palette and CMYK images would give '
                    "other pixels. Use dict(type='LoadImageForTokens').")
        for t in transforms[loaders[0] + 1:]:
            if isinstance(t, GEOMETRIC_TRANSFORMS):
                raise TargetMismatchError(
                    f'{type(t).__name__} follows LoadVisualTokens in the '
                    'training pipeline: the stored tokens belong to the '
                    "fixed centre crop, so a flip, random crop or geometric "
                    'augmentation would misalign tokens and patches. Remove '
                    'it (the paper pre-trains with colour jitter only).')
        head_vocab: Optional[int] = getattr(model, 'vocab_size', None)
        for i in loaders:
            store_vocab = transforms[i].vocab_size
            if head_vocab is not None and store_vocab != head_vocab:
                raise TargetMismatchError(
                    f'The model predicts {head_vocab} visual tokens but '
                    f'LoadVisualTokens reads a store with vocab_size='
                    f'{store_vocab} ({transforms[i].store_path}); use the '
                    'store of the same tokenizer or set the head '
                    f'vocabulary to {store_vocab}.')
