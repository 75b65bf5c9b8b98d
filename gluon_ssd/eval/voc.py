"""Pascal VOC detection metrics: VOC07 11-point and all-point (area under the envelope) mAP.

Conventions (GluonCV 0.10.5 ``VOCMApMetric`` / ``VOC07MApMetric``, the VOC devkit):

- IoU uses the +1 pixel convention: boxes are integer pixel corners, so ``x2 + 1`` is used as the right
  edge, for predictions and ground truth alike.
- Within an image and class, detections are visited by descending score; each one is matched to the
  ground truth with the highest IoU (the first one on equal IoU). If that IoU reaches ``iou_thresh`` the
  detection is a true positive, unless an earlier detection already took that ground truth (then it is a
  false positive). A detection whose best match is a *difficult* ground truth is ignored (neither TP nor
  FP), and difficult ground truths do not count in the number of positives.
- Rows whose label is negative (the ``-1`` padding of batched outputs) are dropped.
- mAP is the mean over the classes that have at least one non-difficult ground truth; a class without
  one has AP ``nan``.

Everything is vectorized per ``update`` call: a ``(B, N, M)`` same-class mask for the whole batch, IoU
computed for the same-class pairs only, first-come matching through ``np.unique``; no Python loop per
detection, image or class (``tie_order='gluoncv'`` alone loops over the rare image/class groups of more
than 16 detections that contain tied scores). ``get`` loops over classes only.
"""
from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from .._mxnet import EvalMetric, is_ndarray
from ..boxes import iou_voc, iou_voc_aligned
from .argsort import NUMPY_INSERTION_SORT_MAX, numpy123_argsort

__all__ = ["VOCMApMetric", "VOC07MApMetric", "PRCurve", "voc_iou"]

logger = logging.getLogger(__name__)

_TIE_ORDERS = ("stable", "gluoncv")
# The public name of the metric's IoU (:func:`gluon_ssd.boxes.iou_voc`, VOC's +1 pixel convention).
voc_iou = iou_voc


class PRCurve(NamedTuple):
    """Precision/recall curve of one class, detections ranked by descending score.

    Attributes
    ----------
    precision : np.ndarray, (K,) float64
        TP / (TP + FP) after each of the K ranked detections (detections matched to a difficult ground
        truth are left out).
    recall : np.ndarray, (K,) float64
        TP / n_pos after each detection; all ``nan`` when the class has no non-difficult ground truth.
    scores : np.ndarray, (K,)
        The score of each ranked detection.
    n_pos : int
        Number of non-difficult ground-truth boxes of the class.
    """

    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    n_pos: int


def _to_numpy(x):
    if is_ndarray(x):
        return x.asnumpy()
    return np.asarray(x)


def _as_batch(value, image_ndim, single_image_flags=None, pad_value=0, name="input"):
    """Turn a batch array or a list of arrays into one padded batch array.

    Parameters
    ----------
    value : NDArray, np.ndarray, or list/tuple of them
        An array ``(B, N, ...)`` or a list of per-device batches ``(b_i, N_i, ...)`` and/or per-image
        arrays ``(N_i, ...)``.
    image_ndim : int
        Number of dimensions of one image's array (2 for boxes ``(N, 4)``, 1 for labels ``(N,)``).
    single_image_flags : list of bool, optional
        For a list ``value``: whether each element is one image. Taken from the matching box list so that
        an ``(N, 1)`` label array of one image is not read as a batch of N images.
    pad_value : float
        Fill value when elements of a list have different N.
    name : str
        Argument name, for error messages.

    Returns
    -------
    np.ndarray, (B, Nmax, ...)
    """
    if not isinstance(value, (list, tuple)):
        arr = _to_numpy(value)
        if arr.ndim <= image_ndim:
            raise ValueError(f"{name} must be batched, at least {image_ndim + 1} dimensions (batch first), "
                             f"got shape {arr.shape}; wrap a single image's array in a list")
        return arr
    if single_image_flags is not None and len(single_image_flags) != len(value):
        single_image_flags = None
    parts = []
    for i, element in enumerate(value):
        arr = _to_numpy(element)
        single = arr.ndim <= image_ndim if single_image_flags is None else single_image_flags[i]
        parts.append(arr[None] if single else arr)
    if not parts:
        raise ValueError(f"{name} is an empty list: pass at least one batch or image")
    if len({p.shape[1:] for p in parts}) == 1:
        return np.concatenate(parts, axis=0)
    # Ragged number of boxes (e.g. per-device outputs of different top-k): pad to the longest.
    if len({p.ndim for p in parts}) != 1 or len({p.shape[2:] for p in parts}) != 1:
        raise ValueError(f"{name}: list elements have incompatible shapes {[p.shape for p in parts]}")
    longest = max(p.shape[1] for p in parts)
    padded = []
    for p in parts:
        widths = [(0, 0), (0, longest - p.shape[1])] + [(0, 0)] * (p.ndim - 2)
        padded.append(np.pad(p, widths, constant_values=pad_value))
    return np.concatenate(padded, axis=0)


def _single_flags(value, image_ndim):
    if not isinstance(value, (list, tuple)):
        return None
    return [_to_numpy(v).ndim <= image_ndim for v in value]


def _flat_rows(arr, batch, name):
    """(B, N) or (B, N, 1) -> (B, N)."""
    if arr.shape[0] != batch:
        raise ValueError(f"{name} has batch size {arr.shape[0]} but the boxes have {batch}")
    return arr.reshape(batch, -1)


def _average_precision_11(recall, precision, thresholds):
    if recall is None:
        return float("nan")
    if recall.size == 0:
        return 0.0
    envelope = np.maximum.accumulate(np.nan_to_num(precision)[::-1])[::-1]
    first = np.searchsorted(recall, thresholds, side="left")  # first index with recall >= t
    reached = first < recall.size
    best = np.where(reached, envelope[np.minimum(first, recall.size - 1)], 0.0)
    # Accumulated in threshold order, as GluonCV does, so sums agree to the last bit.
    return float(np.add.accumulate(best / 11.0)[-1])


def _average_precision_area(recall, precision):
    if recall is None:
        return float("nan")
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], np.nan_to_num(precision), [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


class VOCMApMetric(EvalMetric):
    """Mean average precision, area under the monotone precision envelope (VOC2010+ "all-point").

    Parameters
    ----------
    iou_thresh : float
        Minimum IoU (+1 pixel convention) for a detection to match a ground truth.
    class_names : list of str, optional
        When given, ``get`` returns the AP of each class and then ``'mAP'``; otherwise it returns
        ``('VOCMeanAP', mAP)`` like GluonCV.
    tie_order : {'stable', 'gluoncv'}
        How detections of equal score are ranked. ``'stable'`` (default): the detection seen first (earlier
        update, earlier image, earlier row) ranks first, which the VOC devkit and the published fixtures
        assume. ``'gluoncv'``: reproduce GluonCV exactly, which ranks with numpy's
        ``argsort()[::-1]``: within one image and class, ties in reverse input order (for up to 16
        detections; beyond that numpy's introsort decides), and across images whatever numpy's introsort
        gives, numpy 1.23's (GluonCV's numpy) on any installed numpy (:func:`numpy123_argsort`). The two differ
        only when a tie mixes true and false positives.

    Notes
    -----
    Inputs to ``update`` follow GluonCV: NDArray or numpy, batched ``(B, N, 4)`` / ``(B, N)`` or
    ``(B, N, 1)``, or lists of such batches (per device), or lists of per-image arrays ``(N, 4)`` /
    ``(N,)``. Negative labels mark padding. Scores are ranked as given (no thresholding).
    """

    def __init__(self, iou_thresh=0.5, class_names=None, tie_order="stable"):
        if not np.isscalar(iou_thresh) or not 0.0 <= float(iou_thresh) <= 1.0:
            raise ValueError(f"iou_thresh must be a number in [0, 1], got {iou_thresh!r}")
        if tie_order not in _TIE_ORDERS:
            raise ValueError(f"tie_order must be one of {_TIE_ORDERS}, got {tie_order!r}")
        if class_names is not None:
            if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names):
                raise TypeError("class_names must be a list or tuple of str, got "
                                f"{class_names!r}")
            class_names = list(class_names)
        self.iou_thresh = float(iou_thresh)
        self.class_names = class_names
        self.tie_order = tie_order
        super().__init__("VOCMeanAP")
        self._ap_cache = None

    # ------------------------------------------------------------------ state
    def reset(self):
        """Forget every update."""
        self._labels = []
        self._scores = []
        self._matches = []
        self._n_pos = np.zeros(0, dtype=np.int64)
        self._ap_cache = None
        self.num_inst = 0
        self.sum_metric = 0.0

    # ----------------------------------------------------------------- update
    def update(self, pred_bboxes, pred_labels, pred_scores, gt_bboxes, gt_labels, gt_difficults=None):
        """Add one batch of predictions and ground truth.

        Parameters
        ----------
        pred_bboxes : NDArray or np.ndarray, (B, N, 4), or list of them
            Predicted corner boxes ``x1, y1, x2, y2``, pixels.
        pred_labels : (B, N) or (B, N, 1)
            Predicted class ids; negative rows are padding.
        pred_scores : (B, N) or (B, N, 1)
            Confidence of each prediction.
        gt_bboxes : (B, M, 4)
            Ground-truth corner boxes, pixels.
        gt_labels : (B, M) or (B, M, 1)
            Ground-truth class ids; negative rows are padding.
        gt_difficults : (B, M) or (B, M, 1), optional
            Non-zero marks a difficult ground truth. ``None``: none is difficult.
        """
        pred_flags = _single_flags(pred_bboxes, 2)
        gt_flags = _single_flags(gt_bboxes, 2)
        p_boxes = _as_batch(pred_bboxes, 2, pred_flags, name="pred_bboxes")
        batch = p_boxes.shape[0]
        p_labels = _flat_rows(_as_batch(pred_labels, 1, pred_flags, -1, "pred_labels"), batch, "pred_labels")
        p_scores = _flat_rows(_as_batch(pred_scores, 1, pred_flags, 0, "pred_scores"), batch, "pred_scores")
        if p_scores.dtype.kind != "f":
            p_scores = p_scores.astype(np.float64)  # negating unsigned or bool scores would wrap
        g_boxes = _as_batch(gt_bboxes, 2, gt_flags, name="gt_bboxes")
        if g_boxes.shape[0] != batch:
            raise ValueError(f"gt_bboxes has batch size {g_boxes.shape[0]} but pred_bboxes has {batch}")
        g_labels = _flat_rows(_as_batch(gt_labels, 1, gt_flags, -1, "gt_labels"), batch, "gt_labels")
        if gt_difficults is None or (isinstance(gt_difficults, (list, tuple))
                                     and any(d is None for d in gt_difficults)):
            g_diff = np.zeros(g_labels.shape, dtype=bool)
        else:
            g_diff = _flat_rows(_as_batch(gt_difficults, 1, gt_flags, 0, "gt_difficults"), batch,
                                "gt_difficults")
            if g_diff.shape != g_labels.shape:
                raise ValueError(f"gt_difficults has shape {g_diff.shape}, gt_labels {g_labels.shape}: "
                                 "give one flag per ground-truth row")
            g_diff = g_diff != 0
        if p_labels.shape[1] != p_boxes.shape[1] or p_scores.shape[1] != p_boxes.shape[1]:
            raise ValueError(f"pred_bboxes {p_boxes.shape}, pred_labels {p_labels.shape} and pred_scores "
                             f"{p_scores.shape} must have the same number of rows per image")
        if g_labels.shape[1] != g_boxes.shape[1]:
            raise ValueError(f"gt_bboxes {g_boxes.shape} and gt_labels {g_labels.shape} must have the same "
                             "number of rows per image")
        self._ap_cache = None
        self._add_batch(p_boxes, p_labels, p_scores, g_boxes, g_labels, g_diff)

    def _add_batch(self, p_boxes, p_labels, p_scores, g_boxes, g_labels, g_diff):
        batch, n_pred = p_labels.shape
        n_gt = g_labels.shape[1]
        p_valid = p_labels >= 0
        g_valid = g_labels >= 0
        p_cls = np.where(p_valid, p_labels, -1).astype(np.int64)
        g_cls = np.where(g_valid, g_labels, -1).astype(np.int64)

        counted = g_valid & ~g_diff
        if counted.any():
            counts = np.bincount(g_cls[counted])
            if counts.size > self._n_pos.size:
                self._n_pos = np.pad(self._n_pos, (0, counts.size - self._n_pos.size))
            self._n_pos[: counts.size] += counts
        if not p_valid.any():
            return
        if p_cls.max() >= self._n_pos.size:
            self._n_pos = np.pad(self._n_pos, (0, int(p_cls.max()) + 1 - self._n_pos.size))

        order = self._rank_within_images(p_cls, p_scores, p_valid)
        p_boxes = np.take_along_axis(p_boxes[..., :4], order[..., None], axis=1)
        p_cls = np.take_along_axis(p_cls, order, axis=1)
        p_scores = np.take_along_axis(p_scores, order, axis=1)
        p_valid = np.take_along_axis(p_valid, order, axis=1)

        match = np.zeros((batch, n_pred), dtype=np.int8)
        if n_gt:
            same_class = (p_cls[:, :, None] == g_cls[:, None, :]) & g_valid[:, None, :] & p_valid[:, :, None]
            # IoU only for same-class pairs; the others stay -inf and never win the argmax.
            b_idx, p_idx, g_idx = np.nonzero(same_class)
            pair_iou = iou_voc_aligned(p_boxes[b_idx, p_idx], g_boxes[b_idx, g_idx, :4])
            iou = np.full(same_class.shape, -np.inf, dtype=pair_iou.dtype)
            iou[b_idx, p_idx, g_idx] = pair_iou
            best_gt = iou.argmax(axis=2)
            best_iou = np.take_along_axis(iou, best_gt[..., None], axis=2)[..., 0]
            hit = ~(best_iou < self.iou_thresh) & same_class.any(axis=2)
            hit_difficult = hit & np.take_along_axis(g_diff, best_gt, axis=1)
            # The first detection (in score order) to reach a ground truth takes it; later ones are FPs.
            key = np.where(hit, np.arange(batch)[:, None] * n_gt + best_gt, -1).ravel()
            hit_flat = np.flatnonzero(key >= 0)
            _, first = np.unique(key[hit_flat], return_index=True)
            taken = np.zeros(batch * n_pred, dtype=bool)
            taken[hit_flat[first]] = True
            match = np.where(taken.reshape(batch, n_pred), 1, 0).astype(np.int8)
            match[hit_difficult] = -1

        keep = p_valid.ravel()
        self._labels.append(p_cls.ravel()[keep])
        self._scores.append(p_scores.ravel()[keep])
        self._matches.append(match.ravel()[keep])

    def _rank_within_images(self, p_cls, p_scores, p_valid):
        """Order of each image's detections, best first: (B, N) indices into the rows."""
        if self.tie_order == "stable":
            return np.argsort(np.where(p_valid, -p_scores, np.inf), axis=1, kind="stable")
        position = np.broadcast_to(np.arange(p_cls.shape[1]), p_cls.shape)
        order = np.lexsort((-position, -p_scores, ~p_valid), axis=1)
        self._numpy_order_for_long_ties(order, p_cls, p_scores, p_valid)
        return order

    @staticmethod
    def _numpy_order_for_long_ties(order, p_cls, p_scores, p_valid):
        """Reproduce numpy's introsort tie order for image/class groups too long for insertion sort.

        Only groups with more than 16 detections *and* a tie inside are affected, so the Python loop runs
        over those rare groups alone.
        """
        batch, n_pred = p_cls.shape
        key = np.where(p_valid, np.arange(batch)[:, None] * (p_cls.max() + 1) + p_cls, -1).ravel()
        groups, sizes = np.unique(key[key >= 0], return_counts=True)
        long_groups = groups[sizes > NUMPY_INSERTION_SORT_MAX]
        for group in long_groups:
            image = int(group // (p_cls.max() + 1))
            members = np.flatnonzero(key[image * n_pred:(image + 1) * n_pred] == group)
            scores = p_scores[image, members]
            if np.unique(scores).size == scores.size:
                continue
            slots = np.flatnonzero(np.isin(order[image], members))
            order[image, slots] = members[numpy123_argsort(scores)[::-1]]

    # -------------------------------------------------------------------- get
    def _class_records(self):
        """Per class: (labels, scores, matches) concatenated in storage order, grouped by class."""
        if not self._labels:
            return None
        labels = np.concatenate(self._labels)
        scores = np.concatenate(self._scores)
        matches = np.concatenate(self._matches)
        by_class = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[by_class], np.arange(self._n_pos.size + 1))
        return by_class, bounds, scores, matches

    def _ranked(self, records, cls):
        by_class, bounds, scores, matches = records
        rows = by_class[bounds[cls]:bounds[cls + 1]]
        s = scores[rows]
        if self.tie_order == "stable":
            rank = np.argsort(-s, kind="stable")
        else:
            rank = numpy123_argsort(s)[::-1]
        return s[rank], matches[rows][rank]

    def _curves(self, keep_ignored):
        """(recall or None, precision, scores) per class id 0..C-1."""
        records = self._class_records()
        curves = []
        for cls in range(self._n_pos.size):
            if records is None:
                s = np.zeros(0, dtype=np.float32)
                m = np.zeros(0, dtype=np.int8)
            else:
                s, m = self._ranked(records, cls)
            if not keep_ignored:
                s, m = s[m >= 0], m[m >= 0]
            tp = np.cumsum(m == 1)
            fp = np.cumsum(m == 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                precision = tp / (tp + fp)
            n_pos = int(self._n_pos[cls])
            recall = tp / n_pos if n_pos > 0 else None
            curves.append((recall, precision, s, n_pos))
        return curves

    def _average_precision(self, recall, precision):
        return _average_precision_area(recall, precision)

    def _class_aps(self):
        if self._ap_cache is None:
            curves = self._curves(keep_ignored=True)
            self._ap_cache = np.array([self._average_precision(r, p) for r, p, _, _ in curves],
                                      dtype=np.float64)
        return self._ap_cache

    def get(self):
        """Current result.

        Returns
        -------
        names : list of str, or str
            With ``class_names``: the class names then ``'mAP'``. Without: ``'VOCMeanAP'``.
        values : list of float, or float
            AP of each class (``nan`` for a class without non-difficult ground truth) then the mAP, the
            mean over classes with ground truth (``nan`` before any ground truth was seen). Without
            ``class_names``: the mAP alone.
        """
        aps = self._class_aps()
        valid = ~np.isnan(aps)
        mean_ap = float(aps[valid].mean()) if valid.any() else float("nan")
        if self.class_names is not None and aps.size > len(self.class_names):
            logger.warning("labels up to %d were seen but only %d class_names were given; the extra "
                           "classes count in the mAP", aps.size - 1, len(self.class_names))
        if self.class_names is None:
            self.num_inst, self.sum_metric = 1, mean_ap
            return self.name, mean_ap
        per_class = [float(aps[i]) if i < aps.size else float("nan") for i in range(len(self.class_names))]
        self.num_inst = [1] * (len(per_class) + 1)
        self.sum_metric = per_class + [mean_ap]
        return self.class_names + ["mAP"], per_class + [mean_ap]

    def get_pr_curves(self):
        """Precision/recall curve of every class seen so far.

        Returns
        -------
        dict of str -> PRCurve
            Keyed by class name (``str(class_id)`` past the end of ``class_names`` or without them), in
            class-id order. Detections matched to difficult ground truth are left out.
        """
        out = {}
        for cls, (recall, precision, scores, n_pos) in enumerate(self._curves(keep_ignored=False)):
            if recall is None:
                recall = np.full(precision.shape, np.nan)
            names = self.class_names or []
            out[names[cls] if cls < len(names) else str(cls)] = PRCurve(precision, recall, scores, n_pos)
        return out


class VOC07MApMetric(VOCMApMetric):
    """Mean average precision with the VOC2007 11-point interpolation.

    AP is the mean over t = 0, 0.1, ..., 1 of the best precision among ranks whose recall is ``>= t``.

    Parameters
    ----------
    iou_thresh : float
        Minimum IoU (+1 pixel convention) for a match.
    class_names : list of str, optional
        See :class:`VOCMApMetric`.
    exact_thresholds : bool
        ``False`` (default, as GluonCV, amdegroot/ssd.pytorch and lufficc/SSD): the thresholds are
        ``np.arange(0., 1.1, 0.1)``, whose 4th, 7th and 8th elements are 0.30000000000000004,
        0.6000000000000001 and 0.7000000000000001; a class whose recall reaches exactly 0.3 (e.g. 3 of
        10 ground truths) then does not count as having reached 0.3. ``True``: exactly ``j / 10``, so
        such a recall does count (as Caffe SSD, which compares in float32). The AP differs only when a
        class's recall lands exactly on 0.3, 0.6 or 0.7.
    tie_order : {'stable', 'gluoncv'}
        See :class:`VOCMApMetric`.
    """

    def __init__(self, iou_thresh=0.5, class_names=None, exact_thresholds=False, tie_order="stable"):
        self.exact_thresholds = bool(exact_thresholds)
        self._thresholds = np.arange(11) / 10.0 if exact_thresholds else np.arange(0.0, 1.1, 0.1)
        super().__init__(iou_thresh=iou_thresh, class_names=class_names, tie_order=tie_order)

    def _average_precision(self, recall, precision):
        return _average_precision_11(recall, precision, self._thresholds)
