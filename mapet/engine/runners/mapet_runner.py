"""``MaPeTRunner``: mmengine's ``Runner`` with safe, verified checkpoints.

Our configs select it with ``runner_type = 'mmpretrain.MaPeTRunner'``
(``configs/_base_/default_runtime.py``), so the guarantees below hold with
our ``tools/train.py``, with mmpretrain's or mmseg's own ``tools/train.py``
and with ``mim train mapet``, and nothing in mmengine is changed:

* checkpoints are written to a temporary file, fsynced, renamed into place
  and given a ``.sha256`` sidecar (:meth:`save_checkpoint`); their message
  hub pickles as data only; stale temporary files of a killed save are
  removed when the next run starts;
* every load (``load_from``, ``--resume``, ``tools/test.py``) verifies the
  sidecar and unpickles with ``weights_only=True`` and a narrow allow-list,
  never an unrestricted fallback (:meth:`load_checkpoint`);
  ``init_cfg=dict(type='Pretrained')`` files are vetted the same way before
  mmengine's initialiser reads them (:meth:`_init_model_weights`);
* every load is compared with the model before it is applied: loaded,
  missing, unexpected and resized keys are logged, and anything the config's
  ``load_check`` does not allow raises :class:`CheckpointMismatchError`
  (``load_from``, ``tools/test.py``, ``--resume``; ``Pretrained`` init_cfgs
  through a :class:`PretrainedLoadCheckHook` added when the config has
  none); ``--resume`` also checks the optimizer state and the number of
  parameter schedulers (:meth:`resume`, ``load_checks.py``);
* ``--resume auto`` picks the newest checkpoint that matches its sidecar
  (:meth:`load_or_resume`);
* an empty dataset, or a dataloader that yields no batch, is refused when it
  is built, naming the dataset (:meth:`build_dataloader`);
* before training, the pre-training targets are checked once: head
  vocabulary = token store = tokenizer (:func:`check_visual_token_targets`),
  and deferred colour jitter is both drawn and applied
  (:func:`check_deferred_jitter`).
"""
from typing import Any, Callable, Dict, Union

from mmengine.device import get_device
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model
from mmpretrain.registry import RUNNERS

from mapet.utils.checkpoint import load_checkpoint_file
from mapet.utils.safetensors_io import is_safetensors
from .load_checks import (CheckpointMismatchError, check_optimizer_state,
                          check_state_dict)
from .safe_run_mixin import SafeRunMixin, is_local


def _pretrained_files(model) -> Dict[str, str]:
    """``{module name: checkpoint}`` of every ``Pretrained`` init_cfg."""
    found = {}
    for name, module in model.named_modules():
        init_cfg = getattr(module, 'init_cfg', None)
        for cfg in init_cfg if isinstance(init_cfg, list) else [init_cfg]:
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained' \
                    and cfg.get('checkpoint'):
                found[name or 'model'] = cfg['checkpoint']
    return found


def _check_scheduler_count(current, saved, source: str) -> None:
    """mmengine zips schedulers with the saved ones: unequal counts would
    silently resume only some of them."""
    if isinstance(current, dict):
        pairs = [(k, current[k], (saved or {}).get(k, []))
                 for k in current]
    else:
        pairs = [('', current, saved)]
    for name, mine, theirs in pairs:
        if len(mine) != len(theirs):
            where = f' ({name})' if name else ''
            raise CheckpointMismatchError(
                f'{source}: the checkpoint has {len(theirs)} parameter '
                f'schedulers{where}, the config {len(mine)}. Resume with the '
                'config the checkpoint was trained with.')


@RUNNERS.register_module()
class MaPeTRunner(SafeRunMixin, Runner):
    """mmengine ``Runner`` with crash-safe saving and verified safe loading.

    Same arguments as :class:`mmengine.runner.Runner`; see the module
    docstring for what differs.
    """

    # Saving: SafeRunMixin.save_checkpoint (main process writes).

    # -- loading ---------------------------------------------------------
    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]) -> dict:
        """Load ``filename`` (verified, ``weights_only``) into the model.

        Args:
            filename (str): A local checkpoint (remote URLs: download it
                first; they are refused rather than loaded unverified).
            map_location (str | Callable): As :func:`torch.load`.
            strict (bool): As mmengine. Defaults to False.
            revise_keys (list): As mmengine.

        Returns:
            dict: The checkpoint.
        """
        if not is_local(filename):
            raise ValueError(
                f'{filename} is not a local file: MaPeTRunner loads only '
                'local checkpoints, verified and with weights_only=True. '
                'Download it first and pass the local path.')
        preloaded, self._preloaded = getattr(self, '_preloaded', None), None
        source, self._load_source = getattr(self, '_load_source', None), None
        if preloaded is not None and preloaded[0] == filename:
            checkpoint = preloaded[1]
        else:
            checkpoint = load_checkpoint_file(
                filename, map_location=map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.unwrapped_model()
        report = check_state_dict(
            model, checkpoint, source or f'Checkpoint {filename} (load_from)',
            self._load_check_cfg(), revise_keys=revise_keys)
        checkpoint = _load_checkpoint_to_model(
            model, checkpoint, strict, revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Loaded checkpoint {filename}: {report.format()}')
        return checkpoint

    def resume(self,
               filename: str,
               resume_optimizer: bool = True,
               resume_param_scheduler: bool = True,
               map_location: Union[str, Callable] = 'default') -> None:
        """Resume like mmengine after checking the checkpoint fits.

        The weights (keys and shapes), the optimizer state (parameter groups,
        parameters per group, state shapes) and the number of parameter
        schedulers are compared with this config's model and optimizer
        before anything is loaded; a mismatch raises
        :class:`CheckpointMismatchError` naming it.
        """
        if not is_local(filename):
            raise ValueError(
                f'{filename} is not a local file: MaPeTRunner resumes only '
                'from local checkpoints, verified and with weights_only=True.')
        if map_location == 'default':
            map_location = get_device()
        checkpoint = load_checkpoint_file(filename, map_location=map_location)
        source = f'--resume checkpoint {filename}'
        if not isinstance(checkpoint, dict) or 'meta' not in checkpoint:
            raise CheckpointMismatchError(
                f'{source} has no training state (no `meta`): it holds only '
                'weights. Start a new run with load_from instead.')
        if resume_optimizer and 'optimizer' in checkpoint:
            self.optim_wrapper = self.build_optim_wrapper(self.optim_wrapper)
            check_optimizer_state(self.optim_wrapper,
                                  checkpoint['optimizer'], source)
        if resume_param_scheduler and self.param_schedulers is not None \
                and 'param_schedulers' in checkpoint:
            self.param_schedulers = self.build_param_scheduler(
                self.param_schedulers)
            _check_scheduler_count(self.param_schedulers,
                                   checkpoint['param_schedulers'], source)
        self._preloaded = (filename, checkpoint)
        self._load_source = source
        try:
            super().resume(
                filename,
                resume_optimizer=resume_optimizer,
                resume_param_scheduler=resume_param_scheduler,
                map_location=map_location)
        finally:
            self._preloaded = self._load_source = None

    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        """Register hooks; ``Pretrained`` init_cfgs always get checked.

        Without a ``PretrainedLoadCheckHook`` in the config, one is added
        with the ``load_check`` allow-lists (patterns relative to the
        initialised module).
        """
        super().register_hooks(default_hooks, custom_hooks)
        allowed = self._load_check_cfg()  # unknown keys fail here, early
        from mapet.engine.hooks.pretrained_load_check import \
            PretrainedLoadCheckHook
        if any(isinstance(h, PretrainedLoadCheckHook) for h in self._hooks):
            return
        model = self.unwrapped_model()
        if _pretrained_files(model):
            self.register_hook(
                PretrainedLoadCheckHook(
                    allowed_missing=allowed['allowed_missing'],
                    allowed_unexpected=allowed['allowed_unexpected'],
                    allowed_resized=allowed['allowed_mismatched']))

    def _init_model_weights(self) -> None:
        """Vet ``Pretrained`` init files with the safe loader, then init."""
        model = self.unwrapped_model()
        for name, checkpoint in _pretrained_files(model).items():
            if is_safetensors(checkpoint):
                # mmengine's Pretrained initialiser can only torch.load.
                raise ValueError(
                    f'{name}.init_cfg loads {checkpoint}, a safetensors '
                    "file, but init_cfg=dict(type='Pretrained') reads "
                    'torch checkpoints only. Convert it once: python -c '
                    '"import torch; from mapet.utils.checkpoint import '
                    'load_checkpoint_file as f; torch.save(f(\'IN.safetensors'
                    '\'), \'OUT.pth\')"')
            if is_local(checkpoint):
                # Raises on a corrupt or unsafe file before mmengine's
                # initialiser (which falls back to unrestricted unpickling)
                # ever opens it.
                load_checkpoint_file(checkpoint, map_location='cpu')
            else:
                raise ValueError(
                    f'{name}.init_cfg loads {checkpoint}, which is not a '
                    'local file; download it and point init_cfg.checkpoint '
                    'at the local copy so that it can be verified.')
        super()._init_model_weights()

    # -- training --------------------------------------------------------
    def build_train_loop(self, loop: Union[Any, Dict]):
        """Build the loop, then check targets and jitter against the model."""
        loop = super().build_train_loop(loop)
        self.check_training_inputs(loop.dataloader.dataset)
        return loop
