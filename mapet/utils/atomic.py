"""Crash-safe file writing helpers.

A reader must never see a half-written codebook, token store or dataset file:
everything is written to a temporary name in the *same directory* (so the
final :func:`os.replace` is an atomic rename on the same filesystem), flushed
and fsynced, then renamed over the destination. A run killed mid-write leaves
at most a stray ``.<name>.tmp-*`` file, never a truncated destination.

Example:
    >>> with atomic_write('codebook.npy', 'wb') as f:
    ...     np.save(f, centroids)
    >>> write_checksum('codebook.npy')       # codebook.npy.sha256
    >>> verify_checksum('codebook.npy')      # raises on mismatch
"""
import contextlib
import hashlib
import os
import os.path as osp
import tempfile
from typing import IO, Iterator, Union

PathLike = Union[str, os.PathLike]

CHECKSUM_SUFFIX = '.sha256'
_CHUNK = 1 << 20


def _fsync_dir(dirname: str) -> None:
    """Persist a rename by fsyncing its directory (best effort; POSIX only)."""
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: PathLike,
                 mode: str = 'wb',
                 encoding: Union[str, None] = None) -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` atomically on success.

    If the ``with`` body raises, the temporary file is removed and ``path``
    is left untouched.

    Args:
        path (str | PathLike): Final destination.
        mode (str): ``'wb'`` (default) or ``'w'`` (text). Defaults to 'wb'.
        encoding (str, optional): Text encoding for ``'w'``; defaults to
            UTF-8 in text mode.

    Yields:
        IO: The open temporary file.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(
            f"atomic_write supports mode 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    dirname = osp.dirname(osp.abspath(path))
    os.makedirs(dirname, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f'.{osp.basename(path)}.tmp-', dir=dirname)
    try:
        if 'b' in mode:
            f = os.fdopen(fd, mode)
        else:
            f = os.fdopen(fd, mode, encoding=encoding or 'utf-8')
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the result normal permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        _fsync_dir(dirname)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def publish_atomically(tmp: PathLike, path: PathLike) -> None:
    """fsync a fully written ``tmp`` and rename it over ``path``.

    For files another library wrote (e.g. mmengine's checkpoint save into a
    temporary name); :func:`atomic_write` does the same for our own writes.

    Args:
        tmp (str | PathLike): The complete temporary file (same directory).
        path (str | PathLike): Final destination.
    """
    with open(tmp, 'rb+') as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(osp.dirname(osp.abspath(os.fspath(path))))


def remove_if_exists(path: PathLike) -> None:
    """``os.remove(path)`` that ignores a missing file."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    Args:
        path (str | PathLike): Destination file.
        data (bytes): Content.
    """
    with atomic_write(path, 'wb') as f:
        f.write(data)


def atomic_write_text(path: PathLike,
                      text: str,
                      encoding: str = 'utf-8') -> None:
    """Write ``text`` to ``path`` atomically.

    Args:
        path (str | PathLike): Destination file.
        text (str): Content.
        encoding (str): Text encoding. Defaults to 'utf-8'.
    """
    with atomic_write(path, 'w', encoding=encoding) as f:
        f.write(text)


def sha256_file(path: PathLike) -> str:
    """Return the hex SHA-256 digest of a file, read in 1 MiB chunks.

    Args:
        path (str | PathLike): File to hash.

    Returns:
        str: 64 lowercase hex characters.
    """
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            h.update(chunk)
    return h.hexdigest()


def checksum_path(path: PathLike) -> str:
    """Return the sidecar checksum path of ``path`` (``<path>.sha256``)."""
    return os.fspath(path) + CHECKSUM_SUFFIX


def write_checksum(path: PathLike) -> str:
    """Write the sidecar ``<path>.sha256`` in ``sha256sum`` format.

    Write it *after* the file itself: a sidecar then only exists for a
    complete file, so its presence marks completion.

    Args:
        path (str | PathLike): File to checksum.

    Returns:
        str: The hex digest written.
    """
    digest = sha256_file(path)
    atomic_write_text(checksum_path(path),
                      f'{digest}  {osp.basename(os.fspath(path))}\n')
    return digest


def read_checksum(path: PathLike) -> str:
    """Read the digest stored in the sidecar of ``path``.

    Args:
        path (str | PathLike): The data file (not the sidecar).

    Returns:
        str: The stored hex digest.

    Raises:
        FileNotFoundError: If the sidecar does not exist.
    """
    with open(checksum_path(path), encoding='utf-8') as f:
        return f.read().split()[0]


def verify_checksum(path: PathLike) -> str:
    """Check ``path`` against its sidecar checksum.

    Args:
        path (str | PathLike): The data file.

    Returns:
        str: The verified hex digest.

    Raises:
        FileNotFoundError: If the file or its sidecar is missing.
        ValueError: If the digests differ (the file is corrupt or stale).
    """
    expected = read_checksum(path)
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(
            f'Checksum mismatch for {os.fspath(path)}: expected {expected}, '
            f'got {actual}. The file is corrupt or was replaced; rebuild it.')
    return actual
