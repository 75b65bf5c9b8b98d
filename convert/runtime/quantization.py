"""The PyTorch twin in int8 on the CPU: its network as a statically quantized ONNX Runtime graph.

Why ONNX Runtime: measured on the 2-core AVX-512/VNNI machine (BENCHMARKS.md, "Low precision"), the
twin's ResNet-50 network at 512 px, batch 8, ran 16.3 images/s in ONNX Runtime int8 against 2.5 in torch
fp32 (channels_last) and 5.5 under torch bf16 autocast; torch 2.13 itself has no maintained int8 CPU path
(quantize_pt2e moved out to torchao). onnxruntime is already pinned beside numpy 1.23.5.

Only the network's convolutions, ReLUs, residual sums and max-pools are quantized (class prediction heads
whose int8 logits would move the scores stay float32, :mod:`gluon_ssd.int8_heads`): per-channel int8 weights,
uint8 activations (QDQ format), calibrated on
preprocessed images by min/max ('naive') or entropy. Anchors, box decoding and NMS stay float32 in torch
(:meth:`convert.nn.ssd.SSD.postprocess`), so detections come out as with every other backend. The .onnx
file records the model name and classes; loading it needs no MXNet.
"""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from gluon_ssd.cpu import has_int8_dot_product
from gluon_ssd.fileio import atomic_path
from gluon_ssd.int8_heads import check_quantize_heads, choose_float_heads
from gluon_ssd.specs import NMS_THRESH, NMS_TOPK, POST_NMS

from ..nn.ssd import SSD, get_torch_model
from .graphfile import ort_session, read_onnx_meta, set_onnx_meta
from .inference import fuse_batchnorm

log = logging.getLogger(__name__)

CALIB_METHODS = ("naive", "entropy")
# Operators computed in int8. Left to itself onnxruntime also quantizes the Transpose/Reshape/Concat that
# gather the heads' outputs, i.e. the class logits and box offsets themselves: measured on the suite's
# trained ResNet-18 SSD (VOC07 mAP 0.849 in float32), 0.819 that way, 0.850 with these only (and float
# heads; 0.826 with int8 heads).
_INT8_OPS = ("Conv", "Add", "MaxPool", "Relu")
_PROBE_BATCH = 8  # calibration images per float32 pass of the class-head check


class _Network(nn.Module):
    """The twin's network only: images -> (cls_preds, box_preds)."""

    def __init__(self, model: SSD):
        super().__init__()
        self.model = model

    def forward(self, x):
        cls_preds, box_preds, _ = self.model.raw(x)
        return cls_preds, box_preds


def _export_network(model: SSD, path: str, height: int, width: int) -> None:
    net = _Network(fuse_batchnorm(model.eval().float()).to("cpu")).eval()
    dummy = torch.zeros(1, 3, height, width)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        torch.onnx.export(net, (dummy,), path, dynamo=False, opset_version=17, input_names=["data"],
                          output_names=["cls_preds", "box_preds"],
                          dynamic_axes={"data": {0: "batch"}, "cls_preds": {0: "batch"}, "box_preds": {0: "batch"}})


class _Reader:
    """onnxruntime's CalibrationDataReader over image batches, one image per call (any batch size works)."""

    def __init__(self, batches: Iterable[np.ndarray], limit: int | None):
        images = []
        for batch in batches:
            batch = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
            images.extend(np.ascontiguousarray(batch, dtype=np.float32)[:, None])
            if limit is not None and len(images) >= limit:
                break
        self.images = images[:limit] if limit is not None else images
        self._it = iter(self.images)

    def get_next(self):
        x = next(self._it, None)
        return None if x is None else {"data": x}

    def rewind(self):
        self._it = iter(self.images)


def quantize_twin(model: SSD, calib_batches: Iterable, out_path, calib_mode: str = "naive",
                  num_calib_examples: int | None = None, data_shape=None, quantize_heads: bool | str = "auto",
                  head_tolerance: float | None = None) -> str:
    """Write the twin's network as a statically quantized int8 ONNX graph at ``out_path``.

    Parameters
    ----------
    model : the float32 twin (its weights; BatchNorms are folded first).
    calib_batches : iterable of preprocessed image batches (B, 3, H, W) float32 (numpy, torch or NDArray),
        e.g. :func:`gluon_ssd.eval.calibration_batches`: the same images the MXNet flow calibrates on.
    calib_mode : 'naive' (min/max of each tensor) or 'entropy'.
    num_calib_examples : images used (default all).
    data_shape : (H, W) of the graph (default the calibration images' size). Inputs must have this size.
    quantize_heads : True: every class prediction convolution int8; False: none; 'auto' (default): those
        whose uint8 output changes no foreground score on the calibration images by more than
        ``head_tolerance`` (default :data:`gluon_ssd.int8_heads.HEAD_TOLERANCE`), as :func:`gluon_ssd.quantize`
        decides. The box heads are int8 either way.

    Returns
    -------
    The path written. Load with :func:`load_int8_detector`.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    check_quantize_heads(quantize_heads)
    if calib_mode not in CALIB_METHODS:
        raise ValueError(f"calib_mode {calib_mode!r}: the twin's int8 calibration is one of "
                         f"{', '.join(CALIB_METHODS)}")
    if num_calib_examples is not None and int(num_calib_examples) < 1:
        raise ValueError(f"num_calib_examples must be at least 1, got {num_calib_examples}")
    reader = _Reader((b.numpy() if isinstance(b, torch.Tensor) else b for b in calib_batches), num_calib_examples)
    if not reader.images:
        raise ValueError("calibration needs at least one image, got none")
    height, width = data_shape or reader.images[0].shape[-2:]
    shapes = {tuple(x.shape[-2:]) for x in reader.images}
    if shapes != {(int(height), int(width))}:
        raise ValueError(f"calibration images must all be {height}x{width} (the graph's input), got {sorted(shapes)}")
    out_path = os.fspath(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre = os.path.join(tmp, "net.onnx"), os.path.join(tmp, "pre.onnx")
        _export_network(model, fp32, int(height), int(width))
        quant_pre_process(fp32, pre, skip_symbolic_shape=False)
        method = CalibrationMethod.MinMax if calib_mode == "naive" else CalibrationMethod.Entropy
        # Without VNNI, u8 x s8 products are summed in 16 bits and can saturate: 7-bit weights avoid it.
        reduce_range = not has_int8_dot_product()
        import onnx

        kept, errors = _float_class_heads(model.eval().float(), reader.images, quantize_heads, head_tolerance)
        heads = [n.name for n in onnx.load(pre).graph.node
                 if n.op_type == "Conv" and any(f"class_predictors.{k}/" in n.name for k in kept)]
        if len(heads) != len(kept):
            raise RuntimeError(f"found {len(heads)} of the {len(kept)} float32 class heads in the exported graph")
        try:
            quantize_static(pre, os.path.join(tmp, "int8.onnx"), reader, quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=method, nodes_to_exclude=heads,
                            op_types_to_quantize=list(_INT8_OPS))
        except (AssertionError, ValueError) as err:  # onnxruntime asserts on degenerate (zero-width) ranges
            raise ValueError(f"onnxruntime could not quantize {model.name} ({err or type(err).__name__}): a tensor "
                             "had no spread over the calibration images, as with untrained weights or blank "
                             "images; calibrate a trained model on real images") from None
        graph = onnx.load(os.path.join(tmp, "int8.onnx"))
        meta = {"network": model.name, "classes": list(model.classes), "data_shape": [int(height), int(width)],
                "quantize_heads": quantize_heads, "float_heads": kept, "head_errors": errors,
                "calib_mode": calib_mode, "calib_examples": len(reader.images), "reduce_range": reduce_range}
        set_onnx_meta(graph, meta)
        with atomic_path(out_path) as tmp_out:
            onnx.save(graph, tmp_out)
    log.info("wrote int8 ONNX %s (%s calibration on %d images)", out_path, calib_mode, len(reader.images))
    return out_path


def _float_class_heads(model: SSD, images: list, quantize_heads, tolerance) -> tuple[list[int], list | None]:
    """The class heads kept float32, and (for 'auto') every head's int8 score error on the images."""
    def outputs():
        per_head: list[list[np.ndarray]] = [[] for _ in model.class_predictors]
        hooks = [head.register_forward_hook(lambda _m, _i, out, k=k: per_head[k].append(out.float().numpy()))
                 for k, head in enumerate(model.class_predictors)]
        try:
            with torch.inference_mode():
                for start in range(0, len(images), _PROBE_BATCH):
                    model.raw(torch.from_numpy(np.concatenate(images[start:start + _PROBE_BATCH])))
        finally:
            for hook in hooks:
                hook.remove()
        return [np.concatenate(o) for o in per_head]

    return choose_float_heads(quantize_heads, len(model.class_predictors), outputs, model.num_classes,
                              "asymmetric", tolerance)


class Int8Detector:
    """An int8 ONNX Runtime network + the twin's float32 post-processing, as a detector of
    :mod:`gluon_ssd.predict`: numpy (B, 3, H, W) in, numpy ``(ids (B, K), scores (B, K), boxes (B, K, 4))``."""

    def __init__(self, path, nms_thresh: float = NMS_THRESH, nms_topk: int = NMS_TOPK, post_nms: int = POST_NMS):
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"int8 model {path} not found (python -m convert --quantize int8 writes one)")
        self.meta = read_onnx_meta(path)
        if self.meta is None:
            raise ValueError(f"{path} is not an int8 model written by python -m convert --quantize int8 (it "
                             "records no model name and classes)")
        self.model = get_torch_model(self.meta["network"], classes=self.meta["classes"]).eval()
        self.model.set_nms(nms_thresh, nms_topk, post_nms)
        self.classes = tuple(self.model.classes)
        self.data_shape = tuple(self.meta["data_shape"])
        self.session = ort_session(path, "an int8 model of python -m convert --quantize int8")
        self._anchors: dict = {}

    def anchors(self, height: int, width: int) -> torch.Tensor:
        """(1, N, 4) anchors for an input size (they depend on the feature-map sizes only)."""
        key = (int(height), int(width))
        if key not in self._anchors:
            with torch.inference_mode():
                self._anchors[key] = self.model.raw(torch.zeros(1, 3, *key))[2].float()
        return self._anchors[key]

    def raw(self, batch: np.ndarray):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if tuple(batch.shape[-2:]) != self.data_shape:
            raise ValueError(f"this int8 graph takes {self.data_shape[0]}x{self.data_shape[1]} inputs, got "
                             f"{batch.shape[-2]}x{batch.shape[-1]}: quantize at this size or resize to it")
        cls_preds, box_preds = self.session.run(None, {"data": batch})
        return torch.from_numpy(cls_preds), torch.from_numpy(box_preds), self.anchors(*batch.shape[-2:])

    def __call__(self, batch: np.ndarray):
        with torch.inference_mode():
            ids, scores, boxes = self.model.postprocess(*self.raw(batch))
        return ids[..., 0].numpy(), scores[..., 0].numpy(), boxes.numpy()


def load_int8_detector(path, nms_thresh: float = NMS_THRESH, nms_topk: int = NMS_TOPK,
                       post_nms: int = POST_NMS) -> Int8Detector:
    """The int8 twin written by :func:`quantize_twin`."""
    return Int8Detector(path, nms_thresh, nms_topk, post_nms)
