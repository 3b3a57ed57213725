"""Short real runs through tools/train.py and tools/test.py.

A MaPeT-like pre-training checkpoint (tiny MaPeTViT + head) enters the
fine-tuning and UperNet configs through their ``Pretrained`` init_cfg; the
PretrainedLoadCheckHook must accept it; the trained checkpoints are then
evaluated by tools/test.py (classification accuracy, ADE20K mIoU).
"""
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import torch

import downstream_helpers as H  # tests/helpers
from mapet.models.backbones import MaPeTViT

TINY_CONFIGS = H.REPO / 'tests' / 'data' / 'configs'


def _pretrain_checkpoint(path: Path, num_layers: int) -> str:
    backbone = MaPeTViT(
        arch=dict(H.TINY_ARCH, num_layers=num_layers), img_size=224,
        patch_size=16, layer_scale_init_value=0.1, mode='mim')
    backbone.init_weights()
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state['head.cls_head.weight'] = torch.zeros(8, H.TINY_DIMS)
    torch.save(dict(state_dict=state, meta=dict(epoch=300)), path)
    return str(path)


def _run(tool: str, args: List[str], env) -> str:
    proc = subprocess.run(
        [sys.executable, str(H.REPO / 'tools' / tool), *args],
        cwd=H.REPO, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def test_finetune_then_test(tmp_path, demo_data_root, tools_env):
    ckpt = _pretrain_checkpoint(tmp_path / 'pretrain.pth', num_layers=2)
    work = tmp_path / 'ft'
    options = [
        f'model.backbone.init_cfg.checkpoint={ckpt}',
        f'train_dataloader.dataset.data_root={demo_data_root}',
        f'val_dataloader.dataset.data_root={demo_data_root}',
        f'test_dataloader.dataset.data_root={demo_data_root}',
    ]
    config = str(TINY_CONFIGS / 'downstream_tiny_finetune.py')
    log = _run('train.py', [config, '--work-dir', str(work), '--no-amp',
                            '--cfg-options', *options], tools_env)
    # the check hook reported the load and accepted the documented drops
    assert 'loaded and verified: ' in log
    assert "unexpected (ignored): ['ln1.bias', 'ln1.weight', " \
        "'mask_token']" in log
    assert "missing (newly initialised): ['ln2.bias', 'ln2.weight']" in log
    trained = work / 'epoch_1.pth'
    assert trained.is_file()

    out = _run('test.py', [config, str(trained), '--work-dir',
                           str(tmp_path / 'ft_test'), '--cfg-options',
                           *options], tools_env)
    top1 = re.search(r'accuracy/top1: ([\d.]+)', out)
    assert top1 and 0.0 <= float(top1.group(1)) <= 100.0


def test_finetune_refuses_wrong_checkpoint(tmp_path, demo_data_root,
                                           tools_env):
    """A checkpoint of another architecture fails before training."""
    wrong = MaPeTViT(
        arch=dict(H.TINY_ARCH, embed_dims=32, num_heads=2), img_size=224,
        patch_size=16, layer_scale_init_value=0.1)
    path = tmp_path / 'wrong.pth'
    torch.save(dict(state_dict={
        f'backbone.{k}': v for k, v in wrong.state_dict().items()}), path)
    proc = subprocess.run(
        [sys.executable, str(H.REPO / 'tools' / 'train.py'),
         str(TINY_CONFIGS / 'downstream_tiny_finetune.py'), '--work-dir',
         str(tmp_path / 'w'), '--no-amp', '--cfg-options',
         f'model.backbone.init_cfg.checkpoint={path}',
         f'train_dataloader.dataset.data_root={demo_data_root}',
         f'val_dataloader.dataset.data_root={demo_data_root}'],
        cwd=H.REPO, env=tools_env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode != 0
    assert 'failed the key check' in proc.stdout + proc.stderr


def test_segmentation_train_then_test(tmp_path, tools_env):
    root = H.make_ade20k(tmp_path / 'ade')
    ckpt = _pretrain_checkpoint(tmp_path / 'pretrain.pth', num_layers=4)
    work = tmp_path / 'seg'
    options = [
        f'model.backbone.init_cfg.checkpoint={ckpt}',
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
    ]
    config = str(TINY_CONFIGS / 'downstream_tiny_segmentation.py')
    log = _run('train.py', [config, '--work-dir', str(work), '--no-amp',
                            '--cfg-options', *options], tools_env)
    assert "resized: ['pos_embed']" in log
    trained = work / 'iter_2.pth'
    assert trained.is_file()
    out = _run('test.py', [config, str(trained), '--work-dir',
                           str(tmp_path / 'seg_test'), '--cfg-options',
                           *options], tools_env)
    miou = re.search(r'mIoU: ([\d.]+)', out)
    assert miou and 0.0 <= float(miou.group(1)) <= 100.0
