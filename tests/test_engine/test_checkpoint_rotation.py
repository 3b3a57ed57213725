"""Checkpoint rotation never leaves a run without a loadable checkpoint.

mmengine's ``CheckpointHook`` deletes the oldest kept checkpoint before it
saves the new one; ``SafeCheckpointHook`` (the shipped runtimes select it)
deletes only after the new checkpoint, its sidecar and ``last_checkpoint``
are complete. Each case trains a tiny ``MaPeTRunner`` to ``iter_2.pth`` with
``max_keep_ckpts=1``, then resumes it in a forked child that a real SIGKILL
(``tests/helpers/reliability_faults.py``) stops in the middle of one write of
the ``iter_4`` save; the next run must find an intact checkpoint, resume,
and leave exactly the newest one.
"""
import importlib
import os
import signal
import sys

import pytest
import torch

from mapet.utils.atomic import sha256_file
from mapet.utils.checkpoint import (find_latest_intact_checkpoint,
                                    load_checkpoint_file, verify_checkpoint)
from tiny_runner import tiny_runner  # tests/helpers


def _hook(type_: str) -> dict:
    return dict(
        checkpoint=dict(type=type_, interval=2, by_epoch=False,
                        max_keep_ckpts=1),
        logger=dict(type='LoggerHook', interval=1))


def _runner(work_dir, hook: str, **kwargs):
    return tiny_runner(work_dir, size=64, default_hooks=_hook(hook), **kwargs)


def _killed_resume(work_dir, hook: str, match: str) -> None:
    """Resume to 4 iterations in a child killed mid-write of ``match``."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            torch.set_num_threads(1)
            os.environ['MAPET_KILL_WRITE_MATCH'] = match
            if 'reliability_faults' in sys.modules:
                importlib.reload(sys.modules['reliability_faults'])
            else:
                importlib.import_module('reliability_faults')
            _runner(work_dir, hook, max_iters=4, resume=True).train()
        finally:
            os._exit(3)  # only reached if the kill did not happen
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f'writer was not killed mid-write (status {status})')


def _pth(work_dir) -> list:
    return sorted(p.name for p in work_dir.glob('*.pth'))


def test_stock_checkpoint_hook_loses_everything(tmp_path):
    """The failure the safe hook exists for (mmengine's order)."""
    _runner(tmp_path, 'CheckpointHook', max_iters=2).train()
    assert _pth(tmp_path) == ['iter_2.pth']
    _killed_resume(tmp_path, 'CheckpointHook', 'iter_4.pth')
    # iter_2 was deleted before iter_4 was written: nothing to resume from.
    assert _pth(tmp_path) == []
    assert find_latest_intact_checkpoint(str(tmp_path)) is None


@pytest.mark.parametrize('match, resumes_from', [
    ('iter_4.pth', 'iter_2.pth'),         # the checkpoint's temporary file
    # its sidecar: iter_4 is in place without one, but last_checkpoint
    # still names iter_2, which is intact
    ('iter_4.pth.sha256', 'iter_2.pth'),
    ('last_checkpoint', 'iter_4.pth'),    # mmengine's last_checkpoint write
])
def test_safe_hook_killed_during_save_keeps_a_checkpoint(
        tmp_path, match, resumes_from):
    _runner(tmp_path, 'SafeCheckpointHook', max_iters=2).train()
    good_sha = sha256_file(tmp_path / 'iter_2.pth')

    _killed_resume(tmp_path, 'SafeCheckpointHook', match)

    # iter_2 is still there, byte for byte, whatever write was killed.
    assert sha256_file(tmp_path / 'iter_2.pth') == good_sha
    found = find_latest_intact_checkpoint(str(tmp_path))
    assert found == str(tmp_path / resumes_from)
    assert verify_checkpoint(found)
    ckpt = load_checkpoint_file(found)
    assert ckpt['meta']['iter'] == int(resumes_from[5])

    # The next run resumes from it and ends with only the newest checkpoint
    # (a leftover iter_2 is deleted; a partial temporary file too).
    runner = _runner(tmp_path, 'SafeCheckpointHook', max_iters=6, resume=True)
    runner.train()
    assert runner.iter == 6
    assert _pth(tmp_path) == ['iter_6.pth']
    assert not list(tmp_path.glob('.*tmp-*'))
    assert sorted(p.name for p in tmp_path.glob('*.sha256')) == [
        'iter_6.pth.sha256']
    assert (tmp_path / 'last_checkpoint').read_text() == str(
        tmp_path / 'iter_6.pth')
    assert verify_checkpoint(str(tmp_path / 'iter_6.pth'))


def test_safe_hook_rotation_order_and_pending_record(tmp_path):
    """Uninterrupted: same files as mmengine; the new checkpoint names what
    was still to delete when it was written, and the log says it was."""
    runner = _runner(tmp_path, 'SafeCheckpointHook', max_iters=6)
    runner.train()
    assert _pth(tmp_path) == ['iter_6.pth']
    ckpt = load_checkpoint_file(str(tmp_path / 'iter_6.pth'))
    info = ckpt['message_hub']['runtime_info']
    assert info['keep_ckpt_ids'] == [6]
    assert info['ckpt_pending_removal'] == ['iter_4.pth']
    assert runner.message_hub.get_info('ckpt_pending_removal') == []
