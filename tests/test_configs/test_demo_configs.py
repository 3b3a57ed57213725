"""The demo's configs agree with each other and with ``tools/demo.py``.

``make demo`` itself is the end-to-end run (minutes); here we check, in
seconds, the invariants it relies on: the k-CLIP token grid equals the ViT
patch grid, the head's vocabulary equals the codebook size, the probe builds
the same backbone the pre-training trains, and the pre-trained weights load
into it with only ``mask_token`` left over.
"""
import json
import subprocess
import sys
from types import SimpleNamespace

import torch
from mmengine.config import Config

import mapet  # noqa: F401  (registers the components)
from mmpretrain.registry import MODELS

PRETRAIN = 'configs/demo/mapet_vit-t6-p16_demo.py'
PROBE = 'configs/demo/vit-t6-p16_linear_demo.py'
CLIP_STRIDE = 32  # a CLIP ResNet's layer4 downsamples by 32


def _demo_module(repo_root):
    """``tools/demo.py``'s fixed settings (``--print-settings``)."""
    out = subprocess.run(
        [sys.executable, 'tools/demo.py', '--print-settings'],
        cwd=repo_root, capture_output=True, text=True, check=True).stdout
    return SimpleNamespace(**json.loads(out))


def test_token_grid_and_vocabulary_match(repo_root):
    demo = _demo_module(repo_root)
    cfg = Config.fromfile(str(repo_root / PRETRAIN))
    backbone = cfg.model.backbone
    patch_grid = backbone.img_size // backbone.patch_size
    assert demo.CLIP_INPUT // CLIP_STRIDE == patch_grid
    assert cfg.model.head.num_embed == demo.NUM_CENTROIDS
    loader = next(t for t in cfg.train_dataloader.dataset.pipeline
                  if t.type == 'LoadVisualTokens')
    assert loader.grid_size == patch_grid
    assert loader.vocab_size == demo.NUM_CENTROIDS
    assert loader.store.rstrip('/') == f'{demo.WORK_DIR}/tokens_train'
    assert 1 <= backbone.cutting_point <= patch_grid**2 - 1
    # Same 25 % context as the paper's ViT-T (50 of 196 patches).
    assert abs(backbone.cutting_point / patch_grid**2 - 50 / 196) < 0.01
    assert cfg.optim_wrapper.type == 'OptimWrapper'  # CPU: no AMP


def test_pretrained_backbone_loads_into_the_probe(repo_root, tmp_path):
    torch.manual_seed(0)
    pre_cfg = Config.fromfile(str(repo_root / PRETRAIN))
    probe_cfg = Config.fromfile(str(repo_root / PROBE))
    pretrain = MODELS.build(pre_cfg.model)
    ckpt = tmp_path / 'epoch_12.pth'
    torch.save({'state_dict': pretrain.state_dict()}, ckpt)

    probe_cfg.model.backbone.init_cfg.checkpoint = str(ckpt)
    probe = MODELS.build(probe_cfg.model)
    probe.init_weights()
    for name, value in probe.backbone.state_dict().items():
        assert torch.equal(value, pretrain.backbone.state_dict()[name]), name
    extra = set(pretrain.backbone.state_dict()) - set(
        probe.backbone.state_dict())
    assert extra == {'mask_token'}
    # The probe trains the head only.
    trainable = [n for n, p in probe.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith('head.') for n in trainable)


KNN = 'configs/demo/vit-t6-p16_knn_demo.py'


def test_knn_config_scores_the_probe_backbone_on_its_val_split(repo_root):
    demo = _demo_module(repo_root)
    assert demo.KNN_CFG == KNN and demo.PROBE_CFG == PROBE
    assert len(demo.PROBE_SEEDS) >= 2 and demo.PRETRAIN_SEEDS == [0]
    knn = Config.fromfile(str(repo_root / KNN))
    probe = Config.fromfile(str(repo_root / PROBE))
    assert knn.model.backbone == probe.model.backbone
    assert knn.val_dataloader.dataset == probe.val_dataloader.dataset
    assert (knn.knn.k, knn.knn.temperature) == (20, 0.07)
    keys = knn.knn_train_dataloader.dataset
    assert keys.ann_file == probe.train_dataloader.dataset.ann_file
    # keys are read like the val images: no random augmentation
    assert keys.pipeline == probe.test_pipeline


_EMIT = r'''
import sys
for i in range(4):
    sys.stdout.write('\rtokens: %d/3' % i)
    sys.stdout.flush()
sys.stdout.write('\n')
print('12/03 10:00:00 - mmengine - INFO - environment dump')
print('12/03 10:00:00 - mmengine - WARNING - The model and loaded state '
      'dict do not match exactly')
print('')
print('unexpected key in source state_dict: mask_token')
print("12/03 10:00:00 - mmengine - INFO - Pretrained weights of `backbone` "
      "from work_dirs/demo/pretrain/epoch_12.pth (prefix='backbone.'):")
print('  loaded and verified: 74 tensors')
print('  missing (newly initialised): none')
print("  unexpected (ignored): ['mask_token']")
print('12/03 10:00:01 - mmengine - INFO - Epoch(train) [1][5/5] loss: 1.0')
'''


def test_demo_console_progress_once_and_load_report(repo_root, tmp_path,
                                                    capsys):
    """A progress bar's redraws are one console line; with a log file the
    console keeps the warning, its detail and the load check's report."""
    from mapet.utils import run_logs as demo
    emit = tmp_path / 'emit.py'
    emit.write_text(_EMIT)
    demo.run([sys.executable, str(emit)])
    out = capsys.readouterr().out
    assert out.count('tokens:') == 1 and 'tokens: 3/3\n' in out
    log = tmp_path / 'train.log'
    demo.run([sys.executable, str(emit)], log_file=str(log))
    out = capsys.readouterr().out
    assert 'environment dump' not in out and 'tokens:' not in out
    for shown in ('do not match exactly', 'source state_dict: mask_token',
                  'loaded and verified: 74 tensors',
                  "unexpected (ignored): ['mask_token']", 'Epoch(train)'):
        assert out.count(shown) == 1, shown
    assert log.read_text().count('tokens:') == 1  # final state only
    report = demo.read_load_report(str(log))
    assert report == dict(
        module='backbone', checkpoint='work_dirs/demo/pretrain/epoch_12.pth',
        loaded_tensors=74, missing='none', unexpected="['mask_token']")
