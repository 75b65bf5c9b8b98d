"""The PyTorch twin as a detector of :mod:`gluon_ssd.predict` (``--backend torch`` of eval_ssd.py and
demo_ssd.py): numpy batch in, numpy ``(ids (B, K), scores (B, K), boxes (B, K, 4))`` out."""
from __future__ import annotations

import logging
import os

import numpy as np
import torch

from .runtime.inference import predict, prepare, resolve_device, reuse_freed_memory
from .runtime.onnxruntime import register as register_onnxruntime
from .runtime.openvino import register as register_openvino
from .weights.mapping import convert_gluon_file, load_torch_model

log = logging.getLogger(__name__)


class TorchDetector:
    """A converted SSD on a torch device, optionally under fp16/bf16 autocast."""

    def __init__(self, model, device="cpu", dtype="fp32"):
        self.device = resolve_device(device)
        self.micro_batch = None  # predict's default
        if self.device.type == "cpu" and reuse_freed_memory():  # fresh pages for every large tensor otherwise
            # With freed memory reused the whole batch in one call is faster than image by image (batch 8:
            # +2-54% images/s over the four BENCHMARKS models, 2026-12-01).
            self.micro_batch = 0
        self.model = prepare(model, self.device)
        self.dtype = dtype
        self.classes = tuple(model.classes)

    def __call__(self, batch: np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        ids, scores, boxes = predict(self.model, images, self.device, self.dtype, micro_batch=self.micro_batch)
        return (ids[..., 0].cpu().numpy(), scores[..., 0].cpu().numpy(), boxes.cpu().numpy())


def load_torch_detector(network: str, pretrained=True, classes=None, ctx=None, nms_thresh: float = 0.45,
                        nms_topk: int = 400, post_nms: int = 100, hybridize: bool = True, device="cpu",
                        dtype="fp32") -> TorchDetector:
    """Same arguments as :func:`gluon_ssd.predict.load_mxnet_detector`; ``pretrained`` may also be a ``.pth``
    written by ``python -m convert``. An MXNet file (or the published weights) is converted on the fly."""
    from gluon_ssd.specs import get_spec

    spec = get_spec(network)
    classes = tuple(classes) if classes else None
    if pretrained is False:
        raise ValueError("--backend torch needs weights: a .params/.pth file or --pretrained True")
    if spec.dataset != "custom" and classes is not None:
        raise ValueError("--classes on a VOC/COCO network (a class subset) is supported by --backend mxnet only")
    if isinstance(pretrained, str) and pretrained.endswith(".onnx"):
        from .runtime.quantization import load_int8_detector

        if dtype not in ("int8", "fp32") or resolve_device(device).type != "cpu":
            raise ValueError(f"{pretrained} is an int8 ONNX Runtime graph: it runs on the CPU in int8 "
                             "(--device cpu, --dtype int8)")
        detector = load_int8_detector(pretrained, nms_thresh, nms_topk, post_nms)
        if detector.meta["network"] != network:
            raise ValueError(f"{pretrained} holds {detector.meta['network']}, not {network}")
        if spec.dataset == "custom" and classes is not None and tuple(classes) != detector.classes:
            raise ValueError(f"{pretrained} was quantized for the classes {list(detector.classes)}, not "
                             f"{list(classes)}")
        return detector
    if dtype == "int8":
        raise ValueError("--dtype int8 with --backend torch needs the int8 graph written by python -m convert "
                         "--quantize int8 (--pretrained MODEL-int8.onnx), or eval_ssd.py, which calibrates")
    if isinstance(pretrained, str) and pretrained.endswith((".pth", ".pt")):
        model = load_torch_model(pretrained)
        if model.name and model.name != network:
            raise ValueError(f"{pretrained} holds {model.name}, not {network}")
    else:
        if pretrained is True:
            from gluon_ssd.model_store import get_model_file

            pretrained = get_model_file(network)
        if not os.path.isfile(pretrained):
            raise FileNotFoundError(f"parameter file not found: {pretrained}")
        model, _ = convert_gluon_file(network, pretrained, classes=classes)
    model.set_nms(nms_thresh, nms_topk, post_nms)
    log.info("torch backend: %s on %s (%s)", network, device, dtype)
    return TorchDetector(model, device, dtype)


def quantize_torch_detector(detector: TorchDetector, calib_batches, out_path, calib_mode: str = "naive",
                            num_calib_examples=None, quantize_heads: bool | str = "auto", nms=(0.45, 400, 100)):
    """The int8 version of a twin detector (ONNX Runtime, :func:`convert.runtime.quantization.quantize_twin`) written to
    ``out_path`` and loaded back: what ``eval_ssd.py --backend torch --dtype int8`` evaluates."""
    from .runtime.quantization import load_int8_detector, quantize_twin

    if detector.device.type != "cpu":
        raise ValueError("the int8 twin runs on the CPU (ONNX Runtime): use --device cpu")
    quantize_twin(detector.model, calib_batches, out_path, calib_mode=calib_mode,
                  num_calib_examples=num_calib_examples, quantize_heads=quantize_heads)
    return load_int8_detector(out_path, *nms)


def register() -> None:
    """Register the twin as gluon_ssd's 'torch' backend of inference and of training (the entry point of the
    ``gluon_ssd.backends`` group; importing :mod:`convert` does it too)."""
    from gluon_ssd.predict import register_backend

    # The trainer is named, not imported: it needs MXNet (the shared data pipeline), the twin's inference
    # does not (`import convert` works with torch and numpy only).
    register_backend("torch", load_torch_detector, quantize_torch_detector, trainer="convert.training:TorchTrainer")
    register_onnxruntime()  # --backend onnxruntime / openvino: they need no torch to serve a written graph
    register_openvino()

