"""Verify what a ``Pretrained`` ``init_cfg`` actually loaded.

MMEngine's ``PretrainedInit`` loads with ``strict=False`` and only logs the
mismatched keys; shape mismatches are skipped with a log line, too. This hook
re-reads the checkpoint after weight initialisation (before the first
training iteration) and compares it with every module whose ``init_cfg`` is
``dict(type='Pretrained', ...)``: it reports missing, unexpected and resized
keys, checks that each loaded tensor really is in the model (not overwritten
by a later initialiser), and fails on anything not explicitly allowed.

The config keeps mmengine's ``type='Pretrained'`` on purpose: mmengine (and
mmpretrain's ``VisionTransformer.init_weights``) recognise pre-trained
initialisation by that exact name and order it after all other inits.
"""
import fnmatch
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper
from torch import nn

from mmpretrain.registry import HOOKS

from mapet.utils.checkpoint import load_checkpoint_file


@dataclass
class PretrainedLoadReport:
    """Outcome of comparing a module with its pre-trained checkpoint.

    Attributes:
        loaded (List[str]): Keys whose values are in the module unchanged.
        missing (List[str]): Module keys absent from the checkpoint (they
            keep their fresh initialisation).
        unexpected (List[str]): Checkpoint keys the module does not have.
        resized (List[str]): Keys present in both with different shapes
            (e.g. ``pos_embed`` interpolated to a new input size).
        overwritten (List[str]): Keys with equal shapes whose module value
            differs from the checkpoint.
        errors (List[str]): Human-readable reasons to fail; empty if fine.
    """
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    resized: List[str] = field(default_factory=list)
    overwritten: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)

    def format(self) -> str:
        """Return a multi-line summary for the log."""
        lines = [f'  loaded and verified: {len(self.loaded)} tensors']
        for title, keys in (('missing (newly initialised)', self.missing),
                            ('unexpected (ignored)', self.unexpected),
                            ('resized', self.resized),
                            ('overwritten after loading', self.overwritten)):
            lines.append(f'  {title}: {keys if keys else "none"}')
        return '\n'.join(lines)


def _matches(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _read_state_dict(checkpoint: str, prefix: Optional[str],
                     map_location: str) -> Dict[str, torch.Tensor]:
    """Read the state dict the way ``PretrainedInit`` reads it.

    The file is read with :func:`~mapet.utils.checkpoint.
    load_checkpoint_file` (sidecar verified, ``weights_only``, no
    unrestricted fallback); the key handling is mmengine's: with a
    ``prefix`` only the keys under it, prefix removed
    (``_load_checkpoint_with_prefix``), otherwise every key with a DDP
    ``module.`` prefix stripped (``load_checkpoint``).
    """
    ckpt = load_checkpoint_file(checkpoint, map_location=map_location)
    state_dict = ckpt.get('state_dict', ckpt)
    if prefix:
        if not prefix.endswith('.'):
            prefix += '.'
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()
                      if k.startswith(prefix)}
        if not state_dict:
            raise ValueError(f'{prefix} is not in the pretrained model '
                           f'{checkpoint}')
        return state_dict
    return {(k[len('module.'):] if k.startswith('module.') else k): v
            for k, v in state_dict.items()}


def check_pretrained_load(module: nn.Module,
                          checkpoint: str,
                          prefix: Optional[str] = None,
                          allowed_missing: Sequence[str] = (),
                          allowed_unexpected: Sequence[str] = (),
                          allowed_resized: Sequence[str] = (),
                          map_location: str = 'cpu') -> PretrainedLoadReport:
    """Compare ``module`` with the checkpoint it was initialised from.

    Args:
        module (nn.Module): The module after ``init_weights()``.
        checkpoint (str): The checkpoint of its ``Pretrained`` init_cfg.
        prefix (str, optional): The ``prefix`` of that init_cfg (e.g.
            ``'backbone.'``). Defaults to None.
        allowed_missing (Sequence[str]): ``fnmatch`` patterns of module
            keys that may be absent from the checkpoint. Defaults to ().
        allowed_unexpected (Sequence[str]): Patterns of checkpoint keys the
            module may lack. Defaults to ().
        allowed_resized (Sequence[str]): Patterns of keys whose shapes may
            differ (resized by a load hook). Defaults to ().
        map_location (str): Where to map the checkpoint. Defaults to 'cpu'.

    Returns:
        PretrainedLoadReport: The report; ``errors`` is empty if it passed.
    """
    ckpt = _read_state_dict(checkpoint, prefix, map_location)
    own = module.state_dict()
    report = PretrainedLoadReport()
    report.missing = sorted(set(own) - set(ckpt))
    report.unexpected = sorted(set(ckpt) - set(own))
    for key in sorted(set(own) & set(ckpt)):
        mine, theirs = own[key], ckpt[key]
        if tuple(mine.shape) != tuple(theirs.shape):
            report.resized.append(key)
        elif torch.equal(mine.detach().cpu(),
                         theirs.detach().cpu().to(mine.dtype)):
            report.loaded.append(key)
        else:
            report.overwritten.append(key)

    bad_missing = [k for k in report.missing
                   if not _matches(k, allowed_missing)]
    bad_unexpected = [k for k in report.unexpected
                      if not _matches(k, allowed_unexpected)]
    bad_resized = [k for k in report.resized
                   if not _matches(k, allowed_resized)]
    if bad_missing:
        report.errors.append(
            f'keys missing from the checkpoint: {bad_missing} (if they are '
            'meant to be trained from scratch, add them to '
            '`allowed_missing`; otherwise the checkpoint or `prefix` is '
            'wrong)')
    if bad_unexpected:
        report.errors.append(
            f'checkpoint keys the model does not use: {bad_unexpected} '
            '(wrong architecture or prefix? add them to '
            '`allowed_unexpected` only if dropping them is intended)')
    if bad_resized:
        report.errors.append(
            f'shape mismatches, not loaded: {bad_resized} (the '
            'architecture differs from the checkpoint)')
    if report.overwritten:
        report.errors.append(
            f'loaded values were overwritten by a later initialisation: '
            f'{report.overwritten}')
    if not report.loaded:
        report.errors.append('no tensor of the checkpoint was loaded')
    return report


@HOOKS.register_module()
class PretrainedLoadCheckHook(Hook):
    """Fail before training if a ``Pretrained`` init loaded the wrong keys.

    Add it to ``custom_hooks`` next to ``init_cfg=dict(type='Pretrained',
    checkpoint=..., prefix='backbone.')``; mmseg-scope configs write
    ``type='mmpretrain.PretrainedLoadCheckHook'``. The check is skipped
    (with a log line) when ``load_from``/``resume`` replace the initial
    weights, and warns when no module has a ``Pretrained`` init_cfg.

    Args:
        allowed_missing (Sequence[str]): ``fnmatch`` patterns of module keys
            that may stay freshly initialised. Defaults to ().
        allowed_unexpected (Sequence[str]): Patterns of checkpoint keys that
            may be dropped. Defaults to ().
        allowed_resized (Sequence[str]): Patterns of keys a load hook may
            resize (e.g. ``'pos_embed'``). Defaults to ().
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 allowed_missing: Sequence[str] = (),
                 allowed_unexpected: Sequence[str] = (),
                 allowed_resized: Sequence[str] = ()) -> None:
        self.allowed_missing = tuple(allowed_missing)
        self.allowed_unexpected = tuple(allowed_unexpected)
        self.allowed_resized = tuple(allowed_resized)

    def before_train(self, runner) -> None:
        """Check every module initialised from a checkpoint.

        Args:
            runner (Runner): The runner, after weight initialisation.

        Raises:
            RuntimeError: If a check fails.
        """
        logger: MMLogger = runner.logger
        # What happened, not what the config asked: `--resume auto` on a
        # first run loads nothing and trains from the Pretrained init.
        if getattr(runner, '_has_loaded', False):
            logger.info('PretrainedLoadCheckHook: a checkpoint (`load_from`/'
                        '`resume`) replaced the initial weights; check '
                        'skipped.')
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        checked = 0
        for name, module in model.named_modules():
            init_cfgs = getattr(module, 'init_cfg', None)
            if isinstance(init_cfgs, dict):
                init_cfgs = [init_cfgs]
            for cfg in init_cfgs or []:
                if not (isinstance(cfg, dict)
                        and cfg.get('type') == 'Pretrained'):
                    continue
                checked += 1
                report = check_pretrained_load(
                    module,
                    cfg['checkpoint'],
                    prefix=cfg.get('prefix'),
                    allowed_missing=self.allowed_missing,
                    allowed_unexpected=self.allowed_unexpected,
                    allowed_resized=self.allowed_resized,
                    map_location=cfg.get('map_location', 'cpu'))
                where = name or type(module).__name__
                logger.info(
                    f'Pretrained weights of `{where}` from '
                    f'{cfg["checkpoint"]} (prefix={cfg.get("prefix")!r}):\n'
                    + report.format())
                if report.errors:
                    raise RuntimeError(
                        f'Pre-trained initialisation of `{where}` from '
                        f'{cfg["checkpoint"]} failed the key check:\n- ' +
                        '\n- '.join(report.errors))
        if not checked:
            logger.warning('PretrainedLoadCheckHook: no module has a '
                           "`dict(type='Pretrained')` init_cfg; training "
                           'starts from random initialisation.')
