"""mapet's registries: mmpretrain's, plus a ``mapet`` scope node.

Components register into **mmpretrain's** registries: a child registry of
ours would be invisible from mmseg configs (mmengine resolves scoped names
among the root's children only), so mmpretrain-scope configs write
``type='MaPeT'`` and mmseg configs ``type='mmpretrain.MaPeTViT'`` with
``custom_imports=dict(imports=['mapet'])``.

``_base_ = 'mapet::...'`` makes mmengine stamp ``_scope_='mapet'`` on the
base's objects, and building them then looks for a registry of scope
``mapet`` (importing ``mapet.registry``, i.e. registering our components,
on the way). :data:`SCOPE_REGISTRIES` are those nodes: children of
mmpretrain's registries holding nothing themselves, so a ``mapet``-scoped
name resolves among our components and mmpretrain's; a name neither knows
(our segmentation configs' mmseg types) is looked up in mmseg's registry.
Creating them adds children to mmpretrain's registry tree, the one change
``import mapet`` makes besides registration.
"""
from typing import Any, Dict, Optional, Type

from mmengine.registry import Registry
from mmpretrain import registry as mmpretrain_registry
from mmpretrain.registry import (DATA_SAMPLERS, DATASETS, EVALUATORS, HOOKS,
                                 LOOPS, METRICS, MODEL_WRAPPERS, MODELS,
                                 OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                                 OPTIMIZERS, PARAM_SCHEDULERS, RUNNERS,
                                 TRANSFORMS, VISBACKENDS, VISUALIZERS,
                                 WEIGHT_INITIALIZERS)

SCOPE = 'mapet'
# Our segmentation configs build mmseg objects under the `mapet` scope too.
FALLBACK_SCOPE = 'mmseg'


class MapetScopeRegistry(Registry):
    """A ``mapet``-scope node under one of mmpretrain's registries.

    Lookups go to the parent (mmpretrain, then mmengine's root), then to the
    registry of the same kind in mmseg's scope, when mmseg is installed.
    """

    def get(self, key: str) -> Optional[Type]:
        obj = super().get(key)
        if obj is None and '.' not in key:
            root = self._get_root_registry()
            fallback = root._search_child(FALLBACK_SCOPE)
            if fallback is None:
                try:
                    import_mmseg_registry()
                except ImportError:
                    return None
                fallback = root._search_child(FALLBACK_SCOPE)
            if fallback is not None:
                obj = fallback.get(key)
        return obj


def import_mmseg_registry() -> None:
    """Import mmseg's registry so that its scope node exists."""
    import mmseg.registry  # noqa: F401


def _scope_node(parent: Registry) -> Registry:
    # `locations`: without one, mmengine's first lookup in a scope listed in
    # MODULE2PACKAGE calls `mapet.utils.register_all_modules`, which we do
    # not have; importing `mapet` registers everything.
    return MapetScopeRegistry(
        parent.name, parent=parent, scope=SCOPE, locations=[SCOPE])


#: ``{registry name: mapet-scope node}`` for every mmpretrain registry.
SCOPE_REGISTRIES: Dict[str, Any] = {
    name: _scope_node(getattr(mmpretrain_registry, name))
    for name in ('DATA_SAMPLERS', 'DATASETS', 'EVALUATORS', 'HOOKS', 'LOOPS',
                 'METRICS', 'MODEL_WRAPPERS', 'MODELS',
                 'OPTIM_WRAPPER_CONSTRUCTORS', 'OPTIM_WRAPPERS', 'OPTIMIZERS',
                 'PARAM_SCHEDULERS', 'RUNNERS', 'TRANSFORMS', 'VISBACKENDS',
                 'VISUALIZERS', 'WEIGHT_INITIALIZERS', 'TASK_UTILS',
                 'BATCH_AUGMENTS', 'FUNCTIONS', 'INFERENCERS', 'LOG_PROCESSORS')
    if hasattr(mmpretrain_registry, name)
}

__all__ = [
    'DATA_SAMPLERS', 'DATASETS', 'EVALUATORS', 'HOOKS', 'LOOPS', 'METRICS',
    'MODEL_WRAPPERS', 'MODELS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'OPTIM_WRAPPERS',
    'OPTIMIZERS', 'PARAM_SCHEDULERS', 'RUNNERS', 'TRANSFORMS', 'VISBACKENDS',
    'VISUALIZERS', 'WEIGHT_INITIALIZERS', 'SCOPE_REGISTRIES'
]
