"""Command line of ``tools/train.py``: its flags and how they change a config.

Kept in the package (not in ``tools/``) so that tests and other tools can
import it; ``tools/train.py`` is the command line over it.
"""
import argparse
from copy import deepcopy
from typing import List, Optional

import torch
from mmengine.config import Config, ConfigDict, DictAction

from .cli_common import merge_launcher_and_work_dir, parse_with_launcher
from .precision import AMP_DTYPES, apply_amp_dtype
from .sharding import prepare_fsdp


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='If specify checkpoint path, resume from it, while if not '
        'specify, try to auto resume from the latest checkpoint '
        'in the work directory.')
    amp = parser.add_mutually_exclusive_group()
    amp.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic-mixed-precision training')
    amp.add_argument(
        '--no-amp',
        action='store_true',
        help='replace the config\'s AmpOptimWrapper by an fp32 OptimWrapper '
        '(needed for CPU-only runs of AMP configs)')
    parser.add_argument(
        '--amp-dtype',
        choices=AMP_DTYPES,
        default=None,
        help='autocast dtype of AmpOptimWrapper: auto (default; the '
        'config\'s dtype, else bfloat16 on Ampere and newer GPUs, float16 '
        'before), float16 (dynamic loss scaling) or bfloat16. float16 / '
        'bfloat16 imply --amp.')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='whether not to evaluate the checkpoint during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='whether to auto scale the learning rate according to the '
        'actual batch size and the original batch size.')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='whether to disable the pin_memory option in dataloaders.')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='whether to disable the persistent_workers option in '
        'dataloaders.')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    return parse_with_launcher(parser, argv)


def _has_accelerator() -> bool:
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_npu_available)
    return is_cuda_available() or is_npu_available() or is_mlu_available()


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge CLI arguments to config (mmpretrain semantics)."""
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    merge_launcher_and_work_dir(cfg, args)

    optim_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    amp_dtype = getattr(args, 'amp_dtype', None)
    if amp_dtype not in (None, 'auto'):
        if args.no_amp:
            raise ValueError(f'--amp-dtype {amp_dtype} asks for mixed '
                             'precision and --no-amp for fp32; pass one.')
        args.amp = True
    if args.amp:
        assert optim_type in ['OptimWrapper', 'AmpOptimWrapper'], \
            '`--amp` is not supported custom optimizer wrapper type ' \
            f'`{optim_type}.'
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    elif args.no_amp and optim_type == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            cfg.optim_wrapper.pop(key, None)

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.auto_scale_lr:
        if cfg.get('auto_scale_lr') is None:
            raise ValueError(
                '--auto-scale-lr needs `auto_scale_lr = dict('
                'base_batch_size=...)` in the config.')
        cfg.auto_scale_lr.enable = True

    def set_default_dataloader_cfg(cfg: Config, field: str) -> None:
        if cfg.get(field, None) is None:
            return
        dataloader_cfg = ConfigDict(
            # torch refuses persistent workers without workers.
            persistent_workers=cfg[field].get('num_workers', 0) > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=dict(type='default_collate'))
        dataloader_cfg = deepcopy(dataloader_cfg)
        dataloader_cfg.update(cfg[field])
        cfg[field] = dataloader_cfg
        if args.no_pin_memory:
            cfg[field]['pin_memory'] = False
        if args.no_persistent_workers:
            cfg[field]['persistent_workers'] = False

    set_default_dataloader_cfg(cfg, 'train_dataloader')
    set_default_dataloader_cfg(cfg, 'val_dataloader')
    set_default_dataloader_cfg(cfg, 'test_dataloader')

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    if (cfg.optim_wrapper.get('type') == 'AmpOptimWrapper'
            and not _has_accelerator()):
        raise RuntimeError(
            'This config trains with AmpOptimWrapper (mixed precision), which '
            'needs a GPU/NPU/MLU, and none is available. For a CPU run pass '
            '--no-amp (fp32 OptimWrapper).')
    apply_amp_dtype(cfg, amp_dtype)
    prepare_fsdp(cfg)
    return cfg
