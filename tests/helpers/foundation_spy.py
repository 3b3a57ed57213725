"""Run a tool with ``torch.load`` instrumented (foundation test helper).

Usage: ``python foundation_spy.py LOG.json SCRIPT.py [ARGS...]``. Every
``torch.load`` call is recorded as ``{"file": ..., "weights_only": ...}``
(``"default"`` when the caller did not pass it) and written to LOG.json when
the process exits, also on failure.
"""
import atexit
import functools
import json
import os
import runpy
import sys

import torch

log_path, script = sys.argv[1], sys.argv[2]
calls = []
_original_load = torch.load


@functools.wraps(_original_load)
def _spy_load(f, *args, **kwargs):
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else repr(f)
    calls.append(dict(file=name, weights_only=kwargs.get('weights_only',
                                                         'default')))
    return _original_load(f, *args, **kwargs)


def _dump() -> None:
    with open(log_path, 'w') as fh:
        json.dump(calls, fh)


torch.load = _spy_load
atexit.register(_dump)
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name='__main__')
