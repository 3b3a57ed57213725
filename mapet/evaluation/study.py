"""Small-scale objectives study: MaPeT / PIM / MIM / BEiT / random init.

Engine of ``tools/analysis_tools/objective_study.py``. With the *same*
tokens, backbone, budget and seeds it pre-trains a ViT with each objective,
then scores the frozen backbone with the weighted k-NN (:mod:`.knn`) and a
linear probe, for ``S`` pre-training seeds x ``P`` probe seeds:

* ``mapet`` / ``pim``: ``MaPeT`` with ``backbone.mode`` = ``'mapet'`` /
  ``'pim'``, one random permutation per image (``RandomPatchPermutation``);
* ``mim``: ``mode='mim'``, random masking (mmpretrain's
  ``SimMIMMaskGenerator``, ``mask_ratio`` of the patches);
* ``beit``: ``mode='mim'`` with block-wise masking (mmpretrain's
  ``BEiTMaskGenerator``, same number of masked patches);
* ``random``: the same backbone, initialised with the same seed, untrained.

Augmentation conditions of pre-training (tokens must match the pixels):
``jitter`` = the stored centre view + colour jitter 0.4 (the paper's
recipe); ``views`` = a random stored view (centre, flip, random-resized
crops; :mod:`mapet.datasets.token_views`) + colour jitter.

Everything runs in one process on tensors held in memory (demo scale);
the model, head, loss, masks and view rendering are the package's own.
"""
import json
import math
import os
import os.path as osp
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .knn import DINO_K, DINO_TEMPERATURE, knn_accuracy

OBJECTIVES = ('mapet', 'pim', 'mim', 'beit', 'random')
AUGMENTS = ('jitter', 'views')
# CLIP normalisation of the backbone's input (as the tokenizer sees it).
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


@dataclass
class StudyConfig:
    """Settings of one study (every field is recorded in the JSON)."""
    data_root: str
    out_dir: str
    img_size: int = 48
    patch_size: int = 8
    num_layers: int = 4
    embed_dims: int = 128
    num_heads: int = 4
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1.5e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    cutting_point: Optional[int] = None  # default: 25 % of the patches
    mask_ratio: float = 0.38  # MIM / BEiT (75 of 196 in the paper configs)
    seeds: Sequence[int] = (0, 1, 2)
    probe_seeds: Sequence[int] = (0, 1)
    objectives: Sequence[str] = OBJECTIVES
    augments: Sequence[str] = ('jitter', )
    tokenizer: str = 'kclip-random'  # or 'pixel'
    vocab_size: int = 64
    num_crops: int = 4
    probe_epochs: int = 100
    probe_lr: float = 4e-3
    probe_weight_decay: float = 1e-4
    probe_views: bool = True  # probe trains on the stored (RRC+flip) views
    knn_k: int = DINO_K
    knn_temperature: float = DINO_TEMPERATURE
    tokenizer_seed: int = 0
    threads: int = 1
    tokens_dir: Optional[str] = None  # reuse a codebook + store (same args)
    extra: Dict = field(default_factory=dict)


# ----------------------------------------------------------------- data ----
def read_split(data_root: str, split: str) -> Tuple[List[str], List[int]]:
    """``(relpaths under data_root, labels)`` of ``meta/<split>.txt``."""
    paths, labels = [], []
    with open(osp.join(data_root, 'meta', f'{split}.txt')) as f:
        for line in f:
            if line.strip():
                p, lab = line.rsplit(maxsplit=1)
                paths.append(f'{split}/{p}')
                labels.append(int(lab))
    return paths, labels


def _to_uint8(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(
        2, 0, 1)


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    return (images_uint8.float() / 255. - MEAN) / STD


def colour_jitter(images: torch.Tensor, gen: torch.Generator,
                  strength: float = 0.4) -> torch.Tensor:
    """Per-image brightness / contrast / saturation jitter (0-1 floats)."""
    b = images.shape[0]

    def factor():
        return 1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * strength

    x = images * factor()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    grey = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:])
    x = (x - grey) * factor() + grey
    return x.clamp(0, 1)


# ------------------------------------------------------------ tokenizer ----
def build_tokens(cfg: StudyConfig, log: Callable[[str], None]) -> Dict:
    """Fit the tokenizer, extract the train view store, render every view.

    Returns a dict with ``train_images`` uint8 (n, V, 3, S, S),
    ``train_tokens`` int64 (n, V, T), ``train_labels``, ``val_images``
    (m, 3, S, S) (centre view), ``val_labels``, ``store`` and
    ``codebook`` paths, ``num_classes``.
    """
    from mapet.datasets.token_views import ViewTokenStore, render_view
    from mapet.extraction.engines import fit_kmeans
    from mapet.extraction.images import ImageRecord
    from mapet.extraction.views import extract_view_tokens

    grid = cfg.img_size // cfg.patch_size
    train_rel, train_labels = read_split(cfg.data_root, 'train')
    val_rel, val_labels = read_split(cfg.data_root, 'val')
    records = [ImageRecord(r, osp.join(cfg.data_root, r)) for r in train_rel]
    work = cfg.tokens_dir or osp.join(cfg.out_dir, 'tokens')
    os.makedirs(work, exist_ok=True)
    store_dir = osp.join(work, 'store')
    codebook = osp.join(work, 'codebook.npz')
    torch.manual_seed(cfg.tokenizer_seed)
    if cfg.tokenizer == 'kclip-random':
        from mapet.extraction.engines import sample_clip_features
        from mapet.models.tokenizers import KClipTokenizer, save_codebook
        from mapet.models.tokenizers.kclip import (CLIP_MEAN, CLIP_STD,
                                                   ClipResNetTrunk)
        size = grid * 32
        if not osp.isfile(codebook):
            torch.manual_seed(cfg.tokenizer_seed)
            trunk = ClipResNetTrunk('RN50', None)
            feats = sample_clip_features(
                trunk, records, osp.join(work, 'features'), size, CLIP_MEAN,
                CLIP_STD, fraction=0.5, seed=cfg.tokenizer_seed,
                num_workers=0, progress=False)
            cents = fit_kmeans(feats, cfg.vocab_size, niter=20, nredo=1,
                               seed=cfg.tokenizer_seed, use_gpu=False,
                               verbose=False)
            save_codebook(codebook, cents, dict(
                clip_model='RN50', pretrained=None, layer='layer4',
                normalize=False))
        torch.manual_seed(cfg.tokenizer_seed)
        tokenizer = KClipTokenizer('RN50', None, codebook, input_size=size)
        tok_desc = ('k-CLIP, RANDOMLY INITIALISED CLIP RN50 (no weights '
                    f'offline), {size} px, K = {cfg.vocab_size}')
    elif cfg.tokenizer == 'pixel':
        from mapet.models.tokenizers import save_codebook
        from mapet.models.tokenizers.pixel import (PixelKMeansTokenizer,
                                                   pixel_patch_features)
        size = cfg.img_size
        pool = max(1, cfg.patch_size // 4)
        if not osp.isfile(codebook):
            rng = np.random.default_rng(cfg.tokenizer_seed)
            imgs = []
            for rec in records:
                with Image.open(rec.path) as im:
                    im = im.convert('RGB')
                    side = min(im.size)
                    box = ((im.width - side) // 2, (im.height - side) // 2,
                           side, side, 0)
                    imgs.append(_to_uint8(render_view(im, box, size)))
            x = (torch.stack(imgs).float() / 255. -
                 torch.tensor(PixelKMeansTokenizer.mean).view(1, 3, 1, 1)) \
                / torch.tensor(PixelKMeansTokenizer.std).view(1, 3, 1, 1)
            feats = pixel_patch_features(x, cfg.patch_size, pool)
            feats = feats.reshape(-1, feats.shape[-1]).numpy()
            keep = rng.random(len(feats)) < 0.5
            cents = fit_kmeans(feats[keep], cfg.vocab_size, niter=20, nredo=1,
                               seed=cfg.tokenizer_seed, use_gpu=False,
                               verbose=False)
            save_codebook(codebook, cents, dict(type='pixel', pool=pool))
        tokenizer = PixelKMeansTokenizer(
            codebook, stride=cfg.patch_size, pool=pool, input_size=size)
        tok_desc = (f'k-means of {cfg.patch_size} px pixel patches '
                    f'(pooled x{pool}), K = {cfg.vocab_size}')
    else:
        raise ValueError(f'unknown tokenizer {cfg.tokenizer!r}')
    if not osp.isfile(osp.join(store_dir, 'manifest.json')):
        t0 = time.time()
        extract_view_tokens(
            tokenizer, records, store_dir, num_crops=cfg.num_crops,
            flip=True, seed=cfg.tokenizer_seed, input_size=size,
            batch_size=32, num_workers=0, progress=False)
        log(f'view store: {len(records)} images x '
            f'{2 + cfg.num_crops} views in {time.time() - t0:.0f} s')
    store = ViewTokenStore(store_dir)
    store.verify()
    v = store.views_per_image
    imgs, toks = [], []
    for rec in records:
        with Image.open(rec.path) as im:
            im = im.convert('RGB')
            per_img, per_tok = [], []
            for k in range(v):
                t, view = store.get_view(rec.relpath, k)
                per_img.append(_to_uint8(render_view(im, view, cfg.img_size)))
                per_tok.append(torch.from_numpy(t))
        imgs.append(torch.stack(per_img))
        toks.append(torch.stack(per_tok))
    val_imgs = []
    for r in val_rel:
        with Image.open(osp.join(cfg.data_root, r)) as im:
            im = im.convert('RGB')
            side = min(im.size)
            box = ((im.width - side) // 2, (im.height - side) // 2, side,
                   side, 0)
            val_imgs.append(_to_uint8(render_view(im, box, cfg.img_size)))
    tokens = torch.stack(toks)
    counts = torch.bincount(tokens[:, 0].reshape(-1),
                            minlength=cfg.vocab_size).double()
    p = counts / counts.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    return dict(
        train_images=torch.stack(imgs),
        train_tokens=tokens,
        train_labels=torch.tensor(train_labels),
        val_images=torch.stack(val_imgs),
        val_labels=torch.tensor(val_labels),
        num_classes=int(max(train_labels + val_labels) + 1),
        store=store_dir,
        codebook=codebook,
        tokenizer=tok_desc,
        token_entropy_nats=entropy,
        tokens_used=int((counts > 0).sum()))


# ---------------------------------------------------------------- model ----
def build_model(cfg: StudyConfig, objective: str, seed: int):
    """``MaPeT`` model (mmpretrain registry) for ``objective``, seeded."""
    import mapet  # noqa: F401
    from mmpretrain.registry import MODELS
    n = (cfg.img_size // cfg.patch_size)**2
    mode = {'mapet': 'mapet', 'pim': 'pim'}.get(objective, 'mim')
    c = cfg.cutting_point or max(1, n // 4)
    torch.manual_seed(seed)
    model = MODELS.build(
        dict(
            type='MaPeT',
            backbone=dict(
                type='MaPeTViT',
                arch=dict(
                    embed_dims=cfg.embed_dims,
                    num_layers=cfg.num_layers,
                    num_heads=cfg.num_heads,
                    feedforward_channels=4 * cfg.embed_dims),
                img_size=cfg.img_size,
                patch_size=cfg.patch_size,
                mode=mode,
                cutting_point=None if mode == 'mim' else c,
                drop_path_rate=0.0,
                layer_scale_init_value=0.1,
                final_norm=True,
                out_type='raw',
                init_cfg=[
                    dict(type='TruncNormal', std=0.02, layer='Linear'),
                    dict(type='TruncNormal', std=0.02, layer='Conv2d'),
                    dict(type='Constant', layer='LayerNorm', val=1.0,
                         bias=0.0)
                ]),
            head=dict(
                type='VisualTokenHead',
                embed_dims=cfg.embed_dims,
                num_embed=cfg.vocab_size)))
    # mmengine logs every parameter's initialiser at INFO (hundreds of
    # lines per model, to the console without a runner): keep warnings only
    import logging

    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def _mask_generator(cfg: StudyConfig, objective: str):
    from mmpretrain.datasets.transforms import (BEiTMaskGenerator,
                                                SimMIMMaskGenerator)
    grid = cfg.img_size // cfg.patch_size
    if objective == 'mim':
        return SimMIMMaskGenerator(
            input_size=cfg.img_size,
            mask_patch_size=cfg.patch_size,
            model_patch_size=cfg.patch_size,
            mask_ratio=cfg.mask_ratio)
    num = int(math.ceil(grid * grid * cfg.mask_ratio))
    return BEiTMaskGenerator(
        input_size=grid,
        num_masking_patches=num,
        min_num_patches=min(4, num),
        max_num_patches=None)


def pretrain(cfg: StudyConfig, objective: str, augment: str, seed: int,
             data: Dict, log: Callable[[str], None]) -> Tuple[object, Dict]:
    """Pre-train one model; returns ``(backbone, stats)``."""
    from mmpretrain.structures import DataSample
    from mmpretrain.datasets.transforms import RandomFlip  # noqa: F401
    from mapet.datasets.transforms import RandomPatchPermutation
    random.seed(seed)
    np.random.seed(seed)
    model = build_model(cfg, objective, seed)
    if objective == 'random':
        return model.backbone, dict(iterations=0, seconds=0.0)
    gen = torch.Generator().manual_seed(seed)
    imgs, toks = data['train_images'], data['train_tokens']
    n, v = imgs.shape[:2]
    steps_per_epoch = max(1, n // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = steps_per_epoch * cfg.warmup_epochs
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim == 1 or name.endswith(
            ('pos_embed', 'cls_token', 'mask_token')) else decay).append(p)
    opt = torch.optim.AdamW([
        dict(params=decay, weight_decay=cfg.weight_decay),
        dict(params=no_decay, weight_decay=0.0)
    ], lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    if objective in ('mapet', 'pim'):
        perm = RandomPatchPermutation(cfg.img_size, cfg.patch_size)
    else:
        masker = _mask_generator(cfg, objective)
    model.train()
    t0, step, losses, accs = time.time(), 0, [], []
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if augment == 'views':
                view = torch.randint(v, (len(idx), ), generator=gen)
            else:
                view = torch.zeros(len(idx), dtype=torch.long)
            x = imgs[idx, view].float() / 255.
            x = colour_jitter(x, gen)
            x = (x - MEAN) / STD
            samples = []
            for t in toks[idx, view]:
                ds = DataSample()
                ds.set_field(t, 'visual_tokens', field_type='metainfo')
                if objective in ('mapet', 'pim'):
                    ds.set_field(
                        torch.from_numpy(perm.transform({})['permutation']),
                        'permutation', field_type='metainfo')
                else:
                    ds.set_field(
                        torch.as_tensor(masker.transform({})['mask']),
                        'mask', field_type='metainfo')
                samples.append(ds)
            lr = cfg.lr * (step + 1) / max(1, warm) if step < warm else \
                1e-5 + (cfg.lr - 1e-5) * 0.5 * (1 + math.cos(
                    math.pi * (step - warm) / max(1, total - warm)))
            for g in opt.param_groups:
                g['lr'] = lr
            out = model.loss(x, samples)
            opt.zero_grad(set_to_none=True)
            out['loss'].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
            opt.step()
            losses.append(float(out['loss'].detach()))
            accs.append(float(out['accuracy']))
            step += 1
        if epoch == 0 or epoch == cfg.epochs - 1:
            k = steps_per_epoch
            log(f'  {objective}/{augment} seed {seed} epoch {epoch + 1}/'
                f'{cfg.epochs}: loss {np.mean(losses[-k:]):.3f}, token acc '
                f'{np.mean(accs[-k:]):.1f} %')
    k = steps_per_epoch
    return model.backbone, dict(
        iterations=step,
        seconds=round(time.time() - t0, 1),
        loss_first_epoch=float(np.mean(losses[:k])),
        loss_last_epoch=float(np.mean(losses[-k:])),
        token_acc_last_epoch=float(np.mean(accs[-k:])))


# ----------------------------------------------------------- evaluation ----
@torch.no_grad()
def backbone_features(backbone, images_uint8: torch.Tensor,
                      batch: int = 256) -> torch.Tensor:
    """Average-pooled final-normed patch tokens (the linear-probe configs'
    representation: ``out_type='featmap'`` + ``GlobalAveragePooling``)."""
    backbone.eval()
    out = []
    for i in range(0, images_uint8.shape[0], batch):
        x = normalize(images_uint8[i:i + batch])
        feats = backbone(x)[-1]  # raw: (B, 1 + N, C) after the final norm
        out.append(feats[:, 1:].mean(dim=1))
    return torch.cat(out)


def pixel_features(images_uint8: torch.Tensor, size: int = 8) -> torch.Tensor:
    """Reference representation without any network: downsampled pixels."""
    x = normalize(images_uint8)
    return F.adaptive_avg_pool2d(x, size).flatten(1)


def linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor,
                 val_feats: torch.Tensor, val_labels: torch.Tensor,
                 num_classes: int, seed: int, epochs: int = 100,
                 lr: float = 4e-3, weight_decay: float = 1e-4,
                 batch_size: int = 64) -> float:
    """Top-1 (%) of a linear classifier on frozen features.

    ``train_feats`` is (n, D) or (n, V, D): with views, each epoch draws one
    view per image (the stored random-resized crops / flips play the
    recipe's RRC + flip). AdamW, cosine schedule, truncated-normal init
    (std 0.01) as the linear-probe configs; no feature normalisation.
    """
    gen = torch.Generator().manual_seed(seed)
    if train_feats.ndim == 2:
        train_feats = train_feats[:, None]
    n, v, d = train_feats.shape
    head = torch.nn.Linear(d, num_classes)
    with torch.no_grad():
        head.weight.copy_(
            torch.nn.init.trunc_normal_(torch.empty(num_classes, d), std=0.01,
                                        generator=gen))
        head.bias.zero_()
    opt = torch.optim.AdamW(head.parameters(), lr=lr,
                            weight_decay=weight_decay)
    steps = max(1, math.ceil(n / batch_size)) * epochs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        view = torch.randint(v, (n, ), generator=gen)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(
                head(train_feats[idx, view[idx]]), train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        pred = head(val_feats).argmax(dim=1)
    return 100.0 * float((pred == val_labels).float().mean())


def evaluate(cfg: StudyConfig, backbone, data: Dict) -> Dict:
    """k-NN (centre views of train as keys) and linear probes (P seeds)."""
    if backbone is None:
        feat = pixel_features
    else:
        def feat(x):
            return backbone_features(backbone, x)
    imgs = data['train_images']
    n, v = imgs.shape[:2]
    train_all = feat(imgs.reshape(n * v, *imgs.shape[2:])).reshape(n, v, -1)
    val = feat(data['val_images'])
    ytr, yval = data['train_labels'], data['val_labels']
    knn = knn_accuracy(train_all[:, 0], ytr, val, yval, data['num_classes'],
                       k=cfg.knn_k, temperature=cfg.knn_temperature)
    probe_train = train_all if cfg.probe_views else train_all[:, 0]
    probes = [
        linear_probe(probe_train, ytr, val, yval, data['num_classes'], s,
                     cfg.probe_epochs, cfg.probe_lr, cfg.probe_weight_decay)
        for s in cfg.probe_seeds
    ]
    return dict(knn_top1=knn['knn/top1'], linear_top1=probes)


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarise(runs: List[Dict]) -> List[Dict]:
    """Mean / sample std over pre-training seeds per (objective, augment);
    the linear probe of one seed is the mean over its probe seeds."""
    groups: Dict[Tuple[str, str], List[Dict]] = {}
    for r in runs:
        groups.setdefault((r['objective'], r['augment']), []).append(r)
    rows = []
    for (obj, aug), rs in groups.items():
        knn_m, knn_s = _mean_std([r['knn_top1'] for r in rs])
        lin_m, lin_s = _mean_std(
            [float(np.mean(r['linear_top1'])) for r in rs])
        rows.append(
            dict(objective=obj, augment=aug, seeds=[r['seed'] for r in rs],
                 knn_mean=knn_m, knn_std=knn_s, linear_mean=lin_m,
                 linear_std=lin_s,
                 probe_seed_std_mean=float(np.mean(
                     [np.std(r['linear_top1'], ddof=1)
                      if len(r['linear_top1']) > 1 else 0.0 for r in rs]))))
    return rows


def plot(summary: List[Dict], meta: Dict, out: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    labels = [f'{r["objective"]}\n{r["augment"]}' if r['objective'] not in
              ('random', 'pixels') else r['objective'] for r in summary]
    x = np.arange(len(summary))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(summary) + 2), 4))
    w = 0.38
    ax.bar(x - w / 2, [r['knn_mean'] for r in summary], w,
           yerr=[r['knn_std'] for r in summary], capsize=3,
           label=f'k-NN (k={meta["knn_k"]}, T={meta["knn_temperature"]})')
    ax.bar(x + w / 2, [r['linear_mean'] for r in summary], w,
           yerr=[r['linear_std'] for r in summary], capsize=3,
           label='linear probe')
    ax.axhline(meta['chance'], color='k', ls='--', lw=1,
               label=f'chance {meta["chance"]:.1f} %')
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel('val top-1 % (mean +- std over seeds)')
    ax.set_title(f'{meta["dataset"]}: n_val={meta["n_val"]}, '
                 f'{meta["num_seeds"]} pre-training seeds x '
                 f'{meta["num_probe_seeds"]} probe seeds\n'
                 f'tokenizer: {meta["tokenizer"]}', fontsize=9)
    ax.legend(fontsize=8, loc='lower right')
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def markdown_table(result: Dict) -> str:
    """The summary of a ``study.json`` as a Markdown table."""
    m = result['meta']
    lines = [
        f'{m["dataset"]}: n_train={m["n_train"]}, n_val={m["n_val"]}, '
        f'{m["num_classes"]} classes (chance {m["chance"]:.1f} %), '
        f'{m["num_seeds"]} pre-training seeds x {m["num_probe_seeds"]} '
        f'probe seeds; tokenizer: {m["tokenizer"]}', '',
        '| objective | augment | seeds | k-NN top-1 % | linear top-1 % |',
        '|---|---|---|---|---|'
    ]
    for r in result['summary']:
        lines.append(
            f'| {r["objective"]} | {r["augment"]} | {len(r["seeds"])} | '
            f'{r["knn_mean"]:.1f} +- {r["knn_std"]:.1f} | '
            f'{r["linear_mean"]:.1f} +- {r["linear_std"]:.1f} |')
    return '\n'.join(lines) + '\n'


# Settings that pick which runs a study makes, not what a run computes.
_RUN_SELECTION = ('out_dir', 'seeds', 'objectives', 'augments', 'threads',
                  'tokens_dir')


def _resumable_runs(cfg: StudyConfig, partial: str,
                    log: Callable[[str], None]) -> Dict:
    """Finished runs of an interrupted study (``study.json.partial``) that
    the same settings would compute again, by (objective, augment, seed)."""
    if not osp.isfile(partial):
        return {}
    with open(partial) as f:
        old = json.load(f)
    new = asdict(cfg)
    diff = sorted(k for k in set(new) | set(old['config'])
                  if k not in _RUN_SELECTION
                  and new.get(k) != old['config'].get(k))
    if diff:
        raise ValueError(f'{partial} was made with other settings ({diff}); '
                         'resume with the same ones or another --out')
    runs = {(r['objective'], r['augment'], r['seed']): r
            for r in old['runs'] if r['objective'] != 'pixels'}
    log(f'resuming: {len(runs)} finished runs in {partial}')
    return runs


def run_study(cfg: StudyConfig,
              log: Callable[[str], None] = print,
              resume: bool = False) -> Dict:
    """Run the whole study; writes ``study.json`` and ``study.png``.

    With ``resume``, runs already in ``<out>/study.json.partial`` (an
    interrupted study with the same settings) are reused, not recomputed:
    every run is deterministic given its seed, so a study stopped after S
    seeds is finished by re-running it with ``--seeds`` 0..S-1.
    """
    import logging
    torch.set_num_threads(cfg.threads)
    logging.getLogger('mmengine').setLevel(logging.WARNING)
    os.makedirs(cfg.out_dir, exist_ok=True)
    t0 = time.time()
    data = build_tokens(cfg, log)
    t_tok = time.time() - t0
    log(f'tokens ready in {t_tok:.0f} s: {data["tokenizer"]}; '
        f'{data["tokens_used"]}/{cfg.vocab_size} tokens used, entropy '
        f'{data["token_entropy_nats"]:.2f} nats (max '
        f'{math.log(cfg.vocab_size):.2f})')
    json_path = osp.join(cfg.out_dir, 'study.json')
    done = _resumable_runs(cfg, json_path + '.partial', log) if resume \
        else {}
    runs: List[Dict] = []
    ref = evaluate(cfg, None, data)
    runs.append(dict(objective='pixels', augment='-', seed=0, **ref))
    log(f'pixels (8x8 downsampled, no network): k-NN '
        f'{ref["knn_top1"]:.1f} %, linear {np.mean(ref["linear_top1"]):.1f} %')
    for seed in cfg.seeds:
        for obj in cfg.objectives:
            for aug in (cfg.augments if obj != 'random' else ['-']):
                if (obj, aug, seed) in done:
                    runs.append(done[(obj, aug, seed)])
                    log(f'{obj}/{aug} seed {seed}: reused from '
                        f'{json_path}.partial')
                    continue
                backbone, stats = pretrain(cfg, obj, aug, seed, data, log)
                res = evaluate(cfg, backbone, data)
                runs.append(dict(objective=obj, augment=aug, seed=seed,
                                 pretrain=stats, **res))
                with open(json_path + '.partial', 'w') as f:
                    json.dump(dict(config=asdict(cfg), runs=runs), f)
                log(f'{obj}/{aug} seed {seed}: k-NN {res["knn_top1"]:.1f} '
                    f'%, linear {np.mean(res["linear_top1"]):.1f} % '
                    f'(probe seeds {["%.1f" % a for a in res["linear_top1"]]})')
    summary = summarise(runs)
    meta = dict(
        dataset=osp.basename(osp.normpath(cfg.data_root)),
        n_train=int(data['train_images'].shape[0]),
        n_val=int(data['val_images'].shape[0]),
        num_classes=data['num_classes'],
        chance=100.0 / data['num_classes'],
        num_seeds=len(cfg.seeds),
        num_probe_seeds=len(cfg.probe_seeds),
        views_per_image=int(data['train_images'].shape[1]),
        tokenizer=data['tokenizer'],
        token_entropy_nats=data['token_entropy_nats'],
        tokens_used=data['tokens_used'],
        knn_k=cfg.knn_k,
        knn_temperature=cfg.knn_temperature,
        seconds_tokens=round(t_tok, 1),
        seconds_total=round(time.time() - t0, 1),
        # runs taken from study.json.partial (--resume): their times are in
        # their own `pretrain.seconds`, not in seconds_total
        resumed_runs=sum(1 for r in runs if r.get('objective') != 'pixels'
                         and (r['objective'], r['augment'], r['seed'])
                         in done),
        torch_threads=cfg.threads)
    result = dict(config=asdict(cfg), meta=meta, summary=summary, runs=runs)
    with open(json_path, 'w') as f:
        json.dump(result, f, indent=2)
    if osp.exists(json_path + '.partial'):
        os.remove(json_path + '.partial')
    plot(summary, meta, osp.join(cfg.out_dir, 'study.png'))
    with open(osp.join(cfg.out_dir, 'study.md'), 'w') as f:
        f.write(markdown_table(result))
    log(f'wrote {json_path} and study.png in {meta["seconds_total"]:.0f} s')
    return result
