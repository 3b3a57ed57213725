"""What ``MaPeTRunner`` and ``MaPeTFlexibleRunner`` share.

mmengine has two runner classes (``Runner`` and, for strategies such as
FSDP, ``FlexibleRunner``) with the same hooks into saving, data and the
training loop but different internals. This mixin holds the parts that do
not depend on those internals: the data-only message hub, refusing empty
datasets and pickled annotations, the pre-flight target and jitter checks,
the atomic save with its sidecar, and removing what a killed save left.
"""
import copy
import glob
import os
import os.path as osp
from typing import Any, Callable, Dict, Optional, Union

from mmengine.dist import is_main_process
from mmengine.model import is_model_wrapper
from mmengine.registry import FUNCTIONS, DefaultScope
from torch.utils.data import DataLoader

from mapet.utils.atomic import (checksum_path, publish_atomically,
                                remove_if_exists, write_checksum)
from mapet.utils.checkpoint import (data_only_message_hub,
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

    def _save_safely(self, parent_save: Callable[..., None], out_dir: str,
                     filename: str, collective: bool, **kwargs) -> None:
        """Save with ``parent_save`` (mmengine's ``save_checkpoint``) to a
        temporary file, then publish it atomically with its sidecar.

        Remote destinations (``backend_args``/``file_client_args`` or a URL)
        are saved by mmengine unchanged.

        Args:
            parent_save (callable): mmengine's bound ``save_checkpoint``.
            out_dir (str): Directory of the checkpoint.
            filename (str): Its final name.
            collective (bool): Every rank must call ``parent_save`` (FSDP
                gathers the state dict); else only the main process saves,
                as mmengine's ``Runner`` does.
            **kwargs: The other arguments of ``save_checkpoint``.
        """
        if kwargs.get('file_client_args') is not None or \
                kwargs.get('backend_args') is not None or \
                not is_local(out_dir):
            return parent_save(out_dir, filename, **kwargs)
        if not collective and not is_main_process():
            return None
        final = osp.join(out_dir, filename)
        # Only the main process writes the file (FSDP's full state dict
        # too); the other ranks take part in gathering it.
        tmp_name = f'.{osp.basename(filename)}{_TMP_MARK}{os.getpid()}'
        if is_main_process():
            # A stale sidecar must never vouch for the new content.
            remove_if_exists(checksum_path(final))
        parent_save(osp.dirname(final), tmp_name, **kwargs)
        if is_main_process():
            publish_atomically(osp.join(osp.dirname(final), tmp_name), final)
            write_checksum(final)
            remove_orphan_sidecars(osp.dirname(osp.abspath(final)))
        return None

    def _remove_stale_temporaries(self) -> None:
        if is_main_process() and is_local(self.work_dir):
            for stale in _stale_temporaries(self.work_dir):
                self.logger.warning(
                    f'Removing {stale}: a checkpoint save that was killed '
                    'before it completed.')
                remove_if_exists(stale)

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
