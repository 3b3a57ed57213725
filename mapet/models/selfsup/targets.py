"""Per-sample fields and visual-token targets shared by the token algorithms.

``MaPeT`` (and its PIM / MIM modes) and ``TokenCAE`` take their targets the
same way: from a frozen ``target_generator`` when the config has one, else
from the pre-extracted ``data_sample.visual_tokens`` of the token store.
"""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmpretrain.structures import DataSample
from torch import nn

# Which pipeline step produces each per-sample field (for error messages).
_PRODUCERS = {
    'permutation': 'RandomPatchPermutation',
    'mask': 'a mask generator (e.g. SimMIMMaskGenerator)',
    'visual_tokens': 'LoadVisualTokens',
}


def stack_field(data_samples: Sequence[DataSample], key: str,
                device: torch.device) -> torch.Tensor:
    """Stack one per-sample field (tensor or np.ndarray) into a batch.

    Args:
        data_samples (Sequence[DataSample]): The batch's data samples.
        key (str): The field, e.g. ``'permutation'``.
        device (torch.device): Where the batch goes.

    Returns:
        torch.Tensor: (B, ...) on ``device``.

    Raises:
        KeyError: If a sample lacks the field; names the transform to add.
    """
    values = []
    for i, sample in enumerate(data_samples):
        if key not in sample:
            producer = _PRODUCERS.get(key, 'the pipeline')
            raise KeyError(
                f'data_samples[{i}] has no `{key}`; add {producer} to the '
                "pipeline and pack it with PackInputs(algorithm_keys=[..., "
                f"'{key}']).")
        value = sample.get(key)
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        values.append(torch.as_tensor(value))
    return torch.stack(values).to(device, non_blocking=True)


def split_views(
    inputs: Union[torch.Tensor, List[torch.Tensor]]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(backbone_view, tokenizer_view)`` of the model inputs.

    Args:
        inputs (torch.Tensor | List[torch.Tensor]): Images (B, 3, H, W) or
            ``[backbone_view, tokenizer_view]`` (a tokenizer that needs its
            own resolution or normalisation).

    Returns:
        tuple: The two views (the same tensor when only one is given).
    """
    if isinstance(inputs, (list, tuple)):
        return inputs[0], inputs[1] if len(inputs) > 1 else inputs[0]
    return inputs, inputs


def visual_token_targets(target_generator: Optional[nn.Module],
                         tokenizer_view: torch.Tensor,
                         data_samples: Sequence[DataSample],
                         device: torch.device) -> torch.Tensor:
    """Token ids (B, N) in raster order, from the tokenizer or the store.

    Args:
        target_generator (nn.Module, optional): A frozen tokenizer returning
            LongTensor token ids; None reads ``data_sample.visual_tokens``.
        tokenizer_view (torch.Tensor): The tokenizer's input.
        data_samples (Sequence[DataSample]): The batch's data samples.
        device (torch.device): Where the targets go.

    Returns:
        torch.Tensor: int64 (B, N).
    """
    if target_generator is not None:
        with torch.no_grad():
            target = target_generator(tokenizer_view)
    else:
        target = stack_field(data_samples, 'visual_tokens', device)
    return target.reshape(target.shape[0], -1).long()


def check_generator_vocab(target_generator: Optional[nn.Module],
                          vocab_size: int, setting: str) -> None:
    """Raise if an online tokenizer's vocabulary differs from the model's.

    Args:
        target_generator (nn.Module, optional): The tokenizer (or None).
        vocab_size (int): The number of tokens the model predicts.
        setting (str): The config key to change, for the message.
    """
    vocab = getattr(target_generator, 'vocab_size', None)
    if vocab is not None and vocab != vocab_size:
        raise ValueError(
            f'The model predicts {vocab_size} visual tokens but the '
            f'target_generator has vocab_size={vocab}; set {setting}={vocab}.')
