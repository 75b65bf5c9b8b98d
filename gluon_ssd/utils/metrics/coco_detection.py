"""GluonCV's ``gluoncv.utils.metrics.coco_detection.COCODetectionMetric``: its constructor, ``update`` and ``get``.

A front over :class:`gluon_ssd.eval.coco.COCODetectionMetric` (pycocotools underneath) for code written for
GluonCV, such as GluonCV's ``eval_ssd.py``::

    metric = COCODetectionMetric(val_dataset, save_prefix + '_eval', cleanup=True, data_shape=(512, 512))
    metric.update(det_bboxes, det_ids, det_scores, gt_bboxes, gt_ids, gt_difficults)  # per batch
    names, values = metric.get()   # the summary text, per-class AP and mAP@[.5:.95], as strings x 100

The numbers are GluonCV's (tested against gluoncv on a COCO sample to 1e-12): the same boxes written to the same
JSON, evaluated by pycocotools against the same ground truth.
"""
from __future__ import annotations

import datetime
import os

import numpy as np

from ...eval.coco import COCODetectionMetric as _COCOMetric
from ...eval.voc import _as_batch, _flat_rows, _single_flags

__all__ = ["COCODetectionMetric"]

_SUMMARY_NAME = "~~~~ Summary metrics ~~~~\n"
_IOU_RANGE = (0.5, 0.95)


def _data_shape(data_shape):
    """GluonCV's data_shape: (height, width), or None (anything false); an int S means (S, S) here."""
    if isinstance(data_shape, (tuple, list)):
        if len(data_shape) != 2:
            raise ValueError(f"data_shape must be (height, width) of the network input, got {data_shape!r}")
        return (int(data_shape[0]), int(data_shape[1]))
    if not data_shape:
        return None
    if isinstance(data_shape, (int, np.integer)):
        return (int(data_shape), int(data_shape))
    raise ValueError(f"data_shape must be None or (height, width) of the network input, got {data_shape!r}")


class COCODetectionMetric(_COCOMetric):
    """COCO bbox mAP with GluonCV's interface (``gluoncv.utils.metrics.COCODetectionMetric``).

    Parameters
    ----------
    dataset : the validation dataset, with ``coco`` (a pycocotools COCO), ``classes`` and
        ``contiguous_id_to_json``: :class:`gluon_ssd.data.COCODetection` (open it with ``skip_empty=False`` so that
        every image of the JSON is predicted, in sorted id order) or GluonCV's own.
    save_prefix : the results file is ``{save_prefix}{_YYYY_mm_dd_HH_MM_SS}.json`` (absolute path), created
        (empty) here, so that an unwritable place fails now rather than after the evaluation.
    use_time : append the time stamp to the file name.
    cleanup : remove the results file after each :meth:`get` (GluonCV: when the metric is garbage-collected).
    score_thresh : detections scored below this are dropped before writing (GluonCV's default 0.05).
    data_shape : (height, width) of the network input: boxes are scaled from it to each image's size (from the
        JSON). None: boxes are in original pixels already. An int S is taken as (S, S) (GluonCV raises).
    post_affine : ``f(orig_w, orig_h, out_w, out_h) -> (2, 3) matrix``: boxes are mapped by that affine transform
        of their two corners instead of scaled (needs ``data_shape``).

    Notes
    -----
    ``update(pred_bboxes, pred_labels, pred_scores, *args)``: boxes (B, N, 4) corners in network-input pixels,
    labels and scores (B, N) or (B, N, 1), NDArray or numpy, or lists of them (one per device); rows with a
    negative label are padding. Any further arguments (GluonCV's eval script passes the ground truth: gt_bboxes,
    gt_labels, gt_difficults) are ignored, as GluonCV does: the ground truth is the dataset's JSON. The batches
    are the dataset's JSON images in sorted id order.

    ``get()`` returns GluonCV's ``(names, values)``: ``'~~~~ Summary metrics ~~~~\\n'`` with pycocotools' 12-line
    summary, then each of ``dataset.classes`` with its AP@[.5:.95] x 100 as ``'{:.1f}'`` ('nan' for a class
    without ground truth), then ``'~~~~ MeanAP @ IoU=[0.50,0.95] ~~~~\\n'`` with the mAP x 100. The numbers
    behind the strings are floats in ``self.stats`` (``'AP'``, ``'AP50'``, ... and ``'per_class'``).

    Differences from GluonCV: boxes and scores are compared in float64 as GluonCV does, but the whole batch at
    once; an image count beyond the JSON's raises (GluonCV: IndexError); with no detection at all the numbers
    are pycocotools' on an empty result list (0 for every class with ground truth, as GluonCV's dummy entry
    gives); ground truth with annotation id 0 is renumbered (:mod:`gluon_ssd.eval.coco`).
    """

    def __init__(self, dataset, save_prefix, use_time=True, cleanup=False, score_thresh=0.05, data_shape=None,
                 post_affine=None):
        missing = [a for a in ("coco", "classes", "contiguous_id_to_json") if not hasattr(dataset, a)]
        if missing:
            raise TypeError(f"dataset must be a COCO detection dataset with coco, classes and contiguous_id_to_json "
                            f"(gluon_ssd.data.COCODetection); {type(dataset).__name__} lacks {', '.join(missing)}")
        shape = _data_shape(data_shape)
        if post_affine is not None and shape is None:
            raise ValueError("post_affine maps boxes from the network input to each image: give data_shape "
                             "(height, width) of that input too")
        stamp = datetime.datetime.now().strftime("_%Y_%m_%d_%H_%M_%S") if use_time else ""
        self._filename = os.path.abspath(os.path.expanduser(str(save_prefix)) + stamp + ".json")
        try:
            with open(self._filename, "w"):
                pass
        except OSError as err:
            raise RuntimeError(f"cannot create the COCO results file {self._filename} ({err.strerror or err}): pass "
                               "a save_prefix in a writable folder") from None
        self.dataset = dataset
        self._post_affine = post_affine
        self._affine_shape = shape
        super().__init__(dataset.coco, classes=dict(dataset.contiguous_id_to_json),
                         data_shape=None if post_affine is not None else shape, score_thresh=score_thresh,
                         save_prefix=None, cleanup=cleanup)

    def _results_file(self):
        return self._filename

    def update(self, pred_bboxes, pred_labels, pred_scores, *args, **kwargs):
        """Add one batch of predictions (see the class Notes); ``*args`` (the ground truth) are ignored."""
        flags = _single_flags(pred_bboxes, 2)
        boxes = _as_batch(pred_bboxes, 2, flags, name="pred_bboxes")[..., :4].astype(np.float64)
        batch = boxes.shape[0]
        labels = _flat_rows(_as_batch(pred_labels, 1, flags, -1, "pred_labels"), batch, "pred_labels")
        # float64 before the threshold, as GluonCV compares (a float32 score equal to float32(thresh) < thresh
        # is dropped there).
        scores = _flat_rows(_as_batch(pred_scores, 1, flags, 0, "pred_scores"), batch, "pred_scores")
        scores = scores.astype(np.float64)
        if self._post_affine is not None:
            boxes = self._affine(boxes)
        super().update(boxes, labels, scores)

    def _affine(self, boxes):
        """Both corners of each image's boxes through ``post_affine``'s matrix for that image."""
        ids = self._sorted_image_ids[self._next_image:self._next_image + boxes.shape[0]]
        height, width = self._affine_shape
        out = boxes.copy()
        for b, image_id in enumerate(ids):
            entry = self._images[image_id]
            mat = np.asarray(self._post_affine(entry["width"], entry["height"], width, height), dtype=np.float64)
            if mat.shape != (2, 3):
                raise ValueError(f"post_affine must return a (2, 3) affine matrix, got shape {mat.shape}")
            for k in (0, 2):
                x, y = boxes[b, :, k], boxes[b, :, k + 1]
                out[b, :, k] = mat[0, 0] * x + mat[0, 1] * y + mat[0, 2]
                out[b, :, k + 1] = mat[1, 0] * x + mat[1, 1] * y + mat[1, 2]
        return out

    def get(self):
        """GluonCV's ``(names, values)`` (class Notes): the summary text, per-class AP and the mAP, x 100 as text."""
        super().get()
        summary = "\n".join(line for line in self.summary.splitlines() if line.lstrip().startswith("Average"))
        per_class = list(self.stats["per_class"].values())
        names, values = [_SUMMARY_NAME], [summary.strip()]
        for index, name in enumerate(self.dataset.classes):
            names.append(name)
            values.append(f"{100 * (per_class[index] if index < len(per_class) else float('nan')):.1f}")
        mean_ap = self.stats["AP"] if self.stats["AP"] > -1 else float("nan")  # -1: no ground truth at all
        names.append("~~~~ MeanAP @ IoU=[{:.2f},{:.2f}] ~~~~\n".format(*_IOU_RANGE))
        values.append(f"{100 * mean_ap:.1f}")
        return names, values
