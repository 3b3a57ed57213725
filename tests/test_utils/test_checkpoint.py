"""Checkpoint files (mapet/utils/checkpoint.py) and MaPeTRunner's use of them.

``import mapet`` changes nothing in torch or mmengine: safe loading and
data-only message hubs come from :mod:`mapet.utils.checkpoint`, called by
:class:`~mapet.engine.runners.MaPeTRunner` (which our configs select).
"""
import io
import pickle
import pickletools
import zipfile

import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset
from mmengine.logging import MessageHub
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mm_ckpt

import mapet  # noqa: F401
from mapet.utils.checkpoint import (DataOnlyHistoryBuffer,
                                    UnsafeCheckpointError,
                                    data_only_message_hub,
                                    load_checkpoint_file, safe_globals,
                                    safe_torch_load, verify_checkpoint)
from tiny_runner import tiny_runner  # tests/helpers


def _create_marker(path: str) -> None:
    """What a malicious checkpoint would run when unpickled."""
    with open(path, 'w') as f:
        f.write('executed')


class _Payload:
    """Unpickling calls :func:`_create_marker` (like a real exploit)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (_create_marker, (self.path, ))


class _UnknownThing:
    """A harmless but unknown class."""

    def __init__(self) -> None:
        self.value = 3


def _pickle_globals(path) -> set:
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith('data.pkl')))
    names = set()
    strings = []
    for op, arg, _ in pickletools.genops(data):
        if op.name == 'GLOBAL':
            names.add(arg.replace(' ', '.'))
        elif op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE'):
            strings.append(arg)
        elif op.name == 'STACK_GLOBAL':
            names.add('.'.join(strings[-2:]))
    return names


def _hub(name: str) -> MessageHub:
    hub = MessageHub.get_instance(name)
    for i, v in enumerate([2.0, np.float64(1.5), np.float32(1.25)]):
        hub.update_scalar('train/loss', v)
        hub.update_scalar('train/lr', 0.1 * i)
    hub.update_info('iter', np.int64(7))
    return hub


def test_import_changes_nothing_in_torch_or_mmengine():
    """No monkeypatching: mmengine's and torch's functions are their own."""
    import mmengine.runner
    import mmengine.runner.runner
    assert mm_ckpt._safe_torch_load.__module__ == 'mmengine.runner.checkpoint'
    assert mmengine.runner.save_checkpoint.__module__ == \
        'mmengine.runner.checkpoint'
    assert mmengine.runner.runner.find_latest_checkpoint.__module__ == \
        'mmengine.runner.checkpoint'
    loader = CheckpointLoader._get_checkpoint_loader('/some/file.pth')
    assert loader.__module__ == 'mmengine.runner.checkpoint', loader
    assert HistoryBuffer.__getstate__.__module__ == \
        'mmengine.logging.history_buffer'
    assert BaseDataset._serialize_data.__module__ == \
        'mmengine.dataset.base_dataset'
    registered = torch.serialization.get_safe_globals()
    assert DataOnlyHistoryBuffer not in registered
    assert HistoryBuffer not in registered


def test_allow_list_is_narrow_and_scoped_to_the_call(tmp_path):
    allow = safe_globals()
    # Narrow: no generic callables, no object dtype.
    for forbidden in (getattr, eval, exec, open, type(np.dtype(object))):
        assert forbidden not in allow
    assert HistoryBuffer in allow and DataOnlyHistoryBuffer in allow
    assert np.ndarray in allow
    # Applied to one call (torch's safe_globals context), then gone.
    path = tmp_path / 'arr.pth'
    torch.save({'a': np.arange(3, dtype=np.int64)}, path)
    # torch keeps the allow-list as a set and rebuilds it when the context
    # exits, so only membership is meaningful, not the listing order.
    before = set(torch.serialization.get_safe_globals())
    assert np.ndarray not in before
    assert safe_torch_load(path)['a'].tolist() == [0, 1, 2]
    assert set(torch.serialization.get_safe_globals()) == before
    with pytest.raises(pickle.UnpicklingError, match='numpy'):
        torch.load(path)  # torch's own default knows nothing of our list


def test_data_only_message_hub_roundtrips_without_getattr(tmp_path):
    hub = _hub('ckpt_test_data_only')
    state = hub.state_dict()
    path = tmp_path / 'hub.pth'
    torch.save({'message_hub': data_only_message_hub(state)}, path)
    names = _pickle_globals(path)
    assert not any('getattr' in n for n in names), names
    assert 'mapet.utils.checkpoint.DataOnlyHistoryBuffer' in names
    # The live hub is untouched: still mmengine's buffers.
    assert type(hub.get_scalar('train/loss')) is HistoryBuffer
    assert type(state['log_scalars']['train/loss']) is HistoryBuffer

    new = MessageHub.get_instance('ckpt_test_data_only_resumed')
    new.load_state_dict(safe_torch_load(path)['message_hub'])
    buf = new.get_scalar('train/loss')
    assert buf.mean() == pytest.approx(np.mean([2.0, 1.5, 1.25]))
    assert buf.current() == pytest.approx(1.25)
    assert new.get_info('iter') == 7
    # Default statistics still work after unpickling without methods.
    assert buf.statistics('max') == pytest.approx(2.0)
    assert new.get_scalar('train/lr').current() == pytest.approx(0.2)


def test_data_only_buffer_pickles_numbers_only_and_does_not_mutate():
    buf = HistoryBuffer()
    buf.update(2.0)
    # torch.save pickles with protocol 2: methods go through getattr.
    legacy = pickle.dumps(buf, protocol=2)
    assert b'getattr' in legacy  # why the conversion exists
    # mmengine's __getstate__ added its methods to the buffer's __dict__.
    assert 'statistics_methods' in buf.__dict__
    data_only = DataOnlyHistoryBuffer.from_buffer(buf)
    assert 'statistics_methods' in buf.__dict__  # source left as it was
    data = pickle.dumps(data_only, protocol=2)
    assert b'getattr' not in data
    assert 'statistics_methods' not in data_only.__dict__  # no mutation
    restored = pickle.loads(data)
    assert restored._log_history.tolist() == [2.0]
    assert restored.statistics('mean') == 2.0


def test_runner_checkpoints_are_data_only_verified_and_resumable(tmp_path):
    runner = tiny_runner(tmp_path)
    runner.train()
    ckpt = tmp_path / 'iter_4.pth'
    assert verify_checkpoint(str(ckpt))
    sidecar = (tmp_path / 'iter_4.pth.sha256').read_text().split()
    assert sidecar[1] == 'iter_4.pth' and len(sidecar[0]) == 64
    assert not list(tmp_path.glob('.*.tmp-*'))  # renamed into place
    names = _pickle_globals(ckpt)
    assert not any('getattr' in n for n in names), names
    # The live message hub still holds mmengine's buffers.
    live = runner.message_hub.get_scalar('train/loss')
    assert type(live) is HistoryBuffer

    loaded = load_checkpoint_file(str(ckpt))
    assert loaded['meta']['iter'] == 4
    saved = loaded['message_hub']['log_scalars']['train/loss']
    assert type(saved) is DataOnlyHistoryBuffer
    np.testing.assert_array_equal(saved.data[0], live.data[0])
    assert len(saved.data[0]) == 4 and np.isfinite(saved.data[0]).all()
    assert torch.equal(loaded['state_dict']['fc.weight'],
                       runner.model.fc.weight.detach())

    # --resume auto through MaPeTRunner picks it up and continues.
    resumed = tiny_runner(tmp_path, max_iters=6, resume=True)
    resumed.train()
    assert resumed.iter == 6
    history = resumed.message_hub.get_scalar('train/loss').data[0]
    np.testing.assert_array_equal(history[:4], live.data[0])
    assert len(history) == 6
    assert verify_checkpoint(str(tmp_path / 'iter_6.pth'))
    assert (tmp_path / 'last_checkpoint').read_text().strip() == str(
        tmp_path / 'iter_6.pth')


@pytest.mark.parametrize('load', [safe_torch_load, load_checkpoint_file],
                         ids=['safe_torch_load', 'load_checkpoint_file'])
def test_payload_refused_and_not_executed(tmp_path, load):
    marker = tmp_path / 'marker'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _Payload(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        load(str(path))
    msg = str(err.value)
    assert f"type '{__name__}._create_marker'" in msg
    assert 'Refusing to load checkpoint' in msg and str(path) in msg
    assert 'never falls back' in msg
    assert not marker.exists()
    # Not an UnpicklingError: mmengine-style `except UnpicklingError:
    # load unrestricted` code cannot turn the refusal into a load.
    assert not isinstance(err.value, pickle.UnpicklingError)


def test_payload_is_live_under_unrestricted_unpickling(tmp_path):
    """Sanity check of the test above: the payload does execute."""
    marker = tmp_path / 'marker'
    path = tmp_path / 'evil.pth'
    torch.save({'meta': _Payload(str(marker))}, path)
    torch.load(path, weights_only=False)
    assert marker.read_text() == 'executed'


def test_unknown_class_named_in_error(tmp_path):
    path = tmp_path / 'unknown.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': _UnknownThing()},
               path)
    with pytest.raises(UnsafeCheckpointError,
                       match=f"type '{__name__}._UnknownThing'"):
        load_checkpoint_file(str(path))
    # An explicit weights_only=False from the caller is honoured.
    assert safe_torch_load(str(path), weights_only=False)['x'].value == 3


def test_object_arrays_refused():
    buf = io.BytesIO()
    torch.save({'a': np.array([{'k': 1}], dtype=object)}, buf)
    buf.seek(0)
    with pytest.raises(UnsafeCheckpointError, match='ObjectDType'):
        safe_torch_load(buf)


def test_plain_mmengine_history_buffer_refused_with_hint(tmp_path):
    """Checkpoints of a plain mmengine Runner pickle getattr."""
    buf = HistoryBuffer()
    buf.update(1.0)
    path = tmp_path / 'legacy.pth'
    torch.save({'message_hub': {'log_scalars': {'loss': buf}}}, path)
    assert any('getattr' in n for n in _pickle_globals(path))
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint_file(str(path))
    assert "type 'getattr'" in str(err.value)
    assert 'plain mmengine Runner' in str(err.value)
    assert "runner_type='mmpretrain.MaPeTRunner'" in str(err.value)


def test_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r'Checkpoint .*nope\.pth does not exist'):
        load_checkpoint_file(str(tmp_path / 'nope.pth'))
    assert not verify_checkpoint(str(tmp_path / 'nope.pth'))
    (tmp_path / 'empty.pth').write_bytes(b'')
    assert not verify_checkpoint(str(tmp_path / 'empty.pth'))
