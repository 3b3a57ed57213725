"""Two-stream Vision Transformer for MaPeT / PIM / MIM pre-training."""
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks.drop import DropPath
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from mmpretrain.models.utils import resize_pos_embed
from torch import nn

from mmpretrain.registry import MODELS

MODES = ('mapet', 'pim', 'mim')


def build_two_stream_mask(num_patches: int,
                          cutting_point: int,
                          mode: str,
                          num_extra_tokens: int = 1,
                          device: Optional[torch.device] = None
                          ) -> torch.Tensor:
    """Build the boolean visibility mask in permutation (rank) order.

    Tokens are laid out in rank order, so the mask depends only on
    ``(num_patches, cutting_point, mode)`` and serves every sample.

    Columns (keys/values, the content stream), ``E = num_extra_tokens``,
    ``N = num_patches``, ``c = cutting_point``, ``T = N - c``:

    - ``[0, E)``: the CLS token (rank -1, always context);
    - ``[E, E + N)``: patch tokens, column ``E + r`` holds the patch of
      rank ``r``;
    - ``[E + N, E + N + T)`` (``mapet`` only): mask tokens ``m_p``, column
      ``E + N + k`` for the target of rank ``c + k``.

    Rows (queries) are the content-stream tokens in the same order, followed
    by ``T`` query-stream rows (row ``Lh + k`` predicts the target of rank
    ``c + k``).

    Args:
        num_patches (int): Number of patches N.
        cutting_point (int): Number of context patches c, 1 <= c <= N - 1.
        mode (str): ``'mapet'`` or ``'pim'``.
        num_extra_tokens (int): 1 with a CLS token, else 0. Defaults to 1.
        device (torch.device, optional): Device of the mask.

    Returns:
        torch.Tensor: Bool tensor of shape ``(Lh + T, Lh)``, True = may
        attend, where ``Lh`` is the content-stream length.
    """
    if mode not in ('mapet', 'pim'):
        raise ValueError(f'Two-stream masks exist for modes "mapet" and '
                         f'"pim" only, got mode={mode!r}.')
    n, c, e = num_patches, cutting_point, num_extra_tokens
    num_targets = n - c
    arange = torch.arange(n, device=device)
    # Rank of every content "content-type" token (CLS = -1, then patches).
    tok_rank = torch.cat([torch.full((e, ), -1, device=device), arange])
    tgt_rank = arange[c:]  # rank of each target / mask token / query row

    # Content rows of CLS and patches: context rows see the context
    # (rank < c); a target row of rank r sees ranks <= r.
    lim = tok_rank.clamp(min=c - 1)
    content_tok = tok_rank[None, :] <= lim[:, None]
    # Query rows: content of strictly earlier ranks (CLS included).
    query_tok = tok_rank[None, :] < tgt_rank[:, None]
    if mode == 'pim':
        return torch.cat([content_tok, query_tok], dim=0)

    # mapet: a content row of rank r sees mask tokens of ranks > r (context
    # rows therefore see all of them); a mask-token row sees the context and
    # every mask token; a query row sees mask tokens of ranks >= its own.
    content_msk = tgt_rank[None, :] > tok_rank[:, None]
    mask_tok = (tok_rank < c)[None, :].expand(num_targets, -1)
    mask_msk = torch.ones(
        num_targets, num_targets, dtype=torch.bool, device=device)
    query_msk = tgt_rank[None, :] >= tgt_rank[:, None]
    return torch.cat([
        torch.cat([content_tok, content_msk], dim=1),
        torch.cat([mask_tok, mask_msk], dim=1),
        torch.cat([query_tok, query_msk], dim=1),
    ],
                     dim=0)


def two_stream_block(layer: TransformerEncoderLayer, x: torch.Tensor,
                     content_len: int, attn_mask: torch.Tensor,
                     query_only: bool) -> torch.Tensor:
    """One block over ``x = [h; g]`` with keys/values from ``h`` only.

    Args:
        layer (TransformerEncoderLayer): The shared block.
        x (torch.Tensor): (B, Lh + T, C) content rows then query rows.
        content_len (int): Lh, the content-stream length.
        attn_mask (torch.Tensor): (Lh + T, Lh) bool visibility.
        query_only (bool): Compute only the query rows (last block).

    Returns:
        torch.Tensor: (B, Lh + T, C), or (B, T, C) if ``query_only``.
    """
    attn = layer.attn
    batch = x.shape[0]
    dims, heads, head_dims = (attn.embed_dims, attn.num_heads,
                              attn.head_dims)
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q_b = kv_b = None
    if bias is not None:
        q_b, kv_b = bias[:dims], bias[dims:]

    # Layer norm is per token: normalise once, take q from every kept
    # row and k, v from the content rows only.
    if query_only:
        kv_in = layer.ln1(x[:, :content_len])
        x = x[:, content_len:]
        attn_mask = attn_mask[content_len:]
        q_in = layer.ln1(x)
    else:
        q_in = layer.ln1(x)
        kv_in = q_in[:, :content_len]
    q = F.linear(q_in, weight[:dims], q_b)
    q = q.reshape(batch, -1, heads, head_dims).transpose(1, 2)
    kv = F.linear(kv_in, weight[dims:], kv_b)
    k, v = kv.reshape(batch, content_len, 2, heads,
                      head_dims).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=attn_mask,
        dropout_p=attn.attn_drop if layer.training else 0.)
    out = out.transpose(1, 2).reshape(batch, -1, dims)
    out = attn.out_drop(attn.gamma1(attn.proj_drop(attn.proj(out))))
    x = x + out
    return layer.ffn(layer.ln2(x), identity=x)


class TwoStreamEncoderLayer(TransformerEncoderLayer):
    """mmpretrain's ``TransformerEncoderLayer`` that also runs two streams.

    ``MaPeTViT`` gives its blocks this class after building them (no new
    parameters, same ``state_dict``, same RNG use as mmpretrain). ``layer(x)``
    is mmpretrain's forward; ``layer(x, content_len, attn_mask, query_only)``
    is :func:`two_stream_block`. Going through ``forward`` keeps module
    hooks and wrappers working: FSDP gathers a block's sharded parameters in
    its forward, activation checkpointing and ``torch.compile`` see one
    call per block.
    """

    def forward(self,
                x: torch.Tensor,
                content_len: Optional[int] = None,
                attn_mask: Optional[torch.Tensor] = None,
                query_only: bool = False) -> torch.Tensor:
        """mmpretrain's forward, or one two-stream block with
        ``content_len`` (see :func:`two_stream_block`)."""
        if content_len is None:
            return super().forward(x)
        return two_stream_block(self, x, content_len, attn_mask, query_only)


def transformer_block_wrap_policy(module: nn.Module, recurse: bool,
                                  nonwrapped_numel: int) -> bool:
    """FSDP ``auto_wrap_policy``: one FSDP unit per transformer block.

    Select it with ``strategy.model_wrapper.auto_wrap_policy=dict(type=
    'mapet.models.backbones.mapet_vit.transformer_block_wrap_policy')``.
    """
    if recurse:
        return True
    return isinstance(module, TransformerEncoderLayer)


@MODELS.register_module()
class MaPeTViT(VisionTransformer):
    """Vision Transformer with MaPeT / PIM two-stream and MIM pre-training.

    Without ``permutation`` and ``mask`` the forward pass is exactly
    :class:`mmpretrain.models.VisionTransformer`'s (fine-tuning path) and
    the ``state_dict`` is that of a ``VisionTransformer`` of the same
    arguments plus ``mask_token``.

    Pre-training (modes ``'mapet'`` and ``'pim'``) gathers the patch tokens
    into permutation order, so one cached boolean mask
    (:func:`build_two_stream_mask`) serves the whole batch; the content
    stream ``h`` and the query stream ``g`` are concatenated along the token
    axis and go through every block together: one ``qkv`` projection (the
    query rows only need ``q``), one ``scaled_dot_product_attention`` call
    whose queries are ``[h; g]`` and whose keys/values come from ``h``, one
    FFN. All weights are shared, and stochastic depth draws once per sample
    for both streams. In the last block only the query rows are computed,
    since the content stream's final output is discarded.

    Args:
        cutting_point (int, optional): Number of context patches ``c`` (CLS
            excluded), ``1 <= c <= N - 1``. Required for ``'mapet'`` and
            ``'pim'`` pre-training. The paper uses 50 / 50 / 60 for
            ViT-T / S / B. Defaults to None.
        mode (str): ``'mapet'`` (two streams with auxiliary position mask
            tokens), ``'pim'`` (XLNet-style two streams) or ``'mim'``
            (single-stream BERT-style masking). Defaults to ``'mapet'``.
        with_cp (bool): Activation checkpointing (the name mmpretrain's
            ViT-like backbones use): in the two-stream and MIM pre-training
            forward, every block's activations are recomputed in the backward
            pass instead of being stored (non-reentrant
            :func:`torch.utils.checkpoint.checkpoint`, RNG state preserved,
            so drop path draws the same and gradients are unchanged). Trades
            about one extra forward per step for peak memory. The
            fine-tuning forward (no permutation / mask) is mmpretrain's and
            ignores it. Defaults to False.
        **kwargs: Every argument of
            :class:`mmpretrain.models.VisionTransformer`. The paper's
            T / S / B are ``arch='deit-t' | 'deit-s' | 'deit-b'`` with
            ``layer_scale_init_value=0.1``.
    """

    def __init__(self,
                 *args,
                 cutting_point: Optional[int] = None,
                 mode: str = 'mapet',
                 with_cp: bool = False,
                 **kwargs) -> None:
        if mode not in MODES:
            raise ValueError(f'Unknown mode {mode!r} for MaPeTViT; choose '
                             f'one of {MODES}.')
        super().__init__(*args, **kwargs)
        self._check_img_size_divisible()
        self.mode = mode
        self.cutting_point = cutting_point
        if cutting_point is not None:
            self._check_cutting_point(self.patch_resolution)
        for layer in self.layers:
            if not isinstance(layer, TransformerEncoderLayer) or \
                    layer.attn.v_shortcut:
                raise ValueError('MaPeTViT needs the standard '
                                 'TransformerEncoderLayer attention of '
                                 'VisionTransformer (no v_shortcut).')
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        self.with_cp = with_cp
        for layer in self.layers:
            # Adds the two-stream forward; no parameters, state unchanged.
            layer.__class__ = TwoStreamEncoderLayer
        # mmpretrain stores each block's drop-path rate as a numpy float64
        # (np.linspace); torch.compile cannot branch on a numpy scalar and
        # breaks the graph in every block. Same value as a Python float.
        for module in self.modules():
            if isinstance(module, DropPath):
                module.drop_prob = float(module.drop_prob)
        self._mask_cache: Dict[tuple, torch.Tensor] = {}

    def init_weights(self) -> None:
        """Initialise like BEiT: truncated normal CLS and mask tokens."""
        super().init_weights()
        if isinstance(self.init_cfg, dict) and \
                self.init_cfg['type'] == 'Pretrained':
            return
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)
        trunc_normal_(self.mask_token, std=0.02)

    def train(self, mode: bool = True) -> 'MaPeTViT':
        """Set training mode and return ``self`` like :meth:`nn.Module.train`.

        mmpretrain's ``BaseBackbone.train`` returns None, which breaks
        ``model = MaPeTViT(...).eval()``.
        """
        super().train(mode)
        return self

    # ------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------
    def patch_grid(self, img_hw: Sequence[int]) -> Tuple[int, int]:
        """Patch grid (h, w) that :attr:`patch_embed` gives an image size.

        Args:
            img_hw (Sequence[int]): Image height and width.

        Returns:
            Tuple[int, int]: Number of patch rows and columns.
        """
        proj = self.patch_embed.projection
        h, w = int(img_hw[0]), int(img_hw[1])
        if self.patch_embed.adaptive_padding is not None:
            pad_h, pad_w = self.patch_embed.adaptive_padding.get_pad_shape(
                (h, w))
            h, w = h + pad_h, w + pad_w
        out = []
        for size, i in ((h, 0), (w, 1)):
            out.append((size + 2 * proj.padding[i] - proj.dilation[i] *
                        (proj.kernel_size[i] - 1) - 1) // proj.stride[i] + 1)
        return out[0], out[1]

    def _check_img_size_divisible(self) -> None:
        # PatchEmbed would silently zero-pad (or drop) the remainder pixels,
        # and the patch grid would not match the permutation generator's.
        stride = self.patch_embed.projection.stride
        if any(size % step for size, step in zip(self.img_size, stride)):
            raise ValueError(
                f'img_size {tuple(self.img_size)} is not divisible by the '
                f'patch size {tuple(stride)}: the patch embedding would pad '
                'or drop the remainder pixels. Use a multiple of the patch '
                'size.')

    def _check_cutting_point(self, grid: Sequence[int]) -> None:
        num_patches = grid[0] * grid[1]
        c = self.cutting_point
        if c is None:
            raise ValueError(
                f'MaPeTViT(mode={self.mode!r}) needs `cutting_point` (the '
                'number of context patches) for permutation pre-training; '
                'set e.g. cutting_point=50 in the backbone config.')
        if isinstance(c, bool) or not isinstance(c, int) or \
                not 1 <= c <= num_patches - 1:
            raise ValueError(
                f'cutting_point={c!r} is outside [1, N-1] = '
                f'[1, {num_patches - 1}] for the {grid[0]}x{grid[1]} patch '
                f'grid (N = {num_patches}); choose an int in that range.')

    def get_attention_mask(self, num_patches: int,
                           device: torch.device) -> torch.Tensor:
        """Return the cached two-stream mask for this model's settings.

        Args:
            num_patches (int): Number of patches N.
            device (torch.device): Device of the mask.

        Returns:
            torch.Tensor: See :func:`build_two_stream_mask`.
        """
        key = (num_patches, self.cutting_point, self.mode,
               self.num_extra_tokens, torch.device(device))
        mask = self._mask_cache.get(key)
        if mask is None:
            mask = build_two_stream_mask(num_patches, self.cutting_point,
                                         self.mode, self.num_extra_tokens,
                                         device)
            self._mask_cache[key] = mask
        return mask

    @staticmethod
    def _check_permutation(permutation: torch.Tensor, batch: int,
                           grid: Sequence[int]) -> None:
        num_patches = grid[0] * grid[1]
        if not isinstance(permutation, torch.Tensor):
            raise TypeError('`permutation` must be a LongTensor of shape '
                            f'(B, N), got {type(permutation)}.')
        if tuple(permutation.shape) != (batch, num_patches):
            raise ValueError(
                f'`permutation` has shape {tuple(permutation.shape)}, '
                f'expected (B, N) = ({batch}, {num_patches}): one '
                f'permutation of the N patch indices of the {grid[0]}x'
                f'{grid[1]} patch grid per image. Make the '
                'RandomPatchPermutation input_size/patch_size match the '
                'backbone.')
        if permutation.dtype.is_floating_point or \
                permutation.dtype == torch.bool or permutation.is_complex():
            raise ValueError('`permutation` must hold integer patch indices, '
                             f'got dtype {permutation.dtype}.')
        # The values are not re-validated here (that needs a sort and, on a
        # GPU, a host sync every step): RandomPatchPermutation produces a
        # permutation of 0..N-1 by construction.

    def _embed(self, x: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor, Tuple[int, int]]:
        """Patch-embed and return (patches + pos, pos of patches, grid)."""
        x, patch_resolution = self.patch_embed(x)
        pos = resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            patch_resolution,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens)
        return x, pos, patch_resolution

    def _with_extra(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Prepend the CLS token (with its position embedding) if used."""
        if self.cls_token is None:
            return x
        cls = self.cls_token.expand(x.shape[0], -1, -1) + \
            pos[:, :self.num_extra_tokens]
        return torch.cat([cls, x], dim=1)

    # ------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------
    def forward(self,
                x: torch.Tensor,
                permutation: Optional[torch.Tensor] = None,
                mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor]:
        """Forward for fine-tuning or pre-training.

        Args:
            x (torch.Tensor): Images (B, 3, H, W).
            permutation (torch.Tensor, optional): ``'mapet'``/``'pim'`` only:
                LongTensor (B, N), one permutation of the N patch indices
                (raster order) per image.
            mask (torch.Tensor, optional): ``'mim'`` only: bool (B, N) or
                (B, h, w), True = patch replaced by the mask token.

        Returns:
            Tuple[torch.Tensor]: Without ``permutation``/``mask``, exactly
            :meth:`VisionTransformer.forward`. With ``permutation``, a
            1-tuple holding the query stream after the final norm,
            (B, N - c, C); row k predicts patch ``permutation[:, c + k]``.
            With ``mask`` (``'mim'``), a 1-tuple holding the patch features
            after the final norm, (B, N, C), in raster order.

        Raises:
            ValueError: A ``permutation`` or ``mask`` with
                ``final_norm=False`` (pre-training needs the final norm), or
                a ``permutation`` / ``mask`` of the wrong shape or dtype.
        """
        if permutation is None and mask is None:
            return super().forward(x)
        if not self.final_norm:
            given = 'permutation' if permutation is not None else 'mask'
            raise ValueError(
                f'MaPeTViT(final_norm=False) got a `{given}`: '
                'MaPeT pre-training feeds the head the query stream after '
                'the final LayerNorm; set final_norm=True (final_norm=False '
                'is only for the fine-tuning / dense-prediction forward '
                'without permutation or mask).')
        if self.mode == 'mim':
            if permutation is not None:
                raise ValueError('MaPeTViT(mode="mim") takes `mask`, not '
                                 '`permutation`.')
            return self._forward_mim(x, mask)
        if mask is not None:
            raise ValueError(f'MaPeTViT(mode={self.mode!r}) takes '
                             '`permutation`, not `mask` (use mode="mim" for '
                             'masked image modelling).')
        return self._forward_two_stream(x, permutation)

    def _forward_mim(self, x: torch.Tensor,
                     mask: torch.Tensor) -> Tuple[torch.Tensor]:
        batch = x.shape[0]
        x, pos, grid = self._embed(x)
        num_patches = x.shape[1]
        if not isinstance(mask, torch.Tensor) or mask.numel() != \
                batch * num_patches or mask.shape[0] != batch:
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) \
                else type(mask)
            raise ValueError(
                f'`mask` must be a bool tensor of shape (B, N) = ({batch}, '
                f'{num_patches}) for the {grid[0]}x{grid[1]} patch grid, got '
                f'{shape}.')
        if mask.dtype != torch.bool:
            # bool() would turn any nonzero value (a 0.3 soft mask, a 2)
            # into True; only an exact 0/1 integer mask means the same.
            if mask.dtype.is_floating_point or mask.is_complex() or \
                    not bool(((mask == 0) | (mask == 1)).all()):
                raise ValueError(
                    '`mask` must be a bool tensor (True = patch replaced by '
                    'the mask token), or an integer tensor of 0/1; got '
                    f'dtype {mask.dtype}'
                    + ('' if mask.dtype.is_floating_point or mask.is_complex()
                       else ' with values other than 0 and 1') + '.')
        mask = mask.reshape(batch, num_patches, 1).bool()
        # BERT-style: the masked patch becomes M, then gets its E_pos.
        x = torch.where(mask, self.mask_token.to(x.dtype), x)
        x = x + pos[:, self.num_extra_tokens:]
        x = self._with_extra(x, pos)
        x = self.pre_norm(self.drop_after_pos(x))
        for layer in self.layers:
            if self._use_cp(x):
                x = cp.checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        x = self.ln1(x)  # final_norm is checked in forward()
        return (x[:, self.num_extra_tokens:], )

    def _forward_two_stream(self, x: torch.Tensor,
                            permutation: torch.Tensor) -> Tuple[torch.Tensor]:
        batch = x.shape[0]
        x, pos, grid = self._embed(x)
        num_patches, dims = x.shape[1], x.shape[2]
        self._check_cutting_point(grid)
        self._check_permutation(permutation, batch, grid)
        c = self.cutting_point

        pos_patch = pos[:, self.num_extra_tokens:].expand(batch, -1, -1)
        index = permutation.long().unsqueeze(-1).expand(-1, -1, dims)
        # Absolute positions are added before gathering, so rank order loses
        # nothing and the visibility pattern becomes sample independent.
        content = torch.gather(x + pos_patch, 1, index)
        content = self._with_extra(content, pos)
        # Position-aware mask tokens m_p = M + E_pos[p] of the targets.
        mask_tokens = self.mask_token + torch.gather(pos_patch, 1,
                                                     index[:, c:])
        streams = [content, mask_tokens] if self.mode == 'mapet' \
            else [content]
        content_len = sum(s.shape[1] for s in streams)
        x = torch.cat(streams + [mask_tokens], dim=1)
        x = self.pre_norm(self.drop_after_pos(x))

        attn_mask = self.get_attention_mask(num_patches, x.device)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if self._use_cp(x):
                # Non-reentrant: works under torch.compile and with inputs
                # that need no grad; preserves the RNG state (drop path).
                x = cp.checkpoint(
                    layer,
                    x,
                    content_len,
                    attn_mask,
                    i == last,
                    use_reentrant=False)
            else:
                x = layer(x, content_len, attn_mask, i == last)
        x = self.ln1(x)  # final_norm is checked in forward()
        return (x, )

    def _use_cp(self, x: torch.Tensor) -> bool:
        """Checkpoint a block only when a backward pass will need it."""
        return self.with_cp and self.training and x.requires_grad

    def _two_stream_layer(self, layer: TransformerEncoderLayer,
                          x: torch.Tensor, content_len: int,
                          attn_mask: torch.Tensor,
                          query_only: bool) -> torch.Tensor:
        """One block over ``x = [h; g]``; see :func:`two_stream_block`."""
        return two_stream_block(layer, x, content_len, attn_mask, query_only)

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """Layer-wise depth of a parameter; ``mask_token`` is a stem param.

        Args:
            param_name (str): The name of the parameter.
            prefix (str): The prefix of the backbone parameters.

        Returns:
            Tuple[int, int]: The layer depth and the number of depths.
        """
        if param_name == prefix + 'mask_token':
            return 0, self.num_layers + 2
        return super().get_layer_depth(param_name, prefix)
