"""k-CLIP visual tokenizer (paper section 4.2).

Tokens are the indices of the nearest k-means centroid (squared L2) of the
layer4 features (before attention pooling) of an open_clip CLIP ResNet.
"""
import logging
import os
import os.path as osp
from typing import Any, Dict, Optional, Union

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import nn

from mmpretrain.registry import MODELS
from mapet.models.tokenizers.codebook import load_codebook, nearest_centroid
from mapet.utils.atomic import sha256_file
from .base import FrozenTokenizerMixin

# open_clip's OPENAI_DATASET_MEAN / _STD (0-1 scale), the CLIP normalisation.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# ModifiedResNet: stem /4, then layer2-4 stride 2 each -> /32.
CLIP_RESNET_STRIDE = 32
# Width multiplier of layer4's Bottleneck output (``width * 8 * 4``).
_LAYER4_WIDTH_FACTOR = 32
FEATURE_LAYER = 'layer4'


class ClipResNetTrunk(nn.Module):
    """The convolutional trunk of an open_clip ``ModifiedResNet``.

    Returns layer4 activations (B, D, H/32, W/32); the attention pool is
    dropped (unused, and it pins a 2-D positional embedding to one size).

    Args:
        clip_model (str): open_clip ResNet model name (``RN50``, ``RN101``,
            ``RN50x4``, ``RN50x16``, ``RN50x64``).
        pretrained (str, optional): An open_clip pretrained tag (e.g.
            ``'openai'``, downloaded to ``cache_dir`` by open_clip) or a local
            open_clip checkpoint file (loaded strictly). ``None`` gives a
            random init, with a warning.
        cache_dir (str, optional): open_clip download cache.
    """

    def __init__(self,
                 clip_model: str = 'RN50x64',
                 pretrained: Optional[str] = 'openai',
                 cache_dir: Optional[str] = None) -> None:
        super().__init__()
        import open_clip
        from open_clip.modified_resnet import ModifiedResNet

        if pretrained is None:
            print_log(
                f'k-CLIP: {clip_model} is RANDOMLY INITIALISED '
                '(pretrained=None); its tokens are meaningless. Pass '
                "pretrained='openai' (or a checkpoint file) for real use.",
                logger='current',
                level=logging.WARNING)
        model = open_clip.create_model(
            clip_model, pretrained=pretrained, cache_dir=cache_dir)
        visual = model.visual
        if not isinstance(visual, ModifiedResNet):
            raise ValueError(
                f'k-CLIP needs a CLIP ResNet image tower (RN50, RN101, '
                f'RN50x4, RN50x16, RN50x64); {clip_model!r} has '
                f'{type(visual).__name__}')
        del visual.attnpool
        self.visual = visual
        self.clip_model = clip_model
        self.dim = visual.layer1[0].conv1.in_channels * _LAYER4_WIDTH_FACTOR
        if pretrained is not None and osp.isfile(pretrained):
            self.pretrained_id = 'sha256:' + sha256_file(pretrained)
        else:
            self.pretrained_id = pretrained

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Layer4 features (B, D, H/32, W/32) in float32."""
        v = self.visual
        x = images.to(dtype=v.conv1.weight.dtype)
        x = v.stem(x)
        x = v.layer4(v.layer3(v.layer2(v.layer1(x))))
        return x.float()

    def patch_features(self, images: torch.Tensor,
                       normalize: bool) -> torch.Tensor:
        """Per-patch features (B, T, D), row-major over the grid, float32.

        The one definition used both to fit the codebook and to tokenize,
        so the two can never disagree (autocast off: fp32 features).

        Args:
            images (Tensor): (B, 3, H, W) in CLIP normalisation.
            normalize (bool): L2-normalise each feature.
        """
        with torch.autocast(device_type=images.device.type, enabled=False):
            feats = self(images)
        feats = feats.flatten(2).transpose(1, 2)
        return F.normalize(feats, dim=-1) if normalize else feats


@MODELS.register_module()
class KClipTokenizer(FrozenTokenizerMixin, nn.Module):
    """k-CLIP tokenizer: nearest centroid of CLIP ResNet layer4 features.

    ``forward(images)`` takes (B, 3, H, W) images in CLIP normalisation
    (:data:`CLIP_MEAN`/:data:`CLIP_STD`; ``H`` and ``W`` multiples of 32) and
    returns a LongTensor (B, (H/32) * (W/32)) of centroid indices, row-major.
    Assignment is exact squared L2 with ties to the lower index (see
    :func:`mapet.models.tokenizers.codebook.nearest_centroid`), without gradient,
    on the module's device, ``chunk_size`` features at a time. Features are
    computed in float32 with autocast disabled, so AMP does not change tokens.

    Args:
        clip_model (str): open_clip CLIP ResNet name. Defaults to 'RN50x64'.
        pretrained (str, optional): open_clip tag or local checkpoint file;
            ``None`` = random init (tokens meaningless; a warning is logged).
            Defaults to 'openai'.
        codebook (str): Codebook file written by
            ``tools/tokenizers/fit_kclip_codebook.py`` or a plain ``.npy``
            (K, D). Its checksum is verified when it carries one.
        normalize (bool): L2-normalise features before assignment (must match
            the codebook's fitting). Defaults to False (official code).
        input_size (int): Default input size of the extraction tools
            (448 px -> 14 x 14 tokens). Defaults to 448.
        chunk_size (int): Features per assignment chunk (memory bound:
            ``chunk_size x K`` floats). Defaults to 4096.
        cache_dir (str, optional): open_clip download cache.
    """

    stride = CLIP_RESNET_STRIDE
    mean = CLIP_MEAN
    std = CLIP_STD
    interpolation = 'bicubic'

    def __init__(self,
                 clip_model: str = 'RN50x64',
                 pretrained: Optional[str] = 'openai',
                 codebook: Union[str, os.PathLike, None] = None,
                 normalize: bool = False,
                 input_size: int = 448,
                 chunk_size: int = 4096,
                 cache_dir: Optional[str] = None) -> None:
        super().__init__()
        if codebook is None:
            raise ValueError(
                'KClipTokenizer needs `codebook`: a file from '
                'tools/tokenizers/fit_kclip_codebook.py or a (K, D) .npy')
        centroids, meta = load_codebook(codebook)
        for key, value in (('clip_model', clip_model), ('normalize',
                                                        bool(normalize)),
                           ('layer', FEATURE_LAYER)):
            if key in meta and meta[key] != value:
                raise ValueError(
                    f'Codebook {os.fspath(codebook)} was fitted with '
                    f'{key}={meta[key]!r} but the tokenizer uses {key}='
                    f'{value!r}; use matching settings or re-fit')
        self.trunk = ClipResNetTrunk(clip_model, pretrained, cache_dir)
        if centroids.shape[1] != self.trunk.dim:
            raise ValueError(
                f'Codebook {os.fspath(codebook)} has dimension '
                f'{centroids.shape[1]} but {clip_model} layer4 features have '
                f'{self.trunk.dim}: the codebook was fitted for another CLIP '
                'tower')
        fitted_with = meta.get('pretrained')
        if fitted_with is not None and fitted_with != self.trunk.pretrained_id:
            print_log(
                f'k-CLIP: codebook was fitted with pretrained={fitted_with!r},'
                f' tokenizer loads {self.trunk.pretrained_id!r}',
                logger='current',
                level=logging.WARNING)
        cb = torch.from_numpy(centroids)
        self.register_buffer('codebook', cb)
        self.register_buffer('codebook_norms', cb.double().norm(dim=1))
        self.codebook_meta = meta
        self.codebook_sha256: str = meta['centroids_sha256']
        self.vocab_size = int(centroids.shape[0])
        self.clip_model = clip_model
        self.normalize = bool(normalize)
        self.default_input_size = int(input_size)
        self.chunk_size = int(chunk_size)
        self._freeze()

    @torch.no_grad()
    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        """Layer4 features, (B, T, D) float32, row-major over the grid.

        Args:
            images (Tensor): (B, 3, H, W) in CLIP normalisation.
        """
        self._check_images(images)
        return self.trunk.patch_features(images, self.normalize)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Token ids (B, (H/32) * (W/32)), int64."""
        feats = self.extract_features(images)
        b, t, d = feats.shape
        ids = nearest_centroid(
            feats.reshape(b * t, d),
            self.codebook,
            self.chunk_size,
            centroid_norms=self.codebook_norms)
        return ids.view(b, t)

    def metadata(self) -> Dict[str, Any]:
        return dict(
            type=type(self).__name__,
            clip_model=self.clip_model,
            pretrained=self.trunk.pretrained_id,
            layer=FEATURE_LAYER,
            normalize=self.normalize,
            vocab_size=self.vocab_size,
            dim=int(self.codebook.shape[1]),
            codebook_sha256=self.codebook_sha256)

    def extra_repr(self) -> str:
        return (f'clip_model={self.clip_model!r}, vocab_size='
                f'{self.vocab_size}, normalize={self.normalize}')
