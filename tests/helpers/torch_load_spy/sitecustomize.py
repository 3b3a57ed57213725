"""Record every ``torch.load`` call of a tool run (test helper).

Python imports ``sitecustomize`` at start-up from ``sys.path``: put this
folder first on ``PYTHONPATH`` and set ``TORCH_LOAD_SPY_LOG=LOG.json`` when
running ``tools/*.py`` in a subprocess. Every ``torch.load`` call is then
recorded as ``{"file": ..., "weights_only": ...}`` (``"default"`` when the
caller did not pass it) and written to LOG.json when the process exits, also
on failure. Without ``TORCH_LOAD_SPY_LOG`` nothing happens.

This folder is on no path by default (``tests/helpers`` is, not its
sub-folders), so no other process picks it up.
"""
import os

_LOG = os.environ.get('TORCH_LOAD_SPY_LOG')

if _LOG:
    import atexit
    import functools
    import json

    import torch

    _calls = []
    _original_load = torch.load

    @functools.wraps(_original_load)
    def _spy_load(f, *args, **kwargs):
        name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else repr(f)
        _calls.append(
            dict(file=name, weights_only=kwargs.get('weights_only',
                                                    'default')))
        return _original_load(f, *args, **kwargs)

    def _dump() -> None:
        with open(_LOG, 'w') as fh:
            json.dump(_calls, fh)

    torch.load = _spy_load
    atexit.register(_dump)
