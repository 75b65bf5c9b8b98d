"""What the runtimes' files share: the optional packages (one message naming the pip command when one is missing) and
the meta a written ONNX graph carries (network, classes, input size, NMS, precision; int8: its float heads). A leaf:
imports nothing of convert, so the torch-free backends and the torch-side int8 writer both use it."""
from __future__ import annotations

import importlib
import json

from gluon_ssd.cpu import runtime_threads
from gluon_ssd.fileio import atomic_path

__all__ = ["META_KEY", "PINS", "RuntimeMissing", "require", "set_onnx_meta", "write_onnx_meta", "read_onnx_meta",
           "ort_session"]

META_KEY = "gluon_ssd"  # the ONNX metadata_props key of every graph written here
PINS = {"onnxruntime": "onnxruntime==1.32.0 (Python 3.12+) or onnxruntime==1.19.2 (Python 3.11)",
        "openvino": "openvino==2026.4.1", "nncf": "nncf==3.4.0 (Python 3.12+: the PyTorch stack)"}


class RuntimeMissing(ImportError):
    """A runtime package is not installed; the message names it and the pip command."""


def require(package: str, what: str):
    """``import package`` or :class:`RuntimeMissing` saying ``what`` needs it and how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        pin = PINS.get(package, package)
        raise RuntimeMissing(f"{what} needs the {package} package, which is not installed: pip install "
                             f"{pin.split(' ')[0]}" + (f" ({pin})" if " " in pin else "")) from None


def set_onnx_meta(graph, meta: dict) -> None:
    """Put ``meta`` into a loaded ONNX ``graph``'s metadata_props (key :data:`META_KEY`), replacing an older one."""
    for prop in list(graph.metadata_props):
        if prop.key == META_KEY:
            graph.metadata_props.remove(prop)
    entry = graph.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)


def write_onnx_meta(path: str, meta: dict) -> None:
    """Store ``meta`` in the ONNX file's metadata_props (key :data:`META_KEY`), in place."""
    onnx = require("onnx", "writing ONNX meta")
    graph = onnx.load(path)
    set_onnx_meta(graph, meta)
    with atomic_path(path) as tmp:
        onnx.save(graph, tmp)


def read_onnx_meta(path: str) -> dict | None:
    """The meta of an .onnx written here or by ``python -m convert`` (None for a file without one)."""
    onnx = require("onnx", f"reading {path}")
    try:
        props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    except Exception as err:  # onnx raises its own DecodeError types
        raise ValueError(f"{path} is not a readable ONNX file: {err}") from None
    return json.loads(props[META_KEY]) if META_KEY in props else None


def ort_session(path: str, what: str = "--backend onnxruntime"):
    """An ONNX Runtime CPU session of ``path`` on :func:`gluon_ssd.cpu.runtime_threads` threads."""
    ort = require("onnxruntime", what)
    options = ort.SessionOptions()
    options.intra_op_num_threads = runtime_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
