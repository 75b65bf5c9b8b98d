"""Exported SSDs: symbol JSON + parameters for ``mx.gluon.SymbolBlock.imports`` (and C++), float32 or int8.

:func:`export` writes ``{prefix}-symbol.json``, ``{prefix}-{epoch:04d}.params`` and a small
``{prefix}-meta.json`` (model name, classes, input size, int8 settings) that :func:`load_exported` reads
back; files without the meta (GluonCV's own exports) load too, and then take their classes from the caller.
"""
from __future__ import annotations

import json
import os

import mxnet as mx

from .fileio import atomic_path, atomic_write
from .params import atomic_save_ndarrays

__all__ = ["export", "load_exported", "read_meta"]


def _base_size(net) -> int:
    spec = getattr(net, "spec", None)
    return int(getattr(spec, "base_size", 0) or getattr(net, "base_size", 0) or 300)


def export(net, prefix: str, epoch: int = 0, data_shape=None) -> tuple[str, str]:
    """Write ``{prefix}-symbol.json``, ``{prefix}-{epoch:04d}.params`` and ``{prefix}-meta.json``.

    Parameters
    ----------
    net : a gluon_ssd SSD (initialized), or the int8 block of :func:`gluon_ssd.quantize`.
    prefix : path prefix of the files.
    data_shape : (H, W) used to trace the graph once (any size works later); default the model's size.

    Returns
    -------
    (symbol file, params file). Reload with :func:`load_exported` or
    ``mx.gluon.SymbolBlock.imports(symbol_file, ['data'], params_file)``.
    """
    if data_shape is None:
        size = _base_size(net)
        data_shape = (size, size)
    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    if isinstance(net, mx.gluon.SymbolBlock):
        _, sym = net._cached_graph
        sym = sym[0] if isinstance(sym, (list, tuple)) else sym
    else:
        net.hybridize()
        with mx.autograd.predict_mode():
            net(mx.nd.zeros((1, 3) + tuple(data_shape), ctx=ctx))
        _, sym = net._cached_graph
    sym_file = f"{prefix}-symbol.json"
    params_file = f"{prefix}-{epoch:04d}.params"
    with atomic_path(sym_file) as tmp:
        sym.save(tmp)
    args = set(sym.list_arguments())
    auxs = set(sym.list_auxiliary_states())
    arrays = {}
    for param in net.collect_params().values():
        if param.name in args:
            arrays[f"arg:{param.name}"] = param._reduce()
        elif param.name in auxs:
            arrays[f"aux:{param.name}"] = param._reduce()
    atomic_save_ndarrays(params_file, arrays)
    meta = {"model": getattr(net, "model_name", None) or getattr(net, "name_in_zoo", None),
            "classes": list(getattr(net, "classes", ()) or ()) or None,
            "data_shape": [int(v) for v in data_shape],
            "quantized_dtype": getattr(net, "quantized_dtype", None),
            "calib_mode": getattr(net, "calib_mode", None),
            "float_heads": getattr(net, "float_heads", None)}
    with atomic_write(f"{prefix}-meta.json", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    return sym_file, params_file


def read_meta(prefix: str) -> dict:
    """The ``{prefix}-meta.json`` written by :func:`export`, or {} when there is none."""
    path = f"{prefix}-meta.json"
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable export description ({err}); delete it to load the "
                         "model without it") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not an export description (a JSON object)")
    return meta


def load_exported(prefix: str, ctx=None, epoch: int = 0, classes=None):
    """The model exported under ``prefix`` as a hybridized SymbolBlock with ``classes``.

    Parameters
    ----------
    prefix : the files ``{prefix}-symbol.json`` and ``{prefix}-{epoch:04d}.params``.
    ctx : mx.Context (default cpu; int8 graphs run on the CPU only).
    classes : the class names when the export has no meta file (GluonCV's exports); with a meta file they
        must be the same.

    Raises
    ------
    FileNotFoundError naming a missing file; ValueError for files that do not load together, or classes
    that differ from the export's.
    """
    ctx = ctx or mx.cpu()
    sym_file, params_file = f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params"
    missing = [f for f in (sym_file, params_file) if not os.path.isfile(f)]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} not found: an exported model is PREFIX-symbol.json and "
                                f"PREFIX-{epoch:04d}.params (gluon_ssd.export writes them)")
    meta = read_meta(prefix)
    if meta.get("quantized_dtype") and ctx.device_type != "cpu":
        raise ValueError(f"{sym_file} is an int8 graph, which runs on the CPU only; got ctx={ctx}")
    try:
        net = mx.gluon.SymbolBlock.imports(sym_file, ["data"], params_file, ctx=ctx)
    except (mx.base.MXNetError, ValueError, AssertionError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot import {sym_file} with {params_file}: {first}") from None
    saved = meta.get("classes")
    if saved and classes is not None and tuple(saved) != tuple(classes):
        raise ValueError(f"{prefix} was exported for {len(saved)} classes {saved[:5]}{'...' if len(saved) > 5 else ''}"
                         f", not the {len(classes)} classes {list(classes)[:5]}"
                         f"{'...' if len(classes) > 5 else ''}: use a model of this dataset's classes")
    net.classes = tuple(saved or classes or ())
    net.model_name = meta.get("model")
    net.quantized_dtype = meta.get("quantized_dtype")
    net.float_heads = meta.get("float_heads")
    net.hybridize(static_alloc=True, static_shape=True)
    return net
