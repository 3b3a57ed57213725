"""mapet/utils/atomic.py."""
import hashlib
import os

import pytest

from mapet.utils.atomic import (atomic_write, atomic_write_bytes,
                                atomic_write_text, checksum_path,
                                read_checksum, sha256_file, verify_checksum,
                                write_checksum)


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    path = tmp_path / 'sub' / 'f.bin'
    atomic_write_bytes(path, b'one')
    assert path.read_bytes() == b'one'
    atomic_write_text(path, 'two')
    assert path.read_text() == 'two'
    assert os.listdir(path.parent) == ['f.bin']


def test_failed_write_keeps_old_content(tmp_path):
    path = tmp_path / 'f.txt'
    atomic_write_text(path, 'old')
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_write(path, 'w') as f:
            f.write('half-written')
            raise RuntimeError('boom')
    assert path.read_text() == 'old'
    assert os.listdir(tmp_path) == ['f.txt']


def test_bad_mode():
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"):
        with atomic_write('x', 'a'):
            pass


def test_checksum_roundtrip_and_mismatch(tmp_path):
    path = tmp_path / 'codebook.npy'
    atomic_write_bytes(path, b'\x00' * 3000)
    digest = write_checksum(path)
    assert digest == hashlib.sha256(b'\x00' * 3000).hexdigest()
    assert sha256_file(path) == digest == read_checksum(path)
    # sha256sum-compatible sidecar.
    assert open(checksum_path(path)).read() == f'{digest}  codebook.npy\n'
    assert verify_checksum(path) == digest
    atomic_write_bytes(path, b'\x01')
    with pytest.raises(ValueError, match='Checksum mismatch for .*codebook'):
        verify_checksum(path)
    os.remove(checksum_path(path))
    with pytest.raises(FileNotFoundError):
        verify_checksum(path)
