"""Launcher helpers shared by ``tools/train.py`` and ``tools/test.py``.

MMEngine's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally,
so ``--launcher pytorch|slurm|mpi`` fails on a machine without CUDA, and its
default DDP wrapper passes ``device_ids=[LOCAL_RANK]``, which DDP rejects for
CPU modules. On such machines :func:`init_distributed` initialises a
``gloo`` process group itself before the Runner is built (the Runner then
skips its own ``init_dist``), and :func:`use_cpu_ddp` makes the Runner build
DDP with ``device_ids=None``. With CUDA nothing changes except a clear error
when a node starts more processes than it has visible GPUs.
"""
import datetime
import os
import subprocess
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config

__all__ = [
    'local_rank_from_env', 'check_gpu_count', 'init_distributed',
    'use_cpu_ddp', 'setup_default_scope'
]


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
