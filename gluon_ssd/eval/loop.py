"""The evaluation loop: a detector over a whole dataset, scored with a VOC or COCO metric.

What it does, and how it compares with GluonCV 0.10.5's ``eval_ssd.py`` ``validate``:

* Every image is scored. GluonCV's loader uses ``last_batch='rollover'`` and silently never scores the
  final partial batch (24 of the 4952 VOC07 test images at batch 64); here the last batch is kept.
* Preprocessing is :class:`gluon_ssd.data.transforms.SSDDefaultValTransform` (GluonCV's, bit-exact):
  a fixed-size resize, the ground-truth boxes scaled by the same factors.
* Predicted boxes are clipped to the network input, then the metric is fed as GluonCV feeds it: the VOC
  metrics get predictions and ground truth in network-input pixels (labels as the val transform scaled
  them, with the difficult flags); the COCO metric gets the predictions in input pixels and scales them
  back to each image's size itself. GluonCV clips x and y alike to ``[0, input height]``; we clip x to
  the input width and y to its height, which is the same for the square inputs of every zoo model.
* Images that cannot be read raise (``on_error='raise'``): substituting another image, as training does,
  would score predictions against the wrong ground truth.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .._mxnet import as_numpy, is_block, mx
from ..cpu import describe, vector_features
from ..specs import NMS_THRESH, NMS_TOPK, POST_NMS
from .coco import COCODetectionMetric
from .voc import VOC07MApMetric, VOCMApMetric

__all__ = ["EvalResult", "ImagePredictions", "METRICS", "evaluate", "make_metric", "benchmark"]

logger = logging.getLogger(__name__)

#: Metric names accepted by :func:`make_metric` and :func:`evaluate`.
METRICS = ("voc07", "voc", "coco")
_DEFAULT_NMS = (NMS_THRESH, NMS_TOPK, POST_NMS)


class ImagePredictions(NamedTuple):
    """The detections of one image, in the image's own pixels.

    Attributes
    ----------
    image_id : Any
        ``dataset.image_id(i)`` (file stem for VOC layouts, image id for COCO).
    class_ids : np.ndarray, (K,) int64
        Contiguous class ids (indices into the dataset's classes); padding rows removed.
    scores : np.ndarray, (K,) float32
    boxes : np.ndarray, (K, 4) float64
        ``x1, y1, x2, y2``, clipped to the network input and then scaled to the original image.
    """

    image_id: Any
    class_ids: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray


@dataclasses.dataclass
class EvalResult:
    """The outcome of :func:`evaluate`.

    Attributes
    ----------
    names : list of str
        Class names, then ``'mAP'``.
    values : list of float
        AP of each class (``nan`` for a class without ground truth), then the mAP.
    map : float
        The mAP (``values[-1]``): VOC mAP at IoU 0.5, or COCO AP@[.5:.95].
    metric : object
        The metric object after ``get()`` (PR curves: ``metric.get_pr_curves()`` for the VOC metrics;
        all 12 COCO stats and the summary text: ``metric.stats``, ``metric.summary``).
    seconds : float
        Wall time of the loop: loading, preprocessing, inference and metric updates (not the final
        metric computation, see ``metric_seconds``).
    images_per_second : float
        ``num_images / seconds``.
    num_images : int
        Images evaluated (all of the dataset).
    metric_seconds : float
        Wall time of ``metric.get()``.
    predictions : list of ImagePredictions
        Per image, in dataset order.
    """

    names: list
    values: list
    map: float
    metric: Any
    seconds: float
    images_per_second: float
    num_images: int
    metric_seconds: float
    predictions: list

    def per_class(self) -> dict:
        """``{class name: AP}`` (without the mAP)."""
        return dict(zip(self.names[:-1], self.values[:-1]))


def _hw(data_shape) -> tuple[int, int]:
    if np.isscalar(data_shape):
        h = w = int(data_shape)
    else:
        if len(data_shape) != 2:
            raise ValueError(f"data_shape must be an int or (height, width), got {data_shape!r}")
        h, w = (int(v) for v in data_shape)
    if h < 1 or w < 1:
        raise ValueError(f"data_shape must be positive, got {data_shape!r}")
    return h, w


def make_metric(kind: str, dataset, data_shape, **kwargs):
    """The metric GluonCV's evaluation uses for ``kind``, set up for ``dataset``.

    Parameters
    ----------
    kind : {'voc07', 'voc', 'coco'}
        ``'voc07'``: :class:`VOC07MApMetric` (11-point, IoU 0.5; GluonCV's choice for VOC).
        ``'voc'``: :class:`VOCMApMetric` (all-point area, IoU 0.5). ``'coco'``:
        :class:`COCODetectionMetric` over the dataset's COCO ground truth (needs a COCO-format dataset).
    dataset : a gluon_ssd detection dataset
    data_shape : int or (height, width)
        Network input size (the COCO metric scales boxes back from it).
    **kwargs
        Passed to the metric (e.g. ``tie_order``, ``exact_thresholds``; for COCO ``save_prefix``,
        ``cleanup``, ``backend``).
    """
    if kind in ("voc07", "voc"):
        cls = VOC07MApMetric if kind == "voc07" else VOCMApMetric
        return cls(iou_thresh=kwargs.pop("iou_thresh", 0.5), class_names=list(dataset.classes), **kwargs)
    if kind == "coco":
        coco = None
        try:
            coco = dataset.coco
        except (AttributeError, ValueError) as e:
            reason = f" ({e})" if isinstance(e, ValueError) else ""
            raise ValueError(
                f"metric 'coco' needs a COCO-format dataset read from one instances JSON (COCODetection or "
                f"CustomCOCODetection), got {type(dataset).__name__}{reason}; use metric 'voc07' or 'voc'"
            ) from None
        mapping = getattr(dataset, "contiguous_id_to_json", None)
        return COCODetectionMetric(coco, classes=dict(mapping) if mapping else None,
                                   data_shape=_hw(data_shape), **kwargs)
    raise ValueError(f"metric must be one of {METRICS}, got {kind!r}")


def _check_classes(model_classes, dataset):
    if model_classes is None:
        return
    model_classes = tuple(str(c) for c in model_classes)
    if model_classes != tuple(dataset.classes):
        raise ValueError(
            f"the model's {len(model_classes)} classes {list(model_classes)} differ from the dataset's "
            f"{len(dataset.classes)} classes {list(dataset.classes)}: evaluate a model trained on this "
            "dataset's classes, in the same order"
        )


def _block_ctx(block) -> list:
    for param in block.collect_params().values():
        try:
            return list(param.list_ctx())
        except RuntimeError:  # deferred initialization
            continue
    return [mx.cpu()]


def _block_infer(block, ctx_list) -> Callable:
    """A gluon block as ``(B, 3, H, W) NDArray -> numpy (ids (B, K), scores (B, K), boxes (B, K, 4))``,
    the batch split over the contexts."""

    def infer(images):
        parts = mx.gluon.utils.split_and_load(images, ctx_list, batch_axis=0, even_split=False)
        outs = [block(x) for x in parts]
        ids = np.concatenate([o[0].asnumpy() for o in outs]).reshape(len(images), -1)
        scores = np.concatenate([o[1].asnumpy() for o in outs]).reshape(len(images), -1)
        boxes = np.concatenate([o[2].asnumpy() for o in outs]).reshape(len(images), -1, 4)
        return ids, scores, boxes

    return infer


def _detector_infer(detector) -> Callable:
    """A numpy detector (see :mod:`gluon_ssd.predict`) with the NDArray-in interface of the loop."""

    def infer(images):
        ids, scores, boxes = detector(as_numpy(images))
        batch = len(images)
        return (np.asarray(ids).reshape(batch, -1), np.asarray(scores).reshape(batch, -1),
                np.asarray(boxes).reshape(batch, -1, 4))

    return infer


def _resolve_model(net, ctx):
    """(inference function, model classes or None, the SSD whose NMS evaluate may set, or None)."""
    if is_block(net):
        block, own_ctx = net, None
    elif is_block(getattr(net, "net", None)) and hasattr(net, "ctx"):
        # predict.MXNetDetector: feed its network NDArrays directly instead of numpy round trips.
        block, own_ctx = net.net, list(net.ctx)
    elif callable(net):
        return _detector_infer(net), getattr(net, "classes", None), None
    else:
        raise TypeError(f"net must be a gluon Block or a detector callable, got {type(net).__name__}")
    if ctx is None:
        ctx_list = own_ctx or _block_ctx(block)
    else:
        ctx_list = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
        if _block_ctx(block) != ctx_list:  # moving re-creates every array (and gradient): only when needed
            block.collect_params().reset_ctx(ctx_list)
    nms_owner = block if hasattr(block, "set_nms") else None
    return _block_infer(block, ctx_list), getattr(block, "classes", None), nms_owner


def _eval_view(dataset, width, height):
    """``dataset`` raising on unreadable images, through the validation transform."""
    from ..data.transforms import SSDDefaultValTransform  # loads OpenCV: the metrics run without images

    if not hasattr(dataset, "classes") or not hasattr(dataset, "image_size"):
        raise TypeError(f"dataset must be a gluon_ssd detection dataset (with .classes and .image_size()), "
                        f"got {type(dataset).__name__}")
    if getattr(dataset, "_transform", None) is not None:
        raise ValueError("evaluate applies the validation transform itself: pass the dataset without a "
                         "transform")
    view = dataset
    if getattr(dataset, "on_error", "raise") != "raise":
        view = copy.copy(dataset)
        view.on_error = "raise"
    return view.transform(SSDDefaultValTransform(width, height))


def evaluate(net, dataset, data_shape, batch_size: int = 8, ctx=None, metric="voc07", num_workers: int = 0,
             progress: bool = True, nms: Sequence | None = _DEFAULT_NMS) -> EvalResult:
    """Score a detector on every image of a dataset.

    Parameters
    ----------
    net : gluon Block, or detector callable
        A gluon_ssd SSD (or any block with its inference outputs, e.g. an exported ``SymbolBlock``):
        ``(B, 3, H, W) -> ids (B, K, 1), scores (B, K, 1), boxes (B, K, 4)`` in input pixels, -1 padded.
        Or a detector of :mod:`gluon_ssd.predict` (any backend): numpy batch in, numpy
        ``(ids (B, K), scores (B, K), boxes (B, K, 4))`` out, with a ``classes`` attribute.
    dataset : gluon_ssd detection dataset, without a transform
        ``VOCDetection``, ``COCODetection`` (build it with ``skip_empty=False`` to score every image),
        ``CustomVOCDetection``, ``CustomCOCODetection``.
    data_shape : int or (height, width)
        Network input size; images are resized to it without keeping the aspect ratio.
    batch_size : int
        Images per batch (split over the contexts). The last partial batch is evaluated too.
    ctx : mx.Context or list of them, optional
        Where a gluon block runs; its parameters are moved there. Default: where they are.
    metric : {'voc07', 'voc', 'coco'} or metric object
        A name (see :func:`make_metric`), or an instance with GluonCV's ``update``/``get`` interface
        (VOC: ``update(boxes, ids, scores, gt_boxes, gt_ids, gt_difficults)``; a
        :class:`COCODetectionMetric` gets ``image_ids`` and ``image_sizes`` too). It is reset first.
    num_workers : int
        Data loading processes.
    progress : bool
        Show a tqdm progress bar (stderr).
    nms : (nms_thresh, nms_topk, post_nms) or None
        NMS of an SSD during the evaluation (GluonCV's evaluation: 0.45, 400, 100); its previous
        settings are restored afterwards. None, or a model without ``set_nms``: the model's own.

    Returns
    -------
    EvalResult

    Raises
    ------
    ValueError
        The model's classes differ from the dataset's (the message lists both), the model predicts a
        class id the dataset does not have, or a bad argument.
    gluon_ssd.data.BadImageError
        An image of the dataset cannot be read.
    """
    from tqdm import tqdm

    from ..data import make_loader  # loads OpenCV: the metrics run without images

    height, width = _hw(data_shape)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    infer, model_classes, nms_owner = _resolve_model(net, ctx)
    _check_classes(model_classes, dataset)
    if isinstance(metric, str):
        metric = make_metric(metric, dataset, (height, width))
    is_coco = isinstance(metric, COCODetectionMetric)
    num_classes = len(dataset.classes)
    view = _eval_view(dataset, width, height)
    loader = make_loader(view, int(batch_size), shuffle=False, num_workers=num_workers, last_batch="keep")
    sizes = np.array([dataset.image_size(i) for i in range(len(dataset))], dtype=np.float64).reshape(-1, 2)
    image_ids = [dataset.image_id(i) for i in range(len(dataset))] if hasattr(dataset, "image_id") \
        else list(range(len(dataset)))

    saved_nms = None
    if nms is not None and nms_owner is not None:
        saved_nms = (nms_owner.nms_thresh, nms_owner.nms_topk, nms_owner.post_nms)
        nms_owner.set_nms(*nms)
    metric.reset()
    predictions = []
    seen = 0
    tic = time.perf_counter()
    try:
        with tqdm(total=len(dataset), unit="img", desc="evaluating", disable=not progress, leave=False) as bar, \
                (mx.autograd.predict_mode() if mx is not None else contextlib.nullcontext()):
            for images, labels in loader:
                n = images.shape[0]
                ids, scores, boxes = infer(images)
                boxes = boxes.copy()
                np.clip(boxes[..., 0::2], 0, width, out=boxes[..., 0::2])
                np.clip(boxes[..., 1::2], 0, height, out=boxes[..., 1::2])
                if ids.size and ids.max() >= num_classes:
                    raise ValueError(f"the model predicts class id {int(ids.max())} but the dataset has "
                                     f"{num_classes} classes {list(dataset.classes)}: evaluate a model "
                                     "trained on this dataset's classes")
                batch_ids = image_ids[seen:seen + n]
                batch_sizes = sizes[seen:seen + n]
                if is_coco:
                    metric.update(boxes, ids, scores, image_ids=batch_ids, image_sizes=batch_sizes)
                else:
                    label = as_numpy(labels)
                    metric.update(boxes, ids, scores, label[..., 0:4], label[..., 4:5],
                                  label[..., 5:6] if label.shape[-1] > 5 else None)
                scale = np.tile(batch_sizes / np.array([width, height], dtype=np.float64), (1, 2))
                for k in range(n):
                    keep = ids[k] >= 0
                    predictions.append(ImagePredictions(
                        batch_ids[k], ids[k][keep].astype(np.int64), scores[k][keep].astype(np.float32),
                        boxes[k][keep].astype(np.float64) * scale[k]))
                seen += n
                bar.update(n)
    finally:
        if saved_nms is not None:
            nms_owner.set_nms(*saved_nms)
    seconds = time.perf_counter() - tic
    if seen != len(dataset):
        raise RuntimeError(f"the loader gave {seen} images for a dataset of {len(dataset)}")
    tic = time.perf_counter()
    names, values = metric.get()
    metric_seconds = time.perf_counter() - tic
    if isinstance(names, str):  # a VOC metric without class names
        names, values = [names], [values]
    names, values = list(names), [float(v) for v in values]
    result = EvalResult(names, values, values[-1], metric, seconds, seen / max(seconds, 1e-12), seen,
                        metric_seconds, predictions)
    logger.info("evaluated %d images in %.2f s (%.1f images/s on %s); mAP %.4f", seen, seconds,
                result.images_per_second, describe(), result.map)
    return result


def benchmark(net, data_shape, batch_size: int = 8, num_iterations: int = 100, ctx=None, warmup: int = 5,
              seed: int = 0, progress: bool = False) -> dict:
    """Inference throughput on random input (GluonCV's ``--benchmark``): no dataset, no metric.

    Parameters
    ----------
    net : gluon Block or detector callable (see :func:`evaluate`)
    data_shape : int or (height, width)
    batch_size, num_iterations : batches of this size, timed over this many
    ctx : see :func:`evaluate`
    warmup : untimed batches first (graph building, memory allocation)
    seed : seed of the uniform(-1, 1) input
    progress : tqdm bar over the timed iterations

    Returns
    -------
    dict
        ``{'images_per_second', 'seconds', 'images', 'batch_size', 'iterations', 'cpu', 'cpu_features'}``
        (the CPU's model and vector features: int8/bf16 speed depends on them). Each iteration
        waits for the outputs to reach the host, so the time includes the device-to-host copy.
    """
    from tqdm import tqdm

    height, width = _hw(data_shape)
    if int(batch_size) < 1 or int(num_iterations) < 1:
        raise ValueError(f"batch_size and num_iterations must be positive, got {batch_size} and "
                         f"{num_iterations}")
    infer, _, _ = _resolve_model(net, ctx)
    rng = np.random.default_rng(seed)
    data = rng.uniform(-1.0, 1.0, (int(batch_size), 3, height, width)).astype(np.float32)
    if is_block(net) or is_block(getattr(net, "net", None)):
        data = mx.nd.array(data)
    with mx.autograd.predict_mode() if mx is not None else contextlib.nullcontext():
        for _ in range(max(int(warmup), 0)):
            infer(data)
        tic = time.perf_counter()
        for _ in tqdm(range(int(num_iterations)), unit="batch", desc="benchmark", disable=not progress,
                      leave=False):
            infer(data)
        seconds = time.perf_counter() - tic
    images = int(batch_size) * int(num_iterations)
    logger.info("benchmark: %.2f images/s at batch %d on %s", images / max(seconds, 1e-12), int(batch_size),
                describe())
    return {"images_per_second": images / max(seconds, 1e-12), "seconds": seconds, "images": images,
            "batch_size": int(batch_size), "iterations": int(num_iterations), "cpu": describe(),
            "cpu_features": vector_features()}


def calibration_batches(dataset, data_shape, batch_size: int, num_batches: int, num_workers: int = 0) -> list:
    """The first ``num_batches`` batches of ``dataset`` through the validation transform, as (B, 3, H, W)
    float32 numpy arrays: the images int8 calibration reads (GluonCV calibrates on its validation loader).
    A last partial batch is dropped when a full one precedes it (the calibrated graph is built for one
    batch shape)."""
    from ..data import make_loader  # loads OpenCV: the metrics run without images

    height, width = _hw(data_shape)
    if int(num_batches) < 1:
        raise ValueError(f"calibration needs at least one batch, got num_batches={num_batches}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    loader = make_loader(_eval_view(dataset, width, height), int(batch_size), shuffle=False,
                         num_workers=num_workers, last_batch="keep")
    batches = []
    for images, _ in loader:
        if batches and images.shape[0] != batches[0].shape[0]:
            break
        batches.append(as_numpy(images))
        if len(batches) >= int(num_batches):
            break
    if not batches:
        raise ValueError("the dataset has no image to calibrate on")
    return batches


def random_batches(data_shape, batch_size: int, num_batches: int, seed: int = 0) -> list:
    """``num_batches`` (B, 3, H, W) float32 batches uniform in [-2, 2) (about the range of normalised images):
    the calibration input of a benchmark, which has no dataset."""
    height, width = _hw(data_shape)
    rng = np.random.default_rng(seed)
    return [rng.uniform(-2, 2, (int(batch_size), 3, height, width)).astype(np.float32)
            for _ in range(int(num_batches))]
