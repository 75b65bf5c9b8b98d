"""The one registry of backends: by name, a backend's detector loader, its training engine class and its int8
quantizer. It imports none of the project's model code, so that the tools (:mod:`gluon_ssd.predict`,
:mod:`gluon_ssd.quantization`, :mod:`gluon_ssd.train.run`) and the backends themselves (``convert.backend``)
all import it without importing each other.

The MXNet detector is registered by :mod:`gluon_ssd.predict`, the MXNet engine by :mod:`gluon_ssd.train.run`
(where MXNet is installed). The project's own PyTorch twin (convert/) registers itself when its module
:data:`OWN_BACKENDS` names is imported, which :func:`available_backends` does on first need, so that a checkout
that is not installed runs ``--backend torch``; other packages are found through the entry-point group
:data:`ENTRY_POINT_GROUP` (each entry a callable that registers).
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

__all__ = ["BACKENDS", "ENGINES", "QUANTIZERS", "UNAVAILABLE", "OWN_BACKENDS", "ENTRY_POINT_GROUP", "CPU_FP32_ORDER",
           "register_backend", "available_backends", "unknown_backend_message"]

log = logging.getLogger(__name__)

# name -> fn(network, pretrained=, classes=, ctx=, nms_thresh=, nms_topk=, post_nms=, ...) -> detector
# (arguments as gluon_ssd.predict.load_mxnet_detector)
BACKENDS: dict[str, Callable[..., Any]] = {}
# name -> the class of its training engine (gluon_ssd.train.loop.Engine: train_ssd.py --backend NAME)
ENGINES: dict[str, type] = {}
# name -> fn(detector, calib_batches, out_path, calib_mode=, num_calib_examples=, quantize_heads=, nms=)
# -> its int8 detector, written to out_path (see convert.backend.quantize_torch_detector)
QUANTIZERS: dict[str, Callable[..., Any]] = {}
ENTRY_POINT_GROUP = "gluon_ssd.backends"
# The project's own backends: name -> the module whose register() adds it (importing it needs its framework).
OWN_BACKENDS = {"torch": "convert.backend", "onnxruntime": "convert.runtime.onnxruntime",
                "openvino": "convert.runtime.openvino"}
# What float32 on the CPU runs in where nothing is named and MXNet is not installed: the fastest exact runtime
# installed, in this order (bench/bench_runtimes.py, BENCHMARKS.md "Serving runtimes"; each gives the twin's
# detections within the bounds of python -m convert --verify).
CPU_FP32_ORDER = ("openvino", "onnxruntime", "torch")
# name -> why it could not be loaded (its framework is not installed), for the messages of the tools
UNAVAILABLE: dict[str, str] = {}
_discovered = False


def register_backend(name: str, detector: Callable[..., Any] | None = None, engine: type | None = None,
                     quantizer: Callable[..., Any] | None = None) -> None:
    """Make ``name`` a backend: ``detector`` builds its detectors (:func:`gluon_ssd.predict.load_detector`, the
    CLIs' ``--backend``), ``engine`` is its training engine class (``train_ssd.py --backend NAME``),
    ``quantizer`` calibrates one of its detectors to int8 (``eval_ssd.py --backend NAME --dtype int8``). What is
    None is left as registered before (a backend's parts may register apart)."""
    if detector is not None:
        BACKENDS[name] = detector
    if engine is not None:
        ENGINES[name] = engine
    if quantizer is not None:
        QUANTIZERS[name] = quantizer


def available_backends() -> dict[str, Callable[..., Any]]:
    """:data:`BACKENDS` after registering the project's own backends (:data:`OWN_BACKENDS`) and those of the
    entry points of installed packages (once). One whose framework is missing is left out, the reason kept in
    :data:`UNAVAILABLE`."""
    global _discovered
    if not _discovered:
        _discovered = True
        for name, module in OWN_BACKENDS.items():
            if name in BACKENDS:
                continue
            try:
                importlib.import_module(module).register()
            except ImportError as err:  # e.g. torch not installed: that backend is simply not available
                UNAVAILABLE[name] = str(err)
                log.info("backend %s not available: %s", name, err)
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name in BACKENDS:
                continue
            try:
                entry.load()()
            except ImportError as err:
                UNAVAILABLE[entry.name] = str(err)
                log.info("backend %s not available: %s", entry.name, err)
    return BACKENDS


def unknown_backend_message(backend: str) -> str:
    """Why ``backend`` cannot be used: not installed (with the import error) or not a backend at all."""
    backends = available_backends()
    if backend in UNAVAILABLE:
        return (f"--backend {backend} is not available here ({UNAVAILABLE[backend]})"
                + ("; the PyTorch twin needs torch: pip install -r requirements-torch.txt (Python 3.12+) or "
                   "pip install torch onnx onnxruntime" if backend == "torch" else ""))
    return f"--backend {backend!r} is not available; choose from {', '.join(sorted(backends))}"
