"""Mixed-precision dtype selection for ``AmpOptimWrapper`` configs.

Every pre-training and fine-tuning config trains with mmengine's
``AmpOptimWrapper`` and leaves ``optim_wrapper.dtype`` unset.
``tools/train.py --amp-dtype {auto,float16,bfloat16}`` fills it in:

* ``bfloat16``: the default on Ampere and newer GPUs (compute capability
  >= 8.0: A100, H100, H200, L40, RTX 30xx/40xx). Same exponent range as fp32,
  so no loss scaling is needed (the dynamic scaler of the config stays and
  only guards against inf/NaN steps; its scale never has to drop).
* ``float16``: the default on older GPUs (V100, T4), with dynamic loss
  scaling, as the official MaPeT code (torch.cuda.amp) trained.
* ``auto``: a ``dtype`` written in the config wins; otherwise ``bfloat16``
  where the GPU supports it, else ``float16``.

With mmpretrain's or mmseg's own ``tools/train.py`` set
``--cfg-options optim_wrapper.dtype=bfloat16`` instead (mmengine's default,
``dtype=None``, is float16 autocast).
"""
from typing import Optional

import torch
from mmengine.config import Config

__all__ = ['AMP_DTYPES', 'default_amp_dtype', 'apply_amp_dtype']

AMP_DTYPES = ('auto', 'float16', 'bfloat16')


def default_amp_dtype(device: Optional[torch.device] = None) -> str:
    """``'bfloat16'`` on Ampere-or-newer CUDA GPUs, else ``'float16'``.

    Args:
        device (torch.device, optional): The CUDA device; the current one
            by default.

    Returns:
        str: ``'bfloat16'`` or ``'float16'``.
    """
    if torch.cuda.is_available():
        major, _ = torch.cuda.get_device_capability(device)
        if major >= 8 and torch.cuda.is_bf16_supported():
            return 'bfloat16'
    return 'float16'


def apply_amp_dtype(cfg: Config, choice: Optional[str] = None) -> None:
    """Set ``cfg.optim_wrapper.dtype`` of an ``AmpOptimWrapper`` config.

    Args:
        cfg (Config): The full config; unchanged if its optimizer wrapper
            is not an ``AmpOptimWrapper``.
        choice (str, optional): One of :data:`AMP_DTYPES`; None = ``auto``.

    Raises:
        ValueError: For a choice outside :data:`AMP_DTYPES`.
    """
    choice = choice or 'auto'
    if choice not in AMP_DTYPES:
        raise ValueError(f'--amp-dtype must be one of {AMP_DTYPES}, got '
                         f'{choice!r}.')
    optim_wrapper = cfg.get('optim_wrapper')
    if optim_wrapper is None or \
            optim_wrapper.get('type') != 'AmpOptimWrapper':
        return
    if choice == 'auto':
        if optim_wrapper.get('dtype') is None:
            optim_wrapper['dtype'] = default_amp_dtype()
        return
    optim_wrapper['dtype'] = choice
