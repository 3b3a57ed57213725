"""Recognise a torch checkpoint file before unpickling anything from it.

``torch.load`` on an empty file, a text file or an ``.npz`` fails with
``EOFError``, ``KeyError: 101`` or an ``inline_container.cc`` message that
names neither the file nor the problem. :func:`check_torch_checkpoint_file`
looks at the bytes first and says what the file is instead.
"""
import os
import zipfile

__all__ = ['NotACheckpointError', 'check_torch_checkpoint_file']

_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_PROTO = b'\x80'  # torch's legacy (non-zip) format starts pickled
# ... with torch's magic number 0x1950a86a20f9469cfc6c (pickle LONG1 opcode),
# right after the protocol (2) or a protocol-4 frame header.
_LEGACY_TORCH_MAGIC = b'\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19'


class NotACheckpointError(ValueError):
    """A file given as a checkpoint is not a torch checkpoint."""


def check_torch_checkpoint_file(path: str) -> None:
    """Raise :class:`NotACheckpointError` unless ``path`` looks like one.

    Accepts torch's zip format (an archive whose entries live under one
    top-level folder holding ``data.pkl``) and the legacy pickle-based
    format; refuses empty files, text, ``.npz``/other zip archives, plain
    pickles (``pickle.dump`` of a list or dict) and anything else, naming
    the file and what it seems to be.
    """
    name = os.fspath(path)
    size = os.path.getsize(name)
    if size == 0:
        raise NotACheckpointError(
            f'Checkpoint {name} is empty (0 bytes): a copy or save that did '
            'not complete. Use another checkpoint or save it again.')
    with open(name, 'rb') as f:
        start = f.read(32)
    head = start[:4]
    if head == _ZIP_MAGIC:
        try:
            with zipfile.ZipFile(name) as archive:
                entries = archive.namelist()
        except zipfile.BadZipFile as e:
            raise NotACheckpointError(
                f'Checkpoint {name} is a truncated or corrupt zip archive '
                f'({e}); use another checkpoint or save it again.') from None
        if not any(e.endswith('/data.pkl') for e in entries):
            shown = entries[:5]
            raise NotACheckpointError(
                f'Checkpoint {name} is a zip archive but not a torch '
                f'checkpoint (entries {shown}: a numpy .npz or another '
                'archive). Pass a file written by torch.save / the '
                'training runner.')
        return
    if head[:1] == _PICKLE_PROTO:
        if _LEGACY_TORCH_MAGIC in start:
            return  # legacy torch.save format; the safe unpickler decides
        raise NotACheckpointError(
            f'Checkpoint {name} is a plain Python pickle (protocol '
            f'{start[1]}), not a torch checkpoint: torch.save writes a zip '
            'archive (or, in its legacy format, a pickle that starts with '
            "torch's magic number). mapet does not unpickle plain pickles; "
            'save the weights with torch.save(state_dict, path) from code '
            'you trust.')
    try:
        head.decode('ascii')
        what = 'text'
    except UnicodeDecodeError:
        what = 'an unknown binary format'
    raise NotACheckpointError(
        f'Checkpoint {name} is not a torch checkpoint (it starts with '
        f'{head!r}: {what}). Pass a file written by torch.save / the '
        'training runner (.pth).')
