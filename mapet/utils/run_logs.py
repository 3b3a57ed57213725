"""Run a tool with a readable console, and read what mmengine logged.

Used by ``tools/demo.py``: a tool's progress bars become one line each, the
console shows progress, results, warnings and the weight-load report while
the whole output goes to a log file, and the load report is read back.
"""
import os
import re
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Optional, Tuple

# Console filter for tools that log to a file: progress and results, not the
# environment dump. Lines after one of these that carry no mmengine
# timestamp (a warning's detail, the load check's report) are shown too.
CONSOLE_KEYS = ('Epoch(', 'accuracy', 'Error', 'WARNING', 'verified load',
                'k-NN (k=', 'Pretrained weights of')
_TIMESTAMP = re.compile(r'^\d\d/\d\d \d\d:\d\d:\d\d - ')
MAX_DETAIL_LINES = 6


def _pieces(stream) -> Iterator[Tuple[str, bool]]:
    """``(text, ends_line)`` pieces of a byte stream split at ``\\n`` and
    ``\\r`` (a progress bar redraws its line after ``\\r``)."""
    buf = b''
    while True:
        chunk = stream.read1(65536)
        if not chunk:
            break
        buf += chunk
        while True:
            cuts = [i for i in (buf.find(b'\n'), buf.find(b'\r')) if i >= 0]
            if not cuts:
                break
            i = min(cuts)
            yield buf[:i].decode('utf-8', 'replace'), buf[i:i + 1] == b'\n'
            buf = buf[i + 1:]
    if buf:
        yield buf.decode('utf-8', 'replace'), True


def run(cmd: List[str],
        log_file: Optional[str] = None,
        cwd: Optional[str] = None) -> float:
    """Run one tool; stream its output (and tee it to ``log_file``).

    A progress bar's redraws (``\\r``) are one line: live on a terminal,
    its final state otherwise (and in the log), never one line per redraw.
    With ``log_file`` the console shows :data:`CONSOLE_KEYS` lines only.
    ``cwd`` is the working directory of the tool (default: this one).
    """
    print('$ ' + ' '.join(cmd), flush=True)
    env = dict(os.environ)
    env.setdefault('PYTHONWARNINGS', 'ignore')
    tty = sys.stdout.isatty()
    start = time.time()
    with subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT) as proc:
        log = open(log_file, 'w', encoding='utf-8') if log_file else None
        pending, detail, live = '', 0, False
        try:
            for text, ends_line in _pieces(proc.stdout):
                if not ends_line:  # a progress-bar redraw
                    if text.strip():
                        pending = text
                        if tty and log is None:
                            sys.stdout.write('\r' + text)
                            sys.stdout.flush()
                            live = True
                    continue
                line = text if text.strip() else pending
                pending = ''
                if log is not None:
                    log.write(line + '\n')
                    if any(k in line for k in CONSOLE_KEYS):
                        show, detail = True, MAX_DETAIL_LINES
                    elif detail and not line.strip():
                        show = False  # a blank line inside the detail
                    elif detail and not _TIMESTAMP.match(line):
                        show, detail = True, detail - 1
                    else:
                        show, detail = False, 0
                else:
                    show = True
                if show:
                    sys.stdout.write(('\r' if live else '') + line + '\n')
                    sys.stdout.flush()
                    live = False
        finally:
            if log is not None:
                log.close()
    if proc.returncode != 0:
        hint = f' (full log: {log_file})' if log_file else ''
        raise SystemExit(f'demo step failed with exit code '
                         f'{proc.returncode}: {" ".join(cmd)}{hint}')
    return time.time() - start


_LOAD_REPORT = re.compile(
    r'Pretrained weights of `(?P<module>[^`]+)` from (?P<ckpt>\S+) '
    r'\(prefix=(?P<prefix>[^)]*)\):\n'
    r'  loaded and verified: (?P<loaded>\d+) tensors\n'
    r'  missing \(newly initialised\): (?P<missing>.*)\n'
    r'  unexpected \(ignored\): (?P<unexpected>.*)\n')


def read_load_report(log_file: str) -> Optional[Dict]:
    """``PretrainedLoadCheckHook``'s report in a training log, if any."""
    with open(log_file, encoding='utf-8') as f:
        m = _LOAD_REPORT.search(f.read())
    if m is None:
        return None
    return dict(module=m['module'], checkpoint=m['ckpt'],
                loaded_tensors=int(m['loaded']), missing=m['missing'],
                unexpected=m['unexpected'])
