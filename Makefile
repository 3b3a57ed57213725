# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Pinned here (not in setup.py) so cluster users keep their own CUDA torch.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# Exact versions of everything the tests passed with (setup.py has ranges).
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.mapet-installed

.PHONY: install test demo clean

# openmim 0.3.x finds a package at <pkg_resources location>/<name>: for a
# PEP 660 editable install that is site-packages/mapet, which does not exist
# (the code stays in the repo, imported through setuptools' finder), so
# `mim search/train mapet` fail. Link site-packages/mapet to the repo's
# mapet/ (as `setup.py develop` used to make it visible); its .mim/ holds
# the configs, tools and model-index.yml. A regular `pip install .` copies
# them there instead and needs no link.
define MIM_LINK
import os, sysconfig
link = os.path.join(sysconfig.get_paths()['purelib'], 'mapet')
if not os.path.lexists(link):
    os.symlink(os.path.abspath('mapet'), link)
endef
export MIM_LINK

install: $(STAMP)

$(STAMP): setup.py Makefile $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade -c $(CONSTRAINTS) 'pip>=23' 'setuptools<82' wheel
	$(PIP) install --quiet -c $(CONSTRAINTS) $(TORCH_PINS)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[tests,cpu]'
	$(PY) -c "$$MIM_LINK"
	touch $(STAMP)

# Per-test safety net (pytest-timeout); PYTEST_ARGS adds options (.ci/run).
TEST_TIMEOUT ?= 900
PYTEST_ARGS ?=

test: install
	$(PY) -m pytest tests projects -q -p no:cacheprovider --timeout=$(TEST_TIMEOUT) $(PYTEST_ARGS)

demo: install
	$(PY) tools/demo.py

clean:
	rm -rf $(VENV) work_dirs mapet/.mim *.egg-info
