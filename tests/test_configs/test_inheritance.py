"""`mapet::` config inheritance and the CLI -> config merging of the tools.

The tools are never imported into this process: their ``merge_args`` run in
a subprocess (``tests/helpers/tool_merge_args.py``).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mapet  # noqa: F401  (registers the `mapet::` config package)
from mapet.utils import dist_env

HELPERS = Path(__file__).resolve().parents[1] / 'helpers'
PRETRAIN_BASE = 'mapet/mapet_vit-t_300e_in1k.py'
SEG_BASE = ('benchmarks/segmentation/'
            'vit-t-p16_upernet_8xb2-amp-160k_ade20k-512x512.py')


def _scopes(obj, found=None) -> set:
    found = set() if found is None else found
    if isinstance(obj, dict):
        if '_scope_' in obj:
            found.add(obj['_scope_'])
        for v in obj.values():
            _scopes(v, found)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _scopes(v, found)
    return found


def _strip_scopes(obj):
    if isinstance(obj, dict):
        return {k: _strip_scopes(v) for k, v in obj.items() if k != '_scope_'}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_strip_scopes(v) for v in obj)
    return obj


def _child_config(folder: Path, base: str) -> Config:
    child = folder / 'my_config.py'
    child.write_text(f"_base_ = 'mapet::{base}'\nmy_key = 1\n")
    return Config.fromfile(str(child))


def test_mapet_base_resolves_from_outside_the_repo(repo_root, tmp_path,
                                                   monkeypatch):
    bases = sorted((repo_root / 'configs').glob('_base_/**/*.py'))
    assert bases, 'no configs/_base_ yet'
    monkeypatch.chdir(tmp_path)
    for base in bases:
        rel = base.relative_to(repo_root / 'configs').as_posix()
        cfg = _child_config(tmp_path, rel)
        direct = Config.fromfile(str(base)).to_dict()
        got = cfg.to_dict()
        assert got.pop('my_key') == 1
        # mmengine stamps `_scope_='mapet'` on a package base's objects
        # (our scope nodes resolve them); otherwise the same config.
        assert _scopes(got) <= {'mapet'}, rel
        assert _strip_scopes(got) == _strip_scopes(direct), rel


def _build(cfg: Config, registry):
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return registry.build(cfg.model)


def test_pretrain_config_from_outside_the_repo_builds(tmp_path, monkeypatch):
    from mmpretrain.models import SelfSupDataPreprocessor
    from mmpretrain.registry import MODELS

    from mapet.models.backbones.mapet_vit import MaPeTViT
    from mapet.models.heads.visual_token_head import VisualTokenHead
    from mapet.models.selfsup.mapet import MaPeT
    monkeypatch.chdir(tmp_path)
    cfg = _child_config(tmp_path, PRETRAIN_BASE)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.runner_type == 'mmpretrain.MaPeTRunner'
    assert cfg.model._scope_ == 'mapet'
    model = _build(cfg, MODELS)
    assert type(model) is MaPeT
    assert type(model.backbone) is MaPeTViT
    assert type(model.head) is VisualTokenHead
    assert type(model.data_preprocessor) is SelfSupDataPreprocessor


def test_segmentation_config_from_outside_the_repo_builds(
        tmp_path, monkeypatch):
    from mmseg.models import (EncoderDecoder, FCNHead, Feature2Pyramid,
                              SegDataPreProcessor, UPerHead)
    from mmseg.registry import MODELS

    from mapet.models.backbones.mapet_vit import MaPeTViT
    monkeypatch.chdir(tmp_path)
    cfg = _child_config(tmp_path, SEG_BASE)
    assert cfg.default_scope == 'mmseg'
    assert cfg.runner_type == 'mmpretrain.MaPeTRunner'
    # mmseg types under the `mapet` scope: found through mmseg's registry.
    assert cfg.model._scope_ == 'mapet'
    model = _build(cfg, MODELS)
    assert type(model) is EncoderDecoder
    assert type(model.backbone) is MaPeTViT
    assert model.backbone.embed_dims == 192
    assert type(model.neck) is Feature2Pyramid
    assert type(model.decode_head) is UPerHead
    assert type(model.auxiliary_head) is FCNHead
    assert type(model.data_preprocessor) is SegDataPreProcessor


def test_unknown_mapet_config_is_reported(tmp_path):
    child = tmp_path / 'c.py'
    child.write_text("_base_ = 'mapet::_base_/no_such_config.py'\n")
    with pytest.raises(FileNotFoundError, match='no_such_config'):
        Config.fromfile(str(child))


# -- tools/train.py and tools/test.py: merge_args, in one subprocess ------

def _cfg(**kwargs) -> dict:
    base = dict(
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_dataloader=dict(batch_size=2, num_workers=0),
        val_dataloader=dict(batch_size=2, num_workers=2),
        auto_scale_lr=dict(base_batch_size=16, enable=False))
    base.update(kwargs)
    return base


def _amp_cfg() -> dict:
    return _cfg(optim_wrapper=dict(
        type='AmpOptimWrapper', loss_scale='dynamic',
        optimizer=dict(type='AdamW', lr=1e-3)))


SEG_CFG = dict(
    default_scope='mmseg',
    model=dict(type='EncoderDecoder'),
    default_hooks=dict(visualization=dict(type='SegVisualizationHook')),
    visualizer=dict(type='SegLocalVisualizer'),
    test_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']),
    test_dataloader=dict(batch_size=1, num_workers=0))

_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
TTA_CFG = dict(
    default_scope='mmpretrain',
    model=dict(type='ImageClassifier'),
    default_hooks=dict(visualization=dict(type='VisualizationHook')),
    test_dataloader=dict(
        batch_size=1, dataset=dict(type='X', pipeline=_PIPELINE)))

CASES = {
    'train_defaults': ('train', ['cfg.py'], _cfg()),
    'train_resume_auto': ('train', [
        'cfg.py', '--resume', '--auto-scale-lr', '--work-dir', 'w'
    ], _cfg()),
    'train_resume_path': ('train', [
        'cfg.py', '--resume', 'a/iter_3.pth', '--cfg-options',
        'optim_wrapper.optimizer.lr=0.5'
    ], _cfg()),
    'train_no_amp': ('train', ['c.py', '--no-amp'], _amp_cfg()),
    'train_amp_cfg_on_cpu': ('train', ['c.py'], _amp_cfg()),
    'train_amp_flag_on_cpu': ('train', ['c.py', '--amp'], _cfg()),
    'train_amp_exclusive': ('train', ['c.py', '--amp', '--no-amp'], _cfg()),
    'test_mmseg': ('test', [
        'seg.py', 'ckpt.pth', '--out', 'preds', '--show-dir', 'vis'
    ], SEG_CFG),
    'test_mmseg_out_item': ('test', [
        'seg.py', 'c.pth', '--out', 'p', '--out-item', 'pred'
    ], SEG_CFG),
    'test_tta': ('test', ['c.py', 'k.pth', '--tta', '--show-dir', 'v'],
                 TTA_CFG),
}


@pytest.fixture(scope='module')
def merged(repo_root, tools_env, tmp_path_factory):
    """``{case: result}`` of the tools' merge_args (CPU-only subprocess)."""
    cases_file = tmp_path_factory.mktemp('merge_args') / 'cases.json'
    cases_file.write_text(json.dumps([
        dict(tool=tool, argv=argv, cfg=cfg)
        for tool, argv, cfg in CASES.values()
    ]))
    proc = subprocess.run(
        [sys.executable, str(HELPERS / 'tool_merge_args.py'),
         str(repo_root), str(cases_file)],
        env=tools_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return dict(zip(CASES, results))


def _ok(result) -> Config:
    assert 'cfg' in result, result
    return Config(result['cfg'])


def test_train_merge_args(merged):
    cfg = _ok(merged['train_defaults'])
    assert cfg.work_dir == './work_dirs/cfg' and cfg.launcher == 'none'
    assert 'resume' not in cfg
    # torch refuses persistent workers without workers.
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.val_dataloader.persistent_workers is True
    assert cfg.train_dataloader.pin_memory is False  # no CUDA there

    cfg = _ok(merged['train_resume_auto'])
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.auto_scale_lr.enable is True and cfg.work_dir == 'w'

    cfg = _ok(merged['train_resume_path'])
    assert cfg.resume is True and cfg.load_from == 'a/iter_3.pth'
    assert cfg.optim_wrapper.optimizer.lr == 0.5


def test_train_amp_flags(merged):
    cfg = _ok(merged['train_no_amp'])
    assert cfg.optim_wrapper.to_dict() == dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
    # The subprocess has no CUDA.
    for case in ('train_amp_cfg_on_cpu', 'train_amp_flag_on_cpu'):
        assert merged[case]['error'] == 'RuntimeError', merged[case]
        assert 'pass --no-amp' in merged[case]['message']
    assert merged['train_amp_exclusive']['error'] == 'SystemExit'


def test_default_scope_defaults_to_mmpretrain():
    cfg = Config(dict(model=dict(type='ImageClassifier')))
    assert dist_env.setup_default_scope(cfg) == 'mmpretrain'
    assert cfg.default_scope == 'mmpretrain'


def test_test_merge_args_mmseg(merged):
    cfg = _ok(merged['test_mmseg'])
    assert cfg.load_from == 'ckpt.pth' and cfg.work_dir == './work_dirs/seg'
    assert cfg.test_evaluator.output_dir == 'preds'
    assert cfg.test_evaluator.keep_results is True
    assert cfg.default_hooks.visualization.draw is True
    assert cfg.visualizer.save_dir == 'vis'
    assert 'collate_fn' not in cfg.test_dataloader  # mmseg's default
    assert dist_env.setup_default_scope(cfg) == 'mmseg'
    from mmseg.registry import MODELS
    assert MODELS.get('EncoderDecoder') is not None
    result = merged['test_mmseg_out_item']
    assert result['error'] == 'ValueError', result
    assert '--out-item is for mmpretrain' in result['message']


def test_test_merge_args_pretrain_tta(merged):
    cfg = _ok(merged['test_tta'])
    assert cfg.model.type == 'mmpretrain.AverageClsScoreTTA'
    assert cfg.model.module.type == 'ImageClassifier'
    tta = cfg.test_dataloader.dataset.pipeline[-1]
    assert tta.type == 'TestTimeAug' and len(tta.transforms[0]) == 2
    assert cfg.default_hooks.visualization.enable is True
    assert cfg.default_hooks.visualization.out_dir == 'v'


def test_use_cpu_ddp(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(launcher='pytorch', find_unused_parameters=True))
    dist_env.use_cpu_ddp(cfg)
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=True, device_ids=None)

    cfg = Config(dict(launcher='pytorch', model_wrapper_cfg=dict(
        type='MMDistributedDataParallel', broadcast_buffers=True)))
    dist_env.use_cpu_ddp(cfg)
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.broadcast_buffers is True

    # Not a DDP subclass (FSDP): left alone.
    cfg = Config(dict(launcher='pytorch', model_wrapper_cfg=dict(
        type='MMFullyShardedDataParallel')))
    dist_env.use_cpu_ddp(cfg)
    assert 'device_ids' not in cfg.model_wrapper_cfg

    cfg = Config(dict(launcher='none'))
    dist_env.use_cpu_ddp(cfg)
    assert 'model_wrapper_cfg' not in cfg
    assert dist_env.init_distributed('none') is False


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setenv('LOCAL_RANK', '2')
    with pytest.raises(RuntimeError,
                       match=r'local rank 2 .* only 2 GPU\(s\).*GPUS'):
        dist_env.check_gpu_count('pytorch')
    monkeypatch.setenv('LOCAL_RANK', '1')
    dist_env.check_gpu_count('pytorch')
    monkeypatch.setenv('SLURM_LOCALID', '5')
    with pytest.raises(RuntimeError, match='local rank 5'):
        dist_env.check_gpu_count('slurm')
