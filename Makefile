# Two entry points (see README.md): `make quickstart` runs the main job, `make test` the whole suite.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: setup setup-test quickstart test lint clean horovod

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# the project itself, editable: console scripts and the backend entry points (--backend torch)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.test: requirements.txt requirements-test.txt $(VENV)/.runtime
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

setup: $(VENV)/.runtime
setup-test: $(VENV)/.test

quickstart: $(VENV)/.runtime
	$(PY) -m gluon_ssd.quickstart $(ARGS)

lint: $(VENV)/.test
	$(PY) -m ruff check .

test: $(VENV)/.test
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Optional, not part of setup/test/CI: horovod built from source into the venv (MXNet ops, Gloo, no MPI; a few
# minutes). --no-build-isolation builds against the installed mxnet; --no-deps keeps pip off numpy and mxnet.
HOROVOD_VERSION ?= 0.28.1
$(VENV)/.horovod: $(VENV)/.runtime
	$(PY) -m pip install -q --no-deps cloudpickle psutil pyyaml packaging
	command -v cmake >/dev/null || $(PY) -m pip install -q --no-deps cmake
	PATH="$(abspath $(VENV))/bin:$$PATH" HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
	  HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 \
	  $(PY) -m pip install --no-build-isolation --no-deps --no-cache-dir horovod==$(HOROVOD_VERSION)
	$(PY) -c "import horovod, horovod.mxnet; print('horovod', horovod.__version__, 'with MXNet')"
	touch $@

horovod: $(VENV)/.horovod

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
