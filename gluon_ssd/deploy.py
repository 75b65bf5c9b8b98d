"""Exported SSDs: symbol JSON + parameters for ``mx.gluon.SymbolBlock.imports`` (and C++), float32 or int8.

:func:`export` writes ``{prefix}-symbol.json``, ``{prefix}-{epoch:04d}.params`` and a small
``{prefix}-meta.json`` (model name, classes, input size and layout, int8 settings) that :func:`load_exported`
reads back; files without the meta (GluonCV's own exports) load too, and then take their classes from the caller.

Two kinds of graph, as GluonCV's ``export_block`` writes them:

- the network's own input (``preprocess=False``, :func:`export`'s default): ``data`` is a (B, 3, H, W) float32
  batch normalized with the ImageNet mean and std, what gluon_ssd's transforms give;
- raw pixels (``preprocess=True``, GluonCV's ``export_block`` default and :func:`gluon_ssd.utils.export_block`'s):
  ``data`` is a (B, H, W, 3) float32 batch of resized RGB pixels in 0-255, normalized and transposed to NCHW inside
  the graph (:class:`NormalizePixels`), what C++ code written for GluonCV's exports feeds.

:func:`load_exported` tells them apart by the meta file, or, for a graph without one, by the graph itself
(:func:`exported_input`), and by default returns a block that takes the network's input either way, so that the
evaluation and the demo feed every export alike.
"""
from __future__ import annotations

import json
import os
from typing import NamedTuple

import mxnet as mx

from .fileio import atomic_path, atomic_save_ndarrays, atomic_write
from .specs import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["export", "load_exported", "read_meta", "exported_input", "ExportedInput", "NormalizePixels",
           "PIXEL_MEAN", "PIXEL_STD"]

# GluonCV's export_block constants: the ImageNet mean and std on the 0-255 pixel scale (123.675, 116.28, 103.53)
# and (58.395, 57.12, 57.375).
PIXEL_MEAN = tuple(round(m * 255, 3) for m in IMAGENET_MEAN)
PIXEL_STD = tuple(round(s * 255, 3) for s in IMAGENET_STD)
LAYOUTS = ("HWC", "CHW")


class NormalizePixels(mx.gluon.HybridBlock):
    """Raw pixels -> the network's input, inside an exported graph (GluonCV's ``export_block`` preprocessing).

    ``(B, H, W, 3)`` float32 RGB pixels in 0-255 -> ``(x - PIXEL_MEAN) / PIXEL_STD``, transposed to
    ``(B, 3, H, W)``: the same three operators (broadcast_minus, broadcast_div, transpose) and constants as
    GluonCV's, so the exported graph gives GluonCV's numbers. The network's own transforms compute
    ``(x / 255 - mean) / std``, which differs from this by float32 rounding (about 1e-7 of the input).
    """

    def __init__(self, prefix="preprocess_", **kwargs):
        super().__init__(prefix=prefix, **kwargs)
        with self.name_scope():
            self.init_mean = self.params.get_constant("init_mean", mx.nd.array(PIXEL_MEAN).reshape((1, 1, 1, 3)))
            self.init_scale = self.params.get_constant("init_scale", mx.nd.array(PIXEL_STD).reshape((1, 1, 1, 3)))

    def hybrid_forward(self, F, x, init_mean, init_scale):
        x = F.broadcast_minus(x, init_mean)
        x = F.broadcast_div(x, init_scale)
        return F.transpose(x, axes=(0, 3, 1, 2))


def _base_size(net) -> int:
    spec = getattr(net, "spec", None)
    return int(getattr(spec, "base_size", 0) or getattr(net, "base_size", 0) or 300)


def _traced_symbol(block, x):
    """The symbol of ``block`` traced once on ``x`` (in predict mode)."""
    block.hybridize()
    with mx.autograd.predict_mode():
        block(x)
    _, sym = block._cached_graph
    return sym[0] if isinstance(sym, (list, tuple)) else sym


def export(net, prefix: str, epoch: int = 0, data_shape=None, preprocess=False, layout: str = "HWC"
           ) -> tuple[str, str]:
    """Write ``{prefix}-symbol.json``, ``{prefix}-{epoch:04d}.params`` and ``{prefix}-meta.json``.

    Parameters
    ----------
    net : a gluon_ssd SSD (initialized), or the int8 block of :func:`gluon_ssd.quantize`.
    prefix : path prefix of the files.
    data_shape : (H, W) used to trace the graph once (any size works later); default the model's size.
    preprocess : False (default): the graph takes the network's input, a (B, 3, H, W) float32 batch normalized
        with the ImageNet mean and std. True: it takes (B, H, W, 3) float32 RGB pixels in 0-255 and normalizes
        inside (:class:`NormalizePixels`, GluonCV's ``export_block`` default). A HybridBlock: your own
        preprocessing of raw RGB pixels in ``layout``, placed before the network (as GluonCV's).
    layout : 'HWC' or 'CHW', the pixel layout a preprocessing block takes ('HWC' for ``preprocess=True``).

    Returns
    -------
    (symbol file, params file). Reload with :func:`load_exported` or
    ``mx.gluon.SymbolBlock.imports(symbol_file, ['data'], params_file)``.

    Raises
    ------
    ValueError for a layout other than HWC/CHW, or ``preprocess=True`` with CHW.
    """
    layout = str(layout).upper()
    if preprocess is not False and preprocess is not None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS} for a 2D detector's pixels, got {layout!r}")
        if preprocess is True and layout != "HWC":
            raise ValueError(f"preprocess=True (GluonCV's default preprocessing) takes (B, H, W, 3) pixels: use "
                             f"layout='HWC', not {layout!r}, or pass your own preprocessing block")
        if preprocess is not True and not isinstance(preprocess, mx.gluon.HybridBlock):
            raise TypeError(f"preprocess must be True, False or a HybridBlock, got {type(preprocess).__name__}")
    if data_shape is None:
        size = _base_size(net)
        data_shape = (size, size)
    height, width = (int(data_shape), int(data_shape)) if isinstance(data_shape, int) else map(int, data_shape)
    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    pixels = preprocess is not False and preprocess is not None
    if pixels:
        pre = NormalizePixels() if preprocess is True else preprocess
        pre.initialize(ctx=ctx)
        block = mx.gluon.nn.HybridSequential(prefix="")
        block.add(pre)
        block.add(net)
        shape = (1, height, width, 3) if layout == "HWC" else (1, 3, height, width)
        sym = _traced_symbol(block, mx.nd.zeros(shape, ctx=ctx))
    elif isinstance(net, mx.gluon.SymbolBlock):
        block = net
        _, sym = net._cached_graph
        sym = sym[0] if isinstance(sym, (list, tuple)) else sym
    else:
        block = net
        sym = _traced_symbol(net, mx.nd.zeros((1, 3, height, width), ctx=ctx))
    sym_file = f"{prefix}-symbol.json"
    params_file = f"{prefix}-{epoch:04d}.params"
    with atomic_path(sym_file) as tmp:
        sym.save(tmp)
    args = set(sym.list_arguments())
    auxs = set(sym.list_auxiliary_states())
    arrays = {}
    for param in block.collect_params().values():
        if param.name in args:
            arrays[f"arg:{param.name}"] = param._reduce()
        elif param.name in auxs:
            arrays[f"aux:{param.name}"] = param._reduce()
    atomic_save_ndarrays(params_file, arrays)
    meta = {"model": getattr(net, "model_name", None) or getattr(net, "name_in_zoo", None),
            "classes": list(getattr(net, "classes", ()) or ()) or None,
            "data_shape": [height, width],
            "preprocess": bool(pixels),
            "input_layout": layout if pixels else "CHW",
            "quantized_dtype": getattr(net, "quantized_dtype", None),
            "calib_mode": getattr(net, "calib_mode", None),
            "float_heads": getattr(net, "float_heads", None)}
    if preprocess is True:
        meta.update(pixel_mean=list(PIXEL_MEAN), pixel_std=list(PIXEL_STD))
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


class ExportedInput(NamedTuple):
    """What an exported graph's ``data`` input is.

    preprocess : True when the graph takes raw RGB pixels in 0-255 and normalizes them itself (GluonCV's
        ``export_block`` default); False when it takes the network's normalized input.
    layout : 'HWC' ((B, H, W, 3), with ``preprocess``) or 'CHW' ((B, 3, H, W)).
    source : where this was read: 'meta' (``{prefix}-meta.json``) or 'graph' (the symbol's operators).
    """

    preprocess: bool
    layout: str
    source: str


# Operators that start a network proper: the search for a preprocessing stops there. Every convolution of
# float32 and int8 graphs (Convolution, _sg_mkldnn_conv, _contrib_quantized_conv, ...) has "conv" in its name.
_NETWORK_OPS = ("conv", "fullyconnected", "pooling")
_SUBTRACT_OPS = ("broadcast_minus", "broadcast_sub", "elemwise_sub", "_minus_scalar", "_sub", "_minus")


def _graph_input(sym_file: str) -> ExportedInput:
    """Read a graph's input kind from its operators: from ``data`` up to the first convolution, a transpose with
    axes (0, 3, 1, 2) means (B, H, W, 3) pixels; a subtraction (a mean) means pixels in (B, 3, H, W).

    GluonCV's ``export_block(preprocess=True)`` writes broadcast_minus, broadcast_div and that transpose before
    the network; gluon_ssd's networks start with a convolution (VGG: a broadcast_mul first), so an export of the
    network alone shows neither.
    """
    try:
        with open(sym_file, encoding="utf-8") as f:
            graph = json.load(f)
        nodes = graph["nodes"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{sym_file} is not an MXNet symbol file ({err})") from None
    reached = {i for i, node in enumerate(nodes) if node.get("op") == "null" and node.get("name") == "data"}
    if not reached:
        raise ValueError(f"{sym_file} has no input named 'data': it is not a graph that SymbolBlock.imports(..., "
                         "['data'], ...) can load")
    transposed = subtracts = False
    for i, node in enumerate(nodes):
        op = str(node.get("op", "null"))
        if op == "null" or not any(inp[0] in reached for inp in node.get("inputs", ())):
            continue
        if any(word in op.lower() for word in _NETWORK_OPS):
            continue
        reached.add(i)
        attrs = node.get("attrs") or node.get("attr") or node.get("param") or {}
        if op == "transpose" and str(attrs.get("axes", "")).replace(" ", "") == "(0,3,1,2)":
            transposed = True
        elif op in _SUBTRACT_OPS:
            subtracts = True
    if transposed:
        return ExportedInput(True, "HWC", "graph")
    return ExportedInput(subtracts, "CHW", "graph")


def exported_input(prefix: str, meta: dict | None = None) -> ExportedInput:
    """Whether the export under ``prefix`` takes raw pixels (and in which layout) or the network's input.

    ``{prefix}-meta.json`` says so for the exports of :func:`export` (``preprocess``, ``input_layout``); an
    export without it (GluonCV's ``export_block``, or an older gluon_ssd export) is read from the graph: GluonCV's
    preprocessing is a transpose of ``data`` with axes (0, 3, 1, 2) before the first convolution (HWC pixels),
    and a graph that subtracts from ``data`` before its first convolution takes CHW pixels (a custom
    preprocessing block with layout='CHW').
    """
    meta = read_meta(prefix) if meta is None else meta
    if "preprocess" in meta:
        layout = str(meta.get("input_layout") or ("HWC" if meta["preprocess"] else "CHW")).upper()
        if layout not in LAYOUTS:
            raise ValueError(f"{prefix}-meta.json: input_layout must be one of {LAYOUTS}, got {layout!r}")
        return ExportedInput(bool(meta["preprocess"]), layout, "meta")
    return _graph_input(f"{prefix}-symbol.json")


class PixelInput(mx.gluon.HybridBlock):
    """An export that takes raw pixels, fed with the network's input (what gluon_ssd's pipeline gives).

    The normalized (B, 3, H, W) batch is turned back into the pixels it was made of,
    ``round((x * std + mean) * 255)`` per channel (the pipeline's inputs are resized uint8 images, so this gives
    their pixels exactly), transposed to (B, H, W, 3) for an HWC graph, and fed to ``graph``: the whole exported
    graph runs, its preprocessing included, as C++ code would run it.

    Attributes
    ----------
    graph : the imported ``SymbolBlock`` as it is (it takes pixels).
    """

    def __init__(self, graph, layout: str = "HWC", **kwargs):
        super().__init__(prefix="pixelinput_", **kwargs)
        self.layout = layout
        with self.name_scope():
            self.graph = graph

    def hybrid_forward(self, F, x):
        channels = F.split(x, num_outputs=3, axis=1)
        pixels = F.concat(*[F.round((c * s + m) * 255.0) for c, m, s in zip(channels, IMAGENET_MEAN, IMAGENET_STD)],
                          dim=1)
        if self.layout == "HWC":
            pixels = F.transpose(pixels, axes=(0, 2, 3, 1))
        return self.graph(pixels)


def load_exported(prefix: str, ctx=None, epoch: int = 0, classes=None, raw: bool = False):
    """The model exported under ``prefix``, hybridized, with ``classes``.

    Parameters
    ----------
    prefix : the files ``{prefix}-symbol.json`` and ``{prefix}-{epoch:04d}.params`` (and ``{prefix}-meta.json``
        when :func:`export` wrote them).
    ctx : mx.Context (default cpu; int8 graphs run on the CPU only).
    classes : the class names when the export has no meta file (GluonCV's exports); with a meta file they
        must be the same.
    raw : False (default): a block that takes the network's input, (B, 3, H, W) float32 normalized with the
        ImageNet mean and std, whatever the export takes (a graph that takes pixels is wrapped in
        :class:`PixelInput`). True: the imported ``SymbolBlock`` as it is, which takes what the graph takes
        (``net.input``; for GluonCV's ``export_block`` default (B, H, W, 3) RGB pixels in 0-255).

    Returns
    -------
    A HybridBlock ``net(x) -> (ids (B, K, 1), scores (B, K, 1), boxes (B, K, 4))`` with the attributes
    ``classes``, ``model_name``, ``quantized_dtype``, ``float_heads`` and ``input`` (:class:`ExportedInput`).

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
    saved = meta.get("classes")
    if saved and classes is not None and tuple(saved) != tuple(classes):
        raise ValueError(f"{prefix} was exported for {len(saved)} classes {saved[:5]}{'...' if len(saved) > 5 else ''}"
                         f", not the {len(classes)} classes {list(classes)[:5]}"
                         f"{'...' if len(classes) > 5 else ''}: use a model of this dataset's classes")
    takes = exported_input(prefix, meta)
    try:
        graph = mx.gluon.SymbolBlock.imports(sym_file, ["data"], params_file, ctx=ctx)
    except (mx.base.MXNetError, ValueError, AssertionError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot import {sym_file} with {params_file}: {first}") from None
    net = PixelInput(graph, takes.layout) if takes.preprocess and not raw else graph
    net.classes = tuple(saved or classes or ())
    net.model_name = meta.get("model")
    net.quantized_dtype = meta.get("quantized_dtype")
    net.float_heads = meta.get("float_heads")
    net.input = takes
    net.hybridize(static_alloc=True, static_shape=True)
    return net
