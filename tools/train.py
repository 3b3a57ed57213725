"""Train a model (pre-training, fine-tuning, linear probe, segmentation).

Same interface as mmpretrain's ``tools/train.py``::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]]
        [--amp | --no-amp] [--amp-dtype {auto,float16,bfloat16}]
        [--auto-scale-lr] [--no-validate]
        [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]

Differences a user may notice:

* ``import mapet`` runs first, so our components are registered and
  ``_base_ = 'mapet::...'`` resolves. Safe checkpoints come from the
  config's ``runner_type`` (``MaPeTRunner``), as with any other tool.
* Configs without ``default_scope`` get ``'mmpretrain'``; mmsegmentation
  configs (``default_scope = 'mmseg'``) work as well.
* Without CUDA, distributed launchers use gloo and CPU DDP
  (``mapet/utils/dist_env.py``); with CUDA, a node that starts more
  processes than it has GPUs fails with a clear message.
* ``--no-amp`` turns a config's ``AmpOptimWrapper`` into a plain fp32
  ``OptimWrapper`` (AMP needs an accelerator; use it for CPU runs).
* ``--amp-dtype`` picks the autocast dtype of ``AmpOptimWrapper`` (every
  pre-training and fine-tuning config): ``auto`` (default) keeps a dtype
  written in the config, else bfloat16 on Ampere and newer GPUs and float16
  before (``mapet/utils/precision.py``). An explicit dtype implies ``--amp``.
* ``runner_type`` may name a ``FlexibleRunner`` with an FSDP strategy (the
  ViT-L configs: ``MaPeTFlexibleRunner`` + ``VerifiedFSDPStrategy``):
  sharded training, also on CPU/gloo (``mapet/utils/sharding.py``).
* Dataloaders default to ``persistent_workers`` only when ``num_workers >
  0`` and to ``pin_memory`` only with CUDA.
"""
from typing import List, Optional

from mmengine.config import Config
from mmengine.runner import Runner

import mapet  # noqa: F401  (registers components and the mapet:: scope)
from mapet.utils.cli_train import merge_args, parse_args
from mapet.utils.dist_env import (check_gpu_count, init_distributed,
                                  setup_default_scope, sync_bn_to_bn_on_cpu,
                                  use_cpu_ddp)
from mapet.utils.sharding import check_fsdp_runner, uses_fsdp


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    # First, before anything creates mmengine's logger (which itself fails
    # with an IndexError when a rank has no GPU).
    check_gpu_count(args.launcher)
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)
    setup_default_scope(cfg)
    # Before the Runner: on CPU, mmengine's init_dist would call
    # torch.cuda.set_device; an initialised group makes the Runner skip it.
    init_distributed(cfg.launcher, cfg.get('env_cfg', {}).get('dist_cfg'))
    if uses_fsdp(cfg):
        check_fsdp_runner(cfg)
    else:
        use_cpu_ddp(cfg)
        sync_bn_to_bn_on_cpu(cfg)  # SyncBN needs GPUs; CPU DDP gets BN

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        from mmengine.registry import RUNNERS
        runner = RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
