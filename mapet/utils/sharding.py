"""Sharded (FSDP) training through mmengine's ``FlexibleRunner``.

The ViT-L configs (``configs/mapet_large/``) select mmengine's
``FlexibleRunner`` with ``strategy=dict(type='FSDPStrategy', ...)``;
``tools/train.py`` builds whatever ``runner_type`` names. Two things
mmengine does not handle and :func:`prepare_fsdp` does:

* ``FSDPStrategy`` passes ``device_id=LOCAL_RANK`` (a CUDA index) to FSDP.
  Without CUDA (gloo, tests) FSDP needs ``device_id='cpu'``, set here as an
  explicit ``model_wrapper`` argument (it wins over the default).
* ``AmpOptimWrapper`` must use the sharded grad scaler (``use_fsdp=True``)
  with sharded parameters.
"""
import torch
from mmengine.config import Config

__all__ = ['uses_fsdp', 'prepare_fsdp', 'check_fsdp_runner']


def uses_fsdp(cfg: Config) -> bool:
    """Whether the config trains with mmengine's ``FSDPStrategy`` (or a
    subclass, such as ``VerifiedFSDPStrategy``)."""
    strategy = cfg.get('strategy')
    if not isinstance(strategy, dict):
        return False
    from mmengine._strategy import FSDPStrategy
    from mmengine.registry import STRATEGIES
    kind = strategy.get('type')
    cls = STRATEGIES.get(kind) if isinstance(kind, str) else kind
    return isinstance(cls, type) and issubclass(cls, FSDPStrategy)


def prepare_fsdp(cfg: Config) -> None:
    """Adapt an ``FSDPStrategy`` config to this machine (see module doc).

    Args:
        cfg (Config): The full config; unchanged without ``FSDPStrategy``.
    """
    if not uses_fsdp(cfg):
        return
    strategy = cfg.strategy
    if not torch.cuda.is_available():
        wrapper = strategy.get('model_wrapper') or dict(
            type='MMFullyShardedDataParallel')
        wrapper['device_id'] = 'cpu'
        strategy['model_wrapper'] = wrapper
    optim_wrapper = cfg.get('optim_wrapper')
    if optim_wrapper is not None and \
            optim_wrapper.get('type') == 'AmpOptimWrapper':
        optim_wrapper['use_fsdp'] = True


def check_fsdp_runner(cfg: Config) -> None:
    """Refuse an ``FSDPStrategy`` config whose runner ignores strategies.

    mmengine's ``Runner`` (and ``MaPeTRunner``) would silently train with
    DDP and ignore ``strategy``; only ``FlexibleRunner`` and its subclasses
    shard.

    Args:
        cfg (Config): The full config, with its default scope set.

    Raises:
        ValueError: If ``runner_type`` is not a ``FlexibleRunner``.
    """
    from mmengine.registry import RUNNERS
    from mmengine.runner import FlexibleRunner
    runner_type = cfg.get('runner_type', 'Runner')
    runner_cls = RUNNERS.get(runner_type) if isinstance(runner_type, str) \
        else runner_type
    if not (isinstance(runner_cls, type)
            and issubclass(runner_cls, FlexibleRunner)):
        raise ValueError(
            f'The config sets an FSDP strategy but runner_type='
            f'{runner_type!r}, which ignores strategies and would train '
            "unsharded; set runner_type = 'mmpretrain.MaPeTFlexibleRunner'"
            " (or mmengine's 'FlexibleRunner').")
