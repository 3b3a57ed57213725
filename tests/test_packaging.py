"""setup.py's version ranges against requirements/constraints.txt.

Every requirement has a lower bound the suite passed with and an upper
bound on the next major release (next minor for the onedl-* forks); the
constraints file pins what ``make install`` installs; the two must agree,
and the environment running the tests must be the pinned one.
"""
import re
import runpy
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, List

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / 'requirements' / 'constraints.txt'
SETUP = runpy.run_path(str(REPO / 'setup.py'), run_name='setup_under_test')
SETUP_PYTHON_REQUIRES = re.search(r"python_requires='([^']+)'",
                                  (REPO / 'setup.py').read_text())[1]
#: mutually exclusive with `cpu` (both provide `faiss`): not installable
#: here; it must admit the faiss-cpu release the tests ran with.
NOT_INSTALLED = {'faiss-gpu': 'faiss-cpu'}


def _pins() -> Dict[str, Version]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r'([A-Za-z0-9_.\-]+)==([^\s;]+)', line)
        assert match, f'not an exact pin: {line!r}'
        name = canonicalize_name(match[1])
        assert name not in pins, f'{name} pinned twice'
        pins[name] = Version(match[2])
    return pins


def _requirements() -> List[Requirement]:
    reqs = [Requirement(r) for r in SETUP['INSTALL_REQUIRES']]
    for extra in SETUP['EXTRAS_REQUIRE'].values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def _bounds(spec: SpecifierSet):
    lower = [Version(s.version) for s in spec if s.operator == '>=']
    upper = [Version(s.version) for s in spec if s.operator == '<']
    assert len(lower) == 1 and len(upper) == 1, str(spec)
    return lower[0], upper[0]


def test_every_requirement_has_tested_lower_and_next_major_upper_bound():
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        lower, upper = _bounds(req.specifier)
        pinned = pins[canonicalize_name(NOT_INSTALLED.get(name, name))]
        assert pinned in req.specifier, (
            f'{req}: the tested version {pinned} is outside setup.py\'s '
            'range; update one of them')
        assert lower <= pinned, req
        major, minor = lower.release[0], lower.release[1]
        if name.startswith('onedl-'):
            ceiling = Version(f'{major}.{minor + 1}')
        else:
            ceiling = Version(f'{major + 1}')
        # the next major/minor, or tighter for a documented reason
        # (setuptools<82: pkg_resources; openmim<0.4: last release line)
        assert upper <= ceiling, f'{req}: upper bound above {ceiling}'
        assert upper > pinned, req


def test_constraints_pin_the_environment_the_tests_run_in():
    pins = _pins()
    names = {canonicalize_name(r.name) for r in _requirements()}
    names -= set(NOT_INSTALLED)
    assert names <= set(pins), f'not pinned: {sorted(names - set(pins))}'
    for name in sorted(names):
        installed = Version(metadata.version(name))
        assert installed == pins[name], (
            f'{name}: installed {installed}, constraints pin {pins[name]}: '
            'regenerate requirements/constraints.txt (see its header) after '
            'the suite passed, or reinstall with `make install`')


def test_python_requires_is_true():
    """>=3.11: every pinned requirement installs on 3.11, and 3.10 would be
    a lie (some pinned requirement refuses it)."""
    assert Requirement('x' + SETUP_PYTHON_REQUIRES).specifier == \
        SpecifierSet('>=3.11')
    assert Version('.'.join(map(str, sys.version_info[:3]))) in \
        SpecifierSet('>=3.11')
    refuse_310 = []
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name in NOT_INSTALLED:
            continue
        declared = metadata.metadata(name).get('Requires-Python') or ''
        assert Version('3.11.0') in SpecifierSet(declared), (name, declared)
        if Version('3.10.12') not in SpecifierSet(declared):
            refuse_310.append(name)
    assert 'numpy' in refuse_310, refuse_310


def test_make_install_uses_the_constraints():
    makefile = (REPO / 'Makefile').read_text()
    body = makefile.split('$(STAMP):', 1)[1].split('\n\n', 1)[0]
    pip_lines = [line for line in body.splitlines() if '$(PIP) install' in
                 line]
    assert pip_lines and all('-c $(CONSTRAINTS)' in line
                             for line in pip_lines), pip_lines
    assert 'CONSTRAINTS := requirements/constraints.txt' in makefile
    assert '$(CONSTRAINTS)' in body.splitlines()[0]  # a pin change reinstalls
    assert '$(PY) -c "$$MIM_LINK"' in body  # the mim link step stays
