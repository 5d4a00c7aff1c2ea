# Two entry points: `make demo` (pipeline on generated DRIVE-like data) and `make test` (what CI
# runs); `make test-fast` is the unit tests alone, for inner loops.
#
# The third-party stack (3.3 GB) is installed once per lock hash into a shared cache folder and
# layered under the project's own thin `.venv` with a .pth file, so a fresh clone (or a CI run on a
# machine that built it before) does not reinstall TensorFlow. Delete the cache folder to rebuild.

SHELL := /bin/bash
PYTHON ?= python3
LOCK := constraints.txt
LOCK_HASH := $(shell sha256sum $(LOCK) | cut -c1-16)
DEPS_CACHE ?= $(HOME)/.cache/retina-tfx
DEPS_VENV := $(DEPS_CACHE)/deps-$(LOCK_HASH)
VENV := .venv
VPY := $(VENV)/bin/python
PYVER := $(shell $(PYTHON) -c 'import sys; print("python%d.%d" % sys.version_info[:2])')
DEMO_DIR ?= demo
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-fast venv clean

demo: $(VENV)/.installed
	test -d $(DEMO_DIR)/data || $(VENV)/bin/retina-tfx make-demo-data $(DEMO_DIR)/data
	$(VENV)/bin/retina-tfx run --data $(DEMO_DIR)/data --pipeline-root $(DEMO_DIR)/pipeline_root

# In parallel, a worker per core (at most 4): the tests that share the demo pipeline run go to one
# worker (tests/conftest.py), which runs it once.
PYTEST := $(VPY) -m pytest -q -n auto --maxprocesses 4 --dist loadgroup

test: $(VENV)/.installed
	$(PYTEST) tests

# For inner loops: no pipeline runs, no model trained or scoring whole datasets (the real-data
# reader tests still run).
test-fast: $(VENV)/.installed
	$(PYTEST) -m "not slow" tests

venv: $(VENV)/.installed

# Every line of the lock is an exact pin and the set is `pip check`-clean, so it installs with
# --no-deps (no resolver run). tfx 1.16 declares Requires-Python <3.11 but works on 3.11.
# The lock is an order-only prerequisite: its content is in the folder name already, and a fresh
# clone's newer file time must not trigger a rebuild of a stack other clones may be using.
$(DEPS_VENV)/.complete: | $(LOCK)
	rm -rf $(DEPS_VENV).partial
	$(PYTHON) -m venv $(DEPS_VENV).partial
	$(DEPS_VENV).partial/bin/pip install --quiet --no-deps --ignore-requires-python -r $(LOCK)
	$(DEPS_VENV).partial/bin/pip check
	rm -rf $(DEPS_VENV) && mv $(DEPS_VENV).partial $(DEPS_VENV)
	# A venv's scripts carry absolute shebangs: rewrite them for the final folder.
	grep -rlI --null "$(DEPS_VENV).partial" $(DEPS_VENV)/bin | xargs -0 -r sed -i "s|$(DEPS_VENV).partial|$(DEPS_VENV)|g"
	touch $@

$(VENV)/.installed: $(DEPS_VENV)/.complete setup.py pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv --without-pip $(VENV)
	echo "import site; site.addsitedir('$(DEPS_VENV)/lib/$(PYVER)/site-packages')" \
		> $(VENV)/lib/$(PYVER)/site-packages/retina_tfx_deps.pth
	$(VPY) -m pip install --quiet --no-deps --no-build-isolation -e .
	echo "$(DEPS_VENV)" > $@

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info
