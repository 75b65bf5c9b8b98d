# Two entry points (see README.md): `make quickstart` runs the main job, `make test` the whole suite.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: setup setup-test quickstart test lint clean horovod torch-only

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

# Optional, not part of CI: the --backend torch tools where MXNet is not installed, with the newest numpy and
# opencv-python (what a torch-only GPU machine may have): a venv without mxnet, then a 2-epoch training run on
# a small synthetic set, eval_ssd.py on its .params and demo_ssd.py on its .pth (a minute or two).
TORCH_VENV ?= .venv-torch
TORCH_RUN ?= runs/torch-only
torch-only:
	test -x $(TORCH_VENV)/bin/python || python3 -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install -q torch==2.13.0 "numpy>=2" opencv-python pycocotools tqdm matplotlib pillow
	rm -rf $(TORCH_RUN)
	PYTHONPATH=. $(TORCH_VENV)/bin/python -c "from gluon_ssd.data.synthetic import write_synthetic_dataset as w; \
	  w('$(TORCH_RUN)/data', 12, 4, seed=1, min_size=160, max_size=240, progress=False)"
	PYTHONPATH=. $(TORCH_VENV)/bin/python train_ssd.py --backend torch --network mobilenet0.25 --data-shape 300 \
	  --batch-size 4 --epochs 2 --lr 0.01 --dataset custom --dataset-root $(TORCH_RUN)/data --gpus '' -j 2 \
	  --pretrained-base False --save-prefix $(TORCH_RUN)/ --no-progress
	PYTHONPATH=. $(TORCH_VENV)/bin/python eval_ssd.py --backend torch --network mobilenet0.25 --data-shape 300 \
	  --dataset custom --dataset-root $(TORCH_RUN)/data --save-prefix $(TORCH_RUN)/ \
	  --pretrained $(TORCH_RUN)/ssd_300_mobilenet0.25_custom_best.params
	PYTHONPATH=. $(TORCH_VENV)/bin/python demo_ssd.py --backend torch --network ssd_300_mobilenet0.25_custom \
	  --pretrained $(TORCH_RUN)/ssd_300_mobilenet0.25_custom_best.pth --classes $(TORCH_RUN)/data/classes.txt \
	  --images $(TORCH_RUN)/data/JPEGImages --out-dir $(TORCH_RUN)/demo
	$(TORCH_VENV)/bin/python -c "import importlib.util as u; assert u.find_spec('mxnet') is None; import numpy; \
	  print('torch-only: ran without mxnet, numpy', numpy.__version__)"

clean:
	rm -rf $(VENV) $(TORCH_VENV) .pytest_cache .ruff_cache
