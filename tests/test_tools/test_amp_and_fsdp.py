"""Mixed precision (bf16 / fp16 selection) and sharded (FSDP) training.

CPU only: bf16 autocast exists on CPU, fp16 autocast steps need a GPU (see
tools/analysis_tools/gpu_benchmark.sh). FSDP runs with 2 processes on gloo
(torch's FSDP takes CPU modules with ``device_id='cpu'``).
"""
import copy
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.amp import autocast

import mapet  # noqa: F401
from mapet.models.selfsup import MaPeT
from mapet.utils.precision import apply_amp_dtype, default_amp_dtype
from mapet.utils.sharding import prepare_fsdp, uses_fsdp
from mmpretrain.structures import DataSample

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HELPERS = osp.join(REPO, 'tests', 'helpers')
ARCH = dict(embed_dims=64, num_layers=2, num_heads=2, feedforward_channels=128)

# bf16 keeps 8 mantissa bits (relative rounding 2^-8 = 0.4 %); through two
# blocks and a 32-way softmax the loss moves by well under 1 %.
BF16_LOSS_RTOL = 1e-2


def _model(mode='mapet'):
    torch.manual_seed(0)
    model = MaPeT(
        backbone=dict(
            type='MaPeTViT', arch=ARCH, img_size=32, patch_size=8, mode=mode,
            cutting_point=5, drop_path_rate=0.1, layer_scale_init_value=0.1,
            out_type='raw'),
        head=dict(type='VisualTokenHead', embed_dims=64, num_embed=32))
    model.init_weights()
    return model.train()


def _batch(batch=4):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    samples = []
    for _ in range(batch):
        s = DataSample()
        s.set_field(torch.randperm(16, generator=g), 'permutation')
        s.set_field(torch.randint(32, (16, ), generator=g), 'visual_tokens')
        samples.append(s)
    return x, samples


def _step(model, dtype):
    """One AdamW step; returns (step loss, loss after the update)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, samples = _batch()
    torch.manual_seed(11)
    with autocast(device_type='cpu', dtype=dtype, enabled=dtype is not None):
        loss = model.loss(x, samples)['loss']
    loss.backward()
    opt.step()
    with torch.no_grad():
        torch.manual_seed(11)
        after = model.loss(x, samples)['loss']
    return loss.float().item(), after.item()


@pytest.mark.parametrize('mode', ['mapet', 'pim'])
def test_bf16_step_loss_matches_fp32(mode):
    fp32 = _model(mode)
    bf16 = copy.deepcopy(fp32)
    loss32, after32 = _step(fp32, None)
    loss16, after16 = _step(bf16, torch.bfloat16)
    assert loss16 != loss32  # autocast really ran in bf16
    assert abs(loss16 - loss32) <= BF16_LOSS_RTOL * abs(loss32)
    assert abs(after16 - after32) <= BF16_LOSS_RTOL * abs(after32)
    # The parameters stay fp32 master weights under autocast.
    assert all(p.dtype == torch.float32 for p in bf16.parameters())


def test_default_amp_dtype_cpu_is_fp16():
    # No CUDA here: bf16 is chosen only on Ampere-or-newer GPUs.
    assert default_amp_dtype() == 'float16'


def _pretrain_and_finetune_configs():
    out = []
    for folder in ('mapet', 'mapet_large', 'pim', 'mim', 'beit', 'cae',
                   'benchmarks'):
        out += sorted(
            glob.glob(osp.join(REPO, 'configs', folder, '**', '*.py'),
                      recursive=True))
    return out


def test_every_training_config_takes_both_amp_dtypes():
    configs = _pretrain_and_finetune_configs()
    assert len(configs) > 40
    for path in configs:
        cfg = Config.fromfile(path)
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper', path
        assert cfg.optim_wrapper.get('dtype') is None, path
        for choice in ('float16', 'bfloat16'):
            c = copy.deepcopy(cfg)
            apply_amp_dtype(c, choice)
            assert c.optim_wrapper.dtype == choice
        c = copy.deepcopy(cfg)
        apply_amp_dtype(c, 'auto')
        assert c.optim_wrapper.dtype == default_amp_dtype()


def test_auto_keeps_config_dtype_and_ignores_fp32_wrappers():
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper',
                                         dtype='bfloat16')))
    apply_amp_dtype(cfg, 'auto')
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    apply_amp_dtype(cfg, 'float16')
    assert cfg.optim_wrapper.dtype == 'float16'
    plain = Config(dict(optim_wrapper=dict(type='OptimWrapper')))
    apply_amp_dtype(plain, 'bfloat16')
    assert 'dtype' not in plain.optim_wrapper
    with pytest.raises(ValueError, match='amp-dtype'):
        apply_amp_dtype(cfg, 'float8')


def _merge(cases, tmp_path, tools_env):
    path = tmp_path / 'cases.json'
    path.write_text(json.dumps(cases))
    out = subprocess.run(
        [sys.executable,
         osp.join(HELPERS, 'tool_merge_args.py'), REPO,
         str(path)],
        cwd=REPO, env=tools_env, capture_output=True, text=True, timeout=300,
        check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_train_py_amp_dtype_flags(tmp_path, tools_env):
    amp = dict(optim_wrapper=dict(type='AmpOptimWrapper', loss_scale='dynamic',
                                  optimizer=dict(type='AdamW', lr=1e-3)))
    fp32 = dict(optim_wrapper=dict(type='OptimWrapper',
                                   optimizer=dict(type='AdamW', lr=1e-3)))
    cases = [
        dict(tool='train', argv=['c.py', '--no-amp', '--amp-dtype',
                                 'bfloat16'], cfg=amp),
        dict(tool='train', argv=['c.py', '--amp-dtype', 'bfloat16'],
             cfg=fp32),
        dict(tool='train', argv=['c.py', '--no-amp'], cfg=amp),
        dict(tool='train', argv=['c.py', '--amp-dtype', 'float32'], cfg=amp),
    ]
    both, implied, no_amp, bad = _merge(cases, tmp_path, tools_env)
    assert both['error'] == 'ValueError' and '--no-amp' in both['message']
    # An explicit dtype implies --amp; on this CPU-only machine that is
    # refused with the advice to use --no-amp.
    assert implied['error'] == 'RuntimeError'
    assert '--no-amp' in implied['message']
    assert no_amp['cfg']['optim_wrapper']['type'] == 'OptimWrapper'
    assert 'dtype' not in no_amp['cfg']['optim_wrapper']
    assert bad['error'] == 'SystemExit'


# -- FSDP ----------------------------------------------------------------------
def test_vit_l_configs_select_fsdp():
    for name in ('mapet_vit-l_300e_in1k.py', 'mapet_vit-l_vqkd_300e_in1k.py'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', 'mapet_large', name))
        assert uses_fsdp(cfg)
        assert cfg.runner_type == 'mmpretrain.MaPeTFlexibleRunner'
        assert cfg.strategy.type == \
            'mapet.engine.strategies.VerifiedFSDPStrategy'
        assert cfg.model.backbone.arch == 'large'
        assert cfg.model.backbone.cutting_point == 60
        assert cfg.model.head.embed_dims == 1024
        prepare_fsdp(cfg)
        assert cfg.optim_wrapper.use_fsdp is True  # sharded grad scaler
        assert cfg.strategy.model_wrapper.device_id == 'cpu'  # no CUDA here


# The shipped ViT-L config (runner, strategy, ExactResume loop), shrunk:
# a 2-layer model on 8 demo images with online tiny-tokenizer targets.
FSDP_TEST_CONFIG = '''
_base_ = {base!r}
custom_imports = dict(
    imports=['mapet', 'core_tiny_tokenizer'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=64, num_layers=2, num_heads=2,
                  feedforward_channels=128),
        img_size=32, patch_size=8, cutting_point=5, drop_path_rate=0.0),
    head=dict(embed_dims=64, num_embed=32),
    target_generator=dict(type='CoreTinyTokenizer', vocab_size=32,
                          patch_size=8))
train_dataloader = dict(
    _delete_=True, batch_size=2, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='CustomDataset', data_root={data_root!r},
        ann_file='meta/train.txt', data_prefix='train',
        indices=list(range(8)),
        pipeline=[
            dict(type='LoadImageForTokens'),
            dict(type='Resize', scale=(32, 32)),
            dict(type='ColorJitter', brightness=0.4, contrast=0.4,
                 saturation=0.4),
            dict(type='RandomPatchPermutation', input_size=32,
                 patch_size=8),
            dict(type='PackInputs', algorithm_keys=['permutation']),
        ]))
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=3.0))
param_scheduler = []
train_cfg = dict(max_epochs=1)  # the shipped ExactResumeEpochBasedTrainLoop
auto_scale_lr = dict(enable=False)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=1))
log_processor = dict(window_size=1)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
'''


def _fsdp_train(tmp_path, tools_env, free_port, work_dir, *options):
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        f'--master_port={free_port()}',
        osp.join(REPO, 'tools', 'train.py'),
        str(tmp_path / 'fsdp_tiny.py'), '--launcher', 'pytorch',
        '--work-dir', str(work_dir), *options
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=tools_env, capture_output=True,
                          text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_fsdp_two_processes_gloo(tmp_path, tools_env, free_port,
                                 demo_data_root):
    """2 ranks, FSDP on gloo, through MaPeTFlexibleRunner: gathered
    checkpoints with sidecars, a verified auto-resume, stale temporaries
    removed, a checkpoint of another architecture refused."""
    from mapet.utils.atomic import checksum_path
    from mapet.utils.checkpoint import load_checkpoint_file
    base = osp.join(REPO, 'configs', 'mapet_large',
                    'mapet_vit-l_300e_in1k.py')
    (tmp_path / 'fsdp_tiny.py').write_text(
        FSDP_TEST_CONFIG.format(base=base, data_root=str(demo_data_root)))
    work_dir = tmp_path / 'work'
    rc, log = _fsdp_train(tmp_path, tools_env, free_port, work_dir)
    assert rc == 0, log[-4000:]
    assert 'FullyShardedDataParallel' in log or 'FSDP' in log, log[-3000:]
    ckpt = work_dir / 'epoch_1.pth'
    assert ckpt.exists() and osp.exists(checksum_path(str(ckpt))), log[-2000:]
    # Verified, weights_only load (raises on a bad sidecar or pickle).
    state = load_checkpoint_file(str(ckpt))
    weights = state['state_dict']
    # Full (gathered) state dict: unsharded shapes, plain key names.
    qkv = [k for k in weights if k.endswith('layers.0.attn.qkv.weight')]
    assert qkv and tuple(weights[qkv[0]].shape) == (192, 64), list(weights)
    assert any(k.endswith('mask_token') for k in weights)
    assert all(torch.isfinite(v).all() for v in weights.values()
               if v.is_floating_point())
    assert type(state['message_hub']['log_scalars']['train/loss']) \
        .__name__ == 'DataOnlyHistoryBuffer'

    # Auto-resume (newest intact checkpoint), after a killed save's
    # temporary file: removed, then one more epoch.
    stale = work_dir / '.epoch_2.pth.tmp-99999'
    stale.write_bytes(b'partial')
    rc, log = _fsdp_train(tmp_path, tools_env, free_port, work_dir,
                          '--resume', '--cfg-options',
                          'train_cfg.max_epochs=2')
    assert rc == 0, log[-4000:]
    assert not stale.exists()
    assert f'Removing {stale}' in log
    assert f'Auto-resuming from {ckpt}' in log
    assert f'Load checkpoint from {ckpt} (verified)' in log
    assert 'resumed epoch: 1' in log, log[-3000:]
    assert 'ExactResumeHook: 1 training pipeline(s) now draw' in log
    newest = work_dir / 'epoch_2.pth'
    assert osp.exists(checksum_path(str(newest)))
    assert not ckpt.exists()  # rotated: max_keep_ckpts=1

    # A checkpoint of another head size: refused before anything trains.
    rc, log = _fsdp_train(tmp_path, tools_env, free_port,
                          tmp_path / 'other', '--cfg-options',
                          f'load_from={newest}', 'model.head.num_embed=16',
                          'model.target_generator.vocab_size=16')
    assert rc != 0
    assert 'CheckpointMismatchError' in log, log[-6000:]
    assert 'shape mismatches' in log and 'head.' in log, log[-3000:]


def test_flexible_runner_needs_the_verified_strategy(tmp_path):
    from mapet.engine.runners import MaPeTFlexibleRunner
    from mapet.engine.strategies import VerifiedFSDPStrategy
    with pytest.raises(ValueError, match="state_dict_cfg='full'"):
        VerifiedFSDPStrategy(state_dict_cfg='local')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mapet_large',
                                   'mapet_vit-l_300e_in1k.py'))
    assert uses_fsdp(cfg)
    cfg.strategy.type = 'FSDPStrategy'
    assert uses_fsdp(cfg)  # mmengine's own counts as FSDP too
    cfg.strategy = dict(type='DDPStrategy')
    assert not uses_fsdp(cfg)
    # Refused before mmengine builds anything (no work dir, no global
    # default scope left behind for the tests that follow).
    for strategy, name in ((None, 'None \\(mmengine picks its default\\)'),
                           (dict(type='FSDPStrategy'), 'FSDPStrategy'),
                           (dict(type='DDPStrategy'), 'DDPStrategy')):
        with pytest.raises(ValueError, match=f'got strategy {name}, whose '
                           'loads it cannot verify'):
            MaPeTFlexibleRunner(model=dict(type='TinyModel'),
                                work_dir=str(tmp_path / 'work'),
                                strategy=strategy)
    assert not (tmp_path / 'work').exists()
