"""Fault injection for the crash-safety tests: die in the middle of a write.

Importing this module (``custom_imports`` or ``-c 'import ...'``) wraps
:func:`os.fdopen` and :func:`open` when ``MAPET_KILL_WRITE_MATCH`` is set:
the first file opened for writing whose name contains that string writes
half of its first ``write()`` call (or ``MAPET_KILL_WRITE_AFTER`` bytes),
flushes and fsyncs it to disk, and then the process sends itself SIGKILL.
This is what a preemption or the OOM killer does to a writer, made
reproducible. Both ways a checkpoint reaches the disk are covered:
``mapet.utils.atomic.atomic_write`` (and so ``atomic_save_checkpoint``)
opens its temporary file with :func:`os.fdopen`; ``MaPeTRunner`` lets
mmengine write the checkpoint into a temporary name (``.<name>.tmp-<pid>``),
which mmengine's local backend opens with :func:`open`.
"""
import builtins
import os
import signal

_MATCH = os.environ.get('MAPET_KILL_WRITE_MATCH')
_AFTER = os.environ.get('MAPET_KILL_WRITE_AFTER')
# The true functions, also when this module is reloaded.
_original_fdopen = getattr(os.fdopen, 'original', os.fdopen)
_original_open = getattr(builtins.open, 'original', builtins.open)


class _DyingFile:
    """Proxy that dies during its first write."""

    def __init__(self, f) -> None:
        self._f = f

    def write(self, data):
        n = int(_AFTER) if _AFTER else max(1, len(data) // 2)
        self._f.write(data[:n])
        self._f.flush()
        os.fsync(self._f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


def _matches(path) -> bool:
    return bool(_MATCH) and _MATCH in os.path.basename(os.fsdecode(path))


def _fdopen(fd, *args, **kwargs):
    f = _original_fdopen(fd, *args, **kwargs)
    try:
        path = os.readlink(f'/proc/self/fd/{fd}')
    except OSError:
        return f
    if _matches(path):
        return _DyingFile(f)
    return f


def _open(file, mode='r', *args, **kwargs):
    f = _original_open(file, mode, *args, **kwargs)
    if isinstance(file, (str, bytes, os.PathLike)) and \
            any(c in mode for c in 'wax+') and _matches(file):
        return _DyingFile(f)
    return f


_fdopen.original = _original_fdopen
_open.original = _original_open
if _MATCH:
    os.fdopen = _fdopen
    builtins.open = _open
