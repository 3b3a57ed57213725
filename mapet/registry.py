"""mapet registers every component into mmpretrain's registries.

A child registry of ours would be invisible from mmseg configs (mmengine only
resolves scoped names among direct children of the root), so we reuse
mmpretrain's: mmpretrain-scope configs write ``type='MaPeT'``, mmseg configs
write ``type='mmpretrain.MaPeTViT'`` with ``custom_imports=dict(imports=['mapet'])``.
"""
from mmpretrain.registry import (DATA_SAMPLERS, DATASETS, EVALUATORS, HOOKS,
                                 LOOPS, METRICS, MODEL_WRAPPERS, MODELS,
                                 OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                                 OPTIMIZERS, PARAM_SCHEDULERS, RUNNERS,
                                 TRANSFORMS, VISBACKENDS, VISUALIZERS,
                                 WEIGHT_INITIALIZERS)

__all__ = [
    'DATA_SAMPLERS', 'DATASETS', 'EVALUATORS', 'HOOKS', 'LOOPS', 'METRICS',
    'MODEL_WRAPPERS', 'MODELS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'OPTIM_WRAPPERS',
    'OPTIMIZERS', 'PARAM_SCHEDULERS', 'RUNNERS', 'TRANSFORMS', 'VISBACKENDS',
    'VISUALIZERS', 'WEIGHT_INITIALIZERS'
]
