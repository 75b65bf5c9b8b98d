"""MXNet where it is installed, and what the data, evaluation and training code uses in its place where it is not.

The machines with today's GPUs have PyTorch and no MXNet (mxnet-cu112 has no sm_90 code), and
``train_ssd.py --backend torch`` / ``eval_ssd.py --backend torch`` run there. So the modules they import
(datasets, transforms, batching, metrics, the training loop) take ``mx`` from here: the module, or None.
Their MXNet-only paths call :func:`require`, which names what needs MXNet; the shared paths check ``mx is
None`` and use numpy / OpenCV (see :func:`gluon_ssd.data.custom.read_image` and
:func:`gluon_ssd.data.image.imresize` for how their pixels compare).
"""
from __future__ import annotations

import sys

import numpy as np

try:
    import mxnet as mx
except ImportError:  # torch-only machines
    mx = None

HAVE_MXNET = mx is not None


class MXNetMissing(ImportError):
    """Something that needs MXNet was asked for where MXNet is not installed. The command-line tools report it
    as one line and exit status 2 (gluon_ssd.cli.common.run_main)."""


def missing_message(what: str) -> str:
    """Why ``what`` cannot run here and what to do instead (MXNet 1.9.1 cannot be installed on Python 3.12+)."""
    here = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    if sys.version_info >= (3, 12):
        todo = (f"this is {here}, so run the PyTorch twin instead (--backend torch; convert a GluonCV file with "
                "python -m convert), or use a Python 3.11 environment with pip install -r requirements.txt")
    else:
        todo = (f"it is not installed in this {here} environment: pip install -r requirements.txt, or run the "
                "PyTorch twin instead (--backend torch)")
    return f"{what} needs MXNet 1.9.1, which installs on Python 3.11 or older: {todo}"


def require(what: str):
    """The mxnet module, or :class:`MXNetMissing` saying that ``what`` needs it and what runs without it."""
    if mx is None:
        raise MXNetMissing(missing_message(what))
    return mx


def default_backend() -> str:
    """The backend train_ssd.py runs when none is named: MXNet where it is installed, else the PyTorch twin (for
    serving, gluon_ssd.cli.common.resolve_backend also picks among the runtimes)."""
    return "mxnet" if HAVE_MXNET else "torch"


if mx is not None:
    Dataset = mx.gluon.data.Dataset
    EvalMetric = mx.metric.EvalMetric
else:
    class Dataset:
        """Stands in for ``mx.gluon.data.Dataset`` (a length and items) without MXNet."""

        def __getitem__(self, idx):
            raise NotImplementedError

        def __len__(self):
            raise NotImplementedError

        def transform(self, fn, lazy=True):
            """The items through ``fn`` (called with the fields of a tuple item), as gluon's."""
            return _Transformed(self, fn)

    class _Transformed(Dataset):
        def __init__(self, data, fn):
            self._data, self._fn = data, fn

        def __len__(self):
            return len(self._data)

        def __getitem__(self, idx):
            item = self._data[idx]
            return self._fn(*item) if isinstance(item, tuple) else self._fn(item)

    class EvalMetric:
        """Stands in for ``mx.metric.EvalMetric`` without MXNet: a name (the metrics here do the rest)."""

        def __init__(self, name):
            self.name = str(name)
            self.reset()

        def reset(self):
            self.num_inst, self.sum_metric = 0, 0.0


def is_ndarray(x) -> bool:
    """Whether ``x`` is an ``mx.nd.NDArray`` (never, without MXNet)."""
    return mx is not None and isinstance(x, mx.nd.NDArray)


def is_block(x) -> bool:
    """Whether ``x`` is a gluon Block (never, without MXNet)."""
    return mx is not None and isinstance(x, mx.gluon.Block)


def as_numpy(x):
    """An NDArray's values as numpy; anything else through ``np.asarray`` (torch CPU tensors included)."""
    return x.asnumpy() if is_ndarray(x) else np.asarray(x)
