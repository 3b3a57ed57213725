"""`mapet::` config inheritance and the CLI -> config merging of the tools."""
import importlib.util
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import mapet  # noqa: F401  (registers the `mapet::` config package)
from mapet.utils import dist_env


def _load_tool(repo_root: Path, name: str):
    spec = importlib.util.spec_from_file_location(
        f'foundation_tool_{name}', repo_root / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def train_tool(repo_root):
    return _load_tool(repo_root, 'train')


@pytest.fixture(scope='module')
def test_tool(repo_root):
    return _load_tool(repo_root, 'test')


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


def test_mapet_base_resolves_from_outside_the_repo(repo_root, tmp_path,
                                                   monkeypatch):
    bases = sorted((repo_root / 'configs').glob('_base_/**/*.py'))
    assert bases, 'no configs/_base_ yet'
    monkeypatch.chdir(tmp_path)
    for base in bases:
        rel = base.relative_to(repo_root / 'configs').as_posix()
        child = tmp_path / 'my_config.py'
        child.write_text(f"_base_ = 'mapet::{rel}'\nmy_key = 1\n")
        cfg = Config.fromfile(str(child))
        direct = Config.fromfile(str(base)).to_dict()
        got = cfg.to_dict()
        assert got.pop('my_key') == 1
        assert got == direct, rel
        # Types keep the scope the config declares (no `_scope_='mapet'`,
        # which no registry has).
        assert 'mapet' not in _scopes(got), rel


def test_unknown_mapet_config_is_reported(tmp_path):
    child = tmp_path / 'c.py'
    child.write_text("_base_ = 'mapet::_base_/no_such_config.py'\n")
    with pytest.raises(FileNotFoundError, match='no_such_config'):
        Config.fromfile(str(child))


def _cfg(**kwargs) -> Config:
    base = dict(
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_dataloader=dict(batch_size=2, num_workers=0),
        val_dataloader=dict(batch_size=2, num_workers=2),
        auto_scale_lr=dict(base_batch_size=16, enable=False))
    base.update(kwargs)
    return Config(base)


def test_train_merge_args(train_tool, tmp_path):
    args = train_tool.parse_args(['cfg.py'])
    cfg = train_tool.merge_args(_cfg(), args)
    assert cfg.work_dir == './work_dirs/cfg' and cfg.launcher == 'none'
    assert 'resume' not in cfg
    # torch refuses persistent workers without workers.
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.val_dataloader.persistent_workers is True
    assert cfg.train_dataloader.pin_memory == torch.cuda.is_available()

    cfg = train_tool.merge_args(_cfg(), train_tool.parse_args(
        ['cfg.py', '--resume', '--auto-scale-lr', '--work-dir', 'w']))
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.auto_scale_lr.enable is True and cfg.work_dir == 'w'

    cfg = train_tool.merge_args(_cfg(), train_tool.parse_args(
        ['cfg.py', '--resume', 'a/iter_3.pth', '--cfg-options',
         'optim_wrapper.optimizer.lr=0.5']))
    assert cfg.resume is True and cfg.load_from == 'a/iter_3.pth'
    assert cfg.optim_wrapper.optimizer.lr == 0.5


def test_train_amp_flags(train_tool):
    def amp_cfg():
        return _cfg(optim_wrapper=dict(
            type='AmpOptimWrapper', loss_scale='dynamic',
            optimizer=dict(type='AdamW', lr=1e-3)))

    cfg = train_tool.merge_args(amp_cfg(),
                                train_tool.parse_args(['c.py', '--no-amp']))
    assert cfg.optim_wrapper.to_dict() == dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match='pass --no-amp'):
            train_tool.merge_args(amp_cfg(),
                                  train_tool.parse_args(['c.py']))
        with pytest.raises(RuntimeError, match='pass --no-amp'):
            train_tool.merge_args(_cfg(),
                                  train_tool.parse_args(['c.py', '--amp']))
    with pytest.raises(SystemExit):  # mutually exclusive
        train_tool.parse_args(['c.py', '--amp', '--no-amp'])


def test_default_scope_defaults_to_mmpretrain():
    cfg = Config(dict(model=dict(type='ImageClassifier')))
    assert dist_env.setup_default_scope(cfg) == 'mmpretrain'
    assert cfg.default_scope == 'mmpretrain'


def test_test_merge_args_mmseg(test_tool):
    cfg = Config(
        dict(
            default_scope='mmseg',
            model=dict(type='EncoderDecoder'),
            default_hooks=dict(
                visualization=dict(type='SegVisualizationHook')),
            visualizer=dict(type='SegLocalVisualizer'),
            test_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']),
            test_dataloader=dict(batch_size=1, num_workers=0)))
    args = test_tool.parse_args(
        ['seg.py', 'ckpt.pth', '--out', 'preds', '--show-dir', 'vis'])
    cfg = test_tool.merge_args(cfg, args)
    assert cfg.load_from == 'ckpt.pth' and cfg.work_dir == './work_dirs/seg'
    assert cfg.test_evaluator.output_dir == 'preds'
    assert cfg.test_evaluator.keep_results is True
    assert cfg.default_hooks.visualization.draw is True
    assert cfg.visualizer.save_dir == 'vis'
    assert 'collate_fn' not in cfg.test_dataloader  # mmseg's default
    assert dist_env.setup_default_scope(cfg) == 'mmseg'
    from mmseg.registry import MODELS
    assert MODELS.get('EncoderDecoder') is not None
    with pytest.raises(ValueError, match='--out-item is for mmpretrain'):
        test_tool.merge_args(
            cfg, test_tool.parse_args(
                ['seg.py', 'c.pth', '--out', 'p', '--out-item', 'pred']))


def test_test_merge_args_pretrain_tta(test_tool):
    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    cfg = Config(
        dict(
            model=dict(type='ImageClassifier'),
            default_hooks=dict(visualization=dict(type='VisualizationHook')),
            test_dataloader=dict(
                batch_size=1, dataset=dict(type='X', pipeline=pipeline))))
    cfg.default_scope = 'mmpretrain'
    cfg = test_tool.merge_args(
        cfg, test_tool.parse_args(['c.py', 'k.pth', '--tta', '--show-dir',
                                   'v']))
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
