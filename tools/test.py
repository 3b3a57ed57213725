"""Evaluate a checkpoint: mmpretrain *and* mmsegmentation configs.

Same interface as mmpretrain's ``tools/test.py``::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--out-item {metrics,pred}] [--show-dir DIR] [--show] [--tta]
        [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]

The config's ``default_scope`` selects the toolbox (missing -> mmpretrain):

* ``mmpretrain`` (classification, linear probe, ...): ``--out`` is a pickle
  file with the predictions (or the metrics with ``--out-item metrics``);
  ``--show-dir`` enables mmpretrain's ``VisualizationHook``.
* ``mmseg`` (e.g. ADE20K UperNet benchmarks): mmseg's modules are
  registered, ``--out`` is a *directory* for the predicted masks (mmseg's
  ``IoUMetric(output_dir=..., keep_results=True)``), ``--show-dir`` makes
  ``SegVisualizationHook`` draw into that directory.

``import mapet`` runs first (our components, ``mapet::`` bases). With our
configs the checkpoint is loaded by ``MaPeTRunner`` (``runner_type``):
sidecar verified, ``weights_only=True`` and mapet's allow-list, never with
unrestricted unpickling. Without CUDA, distributed launchers use gloo (see
``mapet/utils/dist_env.py``).
"""
from typing import List, Optional

import mmengine
from mmengine.config import Config
from mmengine.evaluator import DumpResults
from mmengine.runner import Runner

import mapet  # noqa: F401  (registers components and the mapet:: scope)
from mapet.utils.cli_test import merge_args, parse_args
from mapet.utils.dist_env import (check_gpu_count, init_distributed,
                                  setup_default_scope, use_cpu_ddp)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    # First, before anything creates mmengine's logger (which itself fails
    # with an IndexError when a rank has no GPU).
    check_gpu_count(args.launcher)
    cfg = Config.fromfile(args.config)
    if cfg.get('default_scope') is None:
        cfg.default_scope = 'mmpretrain'
    cfg = merge_args(cfg, args)
    scope = setup_default_scope(cfg)
    # On CPU, mmengine's init_dist would call torch.cuda.set_device.
    init_distributed(cfg.launcher, cfg.get('env_cfg', {}).get('dist_cfg'))
    use_cpu_ddp(cfg)

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        from mmengine.registry import RUNNERS
        runner = RUNNERS.build(cfg)

    if scope != 'mmseg' and args.out and args.out_item in ['pred', None]:
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    metrics = runner.test()
    if scope != 'mmseg' and args.out and args.out_item == 'metrics':
        mmengine.dump(metrics, args.out)
    return metrics


if __name__ == '__main__':
    main()
