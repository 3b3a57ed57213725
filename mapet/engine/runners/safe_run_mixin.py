"""What ``MaPeTRunner`` and ``MaPeTFlexibleRunner`` share.

mmengine has two runner classes (``Runner`` and, for strategies such as
FSDP, ``FlexibleRunner``) with the same hooks into saving, data and the
training loop but different internals. This mixin holds the parts that do
not depend on those internals: the data-only message hub, the atomic save
with its sidecar, auto-resume from the newest intact checkpoint, removing
what a killed save left, refusing empty datasets and pickled annotations,
and the pre-flight target and jitter checks.
"""
import copy
import glob
import os
import os.path as osp
from typing import Any, Dict, Optional, Union

from mmengine.dist import is_main_process
from mmengine.model import is_model_wrapper
from mmengine.registry import FUNCTIONS, DefaultScope
from torch.utils.data import DataLoader

from mapet.utils.atomic import (checksum_path, publish_atomically,
                                remove_if_exists, write_checksum)
from mapet.utils.checkpoint import (data_only_message_hub,
                                    find_latest_intact_checkpoint,
                                    remove_orphan_sidecars)
from .dataloader_checks import check_dataloader_not_empty, full_init_checked
from .jitter_checks import check_deferred_jitter
from .load_checks import normalise_load_check
from .target_checks import check_visual_token_targets

__all__ = ['SafeRunMixin', 'is_local']

_TMP_MARK = '.tmp-'


def is_local(path: str) -> bool:
    """Whether ``path`` is a local file path (no URL scheme)."""
    return '://' not in os.fspath(path)


def _stale_temporaries(work_dir: str) -> list:
    """Temporary files a killed checkpoint save left in ``work_dir``.

    A checkpoint (``.<name>.pth.tmp-<pid>``), its sidecar
    (``.<name>.pth.sha256.tmp-*``) or ``last_checkpoint``
    (``.last_checkpoint.tmp-*``).
    """
    root = glob.escape(work_dir)
    found = []
    for pattern in (f'.*.pth{_TMP_MARK}*', f'.*.pth.sha256{_TMP_MARK}*',
                    f'.last_checkpoint{_TMP_MARK}*'):
        found += glob.glob(osp.join(root, pattern))
    return sorted(set(found))


class SafeRunMixin:
    """Mixed in before mmengine's ``Runner`` or ``FlexibleRunner``."""

    def unwrapped_model(self) -> Any:
        """The model without its DDP/FSDP wrapper."""
        return self.model.module if is_model_wrapper(self.model) \
            else self.model

    def _load_check_cfg(self) -> dict:
        """The config's ``load_check`` allow-lists (default: none)."""
        if getattr(self, '_load_check', None) is None:
            self._load_check = normalise_load_check(
                self.cfg.get('load_check'))
        return self._load_check

    # -- saving ----------------------------------------------------------
    def call_hook(self, fn_name: str, **kwargs) -> None:
        """Call hooks; a checkpoint's message hub is then made data-only."""
        super().call_hook(fn_name, **kwargs)
        if fn_name == 'before_save_checkpoint':
            checkpoint = kwargs['checkpoint']
            checkpoint['message_hub'] = data_only_message_hub(
                checkpoint['message_hub'])

    #: Every rank takes part in a save (FSDP gathers the state dict); else
    #: only the main process saves, as mmengine's ``Runner`` does.
    collective_save: bool = False

    def save_checkpoint(self,
                        out_dir: str,
                        filename: str,
                        file_client_args: Optional[dict] = None,
                        save_optimizer: bool = True,
                        save_param_scheduler: bool = True,
                        meta: Optional[dict] = None,
                        by_epoch: bool = True,
                        backend_args: Optional[dict] = None) -> None:
        """Save like mmengine, but atomically and with a sidecar (local).

        mmengine's save writes a temporary file, which is then renamed into
        place and given its ``.sha256`` sidecar. Remote destinations
        (``backend_args``/``file_client_args`` or a URL) are saved by
        mmengine unchanged.
        """
        kwargs = dict(
            file_client_args=file_client_args,
            save_optimizer=save_optimizer,
            save_param_scheduler=save_param_scheduler,
            meta=meta,
            by_epoch=by_epoch,
            backend_args=backend_args)
        if file_client_args is not None or backend_args is not None or \
                not is_local(out_dir):
            return super().save_checkpoint(out_dir, filename, **kwargs)
        if not self.collective_save and not is_main_process():
            return None
        final = osp.join(out_dir, filename)
        # Only the main process writes the file (FSDP's full state dict
        # too); the other ranks take part in gathering it.
        tmp_name = f'.{osp.basename(filename)}{_TMP_MARK}{os.getpid()}'
        if is_main_process():
            # A stale sidecar must never vouch for the new content.
            remove_if_exists(checksum_path(final))
        super().save_checkpoint(osp.dirname(final), tmp_name, **kwargs)
        if is_main_process():
            publish_atomically(osp.join(osp.dirname(final), tmp_name), final)
            write_checksum(final)
            remove_orphan_sidecars(osp.dirname(osp.abspath(final)))
        return None

    # -- loading and running ----------------------------------------------
    def load_or_resume(self) -> None:
        """Load ``load_from`` or resume; ``auto`` uses the newest intact."""
        if self._has_loaded:
            return None
        if self._resume is True and self._load_from is None:
            resume_from = find_latest_intact_checkpoint(self.work_dir)
            if resume_from is not None:
                self.logger.info(f'Auto-resuming from {resume_from}.')
                self.resume(resume_from)
                self._has_loaded = True
            return None
        return super().load_or_resume()

    def train(self):
        """Remove stale temporary checkpoint files, then train."""
        if is_main_process() and is_local(self.work_dir):
            for stale in _stale_temporaries(self.work_dir):
                self.logger.warning(
                    f'Removing {stale}: a checkpoint save that was killed '
                    'before it completed.')
                remove_if_exists(stale)
        return super().train()

    # -- data --------------------------------------------------------------
    def build_dataloader(self,
                         dataloader: Union[DataLoader, Dict],
                         seed: Optional[int] = None,
                         diff_rank_seed: bool = False) -> DataLoader:
        """Build like mmengine; an empty dataset or no batch is refused."""
        if isinstance(dataloader, dict) and \
                isinstance(dataloader.get('dataset'), dict):
            dataloader = copy.copy(dataloader)
            dataloader['dataset'] = full_init_checked(dataloader['dataset'])
        collate = dataloader.get('collate_fn') \
            if isinstance(dataloader, dict) else None
        if isinstance(collate, dict) and '_scope_' in collate:
            # A `mapet::` base stamps `_scope_` on its collate_fn; mmengine
            # would pass it to the function as a keyword argument.
            dataloader = copy.copy(dataloader)
            collate = dict(collate)
            scope = collate.pop('_scope_')
            if isinstance(collate.get('type'), str):
                with DefaultScope.overwrite_default_scope(scope):
                    collate['type'] = FUNCTIONS.get(collate['type'])
            dataloader['collate_fn'] = collate
        loader = super().build_dataloader(
            dataloader, seed=seed, diff_rank_seed=diff_rank_seed)
        check_dataloader_not_empty(loader)
        return loader

    def check_training_inputs(self, dataset: Any) -> None:
        """Targets and deferred jitter against the (built) model, once."""
        model = self.unwrapped_model()
        check_visual_token_targets(model, dataset)
        check_deferred_jitter(model, dataset)
