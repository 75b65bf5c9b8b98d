# Two entry points (see README.md): `make quickstart` runs the main job, `make test` the suites of both stacks.
# Each creates the virtual environment it needs on first use. The project itself is not installed into .venv:
# the checkout runs as it is (GluonCV's habit: clone, install the requirements, run the scripts).
#
# Two stacks (README, "Installation"):
#   MXNet stack    Python <= 3.11, mxnet 1.9.1, numpy 1.23 (requirements.txt; tests: requirements-test.txt)  -> .venv
#   PyTorch stack  the newest Python, numpy 2, no MXNet (requirements-torch.txt, then `pip install .`) -> .venv-torch
# The interpreters are found here: a `python3.X` on the PATH that runs, else pyenv's `versions/3.X*/bin/python3.X`.
# PYTHON=... picks the interpreter of `make quickstart` (its version picks the stack); PYTHON_MXNET=... and
# PYTHON_TORCH=... override the two stacks' interpreters.
SHELL := /bin/bash
export OMP_NUM_THREADS ?= $(shell nproc 2>/dev/null || echo 2)

# $(call find_python,3.11 3.10): the first of those versions that runs here, or nothing
find_python = $(firstword $(foreach v,$(1),$(shell for c in python$(v) $$(pyenv root 2>/dev/null || echo ~/.pyenv)/versions/$(v)*/bin/python$(v); do "$$c" -c '' >/dev/null 2>&1 && { echo "$$c"; break; }; done)))
# $(call resolve,NAME): NAME if it runs, else pyenv's interpreter of that version (python3.13 -> versions/3.13*)
resolve = $(shell c='$(1)'; "$$c" -c '' >/dev/null 2>&1 && { echo "$$c"; exit; }; v=$$(echo "$$c" | sed "s/.*python//"); for p in $$(pyenv root 2>/dev/null || echo ~/.pyenv)/versions/$$v*/bin/python$$v; do "$$p" -c '' >/dev/null 2>&1 && { echo "$$p"; exit; }; done; echo "$$c")

PYTHON_MXNET ?= $(call find_python,3.11 3.10)
PYTHON_TORCH ?= $(or $(call find_python,3.13 3.12),$(PYTHON_MXNET))
PYTHON ?= $(or $(PYTHON_MXNET),$(PYTHON_TORCH))
QUICKSTART_PY := $(call resolve,$(PYTHON))
# "mxnet" or "torch": the stack an interpreter runs (MXNet 1.9.1 installs on Python <= 3.11 only)
stack_of = $(shell "$(1)" -c 'import sys; print("mxnet" if sys.version_info < (3, 12) else "torch")' 2>/dev/null)

VENV ?= .venv
TORCH_VENV ?= .venv-torch
PY := $(VENV)/bin/python
TPY := $(TORCH_VENV)/bin/python

.PHONY: setup setup-test setup-torch quickstart test test-mxnet test-torch lint references clean horovod no-python

# ------------------------------------------------------------------------------------------ environments
$(VENV)/.runtime: requirements.txt
	@test -n "$(PYTHON_MXNET)" || { echo "no Python 3.11 or 3.10 found: the MXNet stack needs one (pyenv install 3.11)"; exit 2; }
	$(PYTHON_MXNET) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.test: requirements.txt requirements-test.txt $(VENV)/.runtime
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

# The PyTorch stack as a user gets it: the pinned dependencies, then a plain `pip install .` (numpy 2, no mxnet).
# Where no Python 3.12+ exists, the newest interpreter here with numpy 2 and the CPU build of torch on this disk
# instead (the pins are for 3.12+; unpinned, not a verified set).
$(TORCH_VENV)/.runtime: requirements-torch.txt pyproject.toml
	@test -n "$(PYTHON_TORCH)" || { echo "no Python found for the PyTorch stack"; exit 2; }
	$(PYTHON_TORCH) -m venv $(TORCH_VENV)
	$(TPY) -m pip install -q --upgrade pip
	if [ "$(call stack_of,$(PYTHON_TORCH))" = torch ]; then \
	  $(TPY) -m pip install -q -r requirements-torch.txt && $(TPY) -m pip install -q .; \
	else \
	  $(TPY) -m pip install -q torch==2.13.0 "numpy>=2" opencv-python pycocotools onnx onnxruntime tqdm matplotlib \
	    && $(TPY) -m pip install -q --no-deps .; \
	fi
	rm -rf build gluon_ssd.egg-info
	touch $@

$(TORCH_VENV)/.test: requirements-torch-test.txt $(TORCH_VENV)/.runtime
	if [ "$(call stack_of,$(PYTHON_TORCH))" = torch ]; then $(TPY) -m pip install -q -r requirements-torch-test.txt; \
	else $(TPY) -m pip install -q pytest faster-coco-eval; fi
	touch $@

setup: $(VENV)/.runtime
setup-test: $(VENV)/.test
setup-torch: $(TORCH_VENV)/.test

# -------------------------------------------------------------------------------------------- the main job
quickstart:
	@test -n "$(QUICKSTART_PY)" || { echo "no Python found: install Python 3.11 (both stacks) or 3.12+"; exit 2; }
ifeq ($(call stack_of,$(QUICKSTART_PY)),mxnet)
	@$(MAKE) --no-print-directory PYTHON_MXNET=$(QUICKSTART_PY) $(VENV)/.runtime
	$(PY) -m gluon_ssd.cli.quickstart $(ARGS)
else
	@$(MAKE) --no-print-directory PYTHON_TORCH=$(QUICKSTART_PY) $(TORCH_VENV)/.runtime
	$(TPY) -m gluon_ssd.cli.quickstart --backend torch $(ARGS)
endif

# ------------------------------------------------------------------------------------------------- tests
lint: $(VENV)/.test
	$(PY) -m ruff check .

# The MXNet stack: ruff and every test module, against gluoncv live.
test-mxnet: $(VENV)/.test
	$(PY) -m ruff check .
	GLUON_SSD_TEST_STACK=mxnet $(PY) -m pytest -q $(PYTEST_ARGS)

# The PyTorch stack: the project installed with a plain `pip install .` (again each time, 3 s: the console
# scripts must run this checkout's code), then the modules of tests/conftest.py TORCH_STACK_MODULES.
test-torch: $(TORCH_VENV)/.test
	if [ "$(call stack_of,$(PYTHON_TORCH))" = torch ]; then $(TPY) -m pip install -q .; \
	else $(TPY) -m pip install -q --no-deps .; fi
	rm -rf build gluon_ssd.egg-info
	GLUON_SSD_TEST_STACK=torch $(TPY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Both stacks (what CI runs), side by side: the MXNet stack's suite leaves about a quarter of the two cores idle
# (subprocess start-ups, imports, file work), which the PyTorch stack's environment (a download of about 3 GB on
# first use) and then its tests (on one OpenMP thread) take up. The PyTorch stack's output is printed after the
# MXNet stack's; each leg's time is printed at the end.
test:
	@start=$$(date +%s); status=0; rm -f $(TORCH_VENV).log $(TORCH_VENV).result; \
	if [ -n "$(PYTHON_MXNET)" ]; then \
	  $(MAKE) --no-print-directory $(VENV)/.test || exit 1; \
	  ( t0=$$(date +%s); \
	    { $(MAKE) --no-print-directory $(TORCH_VENV)/.test && \
	      OMP_NUM_THREADS=1 $(MAKE) --no-print-directory test-torch; } > $(TORCH_VENV).log 2>&1; \
	    echo "$$? $$(( $$(date +%s) - t0 ))" > $(TORCH_VENV).result ) & torch=$$!; \
	  mx0=$$(date +%s); $(MAKE) --no-print-directory test-mxnet || status=1; mx=$$(( $$(date +%s) - mx0 )); \
	  wait $$torch; echo "---- the PyTorch stack (run beside the MXNet stack's tests):"; cat $(TORCH_VENV).log; \
	  read rc t < $(TORCH_VENV).result; [ "$$rc" = 0 ] || status=1; \
	else \
	  echo "make test: no Python 3.11/3.10 here: the MXNet stack's tests do not run (PyTorch stack only)"; mx=0; \
	  t0=$$(date +%s); $(MAKE) --no-print-directory test-torch || status=1; t=$$(( $$(date +%s) - t0 )); \
	fi; \
	echo "make test: MXNet stack $${mx} s ($(PYTHON_MXNET)), PyTorch stack $${t} s with its venv ($(PYTHON_TORCH)), all $$(( $$(date +%s) - start )) s"; \
	exit $$status

# Every stored reference of the PyTorch stack's tests (tests/references), rewritten by gluoncv (MXNet stack).
references: $(VENV)/.test
	$(PY) -m tests.references.write

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
	rm -rf $(VENV) $(TORCH_VENV) $(TORCH_VENV).log $(TORCH_VENV).result .pytest_cache .ruff_cache build gluon_ssd.egg-info
