"""Common behaviour of the frozen visual tokenizers.

A tokenizer maps images (B, 3, H, W), already normalised the way
:attr:`mean`/:attr:`std` describe, to row-major token ids (B, T).  It is
frozen for good:

* no trainable parameters (``requires_grad=False`` everywhere), so an
  optimizer built from the parent never sees them;
* ``train()`` always switches it to eval mode (a parent calling
  ``.train()`` cannot turn on BatchNorm statistics, dropout or EMA updates);
* ``init_weights()`` is a no-op (mmengine would otherwise re-initialise the
  weights loaded from the tokenizer's own files);
* its weights are not part of the parent's ``state_dict`` (an RN50x64 tower
  would add 1.7 GB to every checkpoint); when a parent loads a checkpoint the
  tokenizer keeps its own weights, ignoring any copy stored there.
"""
from typing import Any, Dict, Sequence, Tuple

import torch
from torch import nn


class FrozenTokenizerMixin:
    """Mixin for ``nn.Module`` tokenizers; call :meth:`_freeze` at the end of
    ``__init__``.

    Subclasses define ``vocab_size``, ``stride`` (input pixels per token),
    ``mean``/``std`` (0-1 scale, per RGB channel), ``interpolation`` and
    ``default_input_size`` (used by the extraction tools) and
    :meth:`metadata`.
    """

    vocab_size: int
    stride: int
    default_input_size: int
    interpolation: str = 'bicubic'
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]

    def _freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        nn.Module.train(self, False)
        self._register_state_dict_hook(self._drop_own_weights)
        self._register_load_state_dict_pre_hook(self._keep_own_weights)

    def train(self, mode: bool = True) -> 'FrozenTokenizerMixin':
        """Stay in eval mode whatever ``mode`` a parent passes."""
        return nn.Module.train(self, False)

    def init_weights(self) -> None:
        """Weights come from the tokenizer's own files: nothing to do."""

    @staticmethod
    def _drop_own_weights(module: nn.Module, destination: Dict[str, Any],
                          prefix: str, local_metadata: Dict) -> None:
        # A state-dict hook (not a ``state_dict`` override) so that
        # mmengine's ``get_state_dict``, which recurses through
        # ``_save_to_state_dict``, honours it too.
        if getattr(module, '_collecting_own_state', False):
            return
        for key in [k for k in destination if k.startswith(prefix)]:
            del destination[key]

    def _keep_own_weights(self, state_dict: Dict[str, Any], prefix: str,
                          *args) -> None:
        # Overwrite whatever the checkpoint holds for us with our own tensors
        # so strict loading of the parent neither misses nor changes them.
        self._collecting_own_state = True
        try:
            own = nn.Module.state_dict(self, keep_vars=True)
        finally:
            self._collecting_own_state = False
        for name, tensor in own.items():
            state_dict[prefix + name] = tensor.detach()

    def grid_size(self, input_size: Sequence[int]) -> Tuple[int, int]:
        """Token grid (h, w) for an input of (H, W) pixels.

        Raises:
            ValueError: ``H`` or ``W`` is not a multiple of :attr:`stride`.
        """
        h, w = (int(s) for s in input_size)
        if h % self.stride or w % self.stride or h <= 0 or w <= 0:
            raise ValueError(
                f'{type(self).__name__} needs an image size that is a '
                f'multiple of {self.stride} (one token per {self.stride}x'
                f'{self.stride} pixels), got {h}x{w}; resize/crop the input, '
                f'e.g. to {max(1, round(h / self.stride)) * self.stride}')
        return h // self.stride, w // self.stride

    def _check_images(self, images: torch.Tensor) -> Tuple[int, int]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError('expected images of shape (B, 3, H, W), got '
                             f'{tuple(images.shape)}')
        return self.grid_size(images.shape[-2:])

    def metadata(self) -> Dict[str, Any]:
        """JSON-serialisable description recorded in token store manifests.

        Must contain ``type``, ``vocab_size`` and, for codebook-based
        tokenizers, ``codebook_sha256``.
        """
        raise NotImplementedError
