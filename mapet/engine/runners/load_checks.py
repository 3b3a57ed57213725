"""Checks of every weight load ``MaPeTRunner`` makes, before anything trains.

MMEngine loads ``load_from``, ``--resume`` and ``tools/test.py`` checkpoints
with ``strict=False``: missing, unexpected and resized keys are logged as a
warning, and a checkpoint of another architecture resumes and crashes later
inside the optimizer (or, worse, trains). Here every load is compared with
the model first and refused, with :class:`CheckpointMismatchError` naming
the keys, unless the config allows them::

    # top level of a config; fnmatch patterns of model keys (default: none)
    load_check = dict(
        allowed_missing=['head.*'],          # keep their fresh init
        allowed_unexpected=['mask_token'],   # checkpoint keys dropped
        allowed_mismatched=['backbone.pos_embed'])  # resized by a load hook

``--resume`` additionally checks the optimizer state (number of parameter
groups, parameters per group, each state tensor's shape against its
parameter) and the number of parameter schedulers, before the first step.
"""
import fnmatch
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

__all__ = [
    'CheckpointMismatchError', 'LoadReport', 'check_state_dict',
    'check_optimizer_state', 'normalise_load_check'
]


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model or optimizer it is loaded into."""


_ALLOWED = ('allowed_missing', 'allowed_unexpected', 'allowed_mismatched')


def normalise_load_check(cfg: Optional[dict]) -> Dict[str, tuple]:
    """Validate the ``load_check`` config key; unknown keys are refused."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(_ALLOWED))
    if unknown:
        raise ValueError(
            f'load_check has unknown keys {unknown}; allowed keys are '
            f'{list(_ALLOWED)} (lists of fnmatch patterns of model keys).')
    out = {}
    for key in _ALLOWED:
        value = cfg.get(key) or ()
        if isinstance(value, str):
            value = (value, )
        out[key] = tuple(value)
    return out


@dataclass
class LoadReport:
    """Keys of one load: loaded, missing, unexpected, mismatched."""
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)  # 'key: a vs b'
    errors: List[str] = field(default_factory=list)

    def format(self) -> str:
        """One line per class of key, for the log."""
        def show(keys):
            if not keys:
                return 'none'
            return f'{len(keys)} {keys[:20]}' + (' ...' if len(keys) > 20
                                                  else '')
        return (f'loaded {len(self.loaded)} tensors; missing from the '
                f'checkpoint: {show(self.missing)}; unexpected: '
                f'{show(self.unexpected)}; shape mismatches: '
                f'{show(self.mismatched)}')


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _revised_state_dict(checkpoint, revise_keys) -> Dict[str, object]:
    """The state dict as ``_load_checkpoint_to_model`` will see it."""
    state_dict = checkpoint.get('state_dict', checkpoint) \
        if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError(
            f'the checkpoint holds a {type(state_dict).__name__}, not a '
            'state dict (a mapping of parameter names to tensors)')
    out = OrderedDict()
    for key, value in state_dict.items():
        for pattern, repl in revise_keys:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def check_state_dict(model: nn.Module,
                     checkpoint,
                     source: str,
                     allowed: Dict[str, tuple],
                     revise_keys=((r'^module.', ''), ),
                     model_name: Optional[str] = None) -> LoadReport:
    """Compare ``checkpoint`` with ``model``; raise on what is not allowed.

    Args:
        model (nn.Module): The model the checkpoint is about to be loaded in.
        checkpoint (dict): The loaded checkpoint (or a bare state dict).
        source (str): How it is being loaded, for the message (e.g.
            ``'load_from checkpoint a.pth'``).
        allowed (dict): :func:`normalise_load_check` output.
        revise_keys: As mmengine's ``load_checkpoint``.
        model_name (str, optional): Name of the model in the message.
            Defaults to the class name of ``model``.

    Returns:
        LoadReport: The report (``errors`` empty).

    Raises:
        CheckpointMismatchError: Naming the keys and the config to allow
            them.
    """
    try:
        theirs = _revised_state_dict(checkpoint, revise_keys)
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(f'{source}: {e}') from None
    mine = model.state_dict()
    report = LoadReport()
    report.missing = sorted(set(mine) - set(theirs))
    report.unexpected = sorted(set(theirs) - set(mine))
    for key in mine:
        if key not in theirs:
            continue
        value = theirs[key]
        shape = tuple(getattr(value, 'shape', ()))
        if not isinstance(value, torch.Tensor):
            report.mismatched.append(
                f'{key}: {type(value).__name__} instead of a tensor')
        elif shape != tuple(mine[key].shape):
            report.mismatched.append(
                f'{key}: checkpoint {list(shape)} vs model '
                f'{list(mine[key].shape)}')
        else:
            report.loaded.append(key)
    bad = dict(
        allowed_missing=[k for k in report.missing
                         if not _matches(k, allowed['allowed_missing'])],
        allowed_unexpected=[k for k in report.unexpected
                            if not _matches(k,
                                            allowed['allowed_unexpected'])],
        allowed_mismatched=[
            k for k in report.mismatched
            if not _matches(k.split(':')[0], allowed['allowed_mismatched'])
        ])
    what = dict(allowed_missing='model keys missing from the checkpoint',
                allowed_unexpected='checkpoint keys the model does not have',
                allowed_mismatched='shape mismatches')
    for key, keys in bad.items():
        if keys:
            shown = keys[:10] + (['...'] if len(keys) > 10 else [])
            report.errors.append(f'{len(keys)} {what[key]}: {shown}')
    if not report.loaded and not report.errors:
        report.errors.append('no tensor of the checkpoint fits the model')
    if report.errors:
        name = model_name or type(model).__name__
        raise CheckpointMismatchError(
            f'{source} does not fit the model ({name}):\n- ' +
            '\n- '.join(report.errors) +
            '\nWrong checkpoint, config or architecture? If these '
            'differences are intended, allow them by pattern in the config, '
            "e.g. load_check = dict(allowed_missing=['head.*'], "
            "allowed_unexpected=[...], allowed_mismatched=[...]).")
    return report


def _optimizer_states(state) -> Dict[str, dict]:
    """``{name: torch optimizer state dict}`` of an optim-wrapper state."""
    if isinstance(state, dict) and 'param_groups' in state:
        return {'optimizer': state}
    if isinstance(state, dict) and state and all(
            isinstance(v, dict) and 'param_groups' in v
            for v in state.values()):
        return dict(state)  # OptimWrapperDict
    return {}


def check_optimizer_state(optim_wrapper, saved, source: str) -> None:
    """Check a saved optimizer state against the built optimizer(s).

    Args:
        optim_wrapper: The built ``OptimWrapper`` / ``OptimWrapperDict``.
        saved (dict): ``checkpoint['optimizer']``.
        source (str): For the message.

    Raises:
        CheckpointMismatchError: On a different number of parameter groups
            or parameters, or a state tensor whose shape is not its
            parameter's.
    """
    current = _optimizer_states(optim_wrapper.state_dict())
    stored = _optimizer_states(saved)
    if set(current) != set(stored):
        layout = sorted(stored) or 'an unknown layout'
        raise CheckpointMismatchError(
            f'{source}: its optimizer state is for {layout}, the config '
            f'builds {sorted(current)}. Resume '
            'only with the config the checkpoint was trained with, or load '
            'just its weights with load_from.')
    wrappers = getattr(optim_wrapper, 'optim_wrappers', None)
    errors = []
    for name, state in stored.items():
        optimizer = (wrappers[name] if wrappers else optim_wrapper).optimizer
        groups = optimizer.param_groups
        saved_groups = state['param_groups']
        prefix = '' if name == 'optimizer' else f'{name}: '
        if len(groups) != len(saved_groups):
            errors.append(f'{prefix}{len(saved_groups)} parameter groups in '
                          f'the checkpoint, {len(groups)} in the config')
            continue
        for g, (group, saved_group) in enumerate(zip(groups, saved_groups)):
            if len(group['params']) != len(saved_group['params']):
                errors.append(
                    f'{prefix}parameter group {g} has '
                    f"{len(saved_group['params'])} parameters in the "
                    f"checkpoint, {len(group['params'])} in the model")
                continue
            for param, index in zip(group['params'], saved_group['params']):
                for key, value in state['state'].get(index, {}).items():
                    if isinstance(value, torch.Tensor) and value.dim() > 0 \
                            and tuple(value.shape) != tuple(param.shape):
                        errors.append(
                            f'{prefix}state {key!r} of parameter {index} '
                            f'(group {g}) has shape {list(value.shape)}, '
                            f'the parameter {list(param.shape)}')
                        break
    if errors:
        shown = errors[:10] + (['...'] if len(errors) > 10 else [])
        raise CheckpointMismatchError(
            f'{source}: the optimizer state does not fit the model and '
            'optimizer of this config (another architecture, frozen/'
            'unfrozen parameters or paramwise_cfg):\n- ' + '\n- '.join(shown)
            + '\nResume with the config the checkpoint was trained with, '
            'or start a new run with load_from to take only its weights.')
