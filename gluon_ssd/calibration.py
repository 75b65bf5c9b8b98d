"""int8 calibration through any backend (``eval_ssd.py --calibration`` and ``--dtype int8``): MXNet's own flow
(:func:`gluon_ssd.quantization.quantize`, which needs MXNet) or a backend's registered quantizer
(:data:`gluon_ssd.registry.QUANTIZERS`: the PyTorch twin's ONNX Runtime int8, OpenVINO's NNCF int8). Framework-free,
so that the PyTorch stack (no MXNet) calibrates its backends through it."""
from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable
from typing import Any

from .registry import QUANTIZERS

log = logging.getLogger(__name__)

__all__ = ["Int8Model", "calibrate"]


@dataclasses.dataclass(frozen=True)
class Int8Model:
    """What :func:`calibrate` made and wrote.

    model : the int8 model: an MXNet block (as :func:`gluon_ssd.quantization.quantize` returns) or the backend's
        int8 detector.
    files : the files written (MXNet: the symbol and parameter files; other backends: their model files).
    prefix : the files' path without suffix (MXNet: what :func:`gluon_ssd.deploy.load_exported` reads).
    num_examples : images the calibration read.
    """

    model: Any
    files: tuple[str, ...]
    prefix: str
    num_examples: int


def calibrate(model, batches: Iterable, out_dir: str, name: str, backend: str = "mxnet", calib_mode: str = "naive",
              quantized_dtype: str = "auto", quantize_heads: bool | str = "auto", nms=None) -> Int8Model:
    """Quantize ``model`` to int8 on every image of ``batches`` and write the int8 model into ``out_dir``.

    Parameters
    ----------
    model : backend 'mxnet': a gluon_ssd SSD or a detector holding one as ``.net``
        (:func:`gluon_ssd.predict.load_detector`); another backend: a detector of that backend.
    batches : (B, 3, H, W) float32 batches of preprocessed images, all of one shape
        (:func:`gluon_ssd.eval.loop.calibration_batches`).
    out_dir, name : the files are ``{out_dir}/{name}-quantized-{calib_mode}-symbol.json`` and ``-0000.params``
        (MXNet, exported at the batches' input size); for another backend, what its quantizer writes from the path
        ``{out_dir}/{name}-int8-{calib_mode}.onnx`` (ONNX Runtime: that file; OpenVINO: the IR folder
        ``{name}-int8-{calib_mode}/``), as the int8 detector's ``files`` lists them.
    backend : 'mxnet' for MXNet's own flow (``quantized_dtype`` applies), else the name of a backend with a
        registered quantizer.
    calib_mode, quantized_dtype, quantize_heads : see :func:`gluon_ssd.quantization.quantize`.
    nms : (nms_thresh, nms_topk, post_nms) of the backend's int8 detector (MXNet bakes the SSD's own into
        the graph).

    Raises
    ------
    ValueError for a backend without an int8 quantizer, no batch, or a bad mode or dtype.
    """
    batches = list(batches)
    examples = sum(len(b) for b in batches)
    if backend == "mxnet":
        from .deploy import export  # needs MXNet: only its own flow
        from .quantization import quantize  # needs MXNet: only its own flow

        qnet = quantize(getattr(model, "net", model), batches, calib_mode=calib_mode, num_calib_examples=examples,
                        quantized_dtype=quantized_dtype, quantize_heads=quantize_heads)
        prefix = os.path.join(out_dir, f"{name}-quantized-{calib_mode}")
        files = export(qnet, prefix, data_shape=tuple(batches[0].shape[-2:]))
        return Int8Model(qnet, tuple(files), prefix, examples)
    if backend not in QUANTIZERS:
        raise ValueError(f"the {backend} backend has no int8 path (backends with one: "
                         f"{', '.join(sorted(QUANTIZERS)) or 'none registered'})")
    prefix = os.path.join(out_dir, f"{name}-int8-{calib_mode}")
    path = f"{prefix}.onnx"
    detector = QUANTIZERS[backend](model, batches, path, calib_mode=calib_mode, num_calib_examples=examples,
                                   quantize_heads=quantize_heads, nms=nms)
    files = tuple(getattr(detector, "files", None) or (path,))
    log.info("quantized %s with the %s backend (calibration %s, %d examples): %s", name, backend, calib_mode,
             examples, ", ".join(files))
    return Int8Model(detector, files, prefix, examples)
