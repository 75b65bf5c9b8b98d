"""Batched detection on whole images: preprocessing, batching by shape, boxes back in original pixels.

The network is behind a *detector*: any callable ``detector(batch)`` taking a (B, 3, h, w) float32 numpy
batch of preprocessed images and returning numpy ``(ids (B, K), scores (B, K), boxes (B, K, 4))`` in
network-input pixels, -1 padded, with a ``classes`` attribute. :data:`BACKENDS` maps a backend name to a
function that builds one (``mxnet`` here; other frameworks add themselves), so callers never touch the
framework.

Batching. The demo's aspect-preserving resize gives images of different sizes different input shapes.
Images are grouped by their preprocessed shape inside a window of consecutive inputs and only equal
shapes share a batch: no padding, so every image's detections are exactly those of a batch of one
(zero padding would change the border activations and with them the scores). Results come back in
input order.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .specs import NMS_THRESH, NMS_TOPK, POST_NMS, parse_pretrained

__all__ = [
    "BACKENDS",
    "Detections",
    "MXNetDetector",
    "Preprocessor",
    "backend_options",
    "detect_images",
    "detection_record",
    "available_backends",
    "load_deployed_detector",
    "register_backend",
    "load_detector",
    "parse_pretrained",
]

log = logging.getLogger(__name__)


class Preprocessor:
    """One image (H, W, 3) uint8 RGB NDArray -> (3, h, w) float32 network input.

    Parameters
    ----------
    short, max_size : GluonCV's demo preprocessing (``load_test``): the short side is resized to
        ``short`` keeping the aspect ratio, unless the long side would exceed ``max_size``.
    data_shape : an int S or (W, H): fixed-size resize without keeping the aspect ratio
        (``SSDDefaultValTransform``, the evaluation preprocessing) instead.
    """

    def __init__(self, short: int = 512, max_size: int = 1024, data_shape=None):
        if data_shape is not None:
            width, height = (data_shape, data_shape) if np.isscalar(data_shape) else tuple(data_shape)
            if int(width) < 1 or int(height) < 1:
                raise ValueError(f"data_shape must be positive, got {data_shape!r}")
            self.data_shape = (int(width), int(height))
        else:
            if int(short) < 1 or int(max_size) < 1:
                raise ValueError(f"short and max_size must be positive, got {short} and {max_size}")
            self.data_shape = None
        self.short, self.max_size = int(short), int(max_size)
        self._val_transform = None

    def __call__(self, img) -> np.ndarray:
        from .data import transforms

        if self.data_shape is not None:
            if self._val_transform is None:
                self._val_transform = transforms.SSDDefaultValTransform(*self.data_shape)
            x, _ = self._val_transform(img, np.zeros((0, 6), dtype=np.float32))
        else:
            x, _ = transforms.transform_test([img], short=self.short, max_size=self.max_size)
            if isinstance(x, (list, tuple)):
                x = x[0]
        x = x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)
        return x.reshape(x.shape[-3:]).astype(np.float32, copy=False)

    def describe(self) -> str:
        if self.data_shape is not None:
            return f"fixed {self.data_shape[0]}x{self.data_shape[1]} resize"
        return f"short side {self.short}, long side at most {self.max_size}"


class MXNetDetector:
    """A gluon_ssd SSD as a detector; a batch is split over the contexts (one device each)."""

    def __init__(self, net, ctx=None):
        import mxnet as mx

        self.net = net
        self.ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
        self.classes = tuple(net.classes)

    def __call__(self, batch: np.ndarray):
        import mxnet as mx

        batch = np.asarray(batch, dtype=np.float32)
        n = min(len(self.ctx), len(batch))
        bounds = np.linspace(0, len(batch), n + 1).astype(int)
        outs = []
        for ctx, lo, hi in zip(self.ctx, bounds[:-1], bounds[1:]):
            ids, scores, boxes = self.net(mx.nd.array(batch[lo:hi], ctx=ctx))
            outs.append((ids, scores, boxes))
        ids = np.concatenate([o[0].asnumpy() for o in outs])[..., 0]
        scores = np.concatenate([o[1].asnumpy() for o in outs])[..., 0]
        boxes = np.concatenate([o[2].asnumpy() for o in outs])
        return ids, scores, boxes


def load_mxnet_detector(network: str, pretrained=True, classes: Sequence[str] | None = None, ctx=None,
                        nms_thresh: float = NMS_THRESH, nms_topk: int = NMS_TOPK, post_nms: int = POST_NMS,
                        hybridize: bool = True) -> MXNetDetector:
    """A zoo network as a detector.

    Parameters
    ----------
    network : a name of :func:`gluon_ssd.model_zoo.list_models`.
    pretrained : True (GluonCV's published weights via the model store), a parameter file path, or
        False (random weights: for smoke tests only).
    classes : the class names of a '*_custom' network (those it was trained with, in order); for a VOC
        or COCO network a subset of its classes to detect only those.
    ctx : an mx.Context or a list of them.
    nms_thresh, nms_topk, post_nms : see ``SSD.set_nms``; GluonCV's SSD defaults (:data:`gluon_ssd.specs.NMS_TOPK`
        400: its demo keeps the network's settings).

    Raises
    ------
    ValueError for a bad name or class list or a file that does not fit the network;
    FileNotFoundError for a missing file; ``model_store.ModelStoreError`` when published weights cannot
    be had.
    """
    from ._mxnet import require

    mx = require("--backend mxnet")
    from .classes import DATASET_CLASSES
    from .model_zoo import get_model, get_spec
    from .quantization import get_int8_model
    from .specs import INT8_MODELS

    if network in INT8_MODELS:  # GluonCV's int8 graphs: NMS baked in, the float32 model's classes
        if classes is not None:
            raise ValueError(f"{network} is a fixed int8 graph: it detects its own classes (drop --classes)")
        return MXNetDetector(get_int8_model(network, pretrained=pretrained, ctx=mx.cpu()), mx.cpu())
    spec = get_spec(network)
    ctx = ctx or mx.cpu()
    classes = tuple(classes) if classes else None
    if classes is not None and len(set(classes)) != len(classes):
        raise ValueError(f"class names must be unique, got {list(classes)}")
    if spec.dataset == "custom":
        if classes is None:
            raise ValueError(f"{network} is a custom network: give the class names it was trained with, "
                             "in order (e.g. --classes circle,square,triangle)")
        if pretrained is True:
            raise ValueError(f"{network} has no published weights: pass the parameter file written by "
                             "training (--pretrained PATH)")
    elif classes is not None and pretrained is not False:
        known = DATASET_CLASSES[spec.dataset]
        unknown = [c for c in classes if c not in known]
        if unknown:
            raise ValueError(f"{network} knows no class {', '.join(map(repr, unknown))}: with a "
                             f"{spec.dataset.upper()} network --classes selects a subset of its classes "
                             f"({', '.join(known)})")
    if isinstance(pretrained, str):
        import os

        if not os.path.isfile(pretrained):
            raise FileNotFoundError(f"parameter file not found: {pretrained}; pass an existing .params "
                                    "file or --pretrained True for the published weights")
    net = get_model(network, pretrained=pretrained, pretrained_base=False, classes=classes, ctx=ctx)
    if pretrained is False:
        log.warning("%s has random weights (pretrained=False): its detections mean nothing", network)
    net.set_nms(nms_thresh, nms_topk, post_nms)
    if hybridize:
        net.hybridize()
    return MXNetDetector(net, ctx)


def load_deployed_detector(prefix: str, classes: Sequence[str] | None = None, ctx=None) -> MXNetDetector:
    """A model exported by :func:`gluon_ssd.export` (float32 or int8) as a detector; ``classes`` for exports
    without a meta file."""
    from ._mxnet import require

    mx = require("--deploy (an MXNet export)")
    from .deploy import load_exported

    ctx = ctx[0] if isinstance(ctx, (list, tuple)) else (ctx or mx.cpu())
    net = load_exported(prefix, ctx=ctx, classes=classes)
    if not net.classes:
        raise ValueError(f"{prefix} records no class names (no {prefix}-meta.json): pass them (--classes)")
    return MXNetDetector(net, ctx)


# Backends by name: a function building a detector (arguments as load_mxnet_detector). Others register
# themselves with register_backend: the project's own PyTorch twin (convert/, OWN_BACKENDS) adds 'torch' when it is
# imported, which available_backends does on first need, so that a checkout that is not installed runs
# --backend torch; other packages are found through the entry-point group ENTRY_POINT_GROUP (each entry a
# callable that registers).
BACKENDS: dict[str, Callable[..., Any]] = {"mxnet": load_mxnet_detector}
# name -> fn(detector, calib_batches, out_path, calib_mode=, num_calib_examples=, quantize_heads=, nms=)
# -> its int8 detector, written to out_path (see convert.backend.quantize_torch_detector)
QUANTIZERS: dict[str, Callable[..., Any]] = {}
# name -> 'module:Class' of the backend's training job (train_ssd.py --backend NAME; gluon_ssd.train.run imports
# it only then, so that registering a backend stays free of the training stack: the twin's trainer needs MXNet
# for the shared data pipeline, its inference does not).
TRAINER_PATHS: dict[str, str] = {}
ENTRY_POINT_GROUP = "gluon_ssd.backends"
# The project's own backends: name -> the module whose register() adds it (importing it needs its framework).
OWN_BACKENDS = {"torch": "convert.backend", "onnxruntime": "convert.runtime.onnxruntime",
                "openvino": "convert.runtime.openvino"}
# name -> why it could not be loaded (its framework is not installed), for the messages of the tools
UNAVAILABLE: dict[str, str] = {}
_discovered = False


def register_backend(name: str, loader: Callable[..., Any], quantizer: Callable[..., Any] | None = None,
                     trainer: str | None = None) -> None:
    """Make ``name`` a backend of :func:`load_detector` (and of the CLIs' ``--backend``); ``quantizer``, if
    given, calibrates one of its detectors to int8 (``eval_ssd.py --backend NAME --dtype int8``); ``trainer``,
    if given, is the 'module:Class' of its training job (``train_ssd.py --backend NAME``, see
    :func:`gluon_ssd.train.run.trainer_class`), imported only when training."""
    BACKENDS[name] = loader
    if quantizer is not None:
        QUANTIZERS[name] = quantizer
    if trainer is not None:
        TRAINER_PATHS[name] = trainer


def available_backends() -> dict[str, Callable[..., Any]]:
    """:data:`BACKENDS` after registering the project's own backends (:data:`OWN_BACKENDS`) and those of the
    entry points of installed packages (once). One whose framework is missing is left out, the reason kept in
    :data:`UNAVAILABLE`."""
    global _discovered
    if not _discovered:
        _discovered = True
        import importlib
        from importlib.metadata import entry_points

        for name, module in OWN_BACKENDS.items():
            if name in BACKENDS:
                continue
            try:
                importlib.import_module(module).register()
            except ImportError as err:  # e.g. torch not installed: that backend is simply not available
                UNAVAILABLE[name] = str(err)
                log.info("backend %s not available: %s", name, err)
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name in BACKENDS:
                continue
            try:
                entry.load()()
            except ImportError as err:
                UNAVAILABLE[entry.name] = str(err)
                log.info("backend %s not available: %s", entry.name, err)
    return BACKENDS


def unknown_backend_message(backend: str) -> str:
    """Why ``backend`` cannot be used: not installed (with the import error) or not a backend at all."""
    backends = available_backends()
    if backend in UNAVAILABLE:
        return (f"--backend {backend} is not available here ({UNAVAILABLE[backend]})"
                + ("; the PyTorch twin needs torch: pip install -r requirements-torch.txt (Python 3.12+) or "
                   "pip install torch onnx onnxruntime" if backend == "torch" else ""))
    return f"--backend {backend!r} is not available; choose from {', '.join(sorted(backends))}"


def backend_options(backend: str, device: str = "cpu", dtype: str = "fp32", mxnet_gpus_flag: str = "--gpus") -> dict:
    """The CLIs' ``--device``/``--dtype`` as :func:`load_detector` arguments. They choose the torch backend's
    device and precision; the mxnet backend takes its GPUs from ``mxnet_gpus_flag`` and runs float32."""
    if backend == "mxnet":
        if device != "cpu" or dtype != "fp32":
            raise ValueError(f"--device {device} --dtype {dtype}: --device/--dtype apply to --backend torch; the "
                             f"mxnet backend takes GPUs from {mxnet_gpus_flag} and runs float32")
        return {}
    return {"device": device, "dtype": dtype}


def load_detector(backend: str = "mxnet", **kwargs):
    """Build a detector with the named backend (see :data:`BACKENDS`); kwargs as
    :func:`load_mxnet_detector`."""
    # Entry points (which import their frameworks) are looked at only for a backend not registered yet.
    backends = BACKENDS if backend in BACKENDS else available_backends()
    if backend not in backends:
        raise ValueError(unknown_backend_message(backend))
    return backends[backend](**kwargs)


@dataclasses.dataclass
class Detections:
    """Detections of one image, sorted by score (highest first).

    key : what the caller passed with the image (a path, a video frame name).
    image : the image as given, (H, W, 3) RGB.
    width, height : the image's size.
    class_ids : (K,) int; scores : (K,) float; boxes : (K, 4) x1, y1, x2, y2 in the image's own pixels,
        clipped to [0, width] x [0, height].
    input_shape : (h, w) of the network input the image was resized to.
    """

    key: Any
    image: Any
    width: int
    height: int
    class_ids: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    input_shape: tuple[int, int]


def _to_original(ids, scores, boxes, width, height, input_shape, thresh):
    """Valid rows at or above ``thresh``, boxes scaled from input pixels to the image's, by score."""
    in_h, in_w = input_shape
    keep = (ids >= 0) & (scores >= thresh)
    ids, scores, boxes = ids[keep], scores[keep], boxes[keep].astype(np.float64)
    scale = np.array([width / in_w, height / in_h, width / in_w, height / in_h])
    boxes = boxes * scale
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    order = np.argsort(-scores, kind="stable")
    return ids[order].astype(np.int64), scores[order].astype(np.float64), boxes[order]


def detect_images(detector, images: Iterable[tuple[Any, Any]], preprocess: Callable,
                  batch_size: int = 8, thresh: float = 0.0, window: int | None = None,
                  ) -> Iterator[Detections]:
    """Detect on a stream of images, batching those of equal input shape.

    Parameters
    ----------
    detector : see the module docstring.
    images : (key, image) pairs, image an (H, W, 3) uint8 RGB NDArray (or numpy array); consumed lazily,
        ``window`` at a time.
    preprocess : image -> (3, h, w) float32 (a :class:`Preprocessor`).
    batch_size : most images per network call.
    thresh : drop detections scored below this.
    window : how many consecutive images are grouped by shape (default 4 batches, at least 16).

    Yields
    ------
    :class:`Detections`, one per image, in input order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    window = window or max(4 * batch_size, 16)
    it = iter(images)
    while True:
        chunk = list(itertools.islice(it, window))
        if not chunk:
            return
        inputs = [preprocess(_as_nd(img)) for _, img in chunk]
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(inputs):
            groups.setdefault(x.shape, []).append(i)
        raw: list = [None] * len(chunk)
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                idx = members[start:start + batch_size]
                ids, scores, boxes = detector(np.stack([inputs[i] for i in idx]))
                for row, i in enumerate(idx):
                    raw[i] = (np.asarray(ids[row]), np.asarray(scores[row]), np.asarray(boxes[row]))
        for (key, img), x, (ids, scores, boxes) in zip(chunk, inputs, raw):
            height, width = int(img.shape[0]), int(img.shape[1])
            input_shape = (int(x.shape[1]), int(x.shape[2]))
            cid, sc, bx = _to_original(ids, scores, boxes, width, height, input_shape, thresh)
            yield Detections(key, img, width, height, cid, sc, bx, input_shape)


def _as_nd(img):
    """The image as the transforms take it: an NDArray, or a uint8 numpy array without MXNet."""
    from ._mxnet import is_ndarray, mx

    if is_ndarray(img):
        return img
    return mx.nd.array(np.asarray(img), dtype="uint8") if mx is not None else np.asarray(img, dtype=np.uint8)


def detection_record(name: str, det: Detections, classes: Sequence[str], digits: int = 2) -> dict:
    """The JSON-lines record of one image: ``{"image", "width", "height", "detections": [{"class",
    "class_id", "score", "box"}]}``, boxes in original pixels rounded to ``digits`` decimals, scores to
    4 decimals, by score."""
    dets = []
    for cid, score, box in zip(det.class_ids, det.scores, det.boxes):
        cid = int(cid)
        dets.append({
            "class": classes[cid] if 0 <= cid < len(classes) else str(cid),
            "class_id": cid,
            "score": round(float(score), 4),
            "box": [round(float(v), digits) for v in box],
        })
    return {"image": name, "width": det.width, "height": det.height, "detections": dets}
