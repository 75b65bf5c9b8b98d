"""GluonCV's ``gluoncv.utils.export_block``: a HybridBlock to ``{path}-symbol.json`` + ``{path}-{epoch:04d}.params``.

A front over :func:`gluon_ssd.deploy.export`, which writes the files (and ``{path}-meta.json``, which
:func:`gluon_ssd.deploy.load_exported`, ``eval_ssd.py --deploy`` and ``demo_ssd.py --deploy`` read).
"""
from __future__ import annotations

import mxnet as mx

from ..deploy import export

__all__ = ["export_block"]


def _trace_shape(data_shape, layout):
    """(H, W) from GluonCV's data_shape: (H, W, C) for HWC, (C, H, W) for CHW; (H, W) or an int S accepted."""
    if isinstance(data_shape, int):
        return (data_shape, data_shape)
    shape = tuple(int(v) for v in data_shape)
    if len(shape) == 2:
        return shape
    if len(shape) == 3:
        channels, hw = (shape[2], shape[:2]) if layout == "HWC" else (shape[0], shape[1:])
        if channels != 3:
            raise ValueError(f"data_shape {tuple(data_shape)} in layout {layout} has {channels} channels; an SSD takes "
                             f"RGB images: give {'(H, W, 3)' if layout == 'HWC' else '(3, H, W)'}")
        return hw
    raise ValueError(f"data_shape must be (H, W, 3) for layout HWC or (3, H, W) for CHW, got {data_shape!r}")


def export_block(path, block, data_shape=None, epoch=0, preprocess=True, layout="HWC", ctx=None):
    """Export a detector for ``SymbolBlock.imports``, ``mxnet.mod.Module`` and C++, as GluonCV's ``export_block``.

    Parameters
    ----------
    path : the files' prefix: writes ``{path}-symbol.json``, ``{path}-{epoch:04d}.params`` (GluonCV's two) and
        ``{path}-meta.json`` (model, classes, input: read back by :func:`gluon_ssd.deploy.load_exported`).
    block : a gluon_ssd SSD (or any initialized HybridBlock, the int8 block of :func:`gluon_ssd.quantize`
        included).
    data_shape : the shape traced once: (H, W, 3) for layout 'HWC', (3, H, W) for 'CHW' ((H, W) accepted). The
        graph takes any size afterwards. Default: the model's own input size.
    epoch : the number in the parameter file's name.
    preprocess : True (GluonCV's default): the graph takes raw pixels, a (B, H, W, 3) float32 batch of resized
        RGB images in 0-255, subtracts the ImageNet mean (123.675, 116.28, 103.53), divides by the std (58.395,
        57.12, 57.375) and transposes to (B, 3, H, W) inside, as GluonCV's graph does (what C++ code written for
        GluonCV's exports feeds). False or None: the graph takes the network's input, (B, 3, H, W) normalized
        (:func:`gluon_ssd.export`). A HybridBlock: your preprocessing of raw RGB pixels in ``layout``, before
        the network.
    layout : 'HWC' or 'CHW': the layout of the pixels a preprocessing takes.
    ctx : mx.Context to trace on (default the CPU); the block's parameters are moved there first, as GluonCV's
        export_block moves them.

    Returns
    -------
    (symbol file, params file) (GluonCV returns None).

    Raises
    ------
    ValueError for a layout or data_shape that does not describe RGB images; TypeError for a preprocess that is
    not True, False, None or a HybridBlock.

    Notes
    -----
    Differences from GluonCV: without ``data_shape`` the graph is traced at the model's size (GluonCV tries 224,
    256, 299, ... until one runs; the graph is the same); ``preprocess=False`` takes the network's NCHW input
    whatever ``layout`` says (GluonCV asserts layout='CHW' there); 3D layouts (THWC, CTHW) are refused (no SSD
    takes video clips); MXNet's ``contrib.box_encode`` symbol is left alone (GluonCV removes it from
    ``mx.sym.contrib`` for the rest of the process and drops a ``_target_generator`` child: gluon_ssd's SSD has
    none, its training targets are computed outside the network).
    """
    layout = str(layout).upper()
    if layout not in ("HWC", "CHW"):
        raise ValueError(f"layout must be 'HWC' or 'CHW' (the RGB pixels' layout), got {layout!r}")
    if preprocess is None:
        preprocess = False
    ctx = ctx or mx.cpu()
    params = block.collect_params()
    try:
        placed = [p.list_ctx() for p in params.values()]
    except RuntimeError as err:  # MXNet: "Parameter ... has not been initialized"
        raise ValueError(f"cannot export {type(block).__name__}: {str(err).splitlines()[0]} (initialize the block "
                         "or load its weights first)") from None
    if any(where != [ctx] for where in placed):
        params.reset_ctx(ctx)
    shape = None if data_shape is None else _trace_shape(data_shape, layout)
    return export(block, str(path), epoch=int(epoch), data_shape=shape, preprocess=preprocess, layout=layout)
