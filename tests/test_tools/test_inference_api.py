"""Checkpoints of our probe/fine-tune configs carry the class names, and the
README's inference snippet (mmpretrain.apis) runs on a config of ours.

A tiny version of ``configs/demo/vit-t6-p16_linear_demo.py`` trains one
epoch on the demo data through tools/train.py; its checkpoint then goes
through the snippet of README.md's "Interop" section, verbatim.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mapet.utils import load_checkpoint_file

REPO = Path(__file__).resolve().parents[2]
DEMO_PROBE = REPO / 'configs/demo/vit-t6-p16_linear_demo.py'
CLASSES = ('astronaut', 'cat', 'coffee', 'galaxies', 'motorcycle', 'retina',
           'rocket', 'tissue')


def _readme_snippet() -> str:
    """The python block of README.md's inference snippet."""
    text = (REPO / 'README.md').read_text()
    section = text.split('## Interop', 1)[1].split('\n## ', 1)[0]
    blocks = re.findall(r'```python\n(.*?)```', section, re.S)
    snippet = [b for b in blocks if 'ImageClassificationInferencer' in b]
    assert len(snippet) == 1, 'one inference snippet in "Interop"'
    return snippet[0]


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tools_env, demo_data_root):
    work = tmp_path_factory.mktemp('probe')
    config = work / 'tiny_probe.py'
    config.write_text(
        f'_base_ = {str(DEMO_PROBE)!r}\n'
        'model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=64, '
        'num_layers=2, num_heads=2, feedforward_channels=128), '
        'frozen_stages=2, init_cfg=None), head=dict(in_channels=64))\n'
        'custom_hooks = []\n'
        'train_cfg = dict(max_epochs=1, val_interval=1)\n'
        'default_hooks = dict(checkpoint=dict(interval=1))\n'
        'train_dataloader = dict(num_workers=0, persistent_workers=False)\n'
        'val_dataloader = dict(num_workers=0, persistent_workers=False)\n'
        'test_dataloader = val_dataloader\n')
    options = [f'{split}_dataloader.dataset.data_root={demo_data_root}'
               for split in ('train', 'val', 'test')]
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', str(config), '--work-dir',
         str(work), '--cfg-options', *options],
        cwd=REPO, env=tools_env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return config, work / 'epoch_1.pth', demo_data_root


def test_probe_checkpoint_carries_class_names(trained):
    _, checkpoint, _ = trained
    meta = load_checkpoint_file(str(checkpoint))['meta']
    assert tuple(meta['dataset_meta']['classes']) == CLASSES


def test_readme_inference_snippet(trained, monkeypatch):
    config, checkpoint, data_root = trained
    image = data_root / 'val' / 'rocket' / 'rocket_00000.png'
    code = _readme_snippet()
    # the README's placeholders -> this run's files
    for placeholder, value in (('CONFIG', config), ('CHECKPOINT', checkpoint),
                               ('IMAGE', image)):
        assert f"{placeholder} = '" in code, placeholder
        code = re.sub(rf"^{placeholder} = '[^']*'",
                      f'{placeholder} = {str(value)!r}', code, flags=re.M)
    scope: dict = {}
    exec(compile(code, 'README.md', 'exec'), scope)  # noqa: S102
    result = scope['result']
    assert result['pred_class'] in CLASSES
    assert result['pred_class'] == CLASSES[result['pred_label']]
    assert len(result['pred_scores']) == len(CLASSES)
    assert abs(sum(result['pred_scores']) - 1) < 1e-4

    # mmpretrain's one-liner (mmengine's loader) agrees on our checkpoint
    from mmpretrain.apis import ImageClassificationInferencer
    plain = ImageClassificationInferencer(
        str(config), pretrained=str(checkpoint), device='cpu')
    assert plain.classes == list(CLASSES) or tuple(plain.classes) == CLASSES
    other = plain(str(image))[0]
    assert other['pred_class'] == result['pred_class']
    torch.testing.assert_close(
        torch.as_tensor(other['pred_scores']),
        torch.as_tensor(result['pred_scores']))
