"""TorchScript and ONNX exports of the PyTorch twin (inference graph: image batch -> ids, scores, boxes)."""
from __future__ import annotations

import logging
import os
import warnings

import torch

from ..nn.ssd import SSD

log = logging.getLogger(__name__)

ONNX_OPSET = 17


def export_torchscript(model: SSD, path) -> str:
    """Write ``model`` (eval mode) as a scripted TorchScript file; any batch size and input size work.

    Reload with ``torch.jit.load(path)``; calling it gives (ids, scores, boxes) like the eager model.
    """
    path = os.fspath(path)
    model = model.eval()
    scripted = torch.jit.script(model)
    scripted.save(path)
    log.info("wrote TorchScript %s", path)
    return path


def export_onnx(model: SSD, path, height: int | None = None, width: int | None = None, batch: int = 1,
                opset: int = ONNX_OPSET, dynamic: bool = True) -> str:
    """Write the inference graph of ``model`` as ONNX (legacy TorchScript exporter; needs the onnx package).

    Input ``data`` (B, 3, H, W) float32; outputs ``ids`` (B, K, 1), ``scores`` (B, K, 1), ``boxes`` (B, K, 4).
    The graph is traced at (batch, 3, height, width) (default the model's base size); with ``dynamic``
    batch, height and width stay free. The greedy NMS is an ONNX Loop, so the detections equal the eager
    model's for any input. The top-k candidate count (nms_topk) is fixed at trace time: inputs must give
    at least that many class x anchor candidates (every real input size does).
    """
    try:
        import onnx  # noqa: F401  (the exporter needs it; say so before tracing)
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install onnx==1.16.2") from None
    path = os.fspath(path)
    model = model.eval()
    size = model.spec.base_size
    height, width = height or size, width or size
    param = next(model.parameters())
    dummy = torch.zeros(batch, 3, height, width, dtype=param.dtype, device=param.device)
    axes = {"data": {0: "batch", 2: "height", 3: "width"}, "ids": {0: "batch"}, "scores": {0: "batch"},
            "boxes": {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():
        # Tracer notes about python ints taken from shapes (the top-k count) and the legacy exporter's
        # deprecation notice; the graph is verified against the eager model in the tests.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        torch.onnx.export(model, (dummy,), path, dynamo=False, opset_version=opset, input_names=["data"],
                          output_names=["ids", "scores", "boxes"], dynamic_axes=axes)
    log.info("wrote ONNX %s (opset %d)", path, opset)
    return path
