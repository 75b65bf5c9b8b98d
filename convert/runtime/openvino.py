"""The OpenVINO backend (``--backend openvino``): the twin's detection graph (:mod:`.onnxruntime` says where it
comes from) compiled for the CPU in fp32, bf16 or int8, and the OpenVINO IR that ``python -m convert --openvino
DIR`` writes.

Precision. OpenVINO's CPU plugin runs bf16 by default on a CPU with bf16 instructions (this AVX512-BF16 one
included): ``fp32`` sets ``INFERENCE_PRECISION_HINT`` f32 explicitly, which gives the twin's detections; ``bf16``
sets it bf16. ``int8`` is NNCF post-training quantization of the detection graph (:func:`quantize_openvino`):
min/max ranges over the calibration images (those of the ONNX Runtime int8 path) of the network part (NNCF 3.4
cannot walk through the NMS Loop: the network is cut out, quantized and spliced back), with the class heads that
``quantize_heads='auto'`` keeps float32 (:mod:`gluon_ssd.int8_heads`) left out by an ignored scope. The layers
NNCF leaves float (MobileNet's depthwise convolutions, which the CPU plugin runs in float) run at OpenVINO's
default precision, as a plain ``compile_model`` of an NNCF model does: bf16 on a CPU with bf16 instructions. The
plugin lowers only convolutions and matrix products to bf16; the decode + NMS stay f32 (measured: the compiled
graph's runtime precisions). When class heads were kept float32, the int8 graph runs at f32 instead: the plugin
ignores per-node precision marks, and bf16 heads would undo the check that kept them float32.

Input shapes. Every graph has a free batch (and, but for int8, a free input size): it is compiled once for any
shape and, the second time an input shape (batch and size) is seen, again for that shape alone. Measured on the
2-core AVX-512 machine: with every dimension fixed the CPU plugin folds the graph's shape computations, which
otherwise read the first convolution's output and keep it from fusing ReLU and int8 quantization into that
convolution (ssd_512_resnet50_v1 int8, batch 8: 343 -> 294 ms per batch in OpenVINO's per-node profile), and
its fixed-size fp32 kernels are faster too (8.49 against 7.86 images/s; bench/profile_openvino.py). A compile
takes about 0.6 s:
eval and a served stream of one shape run fixed-shape from their second batch, and a stream of ever new sizes
(the demo on photos of any aspect) compiles nothing more.

An IR folder holds ``model.xml`` / ``model.bin`` and ``model.json`` (network, classes, input size, NMS, dtype, and
``openvino_config``, the compile settings of its precision): ``openvino.Core().compile_model('model.xml', 'CPU',
json.load(open('model.json'))['openvino_config'])`` alone gives (ids, scores, boxes); no torch and no part of this
project is needed to run it.
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence

import numpy as np

from gluon_ssd.cpu import runtime_threads
from gluon_ssd.fileio import atomic_write
from gluon_ssd.registry import register_backend
from gluon_ssd.specs import NMS_THRESH, NMS_TOPK, POST_NMS

from .onnxruntime import (
    RuntimeMissing,
    check_meta,
    detection_graph,
    graph_meta,
    read_onnx_meta,
    require,
    split_outputs,
    twin_model,
    warn_nms,
)

log = logging.getLogger(__name__)

__all__ = ["PRECISIONS", "OpenVINODetector", "load_openvino_detector", "precision_config", "quantize_openvino",
           "read_ir_meta", "require_nncf", "write_ir"]

# --dtype -> INFERENCE_PRECISION_HINT; None: OpenVINO's default (int8 graphs without float32 class heads)
PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": None}
IR_NAME = "model"
FIXED_SHAPES = 4  # input shapes compiled for that shape alone (the most recently used are kept)
# The decode + NMS nodes: exported at the graph's top level ('/Mul_3'), while every layer of the network sits in
# its module's scope ('/features/...', '/class_predictors.0/Conv'). NNCF quantizes the network part only.
POSTPROCESS_PATTERN = r"^/[^/]+$"


def precision_config(dtype: str, meta: dict | None) -> dict:
    """The compile_model settings of ``--dtype`` for a graph with ``meta``: f32 or bf16 set explicitly; int8 at
    OpenVINO's default unless class heads were kept float32 (then f32; see the module's note)."""
    precision = PRECISIONS[dtype]
    if dtype == "int8" and (meta or {}).get("float_heads"):
        precision = "f32"
    return {} if precision is None else {"INFERENCE_PRECISION_HINT": precision}


def read_ir_meta(xml: str) -> dict | None:
    """The meta json beside an IR file (``model.xml`` -> ``model.json``); None when there is none."""
    path = os.path.splitext(xml)[0] + ".json"
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class OpenVINODetector:
    """A detection graph compiled by OpenVINO for the CPU, as a detector of :mod:`gluon_ssd.predict`:
    (B, 3, H, W) float32 numpy -> numpy ``(ids (B, K), scores (B, K), boxes (B, K, 4))``."""

    def __init__(self, source, classes: Sequence[str], dtype: str = "fp32", meta: dict | None = None, model=None):
        ov = require("openvino", "--backend openvino")
        self.meta, self.classes, self.dtype = meta, tuple(classes), dtype
        self.model = model  # the float32 twin when built from weights (what --dtype int8 calibrates)
        self.onnx_path = source if isinstance(source, str) and source.endswith(".onnx") else None
        shape = (meta or {}).get("data_shape")
        self.data_shape = tuple(shape) if shape else None
        self.config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": runtime_threads(),
                       **precision_config(dtype, meta)}
        self._ov, self._core, self._source = ov, ov.Core(), source
        self.compiled = self._core.compile_model(source, "CPU", self.config)
        self._seen: set[tuple[int, ...]] = set()
        self._fixed: dict[tuple[int, ...], object] = {}  # (B, 3, H, W) -> compiled for that shape, most recent last

    def _compiled_for(self, shape: tuple[int, ...]):
        """The compiled graph to run an input of ``shape`` (B, 3, H, W) with: see the module's note on input
        shapes."""
        if shape in self._fixed:
            self._fixed[shape] = self._fixed.pop(shape)
            return self._fixed[shape]
        if shape not in self._seen:
            self._seen.add(shape)
            return self.compiled
        model = self._core.read_model(self._source) if isinstance(self._source, str) else self._source.clone()
        model.reshape({model.inputs[0]: self._ov.PartialShape(list(shape))})
        self._fixed[shape] = self._core.compile_model(model, "CPU", self.config)
        if len(self._fixed) > FIXED_SHAPES:
            del self._fixed[next(iter(self._fixed))]
        return self._fixed[shape]

    def __call__(self, batch: np.ndarray):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        size = (int(batch.shape[-2]), int(batch.shape[-1]))
        if self.data_shape is not None and size != self.data_shape:
            raise ValueError(f"this {self.meta.get('dtype', '')} graph takes {self.data_shape[0]}x"
                             f"{self.data_shape[1]} inputs, got {size[0]}x{size[1]}: quantize at "
                             "this size or resize to it")
        out = self._compiled_for(tuple(int(v) for v in batch.shape))(batch)
        return split_outputs(out[0], out[1], out[2])


def load_openvino_detector(network: str, pretrained=True, classes=None, ctx=None, nms_thresh: float = NMS_THRESH,
                           nms_topk: int = NMS_TOPK, post_nms: int = POST_NMS, hybridize: bool = True,
                           device: str = "cpu", dtype: str = "fp32") -> OpenVINODetector:
    """``--backend openvino``: arguments as :func:`gluon_ssd.predict.load_mxnet_detector` (``ctx`` and
    ``hybridize`` are ignored). ``pretrained``: a .params/.pth (exported to ONNX once), an .onnx of ``python -m
    convert --onnx`` or an IR .xml of ``--openvino`` (fp32 or int8). ``dtype``: fp32, bf16, or int8 with an int8
    IR (``python -m convert --openvino DIR --quantize int8``; eval_ssd.py calibrates one)."""
    nms = (nms_thresh, nms_topk, post_nms)
    if device != "cpu":
        raise ValueError(f"--backend openvino runs on the CPU here: --device cpu, not {device}")
    if dtype not in PRECISIONS:
        raise ValueError(f"--backend openvino runs {', '.join(PRECISIONS)}, not {dtype}")
    if pretrained is False:
        raise ValueError("--backend openvino needs weights: a .params/.pth/.onnx/.xml file or --pretrained True")
    require("openvino", "--backend openvino")
    if isinstance(pretrained, str) and pretrained.endswith((".xml", ".onnx")):
        if not os.path.isfile(pretrained):
            raise FileNotFoundError(f"model file not found: {pretrained}")
        meta = read_ir_meta(pretrained) if pretrained.endswith(".xml") else read_onnx_meta(pretrained)
        classes = check_meta(meta, pretrained, network, classes)
        if meta and "float_heads" in meta and pretrained.endswith(".onnx"):
            raise ValueError(f"{pretrained} is ONNX Runtime's int8 network: run it with --backend onnxruntime "
                             "(OpenVINO int8: python -m convert --openvino DIR --quantize int8)")
        written = (meta or {}).get("dtype", "fp32")
        if written == "int8":
            if dtype == "bf16":
                raise ValueError(f"{pretrained} is an int8 graph: it runs as written (--dtype int8), not in bf16")
            dtype = "int8"
        elif dtype == "int8":
            raise ValueError(f"{pretrained} is a float32 graph: --dtype int8 takes the IR of python -m convert "
                             "--openvino DIR --quantize int8 (or eval_ssd.py calibrates one)")
        warn_nms(meta, pretrained, nms)
        return OpenVINODetector(pretrained, classes, dtype, meta)
    if dtype == "int8":
        raise ValueError("--dtype int8 with --backend openvino needs the int8 IR written by python -m convert "
                         "--openvino DIR --quantize int8 (--pretrained DIR/model.xml), or eval_ssd.py, which "
                         "calibrates")
    model = twin_model(network, pretrained, classes, nms)
    path = detection_graph(network, pretrained, classes, nms, model)
    return OpenVINODetector(path, model.classes, dtype, read_onnx_meta(path), model)


def require_nncf():
    """nncf 3.x (the one that reads OpenVINO 2026 models), or :class:`RuntimeMissing` saying where it installs."""
    nncf = require("nncf", "OpenVINO int8 (NNCF post-training quantization)")
    if int(nncf.__version__.split(".")[0]) < 3:
        # Measured: nncf 2.14.1 (the last for numpy < 1.24, i.e. beside MXNet) does not recognise OpenVINO
        # 2026.4.1 models ("Could not infer the backend framework").
        raise RuntimeMissing(f"OpenVINO int8 needs nncf 3.4.0 (found {nncf.__version__}), which needs numpy >= 1.24: "
                             "it does not install beside MXNet (numpy 1.23.5); run it on the PyTorch stack (Python "
                             "3.12+: pip install -r requirements-torch.txt), or use ONNX Runtime int8 (python -m "
                             "convert --quantize int8)")
    return nncf


def _network_part(ov, detect):
    """(a copy of the network part of the detection graph ``detect``: image -> the tensors the decode + NMS read,
    those tensors in ``detect``). NNCF cannot build its graph through the NMS Loop, so it quantizes this part."""
    top = re.compile(POSTPROCESS_PATTERN)
    cuts = []
    for op in detect.get_ordered_ops():
        if op.get_type_name() in ("Parameter", "Constant", "Result") or top.match(op.get_friendly_name()):
            continue
        cuts.extend(out for out in op.outputs() if any(
            top.match(t.get_node().get_friendly_name()) or t.get_node().get_type_name() == "Result"
            for t in out.get_target_inputs()))
    if not cuts:
        raise RuntimeError("found no network outputs in the detection graph (its node names changed?)")
    # clone(): the copy holds only the network's nodes (NNCF follows every consumer of a node it sees)
    return ov.Model(cuts, detect.get_parameters(), "network").clone(), cuts


def _calibration_images(calib_batches, limit: int | None) -> list[np.ndarray]:
    """(1, 3, H, W) float32 images of the batches (numpy, torch or NDArray), at most ``limit``."""
    images: list[np.ndarray] = []
    for batch in calib_batches:
        batch = batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)
        images.extend(np.ascontiguousarray(batch, dtype=np.float32)[:, None])
        if limit is not None and len(images) >= limit:
            break
    images = images[:limit] if limit is not None else images
    if not images:
        raise ValueError("calibration needs at least one image, got none")
    shapes = {x.shape[-2:] for x in images}
    if len(shapes) != 1:
        raise ValueError(f"calibration images must all have one size (the graph's input), got {sorted(shapes)}")
    return images


def quantize_openvino(model, onnx_path: str, calib_batches, calib_mode: str = "naive",
                      num_calib_examples: int | None = None, quantize_heads: bool | str = "auto",
                      head_tolerance: float | None = None):
    """NNCF post-training int8 of the detection graph ``onnx_path`` of the float32 twin ``model``.

    Returns (the quantized openvino.Model, fixed to the calibration images' (H, W) with a free batch, its meta).
    ``calib_mode`` 'naive' only (min/max ranges); ``quantize_heads`` as :func:`convert.runtime.quantization.
    quantize_twin` decides it, on the same images.
    """
    from .quantization import _float_class_heads  # torch: the class-head check runs the twin

    ov = require("openvino", "OpenVINO int8")
    nncf = require_nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    if calib_mode != "naive":
        raise ValueError(f"calib_mode {calib_mode!r}: OpenVINO int8 calibrates min/max ranges (naive) only")
    if num_calib_examples is not None and int(num_calib_examples) < 1:
        raise ValueError(f"num_calib_examples must be at least 1, got {num_calib_examples}")
    images = _calibration_images(calib_batches, num_calib_examples)
    height, width = (int(v) for v in images[0].shape[-2:])
    kept, errors = _float_class_heads(model.eval().float(), images, quantize_heads, head_tolerance)
    detect = ov.Core().read_model(onnx_path)
    detect.reshape({"data": ov.PartialShape([-1, 3, height, width])})
    network, cuts = _network_part(ov, detect)
    scope = nncf.IgnoredScope(patterns=[rf"^/class_predictors\.{k}/" for k in kept], validate=False)
    params = AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    quantized = nncf.quantize(network, nncf.Dataset(images), subset_size=len(images), ignored_scope=scope,
                              fast_bias_correction=True, advanced_parameters=params)
    # Splice: the decode + NMS of the detection graph now read the int8 network's outputs and its input.
    for cut, result in zip(cuts, quantized.get_results()):
        cut.replace(result.input_value(0))
    detect.get_parameters()[0].output(0).replace(quantized.get_parameters()[0].output(0))
    quantized = ov.Model(detect.get_results(), quantized.get_parameters(), f"{model.name}-int8")
    meta = graph_meta(model, "int8", [height, width])
    meta.update(quantize_heads=quantize_heads, float_heads=kept, head_errors=errors, calib_mode=calib_mode,
                calib_examples=len(images))
    return quantized, meta


def write_ir(network, meta: dict, folder: str) -> str:
    """Write an openvino.Model (or an .onnx path) as ``folder/model.xml`` + ``.bin`` + ``.json`` (``meta``);
    returns the .xml path. Weights stay float32 (no fp16 compression: the fp32 IR is exact)."""
    ov = require("openvino", "writing OpenVINO IR")
    os.makedirs(folder, exist_ok=True)
    xml = os.path.join(folder, f"{IR_NAME}.xml")
    model = ov.Core().read_model(network) if isinstance(network, str) else network
    ov.save_model(model, xml, compress_to_fp16=False)
    meta = dict(meta, openvino_config=precision_config(meta.get("dtype", "fp32"), meta))  # how to compile it
    with atomic_write(os.path.splitext(xml)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    log.info("wrote OpenVINO IR %s (%s)", xml, meta.get("dtype"))
    return xml


def quantize_openvino_detector(detector, calib_batches, out_path, calib_mode: str = "naive",
                               num_calib_examples=None, quantize_heads: bool | str = "auto",
                               nms=(NMS_THRESH, NMS_TOPK, POST_NMS)) -> OpenVINODetector:
    """``eval_ssd.py --backend openvino --dtype int8``: NNCF int8 of the detector's graph, written as IR beside
    ``out_path`` (``X.onnx`` -> folder ``X/``) and loaded back."""
    if getattr(detector, "model", None) is None or detector.onnx_path is None:
        raise ValueError("--dtype int8 calibrates the twin: pass its weights (.params/.pth), not a written graph")
    quantized, meta = quantize_openvino(detector.model, detector.onnx_path, calib_batches, calib_mode,
                                        num_calib_examples, quantize_heads)
    xml = write_ir(quantized, meta, os.path.splitext(os.fspath(out_path))[0])
    detector = OpenVINODetector(xml, meta["classes"], "int8", meta)
    stem = os.path.splitext(xml)[0]
    detector.files = (xml, f"{stem}.bin", f"{stem}.json")  # what gluon_ssd.calibration reports as written
    return detector


def register() -> None:
    """Make this gluon_ssd's 'openvino' backend (:data:`gluon_ssd.predict.OWN_BACKENDS`); needs neither torch nor
    openvino (a missing runtime is reported when a detector is built)."""
    register_backend("openvino", detector=load_openvino_detector, quantizer=quantize_openvino_detector)
