"""Command line of ``tools/test.py``: its flags and how they change a config.

Kept in the package (not in ``tools/``) so that tests and other tools can
import it; ``tools/test.py`` is the command line over it.
"""
import argparse
from copy import deepcopy
from typing import List, Optional

import torch
from mmengine.config import Config, ConfigDict, DictAction

from .cli_common import merge_launcher_and_work_dir, parse_with_launcher


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        help='mmpretrain: file for the predictions (or metrics, see '
        '--out-item); mmseg: directory for the predicted masks')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='(mmpretrain) whether --out gets the metrics or the '
        'predictions. Defaults to predictions.')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file.')
    parser.add_argument(
        '--show-dir',
        help='directory where the visualization images will be saved.')
    parser.add_argument(
        '--show',
        action='store_true',
        help='whether to display the prediction results in a window.')
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='(mmpretrain) visualize per interval samples.')
    parser.add_argument(
        '--wait-time',
        type=float,
        default=2,
        help='display time of every window. (second)')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='whether to disable the pin_memory option in dataloaders.')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='Whether to enable the Test-Time-Aug (TTA). mmpretrain: the '
        'config\'s `tta_model`/`tta_pipeline` or a flip TTA by default; '
        'mmseg: needs `tta_model` and `tta_pipeline` in the config.')
    args = parse_with_launcher(parser, argv)
    if args.out is None and args.out_item is not None:
        raise ValueError('Please use `--out` argument to specify the path of '
                         'the output file before using `--out-item`.')
    return args


def _merge_pretrain(cfg: Config, args: argparse.Namespace) -> None:
    if args.show or args.show_dir:
        assert 'visualization' in cfg.default_hooks, \
            'VisualizationHook is not set in the `default_hooks` field of ' \
            'config. Please set `visualization=dict(type="VisualizationHook")`'
        vis = cfg.default_hooks.visualization
        vis.enable = True
        vis.show = args.show
        vis.wait_time = args.wait_time
        vis.out_dir = args.show_dir
        vis.interval = args.interval
    if args.tta:
        if 'tta_model' not in cfg:
            cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
        if 'tta_pipeline' not in cfg:
            test_pipeline = cfg.test_dataloader.dataset.pipeline
            cfg.tta_pipeline = deepcopy(test_pipeline)
            cfg.tta_pipeline[-1] = dict(
                type='TestTimeAug',
                transforms=[[
                    dict(type='RandomFlip', prob=1.),
                    dict(type='RandomFlip', prob=0.)
                ], [test_pipeline[-1]]])
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def _merge_seg(cfg: Config, args: argparse.Namespace) -> None:
    if args.out_item is not None:
        raise ValueError('--out-item is for mmpretrain configs; with mmseg '
                         'configs --out is the prediction directory.')
    if args.show or args.show_dir:
        if 'visualization' not in cfg.default_hooks:
            raise RuntimeError(
                'VisualizationHook must be included in default_hooks. '
                'refer to usage '
                "'visualization=dict(type='SegVisualizationHook')'")
        vis = cfg.default_hooks.visualization
        vis['draw'] = True
        if args.show:
            vis['show'] = True
            vis['wait_time'] = args.wait_time
        if args.show_dir:
            cfg.visualizer['save_dir'] = args.show_dir
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise ValueError('--tta with an mmseg config needs `tta_model` '
                             'and `tta_pipeline` in the config.')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge CLI arguments to config (mmpretrain or mmseg semantics)."""
    merge_launcher_and_work_dir(cfg, args)
    cfg.load_from = args.checkpoint

    if cfg.get('default_scope') == 'mmseg':
        _merge_seg(cfg, args)
    else:
        _merge_pretrain(cfg, args)

    if cfg.get('test_dataloader') is not None:
        dataloader_cfg = ConfigDict(
            pin_memory=torch.cuda.is_available() and not args.no_pin_memory,
            collate_fn=dict(type='default_collate'))
        if cfg.default_scope == 'mmseg':
            # mmseg configs rely on mmengine's pseudo_collate default.
            dataloader_cfg.pop('collate_fn')
        dataloader_cfg.update(cfg.test_dataloader)
        if args.no_pin_memory:
            dataloader_cfg['pin_memory'] = False
        cfg.test_dataloader = dataloader_cfg

    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg
