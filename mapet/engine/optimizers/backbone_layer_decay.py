"""Layer-wise learning-rate decay for any model with a ViT-style backbone.

mmpretrain's :class:`LearningRateDecayOptimWrapperConstructor` asks the
*top-level* model for ``get_layer_depth`` (mmpretrain classifiers forward it
to their backbone), and mmseg's ``LayerDecayOptimizerConstructor`` dispatches
on backbone class names. A mmseg ``EncoderDecoder`` has neither, so this
constructor asks ``model.backbone.get_layer_depth`` directly: backbone
parameters get the depth their backbone reports, everything else (necks,
decode and auxiliary heads) gets the top depth, i.e. the full learning rate.
"""
from typing import Callable, List, Optional, Tuple

from mmpretrain.engine.optimizers import \
    LearningRateDecayOptimWrapperConstructor
from torch import nn

from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BackboneLayerDecayOptimWrapperConstructor(
        LearningRateDecayOptimWrapperConstructor):
    """Layer-wise lr decay driven by ``model.backbone.get_layer_depth``.

    The parameter-wise options are those of
    mmpretrain's :class:`LearningRateDecayOptimWrapperConstructor`
    (``layer_decay_rate``, ``flat_decay_mult``, ``custom_keys`` ...). A
    parameter named ``backbone.<name>`` gets
    ``lr * layer_decay_rate ** (num_depths - 1 - depth)`` where
    ``depth, num_depths = model.backbone.get_layer_depth(<name>)``; any
    other parameter gets depth ``num_depths - 1`` (scale 1).

    From mmseg-scope configs refer to it with the scope prefix::

        optim_wrapper = dict(
            constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.75, flat_decay_mult=0.0))

    Args:
        optim_wrapper_cfg (dict): The optimizer wrapper config.
        paramwise_cfg (dict, optional): Parameter-wise options, see above.
    """

    backbone_prefix = 'backbone.'

    def _backbone_depth_fn(
            self, model: nn.Module) -> Callable[[str], Tuple[int, int]]:
        """Build ``param_name -> (depth, num_depths)`` for ``model``.

        Args:
            model (nn.Module): The model whose ``backbone`` defines depths.

        Returns:
            Callable[[str], Tuple[int, int]]: The depth function.

        Raises:
            NotImplementedError: When ``model.backbone`` is missing or has
                no ``get_layer_depth`` method.
        """
        backbone = getattr(model, 'backbone', None)
        if backbone is None or not hasattr(backbone, 'get_layer_depth'):
            raise NotImplementedError(
                f'{type(self).__name__} needs `model.backbone.'
                f'get_layer_depth(name)`; {type(model).__name__} has '
                f'backbone {type(backbone).__name__}, which does not '
                'provide it. Use a backbone with `get_layer_depth` (e.g. '
                'mmpretrain VisionTransformer or mapet MaPeTViT) or drop '
                '`layer_decay_rate`.')
        names = [name for name, _ in backbone.named_parameters()]
        if not names:
            raise ValueError('The backbone has no parameters to decay.')
        _, num_depths = backbone.get_layer_depth(names[0])
        prefix = self.backbone_prefix

        def get_layer_depth(param_name: str) -> Tuple[int, int]:
            if param_name.startswith(prefix):
                return backbone.get_layer_depth(param_name[len(prefix):])
            # necks and heads: the top depth, i.e. the full learning rate
            return num_depths - 1, num_depths

        return get_layer_depth

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   get_layer_depth: Optional[Callable] = None,
                   **kwargs) -> None:
        """Add the parameters of ``module`` with layer-wise learning rates.

        Args:
            params (List[dict]): Parameter groups, extended in place.
            module (nn.Module): The module (the whole model at top level).
            prefix (str): Name prefix of ``module``. Defaults to ''.
            get_layer_depth (Callable, optional): Depth function; built
                from ``module.backbone`` at the top level. Defaults to None.
        """
        if get_layer_depth is None and prefix == '':
            get_layer_depth = self._backbone_depth_fn(module)
        super().add_params(
            params, module, prefix=prefix, get_layer_depth=get_layer_depth)
