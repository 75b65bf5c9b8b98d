"""The ONNX Runtime backend (``--backend onnxruntime``) and what it shares with the OpenVINO one
(:mod:`.openvino`): where the detection graph comes from, the meta it carries, the missing-runtime message.

The detection graph is :func:`convert.runtime.export.export_onnx`'s: image batch -> (ids, scores, boxes), the
decode and the greedy NMS (an ONNX Loop) inside it, so a runtime alone gives the detections and a written file
is self-contained. Decode + NMS after the network instead (network in the runtime, the twin's postprocess in
torch) was measured slower or equal (README.md, "Runtimes"), and would tie serving to torch.

``--pretrained`` may be a .params (GluonCV/gluon_ssd; converted through the twin and exported once into
:func:`cache_dir`), a .pth of ``python -m convert``, an .onnx (the graph above, or the int8 network of
``python -m convert --quantize int8``) and, for OpenVINO, an IR .xml. Serving an .onnx/.xml needs neither
torch nor MXNet; torch is imported only to convert and export a .params/.pth.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence

import numpy as np

from gluon_ssd import model_store
from gluon_ssd.classes import DATASET_CLASSES
from gluon_ssd.fileio import atomic_path
from gluon_ssd.registry import register_backend
from gluon_ssd.specs import NMS_THRESH, NMS_TOPK, POST_NMS, get_spec

from .graphfile import META_KEY, RuntimeMissing, ort_session, read_onnx_meta, require, write_onnx_meta

log = logging.getLogger(__name__)

__all__ = ["META_KEY", "RuntimeMissing", "OnnxRuntimeDetector", "cache_dir", "check_meta", "detection_graph",
           "load_onnxruntime_detector", "read_onnx_meta", "require", "write_onnx_meta"]

def cache_dir() -> str:
    """Where exported detection graphs of .params/.pth files are kept: ``$GLUON_SSD_CACHE`` or
    ``$XDG_CACHE_HOME/gluon_ssd`` (default ~/.cache/gluon_ssd), subfolder ``onnx``."""
    root = os.environ.get("GLUON_SSD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "gluon_ssd")
    return os.path.join(root, "onnx")


def graph_meta(model, dtype: str = "fp32", data_shape=None) -> dict:
    """The meta a written graph of the twin ``model`` carries: network, classes, input size (None: any), the NMS
    settings baked into it, precision."""
    return {"network": model.name, "classes": list(model.classes), "data_shape": data_shape,
            "nms": [model.nms_thresh, model.nms_topk, model.post_nms], "dtype": dtype}


def check_meta(meta: dict | None, path: str, network: str, classes: Sequence[str] | None) -> tuple[str, ...]:
    """The classes of a written graph for ``network``; ValueError when the file holds another model or classes.
    A file without meta (an older ``--onnx`` export) takes the network's dataset classes or ``classes``."""
    spec = get_spec(network)
    if meta is None:
        if spec.dataset == "custom":
            if not classes:
                raise ValueError(f"{path} records no classes: pass those {network} was trained with (--classes)")
            return tuple(classes)
        return tuple(DATASET_CLASSES[spec.dataset])
    if meta["network"] != network:
        raise ValueError(f"{path} holds {meta['network']}, not {network}")
    if spec.dataset == "custom" and classes and tuple(classes) != tuple(meta["classes"]):
        raise ValueError(f"{path} was written for the classes {list(meta['classes'])}, not {list(classes)}")
    return tuple(meta["classes"])


def twin_model(network: str, pretrained, classes, nms: tuple[float, int, int]):
    """The float32 twin of a .params/.pth (or the published weights: ``pretrained`` True), NMS set (needs torch)."""
    from ..weights.mapping import convert_gluon_file, load_torch_model  # torch only for a file to convert

    spec = get_spec(network)
    if spec.dataset != "custom" and classes:
        raise ValueError("--classes on a VOC/COCO network (a class subset) is supported by --backend mxnet only")
    if pretrained is True:
        pretrained = model_store.get_model_file(network)
    if not os.path.isfile(pretrained):
        raise FileNotFoundError(f"parameter file not found: {pretrained}")
    if pretrained.endswith((".pth", ".pt")):
        model = load_torch_model(pretrained)
        if model.name and model.name != network:
            raise ValueError(f"{pretrained} holds {model.name}, not {network}")
    else:
        model, _ = convert_gluon_file(network, pretrained, classes=tuple(classes) if classes else None)
    model.set_nms(*nms)
    return model.eval()


def detection_graph(network: str, pretrained, classes, nms: tuple[float, int, int], model=None) -> str:
    """The detection ONNX of a weights file, exported into :func:`cache_dir` on first use (keyed by the file's
    content, the network, classes and NMS), with its meta. ``model``: the twin already built from it."""
    from .export import ONNX_OPSET, export_onnx  # torch: only a weights file is exported

    source = pretrained if isinstance(pretrained, str) else network
    key = json.dumps([model_store.sha1_of(pretrained) if isinstance(pretrained, str) else "published", network,
                      list(classes or ()), list(nms), ONNX_OPSET])
    path = os.path.join(cache_dir(), f"{network}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx")
    if os.path.isfile(path):
        log.info("detection graph of %s: %s (cached)", source, path)
        return path
    model = model if model is not None else twin_model(network, pretrained, classes, nms)
    os.makedirs(cache_dir(), exist_ok=True)
    with atomic_path(path) as tmp:
        export_onnx(model, tmp)
        write_onnx_meta(tmp, graph_meta(model))
    log.info("exported the detection graph of %s to %s", source, path)
    return path


def split_outputs(ids: np.ndarray, scores: np.ndarray, boxes: np.ndarray):
    """(B, K, 1), (B, K, 1), (B, K, 4) graph outputs -> the detector's (B, K), (B, K), (B, K, 4)."""
    return np.asarray(ids)[..., 0], np.asarray(scores)[..., 0], np.asarray(boxes)


class OnnxRuntimeDetector:
    """A detection graph in ONNX Runtime (CPU), as a detector of :mod:`gluon_ssd.predict`:
    (B, 3, H, W) float32 numpy -> numpy ``(ids (B, K), scores (B, K), boxes (B, K, 4))``."""

    def __init__(self, path: str, classes: Sequence[str], meta: dict | None = None, model=None):
        self.path, self.meta, self.classes = path, meta, tuple(classes)
        self.model = model  # the float32 twin when built from weights (what --dtype int8 calibrates)
        self.session = ort_session(path)

    def __call__(self, batch: np.ndarray):
        return split_outputs(*self.session.run(None, {"data": np.ascontiguousarray(batch, dtype=np.float32)}))


def warn_nms(meta: dict | None, path: str, nms: tuple[float, int, int]) -> None:
    """A written graph keeps the NMS it was exported with: say so when other settings were asked for."""
    if meta and meta.get("nms") and tuple(meta["nms"]) != (float(nms[0]), int(nms[1]), int(nms[2])):
        log.warning("%s runs the NMS it was exported with %s, not %s", path, meta["nms"], list(nms))


def load_onnxruntime_detector(network: str, pretrained=True, classes=None, ctx=None, nms_thresh: float = NMS_THRESH,
                              nms_topk: int = NMS_TOPK, post_nms: int = POST_NMS, hybridize: bool = True,
                              device: str = "cpu", dtype: str = "fp32"):
    """``--backend onnxruntime``: arguments as :func:`gluon_ssd.predict.load_mxnet_detector` (``ctx`` and
    ``hybridize`` are ignored). ``dtype`` fp32, or int8 with the int8 graph of ``python -m convert --quantize
    int8`` (its decode + NMS run in the twin: that one needs torch). ONNX Runtime has no bf16 CPU kernels."""
    nms = (nms_thresh, nms_topk, post_nms)
    if device != "cpu":
        raise ValueError(f"--backend onnxruntime runs on the CPU here: --device cpu, not {device}")
    if dtype not in ("fp32", "int8"):
        raise ValueError(f"--backend onnxruntime runs fp32 or int8, not {dtype} (bf16: --backend openvino "
                         "--dtype bf16, or --backend torch)")
    if pretrained is False:
        raise ValueError("--backend onnxruntime needs weights: a .params/.pth/.onnx file or --pretrained True")
    require("onnxruntime", "--backend onnxruntime")
    if isinstance(pretrained, str) and pretrained.endswith(".xml"):
        raise ValueError(f"{pretrained} is OpenVINO IR: run it with --backend openvino")
    if isinstance(pretrained, str) and pretrained.endswith(".onnx"):
        if not os.path.isfile(pretrained):
            raise FileNotFoundError(f"ONNX file not found: {pretrained}")
        meta = read_onnx_meta(pretrained)
        classes = check_meta(meta, pretrained, network, classes)
        if meta and "float_heads" in meta:  # the int8 network of --quantize int8: decode + NMS in the twin
            from .quantization import load_int8_detector  # needs torch (the twin's postprocess)

            return load_int8_detector(pretrained, *nms)
        if dtype == "int8":
            raise ValueError(f"{pretrained} is a float32 graph: --dtype int8 takes the int8 graph of python -m "
                             "convert --quantize int8 (or eval_ssd.py calibrates one)")
        warn_nms(meta, pretrained, nms)
        return OnnxRuntimeDetector(pretrained, classes, meta)
    if dtype == "int8":
        raise ValueError("--dtype int8 with --backend onnxruntime needs the int8 graph written by python -m convert "
                         "--quantize int8 (--pretrained MODEL-int8.onnx), or eval_ssd.py, which calibrates")
    model = twin_model(network, pretrained, classes, nms)
    path = detection_graph(network, pretrained, classes, nms, model)
    return OnnxRuntimeDetector(path, model.classes, read_onnx_meta(path), model)


def quantize_onnxruntime_detector(detector, calib_batches, out_path, calib_mode: str = "naive",
                                  num_calib_examples=None, quantize_heads: bool | str = "auto",
                                  nms=(NMS_THRESH, NMS_TOPK, POST_NMS)):
    """``eval_ssd.py --backend onnxruntime --dtype int8``: the twin's int8 graph (as ``--backend torch``)."""
    from .quantization import load_int8_detector, quantize_twin  # torch: calibration runs the twin

    if getattr(detector, "model", None) is None:
        raise ValueError("--dtype int8 calibrates the twin: pass its weights (.params/.pth), not a written graph")
    quantize_twin(detector.model, calib_batches, out_path, calib_mode=calib_mode,
                  num_calib_examples=num_calib_examples, quantize_heads=quantize_heads)
    return load_int8_detector(out_path, *nms)


def register() -> None:
    """Make this gluon_ssd's 'onnxruntime' backend (:data:`gluon_ssd.predict.OWN_BACKENDS`); needs neither torch nor
    onnxruntime (a missing runtime is reported when a detector is built)."""
    register_backend("onnxruntime", detector=load_onnxruntime_detector, quantizer=quantize_onnxruntime_detector)
