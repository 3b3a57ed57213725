"""Frozen wrappers of mmpretrain's VQ-KD (BEiT v2) and DALL-E tokenizers.

mmpretrain leaves both trainable and, for VQ-KD, EMA-updates the codebook
whenever the module is in training mode (and updates ``cluster_size`` with an
``all_reduce`` even in eval mode, which deadlocks ranks that tokenize
different numbers of batches). These wrappers never call the quantizer's
``forward``: they run the encoder and pick the nearest code themselves, so
the codebook cannot change, and no k-means initialisation can happen
(``quantize_kmeans_init=False``).
"""
import copy
import logging
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

from mmpretrain.registry import MODELS
from mapet.models.tokenizers.codebook import centroids_sha256, nearest_centroid
from mapet.utils.atomic import sha256_file
from mapet.utils.checkpoint import safe_torch_load
from .base import FrozenTokenizerMixin

# BEiT v2 tokenizer input: pixels mapped to [-1, 1] (mmpretrain's beitv2
# config: second_mean = second_std = 127.5 on 0-255).
VQKD_MEAN = (0.5, 0.5, 0.5)
VQKD_STD = (0.5, 0.5, 0.5)
# DALL-E's logit-Laplace input map x -> (1 - 2 eps) x + eps with eps = 0.1,
# written as (x - mean) / std: mean = -eps / (1 - 2 eps),
# std = 1 / (1 - 2 eps).
DALLE_EPS = 0.1
DALLE_MEAN = (-DALLE_EPS / (1 - 2 * DALLE_EPS), ) * 3
DALLE_STD = (1 / (1 - 2 * DALLE_EPS), ) * 3

# mmpretrain's BEiT v2 VQ-KD encoder (configs/beitv2/*: ``vqkd_encoder``).
VQKD_BASE_ENCODER = dict(
    arch='base',
    img_size=224,
    patch_size=16,
    in_channels=3,
    out_indices=-1,
    drop_rate=0.,
    drop_path_rate=0.,
    norm_cfg=dict(type='LN', eps=1e-6),
    final_norm=True,
    out_type='featmap',
    with_cls_token=True,
    frozen_stages=-1,
    use_abs_pos_emb=True,
    use_rel_pos_bias=False,
    use_shared_rel_pos_bias=False,
    layer_scale_init_value=0.,
    interpolate_mode='bicubic',
    patch_cfg=dict(),
    layer_cfgs=dict(),
    init_cfg=None)

# Keys of the released full VQ-KD checkpoints that the encoder-only module
# does not have (the decoder is unused for tokenization).
_VQKD_IGNORED_PREFIXES = ('decoder.', 'decode_task_layer.')
_CHECKPOINT_WRAPPERS = ('state_dict', 'model', 'module')


def load_weights_file(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Load a state dict safely (``weights_only=True``), unwrapping the
    usual ``state_dict``/``model`` containers."""
    # weights_only with mapet's explicit allow-list, never a fallback.
    ckpt = safe_torch_load(os.fspath(path), map_location='cpu')
    for key in _CHECKPOINT_WRAPPERS:
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
    if not isinstance(ckpt, dict):
        raise ValueError(f'{os.fspath(path)} does not hold a state dict')
    return ckpt


def load_strict(
    module: nn.Module,
    state: Dict[str, Any],
    source: str,
    ignored_prefixes: Tuple[str, ...] = ()) -> List[str]:
    """``load_state_dict`` that fails on any missing or unexpected key.

    Args:
        module (nn.Module): Target.
        state (dict): State dict.
        source (str): File name for messages.
        ignored_prefixes (tuple[str]): Checkpoint keys known to be unused.

    Returns:
        list[str]: The keys that were ignored.
    """
    ignored = [k for k in state if k.startswith(ignored_prefixes)]
    state = {k: v for k, v in state.items() if k not in ignored}
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f'{source} does not match {type(module).__name__}: missing keys '
            f'{result.missing_keys[:10]}, unexpected keys '
            f'{result.unexpected_keys[:10]}; check the architecture config')
    return ignored


def _warn_random(name: str) -> None:
    print_log(
        f'{name}: no checkpoint given, weights are RANDOM; its tokens are '
        'meaningless. Pass `checkpoint=<released weights file>`.',
        logger='current',
        level=logging.WARNING)


@MODELS.register_module()
class FrozenVQKD(FrozenTokenizerMixin, nn.Module):
    """Frozen BEiT v2 VQ-KD tokenizer built on mmpretrain's ``VQKD``.

    ``forward(images)`` takes (B, 3, H, W) images mapped to [-1, 1]
    (:data:`VQKD_MEAN`/:data:`VQKD_STD`), ``H``/``W`` multiples of the patch
    size, and returns (B, (H/p) * (W/p)) int64 code indices: the exact nearest
    code (squared L2 between L2-normalised vectors, ties to the lower index).

    Args:
        encoder_config (dict, optional): ``BEiTViT`` config of the encoder.
            Defaults to :data:`VQKD_BASE_ENCODER` (the released tokenizer).
        num_embed (int): Codebook size. Defaults to 8192.
        embed_dims (int): Code dimension. Defaults to 32.
        checkpoint (str, optional): Released weights, e.g. mmpretrain's
            ``vqkd_encoder.pth`` (a ``VQKD`` state dict; decoder keys of full
            checkpoints are ignored). Loaded safely and strictly. ``None``
            keeps a random init (with a warning).
        chunk_size (int): Rows per nearest-code chunk. Defaults to 4096.
    """

    mean = VQKD_MEAN
    std = VQKD_STD
    interpolation = 'bicubic'

    def __init__(self,
                 encoder_config: Optional[dict] = None,
                 num_embed: int = 8192,
                 embed_dims: int = 32,
                 checkpoint: Optional[str] = None,
                 chunk_size: int = 4096) -> None:
        super().__init__()
        from mmpretrain.models.selfsup.beit import VQKD
        cfg = copy.deepcopy(encoder_config or VQKD_BASE_ENCODER)
        self.vqkd = VQKD(
            encoder_config=cfg,
            num_embed=num_embed,
            embed_dims=embed_dims,
            quantize_kmeans_init=False)
        self.vqkd.quantize.embedding.update = False
        if checkpoint is None:
            _warn_random(type(self).__name__)
            self.checkpoint_id = None
        else:
            load_strict(self.vqkd, load_weights_file(checkpoint),
                        os.fspath(checkpoint), _VQKD_IGNORED_PREFIXES)
            self.checkpoint_id = 'sha256:' + sha256_file(checkpoint)
        patch = self.vqkd.encoder.patch_embed.projection.stride
        self.stride = int(patch[0])
        self.default_input_size = int(cfg.get('img_size', 224))
        self.vocab_size = int(num_embed)
        self.chunk_size = int(chunk_size)
        self._freeze()

    @property
    def codebook(self) -> torch.Tensor:
        """(num_embed, embed_dims) code vectors."""
        return self.vqkd.quantize.embedding.weight

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Token ids (B, (H/p) * (W/p)), int64."""
        h, w = self._check_images(images)
        with torch.autocast(device_type=images.device.type, enabled=False):
            feats = self.vqkd.encoder(images.float())[0]  # (B, C, h, w)
            b, c = feats.shape[:2]
            feats = feats.flatten(2).transpose(1, 2)
            z = self.vqkd.encode_task_layer(feats)
        z = F.normalize(z, p=2, dim=-1).reshape(b * h * w, -1)
        ids = nearest_centroid(z, self.codebook.float(), self.chunk_size)
        return ids.view(b, h * w)

    def metadata(self) -> Dict[str, Any]:
        return dict(
            type=type(self).__name__,
            checkpoint=self.checkpoint_id,
            vocab_size=self.vocab_size,
            codebook_sha256=centroids_sha256(
                self.codebook.detach().cpu().numpy()))


@MODELS.register_module()
class FrozenDALLE(FrozenTokenizerMixin, nn.Module):
    """Frozen DALL-E dVAE encoder (mmpretrain's ``DALLEEncoder``).

    ``forward(images)`` takes (B, 3, H, W) images in DALL-E's logit-Laplace
    map (:data:`DALLE_MEAN`/:data:`DALLE_STD`), ``H``/``W`` multiples of
    ``2 ** (group_count - 1)``, and returns the arg-max code per position
    (ties to the lower index), (B, T) int64. 112 px -> 14 x 14 tokens.

    Args:
        checkpoint (str, optional): Encoder state dict, e.g. mmpretrain's
            ``dalle_encoder.pth`` or ``encoder.state_dict()`` of OpenAI's
            ``dall_e`` encoder (same key names). Loaded safely and strictly.
            ``None`` keeps a random init (with a warning).
        group_count (int): Encoder groups. Defaults to 4.
        n_hid (int): Hidden width. Defaults to 256.
        n_blk_per_group (int): Blocks per group. Defaults to 2.
        vocab_size (int): Codebook size. Defaults to 8192.
        input_size (int): Default input size of the extraction tools.
            Defaults to 112.
    """

    mean = DALLE_MEAN
    std = DALLE_STD
    interpolation = 'lanczos'

    def __init__(self,
                 checkpoint: Optional[str] = None,
                 group_count: int = 4,
                 n_hid: int = 256,
                 n_blk_per_group: int = 2,
                 vocab_size: int = 8192,
                 input_size: int = 112) -> None:
        super().__init__()
        from mmpretrain.models.selfsup.cae import DALLEEncoder
        self.encoder = DALLEEncoder(
            group_count=group_count,
            n_hid=n_hid,
            n_blk_per_group=n_blk_per_group,
            vocab_size=vocab_size)
        if checkpoint is None:
            _warn_random(type(self).__name__)
            self.checkpoint_id = None
        else:
            load_strict(self.encoder, load_weights_file(checkpoint),
                        os.fspath(checkpoint))
            self.checkpoint_id = 'sha256:' + sha256_file(checkpoint)
        # every group but the last ends with a 2x max-pool
        self.stride = 2**(group_count - 1)
        self.vocab_size = int(vocab_size)
        self.default_input_size = int(input_size)
        self._freeze()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Token ids (B, (H/s) * (W/s)), int64."""
        self._check_images(images)
        with torch.autocast(device_type=images.device.type, enabled=False):
            logits = self.encoder(images.float())
        return logits.argmax(dim=1).flatten(1)

    def metadata(self) -> Dict[str, Any]:
        return dict(
            type=type(self).__name__,
            checkpoint=self.checkpoint_id,
            vocab_size=self.vocab_size,
            codebook_sha256=None)
