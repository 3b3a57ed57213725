"""Tokens-as-input classifiers: configs build, training from a token store."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.optim import OptimWrapper
from mmpretrain.registry import DATASETS, MODELS

import mapet  # noqa: F401
from mapet.models.tokenizers import FrozenDALLE
from mapet.extraction.engines import extract_tokens
from mapet.extraction.images import list_dataset_config

REPO = Path(__file__).resolve().parents[3]
CONFIG = 'tests/data/configs/tokenizers_demo_dataset.py'
TOKEN_CONFIGS = sorted((REPO / 'configs' / 'tokens_as_input').glob('*.py'))
VOCAB = 32
GRID = 2
NUM_CLASSES = 8


def test_six_token_configs_present():
    # MLP and ViT-T over each of the three tokenizers (paper Table 7).
    assert [p.name for p in TOKEN_CONFIGS] == [
        f'{model}_{tok}_in1k.py' for model in ('mlp', 'vit-t')
        for tok in ('dalle', 'kclip', 'vqkd')
    ]


@pytest.mark.parametrize('path', TOKEN_CONFIGS, ids=lambda p: p.name)
def test_configs_build(path):
    cfg = Config.fromfile(str(path))
    pipe = cfg.train_dataloader.dataset.pipeline
    assert pipe[0].type == 'LoadVisualTokens' and pipe[0].grid_size == 14
    assert pipe[0].store.endswith('/train')
    assert cfg.val_dataloader.dataset.pipeline[0].store.endswith('/val')
    model = MODELS.build(cfg.model)
    tokens = torch.randint(0, cfg.vocab_size, (2, 14 * 14))
    assert model(tokens, mode='tensor').shape == (2, cfg.num_classes)


@pytest.mark.parametrize('backbone', [
    dict(type='TokenMLP', vocab_size=VOCAB, embed_dims=16, hidden_dims=16),
    dict(
        type='TokenViT',
        vocab_size=VOCAB,
        grid_size=GRID,
        arch=dict(
            embed_dims=16, num_layers=2, num_heads=2, feedforward_channels=32),
        out_type='avg_featmap',
        final_norm=False),
])
def test_train_from_token_store(backbone, demo_data_root, repo_root, tmp_path):
    torch.manual_seed(0)
    tok = FrozenDALLE(
        group_count=4, n_hid=8, n_blk_per_group=1, vocab_size=VOCAB)
    records = list_dataset_config(
        str(repo_root / CONFIG), 'val', str(demo_data_root))
    extract_tokens(
        tok,
        records,
        str(tmp_path / 'store'),
        input_size=16,
        batch_size=16,
        num_workers=0,
        progress=False)
    dataset = DATASETS.build(
        dict(
            type='CustomDataset',
            data_root=str(demo_data_root),
            ann_file='meta/val.txt',
            data_prefix='val',
            pipeline=[
                dict(
                    type='LoadVisualTokens',
                    store=str(tmp_path / 'store'),
                    grid_size=GRID,
                    vocab_size=VOCAB,
                    crop='center'),
                dict(type='PackInputs', input_key='visual_tokens'),
            ]))
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            data_preprocessor=dict(type='TokenDataPreprocessor'),
            backbone=backbone,
            head=dict(
                type='LinearClsHead', num_classes=NUM_CLASSES,
                in_channels=16)))
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    batch = default_collate([dataset[i] for i in range(0, 80, 5)])
    assert batch['inputs'].shape == (16, GRID * GRID)
    losses = [model.train_step(batch, optim)['loss'].item() for _ in range(5)]
    assert losses[-1] < losses[0]
    model.eval()
    preds = model.val_step(batch)
    assert len(preds) == 16 and preds[0].pred_score.shape == (NUM_CLASSES, )
