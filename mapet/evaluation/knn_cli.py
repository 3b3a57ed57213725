"""Weighted k-NN evaluation of a frozen backbone (DINO's protocol).

No trained parameter: the features of the train split (evaluation
pipeline, no augmentation) are the keys, every val image votes with its
``k`` nearest keys by cosine similarity, weighted ``exp(s / T)``
(k = 20, T = 0.07 as DINO). The config is a k-NN benchmark config
(``configs/benchmarks/classification/*knn*.py``, ``configs/demo/
vit-t6-p16_knn_demo.py``): the linear-probe model (backbone + pooling neck;
the head is unused), ``knn_train_dataloader`` / ``val_dataloader`` and
``knn = dict(k=..., temperature=..., chunk_size=...)``::

    python tools/analysis_tools/knn_eval.py CONFIG [--checkpoint CKPT] \
        [--out knn.json] [--cfg-options k=v ...]
    torchrun --nproc_per_node 8 tools/analysis_tools/knn_eval.py CONFIG ...

Under ``torchrun`` each process extracts the features of its shard
(``rank::world_size``); they are all-gathered and rank 0 runs the k-NN in
chunks of ``knn.chunk_size`` val images (on the GPU when there is one).
The checkpoint (``--checkpoint`` or the backbone's ``Pretrained``
init_cfg) is loaded with the sidecar-verified, ``weights_only`` loader and
every key is checked (``check_pretrained_load``): a wrong prefix or
architecture fails instead of evaluating a random backbone.
"""
import argparse
import json
import os
import os.path as osp
import time

import torch
from mmengine.config import Config, DictAction

import mapet  # noqa: F401
from mapet.evaluation.knn import (extract_features,
                                  knn_accuracy)
from mapet.extraction.images import init_tool_dist


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('--checkpoint', help='overrides the backbone init_cfg '
                   "checkpoint; 'none' = randomly initialised backbone")
    p.add_argument('--out', help='JSON file for the metrics')
    p.add_argument('--k', type=int, help='overrides knn.k')
    p.add_argument('--temperature', type=float,
                   help='overrides knn.temperature')
    p.add_argument('--batch-size', type=int, default=None)
    p.add_argument('--num-workers', type=int, default=None)
    p.add_argument('--seed', type=int, default=0,
                   help='torch seed set before the model is built (draws '
                   'the backbone of `--checkpoint none`); default 0')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def _build(cfg, args, device):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS, MODELS

    from mapet.engine.hooks.pretrained_load_check import \
        check_pretrained_load
    from mapet.utils.checkpoint import load_checkpoint_file

    model_cfg = cfg.model.copy()
    init = dict(model_cfg.backbone.get('init_cfg') or {})
    ckpt = args.checkpoint or init.get('checkpoint')
    if ckpt is not None and ckpt.lower() == 'none':
        ckpt = None
    prefix = init.get('prefix', 'backbone.')
    model_cfg.backbone['init_cfg'] = None
    if 'data_preprocessor' in cfg and 'data_preprocessor' not in model_cfg:
        model_cfg['data_preprocessor'] = cfg.data_preprocessor
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
        model.init_weights()
        report = None
        if ckpt is not None:
            state = load_checkpoint_file(ckpt, map_location='cpu')
            state = state.get('state_dict', state)
            if prefix:
                state = {k[len(prefix):]: v for k, v in state.items()
                         if k.startswith(prefix)}
            model.backbone.load_state_dict(state, strict=False)
            allowed = []
            for hook in cfg.get('custom_hooks', []):
                if hook.get('type') == 'PretrainedLoadCheckHook':
                    allowed = hook.get('allowed_unexpected', [])
            report = check_pretrained_load(
                model.backbone, ckpt, prefix, allowed_unexpected=allowed)
            if report.errors:
                raise RuntimeError(f'checkpoint {ckpt} did not load into the '
                                   'backbone: ' + '; '.join(report.errors))
        train_ds = DATASETS.build(cfg.knn_train_dataloader.dataset)
        val_ds = DATASETS.build(cfg.val_dataloader.dataset)
    return model.to(device).eval(), train_ds, val_ds, ckpt, report


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    knn_cfg = dict(k=20, temperature=0.07, chunk_size=1024)
    knn_cfg.update(cfg.get('knn', {}))
    if args.k:
        knn_cfg['k'] = args.k
    if args.temperature:
        knn_cfg['temperature'] = args.temperature
    rank, world, device = init_tool_dist()
    torch.manual_seed(args.seed)
    model, train_ds, val_ds, ckpt, report = _build(cfg, args, device)
    from mmengine.dataset import pseudo_collate
    loader_cfg = cfg.val_dataloader
    batch = args.batch_size or loader_cfg.get('batch_size', 64)
    workers = args.num_workers if args.num_workers is not None else \
        loader_cfg.get('num_workers', 2)

    @torch.no_grad()
    def feature_fn(data):
        data = model.data_preprocessor(data, False)
        feats = model.extract_feat(data['inputs'])
        return feats[-1] if isinstance(feats, (tuple, list)) else feats

    def label_fn(data):
        return torch.stack([s.gt_label[0] for s in data['data_samples']])

    t0 = time.time()
    common = dict(batch_size=batch, num_workers=workers,
                  collate_fn=pseudo_collate, label_fn=label_fn, rank=rank,
                  world_size=world, gather_device=device)
    train_f, train_y = extract_features(feature_fn, train_ds, **common)
    val_f, val_y = extract_features(feature_fn, val_ds, **common)
    t_feat = time.time() - t0
    if rank != 0:
        return None
    num_classes = len(train_ds.metainfo.get('classes') or []) or \
        int(max(train_y.max(), val_y.max())) + 1
    metrics = knn_accuracy(train_f, train_y, val_f, val_y, num_classes,
                           k=knn_cfg['k'],
                           temperature=knn_cfg['temperature'],
                           chunk_size=knn_cfg['chunk_size'], topk=(1, 5))
    result = dict(
        metrics=metrics,
        k=knn_cfg['k'],
        temperature=knn_cfg['temperature'],
        num_train=int(train_f.shape[0]),
        num_val=int(val_f.shape[0]),
        num_classes=num_classes,
        chance_top1=100.0 / num_classes,
        feature_dim=int(train_f.shape[1]),
        checkpoint=ckpt,
        seed=args.seed,
        checkpoint_keys_loaded=len(report.loaded) if report else 0,
        checkpoint_keys_missing=list(report.missing) if report else [],
        checkpoint_keys_unexpected=list(report.unexpected) if report else [],
        world_size=world,
        seconds_features=round(t_feat, 1),
        seconds_total=round(time.time() - t0, 1))
    if ckpt is not None:
        print(f'verified load: {len(report.loaded)} backbone tensors from '
              f'{ckpt} (missing {report.missing}, unexpected '
              f'{report.unexpected})')
    else:
        print('backbone: randomly initialised (no checkpoint)')
    print(f'k-NN (k={knn_cfg["k"]}, T={knn_cfg["temperature"]}) on '
          f'{result["num_val"]} val images, {result["num_train"]} keys, '
          f'{num_classes} classes (chance {result["chance_top1"]:.1f} %): '
          + ', '.join(f'{k} {v:.2f} %' for k, v in metrics.items()))
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)
    return result

