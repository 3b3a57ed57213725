"""Safe checkpoint loading (mapet/utils/checkpoint.py), in process."""
import io
import pickle
import pickletools
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mm_ckpt

import mapet  # noqa: F401  (activates safe loading)
from mapet.utils import checkpoint as safe_ckpt
from mapet.utils.checkpoint import (UnsafeCheckpointError, safe_globals,
                                    safe_torch_load)


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
    return {
        arg
        for op, arg, _ in pickletools.genops(data)
        if op.name in ('GLOBAL', 'STACK_GLOBAL')
    }


def test_activation_replaces_mmengine_loaders():
    assert safe_ckpt.is_active()
    assert mm_ckpt._safe_torch_load is safe_torch_load
    # mapet's local loader, possibly wrapped by another mapet layer (the
    # checksum verification of mapet.engine.runners.checkpoint_io); the
    # tests below check the behaviour through CheckpointLoader itself.
    loader = CheckpointLoader._get_checkpoint_loader('/some/file.pth')
    assert loader.__module__.startswith('mapet.'), loader
    allow = safe_globals()
    assert mm_ckpt.get_torch_safe_globals() == allow
    # Narrow: no generic callables, no object dtype.
    for forbidden in (getattr, eval, exec, open, type(np.dtype(object))):
        assert forbidden not in allow
    assert HistoryBuffer in allow and np.ndarray in allow
    registered = torch.serialization.get_safe_globals()
    assert all(g in registered for g in allow)


def test_message_hub_state_roundtrips_with_plain_weights_only(tmp_path):
    hub = MessageHub('foundation_ckpt_test')
    for i, v in enumerate([2.0, np.float64(1.5), np.float32(1.25)]):
        hub.update_scalar('train/loss', v)
        hub.update_scalar('train/lr', 0.1 * i)
    hub.update_info('iter', np.int64(7))
    path = tmp_path / 'hub.pth'
    torch.save({'message_hub': hub.state_dict()}, path)

    names = _pickle_globals(path)
    assert not any('getattr' in n for n in names), names
    # torch's own default loader (weights_only=True) accepts it after
    # `import mapet` registered the allow-list.
    state = torch.load(path)['message_hub']
    new = MessageHub('foundation_ckpt_test_resumed')
    new.load_state_dict(state)
    buf = new.get_scalar('train/loss')
    assert buf.mean() == pytest.approx(np.mean([2.0, 1.5, 1.25]))
    assert buf.current() == pytest.approx(1.25)
    assert new.get_info('iter') == 7
    # Default statistics still work after unpickling without methods.
    assert buf.statistics('max') == pytest.approx(2.0)


@pytest.mark.parametrize('load', [
    lambda p: CheckpointLoader.load_checkpoint(p),
    lambda p: mm_ckpt._load_checkpoint(p, map_location='cpu'),
    lambda p: mm_ckpt.load_checkpoint(torch.nn.Linear(2, 2), p),
    lambda p: mm_ckpt._safe_torch_load(p),
    lambda p: safe_torch_load(p),
],
                         ids=[
                             'CheckpointLoader', '_load_checkpoint',
                             'load_checkpoint', '_safe_torch_load',
                             'safe_torch_load'
                         ])
def test_payload_refused_and_not_executed(tmp_path, load):
    marker = tmp_path / 'marker'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _Payload(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        load(str(path))
    msg = str(err.value)
    assert f'{__name__}._create_marker' in msg
    assert 'Refusing to load checkpoint' in msg and str(path) in msg
    assert 'never falls back' in msg
    assert not marker.exists()


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
        CheckpointLoader.load_checkpoint(str(path))


def test_object_arrays_refused():
    buf = io.BytesIO()
    torch.save({'a': np.array([{'k': 1}], dtype=object)}, buf)
    buf.seek(0)
    with pytest.raises(UnsafeCheckpointError, match='ObjectDType'):
        safe_torch_load(buf)


def test_plain_mmengine_history_buffer_refused_with_hint(tmp_path,
                                                         monkeypatch):
    """Checkpoints written by mmengine without mapet pickle getattr."""
    monkeypatch.setattr(HistoryBuffer, '__getstate__',
                        safe_ckpt.MMENGINE_HISTORY_BUFFER_GETSTATE)
    buf = HistoryBuffer()
    buf.update(1.0)
    path = tmp_path / 'legacy.pth'
    torch.save({'message_hub': {'log_scalars': {'loss': buf}}}, path)
    monkeypatch.undo()
    assert any('getattr' in n for n in _pickle_globals(path))
    with pytest.raises(UnsafeCheckpointError) as err:
        CheckpointLoader.load_checkpoint(str(path))
    assert 'getattr' in str(err.value)
    assert 'without `import mapet`' in str(err.value)


def test_history_buffer_getstate_does_not_mutate():
    buf = HistoryBuffer()
    buf.update(2.0)
    state = pickle.loads(pickle.dumps(buf)).__dict__
    assert 'statistics_methods' not in buf.__dict__
    assert 'statistics_methods' not in state


def test_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError, match='can not be found'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'nope.pth'))
