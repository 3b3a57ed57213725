"""``import mapet`` changes nothing in torch/mmengine/mmcv/mmpretrain/mmseg.

Besides registering our components (new entries in mmpretrain's registries,
``mapet``-scope child registries) and ``MODULE2PACKAGE['mapet']``. Checked
in fresh interpreters by ``tests/helpers/import_side_effects.py`` (see its
docstring for what is compared); a second run with deliberate monkeypatches
shows that the checker catches them.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKER = Path(__file__).parent / 'helpers' / 'import_side_effects.py'


def _run(args, cwd) -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1',
               PYTHONWARNINGS='ignore')
    env.pop('PYTHONPATH', None)  # the installed mapet, not the checkout
    proc = subprocess.run([sys.executable, str(CHECKER), *args], cwd=cwd,
                          env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def modules_file(tmp_path_factory):
    """The watched modules that importing mapet loads, as a JSON file."""
    folder = tmp_path_factory.mktemp('side_effects')
    modules = _run(['list'], folder)
    assert any(m.startswith('mmseg.') for m in modules)
    path = folder / 'modules.json'
    path.write_text(json.dumps(modules))
    return path


def test_import_mapet_changes_nothing_else(modules_file):
    report = _run(['check', str(modules_file)], modules_file.parent)
    assert not report['failed_baseline_imports'], report
    assert report['snapshot_keys'] > 10000  # the snapshot saw the packages
    assert report['violations'] == [], (
        '`import mapet` changed torch/mmengine/mmcv/mmpretrain/mmseg:\n' +
        '\n'.join(report['violations']))


# injection -> a fragment of the violation the checker must print
EXPECTED = {
    'torch_load': 'torch.load: replaced',
    'scheme': 'CheckpointLoader._schemes (contents): added ["\'evil://\'"]',
    'safe_globals': 'torch.serialization.get_safe_globals()',
    'warnings': 'warnings.filters',
    'module2package': 'MODULE2PACKAGE (contents): added ["\'mapet\'"]; '
    'changed ["\'mmpretrain\'"]',
    'class_attr': 'mmengine.runner.runner.Runner.load_checkpoint: replaced',
    'registry_override': "Registry(mmpretrain:model)",
}


def test_checker_reports_monkeypatches(modules_file):
    report = _run(['check', str(modules_file), '--inject',
                   ','.join(EXPECTED)], modules_file.parent)
    text = '\n'.join(report['violations'])
    for name, fragment in EXPECTED.items():
        assert fragment in text, (name, text)
    registry = next(v for v in report['violations']
                    if v.startswith('Registry(mmpretrain:model)'))
    assert "changed ['ImageClassifier']" in registry
