"""Launcher helpers shared by ``tools/train.py`` and ``tools/test.py``.

MMEngine's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally,
so ``--launcher pytorch|slurm|mpi`` fails on a machine without CUDA, and its
default DDP wrapper passes ``device_ids=[LOCAL_RANK]``, which DDP rejects for
CPU modules. On such machines :func:`init_distributed` initialises a
``gloo`` process group itself before the Runner is built (the Runner then
skips its own ``init_dist``), :func:`use_cpu_ddp` makes the Runner build
DDP with ``device_ids=None`` and :func:`sync_bn_to_bn_on_cpu` trains SyncBN
models (mmseg's UperNet) with BN, with a logged warning. With CUDA nothing
changes except a clear error when a node starts more processes than it has
visible GPUs.
"""
import datetime
import inspect
import logging
import os
import subprocess
from typing import List, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config

__all__ = [
    'local_rank_from_env', 'check_gpu_count', 'init_distributed',
    'use_cpu_ddp', 'sync_bn_to_bn_on_cpu', 'setup_default_scope'
]

#: Norm types that synchronise statistics across processes (GPU only).
SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN')


def local_rank_from_env(launcher: str) -> int:
    """Return this process's rank on its node for ``launcher``."""
    if launcher == 'slurm':
        return int(os.environ.get('SLURM_LOCALID', 0))
    if launcher == 'mpi':
        return int(os.environ.get('OMPI_COMM_WORLD_LOCAL_RANK', 0))
    return int(os.environ.get('LOCAL_RANK', 0))


def check_gpu_count(launcher: str) -> None:
    """Fail clearly if this process has no GPU of its own.

    Args:
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.

    Raises:
        RuntimeError: If CUDA is available and the local rank is not below
            the number of visible GPUs.
    """
    if launcher == 'none' or not torch.cuda.is_available():
        return
    local_rank = local_rank_from_env(launcher)
    num_gpus = torch.cuda.device_count()
    if local_rank >= num_gpus:
        raise RuntimeError(
            f'Process with local rank {local_rank} needs its own GPU, but '
            f'only {num_gpus} GPU(s) are visible on this node '
            f'(CUDA_VISIBLE_DEVICES='
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
            '. The second argument of tools/dist_train.sh (GPUS) is the '
            f'number of processes on this node: use at most {num_gpus}, or '
            'more nodes (NNODES/NODE_RANK/MASTER_ADDR).')


def _timeout(dist_cfg: dict) -> Optional[datetime.timedelta]:
    timeout = dist_cfg.get('timeout')
    return None if timeout is None else datetime.timedelta(seconds=timeout)


def init_distributed(launcher: str, dist_cfg: Optional[dict] = None) -> bool:
    """Initialise a gloo process group on machines without CUDA.

    With CUDA this does nothing (besides :func:`check_gpu_count`): MMEngine's
    Runner initialises the group with ``env_cfg.dist_cfg`` as usual.

    Args:
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        dist_cfg (dict, optional): ``env_cfg.dist_cfg``; only ``timeout``
            (seconds) and ``port`` (slurm) are used on CPU, the backend is
            always gloo.

    Returns:
        bool: Whether this function initialised the process group.
    """
    check_gpu_count(launcher)
    if (launcher == 'none' or torch.cuda.is_available()
            or (torch_dist.is_available() and torch_dist.is_initialized())):
        return False
    dist_cfg = dict(dist_cfg or {})
    if launcher == 'slurm':
        # Same environment as mmengine's _init_dist_slurm, minus the GPU.
        os.environ['RANK'] = os.environ['SLURM_PROCID']
        os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
        os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
        if dist_cfg.get('port') is not None:
            os.environ['MASTER_PORT'] = str(dist_cfg['port'])
        os.environ.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in os.environ:
            node_list = os.environ['SLURM_NODELIST']
            os.environ['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {node_list} | head -n1')
    elif launcher == 'mpi':
        os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
        os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
        os.environ['LOCAL_RANK'] = os.environ.get(
            'OMPI_COMM_WORLD_LOCAL_RANK', '0')
        os.environ.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in os.environ:
            raise KeyError('The environment variable MASTER_ADDR is not set')
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}')
    kwargs = {}
    if _timeout(dist_cfg) is not None:
        kwargs['timeout'] = _timeout(dist_cfg)
    torch_dist.init_process_group(
        backend='gloo',
        init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)
    return True


def use_cpu_ddp(cfg: Config) -> None:
    """Make the Runner wrap the model in DDP with ``device_ids=None``.

    The Runner passes ``device_ids=[LOCAL_RANK]`` as a *default* argument,
    so an explicit ``device_ids=None`` in ``model_wrapper_cfg`` wins. Only
    applies to distributed runs without CUDA and to DDP-type wrappers.

    Args:
        cfg (Config): The full config (``cfg.launcher`` must be set).
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel

    wrapper_cfg = cfg.get('model_wrapper_cfg')
    if wrapper_cfg is None:
        # What the Runner builds by default, minus the CUDA device ids.
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False),
            device_ids=None)
        return
    wrapper_type = wrapper_cfg.get('type', 'MMDistributedDataParallel')
    if isinstance(wrapper_type, str):
        wrapper_type = MODEL_WRAPPERS.get(wrapper_type)
    if isinstance(wrapper_type, type) and issubclass(wrapper_type,
                                                     DistributedDataParallel):
        wrapper_cfg['device_ids'] = None


def _is_sync_bn(norm_cfg) -> bool:
    if not isinstance(norm_cfg, dict):
        return False
    norm_type = norm_cfg.get('type')
    if isinstance(norm_type, str):
        return norm_type.rpartition('.')[2] in SYNC_BN_TYPES
    return norm_type is torch.nn.SyncBatchNorm


def _as_bn(norm_cfg: dict) -> dict:
    norm_type = norm_cfg['type']
    scope, dot, _ = norm_type.rpartition('.') if isinstance(
        norm_type, str) else ('', '', '')
    return dict(norm_cfg, type=f'{scope}{dot}BN')


def _registered_class(type_name, scope: Optional[str]):
    """The class a model config's ``type`` builds (None if unknown)."""
    if not isinstance(type_name, str):
        return type_name if inspect.isclass(type_name) else None
    from mmengine.registry import MODELS
    keys = [type_name]
    if scope and '.' not in type_name:
        keys.insert(0, f'{scope}.{type_name}')  # the root does not switch
    for key in keys:
        try:
            cls = MODELS.get(key)
        except Exception:  # noqa: BLE001 (unknown scope or name)
            cls = None
        if cls is not None:
            return cls
    return None


def _replace_sync_bn(node, path: str, found: List[str],
                     scope: Optional[str]) -> None:
    """Rewrite SyncBN norm configs under ``node`` in place; record paths.

    Besides explicit ``type='SyncBN'`` entries, a module whose constructor
    *defaults* to SyncBN (mmseg's ``Feature2Pyramid``) gets an explicit BN
    argument.
    """
    if isinstance(node, dict):
        if _is_sync_bn(node):
            node.update(_as_bn(node))
            found.append(path)
        cls = _registered_class(node.get('type'), scope) \
            if 'type' in node else None
        if cls is not None:
            try:
                params = inspect.signature(cls.__init__).parameters
            except (TypeError, ValueError):
                params = {}
            for name, param in params.items():
                if name not in node and _is_sync_bn(param.default):
                    node[name] = _as_bn(param.default)
                    found.append(f'{path}.{name} (default)')
        for key, value in node.items():
            _replace_sync_bn(value, f'{path}.{key}', found, scope)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            _replace_sync_bn(value, f'{path}[{i}]', found, scope)


def sync_bn_to_bn_on_cpu(cfg: Config) -> List[str]:
    """Train SyncBN models with plain BN in multi-process CPU runs.

    ``torch.nn.SyncBatchNorm`` refuses CPU tensors whenever a process group
    is initialised (any ``--launcher`` but ``none``), so mmseg's UperNet
    configs (``norm_cfg=dict(type='SyncBN')``) cannot train on CPU with
    ``tools/dist_train.sh``. Without CUDA this replaces every SyncBN norm
    config in ``cfg.model`` by ``BN`` and gives modules whose constructor
    defaults to SyncBN (mmseg's ``Feature2Pyramid`` neck) an explicit BN
    (same parameters and buffers, so checkpoints are interchangeable;
    statistics become per process), and logs a warning naming them. With
    CUDA, or a non-distributed run, nothing changes.

    Args:
        cfg (Config): The full config (``cfg.launcher`` must be set).

    Returns:
        List[str]: Config paths of the replaced norm configs.
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return []
    found: List[str] = []
    if cfg.get('model') is not None:
        scope = setup_default_scope(cfg)  # registers what the types name
        _replace_sync_bn(cfg.model, 'model', found, scope)
    if found:
        from mmengine.logging import print_log
        print_log(
            'No CUDA: SyncBN synchronises batch statistics across processes '
            'on GPUs only, so this multi-process CPU run uses BN (per-process '
            f'statistics) instead for {found}. Checkpoints keep the same '
            'keys; results differ from a SyncBN run with the same total '
            'batch.',
            logger='current',
            level=logging.WARNING)
    return found


def setup_default_scope(cfg: Config) -> str:
    """Default to the mmpretrain scope and register the scope's modules.

    ``tools/train.py``/``tools/test.py`` serve mmpretrain configs (ours) and
    mmsegmentation configs (``default_scope = 'mmseg'``, e.g. the ADE20K
    benchmarks); the latter need mmseg's modules registered.

    Args:
        cfg (Config): The config; ``default_scope`` is set if missing.

    Returns:
        str: The default scope.
    """
    if cfg.get('default_scope') is None:
        cfg.default_scope = 'mmpretrain'
    scope = cfg.default_scope
    if scope == 'mmseg':
        from mmseg.utils import register_all_modules
    elif scope == 'mmpretrain':
        from mmpretrain.utils import register_all_modules
    else:
        return scope
    register_all_modules(init_default_scope=False)
    return scope
