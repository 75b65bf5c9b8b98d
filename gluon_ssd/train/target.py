"""SSD training targets: match anchors to ground truth, then encode classes and box offsets.

The matching reproduces GluonCV's SSD recipe (``CompositeMatcher([BipartiteMatcher(share_max=False),
MaximumMatcher(iou_thresh)])``), followed by GluonCV's samplers: every unmatched anchor a negative
(``negative_mining_ratio <= 0``: :func:`batch_targets`, what the trainers use, whose loss mines the hard
negatives), or hard negatives mined from the class predictions (:func:`mine_hard_negatives`, the default of
:class:`SSDTargetGenerator`, as GluonCV's):

1. Greedy bipartite matching: repeatedly take the (anchor, ground truth) pair with the highest IoU
   among the anchors and ground truths not matched yet, until that IoU is not above 1e-12. Equal IoUs
   are taken in (anchor, ground truth) index order, the order of the stable sort inside MXNet's
   ``contrib.bipartite_matching`` operator that GluonCV calls.
2. An anchor left unmatched by step 1 whose IoU with its best ground truth reaches that ground
   truth's best IoU over all anchors (within 1e-12) is matched to it as well: anchors tied with a
   ground truth's best anchor are not made negatives.
3. Any other anchor whose best IoU is at least ``iou_thresh`` is matched to that ground truth.

Everything runs as batched ``mx.nd`` operators on the device of the inputs, with a short loop over
matching rounds for step 1. Two facts keep step 1 small:

- A ground truth is matched after at most ``K - 1`` others (``K`` valid ground truths in its image),
  so it ends up with one of its ``K`` best anchors (ties at the ``K``-th value included). Only these
  candidate anchors enter the rounds.
- The sequential algorithm takes a free pair as soon as it is the best of its anchor's row and of its
  ground truth's column: nothing ranked before it can claim either side. Each round takes all such
  pairs at once (the overall best free pair is always one), so a handful of rounds gives exactly the
  sequential result.

One deliberate difference from GluonCV: a ground truth whose best IoU with every anchor is zero
(padding rows of -1, or a box of zero area) is never matched. GluonCV matches such rows through step
2 and then writes ``-inf`` box targets with a mask of 1 (an image without objects gets them for
every anchor), which turn the loss into NaN. Here those anchors are unmatched (negatives, or ignored when
hard negatives are mined and they are not) with zero box targets and zero masks; without mining their class
targets (0) are the same as GluonCV's for -1 padding.
"""
from __future__ import annotations

import logging

from mxnet import gluon, nd

from ..specs import BOX_STDS

__all__ = [
    "SSDTargetGenerator",
    "batch_targets",
    "center_to_corner",
    "match_anchors",
    "mine_hard_negatives",
]

logger = logging.getLogger(__name__)

# Pairs whose IoU is not above this are never matched by the bipartite step (GluonCV's default).
_MATCH_EPS = 1e-12


def center_to_corner(boxes):
    """(cx, cy, w, h) -> (x1, y1, x2, y2), with GluonCV's float32 arithmetic (``x - w * 0.5``).

    Parameters
    ----------
    boxes : NDArray, (..., 4) center format.

    Returns
    -------
    NDArray, (..., 4) corner format.
    """
    cx, cy, w, h = nd.split(boxes, num_outputs=4, axis=-1)
    half_w = w * 0.5
    half_h = h * 0.5
    return nd.concat(cx - half_w, cy - half_h, cx + half_w, cy + half_h, dim=-1)


def _center_planes(corners):
    """Corner boxes (..., 4) -> four arrays (...) cx, cy, w, h (``x1 + w * 0.5``, ``w = x2 - x1``)."""
    x1, y1, x2, y2 = nd.split(corners, num_outputs=4, axis=-1, squeeze_axis=True)
    w = x2 - x1
    h = y2 - y1
    return x1 + w * 0.5, y1 + h * 0.5, w, h


def _take(values, index):
    """``values[b, index[b, j]]`` for (B, M) values and (B, J) indices -> (B, J)."""
    return _take_planes(values.expand_dims(0), index)[0]


def _take_planes(planes, index):
    """``planes[p, b, index[b, j]]`` for (P, B, M) planes and (B, J) indices -> (P, B, J)."""
    _, batch, width = planes.shape
    offsets = nd.arange(0, batch * width, width, ctx=planes.context).reshape((batch, 1))
    return nd.take(planes.reshape((0, -1)), nd.broadcast_add(index, offsets), axis=1)


def _candidate_anchors(ious, top_values, top_index, num_valid):
    """Anchors that greedy bipartite matching can pick, in ascending index order.

    Parameters
    ----------
    ious : NDArray, (B, M, N) IoU of each ground truth with each anchor.
    top_values, top_index : NDArray, (B, M, k) the k best IoUs of each ground truth and their anchors,
        descending, with ``k > max(num_valid)`` unless k = N.
    num_valid : NDArray, (B,) number of ground truths of each image that can be matched.

    Returns
    -------
    rows : NDArray, (B, R) anchor indices; the candidates of each image come first, by ascending
        index, followed by other anchors up to R.
    is_candidate : NDArray, (B, R) 1 for the candidates, 0 for the filler.
    """
    batch, num_gt, num_anchors = ious.shape
    ctx = ious.context
    limit = nd.broadcast_to(num_valid.reshape((batch, 1)), (batch, num_gt))  # K of each image
    kth = nd.pick(top_values, limit - 1, axis=2)  # (B, M)
    # Anchors tied with the K-th value are candidates too: widen the window until it shows a smaller
    # value after the ties (or covers every anchor).
    while top_values.shape[2] < num_anchors:
        more = nd.pick(top_values, nd.minimum(limit, top_values.shape[2] - 1), axis=2)
        ties = (kth > _MATCH_EPS) * (more >= kth)
        if ties.sum().asscalar() == 0:
            break
        k = min(2 * top_values.shape[2], num_anchors)
        top_values, top_index = nd.topk(ious, axis=2, k=k, ret_typ="both")
        at_least_kth = nd.sum(nd.broadcast_greater_equal(top_values, kth.expand_dims(2)), axis=2)
        limit = nd.where(ties, at_least_kth, limit)
    position = nd.arange(top_values.shape[2], ctx=ctx).reshape((1, 1, -1))
    keep = nd.broadcast_lesser(position, limit.expand_dims(2)) * (top_values > _MATCH_EPS)
    # Kept (image, anchor) pairs write 1 (repeats too); the others write into a scratch column N.
    target = nd.where(keep > 0, top_index, nd.ones_like(top_index) * num_anchors)
    batch_index = nd.broadcast_like(nd.arange(batch, ctx=ctx).reshape((batch, 1, 1)), target)
    marks = nd.scatter_nd(nd.ones((target.size,), ctx=ctx),
                          nd.stack(batch_index, target, axis=0).reshape((2, -1)),
                          shape=(batch, num_anchors + 1))
    marks = nd.slice_axis(marks, axis=1, begin=0, end=num_anchors)
    num_rows = max(int(nd.sum(marks, axis=1).max().asscalar()), 1)
    # Keys N - index are distinct and positive for candidates, so topk lists them by ascending index.
    key = marks * (num_anchors - nd.arange(num_anchors, ctx=ctx).reshape((1, num_anchors)))
    rows = nd.topk(key, axis=1, k=num_rows, ret_typ="indices")
    return rows, _take(marks, rows)


def _greedy_bipartite(ious, top_values, top_index, num_valid, max_valid):
    """Greedy one-to-one matching of anchors to ground truths, best IoU first.

    Parameters
    ----------
    ious : NDArray, (B, M, N) IoU of each ground truth with each anchor.
    top_values, top_index : NDArray, (B, M, k) as for :func:`_candidate_anchors`.
    num_valid : NDArray, (B,) number of ground truths of each image with a positive IoU somewhere.
    max_valid : int, the largest of ``num_valid``.

    Returns
    -------
    NDArray, (B, N) float32: the ground truth index matched to each anchor, -1 where none.
    """
    batch, num_gt, num_anchors = ious.shape
    ctx = ious.context
    if max_valid == 0:
        return nd.ones((batch, num_anchors), ctx=ctx) * -1

    rows, is_candidate = _candidate_anchors(ious, top_values, top_index, num_valid)
    num_rows = rows.shape[1]
    shape = (batch, num_gt, num_rows)
    batch_index = nd.arange(batch, ctx=ctx).reshape((batch, 1))
    gt_index = nd.broadcast_to(nd.arange(num_gt, ctx=ctx).reshape((1, num_gt)), (batch, num_gt))
    # scores[b, m, r] = ious[b, m, rows[b, r]], read from the flat IoU array (int32: flat positions
    # pass 2**24, beyond which float32 indices are not exact).
    plane_start = nd.arange(0, batch * num_gt * num_anchors, num_anchors, ctx=ctx, dtype="int32")
    flat = nd.broadcast_add(plane_start.reshape((batch, num_gt, 1)), rows.astype("int32").expand_dims(1))
    scores = nd.take(ious.reshape((-1,)), flat)
    # Filler rows never match; taken rows and columns are set to -1 as the rounds go.
    minus_ones = nd.ones(shape, ctx=ctx) * -1
    scores = nd.where(nd.broadcast_like(is_candidate.expand_dims(1), scores) > 0, scores, minus_ones)
    batch_gt = nd.broadcast_to(batch_index, (batch, num_gt))
    scratch = nd.ones((batch, num_gt), ctx=ctx) * num_rows  # where columns that take nothing write
    row_match = nd.zeros((batch, num_rows + 1), ctx=ctx)  # ground truth + 1, 0 for none
    for _ in range(max_valid):
        # argmax returns the first maximum: the smallest anchor for a ground truth and the smallest
        # ground truth for an anchor, which is the sequential order among equal IoUs.
        col_row = nd.argmax(scores, axis=2)  # (B, M) best free anchor of each ground truth
        col_best = nd.pick(scores, col_row, axis=2)
        row_col = nd.argmax(scores, axis=1)  # (B, R) best free ground truth of each anchor
        mutual = (_take(row_col, col_row) == gt_index) * (col_best > _MATCH_EPS)  # (B, M)
        if mutual.sum().asscalar() == 0:
            break
        where_to = nd.stack(batch_gt, nd.where(mutual > 0, col_row, scratch), axis=0).reshape((2, -1))
        row_match = row_match + nd.scatter_nd(((gt_index + 1) * mutual).reshape((-1,)), where_to,
                                              shape=(batch, num_rows + 1))
        row_taken = nd.scatter_nd(mutual.reshape((-1,)), where_to, shape=(batch, num_rows + 1))
        row_taken = nd.slice_axis(row_taken, axis=1, begin=0, end=num_rows)
        gone = nd.broadcast_maximum(row_taken.expand_dims(1), mutual.expand_dims(2))  # (B, M, R)
        scores = nd.where(gone > 0, minus_ones, scores)
    row_match = nd.slice_axis(row_match, axis=1, begin=0, end=num_rows)

    # Back to all anchors: scatter (match + 1) so that the other anchors read 0, i.e. -1.
    batch_rows = nd.broadcast_like(batch_index, rows)
    shifted = nd.scatter_nd(row_match.reshape((-1,)), nd.stack(batch_rows, rows, axis=0).reshape((2, -1)),
                            shape=(batch, num_anchors))
    return shifted - 1


def match_anchors(ious, iou_thresh=0.5):
    """Match anchors to ground truths the way GluonCV's SSD target generator does.

    Parameters
    ----------
    ious : NDArray, (B, M, N) float32 IoU of each of the M ground truths with each of the N anchors.
    iou_thresh : float, IoU at or above which an anchor is matched to its best ground truth.

    Returns
    -------
    NDArray, (B, N) float32: index of the matched ground truth, -1 for negatives.
    """
    batch, num_gt, num_anchors = ious.shape
    # argmax takes the first of equal maxima, like the argmax GluonCV applies to the same values.
    best_gt = nd.argmax(ious, axis=1)  # (B, N)
    best_iou = nd.pick(ious, best_gt, axis=1)
    # topk is much faster than a max reduction here; k > M leaves room to see ties at the K-th value.
    top_values, top_index = nd.topk(ious, axis=2, k=min(num_gt + 1, num_anchors), ret_typ="both")
    gt_best_iou = nd.slice_axis(top_values, axis=2, begin=0, end=1).reshape((batch, num_gt))
    valid_gt = gt_best_iou > _MATCH_EPS
    num_valid = nd.sum(valid_gt, axis=1)
    max_valid = int(num_valid.max().asscalar())

    bipartite = _greedy_bipartite(ious, top_values, top_index, num_valid, max_valid)
    # Anchors tied with their ground truth's best anchor (only for ground truths that can match).
    target_best, target_valid = _take_planes(nd.stack(gt_best_iou, valid_gt), best_gt)
    tied = ((best_iou + _MATCH_EPS) >= target_best) * target_valid
    by_iou = nd.where(best_iou >= iou_thresh, best_gt, nd.ones_like(best_gt) * -1)
    second = nd.where(tied > 0, best_gt, by_iou)
    return nd.where(bipartite >= 0, bipartite, second)


def _targets(anchors, gt_boxes, gt_ids, iou_thresh, stds, with_max_iou=False):
    """Shared body of :class:`SSDTargetGenerator` and :func:`batch_targets`.

    Returns (cls_targets (B, N), box_targets (B, N, 4), positive (B, N)), and with ``with_max_iou`` also
    the (B, N) largest IoU of each anchor with any ground truth (0 without ground truths).
    """
    corners = center_to_corner(anchors.reshape((-1, 4)))  # (N, 4)
    batch, num_gt = gt_boxes.shape[0], gt_boxes.shape[1]
    num_anchors = corners.shape[0]
    ctx = anchors.context
    if num_gt == 0:
        zeros = nd.zeros((batch, num_anchors), ctx=ctx)
        out = zeros, nd.zeros((batch, num_anchors, 4), ctx=ctx), zeros.copy()
        return (*out, zeros.copy()) if with_max_iou else out
    # IoU is symmetric bit for bit (the two areas are only added), so (B, M, N) needs no transpose.
    ious = nd.contrib.box_iou(gt_boxes, corners)
    matches = match_anchors(ious, iou_thresh)
    positive = matches >= 0
    index = nd.maximum(matches, 0)
    zeros = nd.zeros_like(matches)

    # The same float32 operations as GluonCV's NormalizedBoxCenterEncoder (gluon_ssd.boxes.BoxCoder.encode), one
    # coordinate at a time, as MXNet operators: the targets are computed on the training device.
    gt_planes = nd.stack(*_center_planes(gt_boxes), gt_ids.reshape((batch, num_gt)))  # (5, B, M)
    gx, gy, gw, gh, ids = _take_planes(gt_planes, index)  # each (B, N)
    ax, ay, aw, ah = [p.reshape((1, num_anchors)) for p in _center_planes(corners)]
    codes = (
        nd.broadcast_div(nd.broadcast_sub(gx, ax), aw) / stds[0],
        nd.broadcast_div(nd.broadcast_sub(gy, ay), ah) / stds[1],
        nd.log(nd.broadcast_div(gw, aw)) / stds[2],
        nd.log(nd.broadcast_div(gh, ah)) / stds[3],
    )
    cls_targets = nd.where(positive, ids + 1, zeros)
    # Stacking in front then transposing is far faster than stacking on the last axis in MXNet.
    box_targets = nd.transpose(nd.stack(*[nd.where(positive, c, zeros) for c in codes]), (1, 2, 0))
    if with_max_iou:
        return cls_targets, box_targets, positive, nd.max(ious, axis=1)
    return cls_targets, box_targets, positive


def mine_hard_negatives(positive, cls_preds, max_iou, ratio, neg_thresh=0.5, min_samples=0):
    """GluonCV's ``OHEMSampler``: the hardest negatives by background loss, ``ratio`` per positive anchor.

    Parameters
    ----------
    positive : NDArray, (B, N) 1 for anchors matched to a ground truth, else 0.
    cls_preds : NDArray, (B, N, C+1) class logits, background at 0 (the network's first training output).
    max_iou : NDArray, (B, N) each anchor's largest IoU with any ground truth.
    ratio : float > 0, negatives per positive.
    neg_thresh : float, anchors whose largest IoU reaches this are never mined (they may be unmatched
        neighbours of an object).
    min_samples : int, negatives mined per image even without positives.

    Returns
    -------
    NDArray, (B, N) float32 samples: 1 positive, -1 mined negative, 0 ignored.

    Notes
    -----
    Per image, ``min(max(min_samples, ratio * P), N - P)`` negatives (P positives; the product truncated to
    an integer) are taken in the order of ``argsort(score, descending)``, where score is the background
    cross-entropy of the unmatched anchors below ``neg_thresh`` and -1 for the others: the same float32
    operations and the same sort as GluonCV, so the same anchors are chosen. As in GluonCV, when an image has
    fewer eligible negatives than that count the cut goes on into the anchors scored -1, and a positive taken
    there becomes a negative. The cut is applied with array operations instead of GluonCV's loop over images
    on the CPU.
    """
    batch, num_anchors = positive.shape
    ctx = positive.context
    num_positive = nd.sum(positive, axis=1)
    quota = nd.minimum(nd.maximum(min_samples, ratio * num_positive), num_anchors - num_positive)
    quota = nd.floor(quota).reshape((batch, 1))  # GluonCV: numpy .astype(int32) of a non-negative value
    logits = cls_preds
    foreground = nd.slice_axis(logits, axis=2, begin=1, end=None)
    background = nd.slice_axis(logits, axis=2, begin=0, end=1).reshape((0, -1))
    maxval = foreground.max(axis=2)
    esum = nd.exp(nd.broadcast_sub(logits, maxval.reshape((0, 0, 1)))).sum(axis=2)
    score = -nd.log(nd.exp(background - maxval) / esum)
    mask = nd.ones_like(score) * -1
    score = nd.where(positive > 0, mask, score)
    score = nd.where(max_iou.astype(score.dtype) < neg_thresh, score, mask)
    order = nd.argsort(score, axis=1, is_ascend=False)  # (B, N) anchors, hardest first
    rank = nd.arange(num_anchors, ctx=ctx).reshape((1, -1))
    in_quota = nd.broadcast_lesser(rank, quota.astype(rank.dtype))
    # Scatter the per-rank flags back to the anchors they rank (inverse of the permutation).
    batch_index = nd.broadcast_like(nd.arange(batch, ctx=ctx).reshape((batch, 1)), order)
    mined = nd.scatter_nd(in_quota.reshape((-1,)), nd.stack(batch_index, order.astype(rank.dtype)).reshape((2, -1)),
                          shape=(batch, num_anchors))
    return nd.where(mined > 0, -nd.ones_like(mined), positive.astype(mined.dtype))


class SSDTargetGenerator(gluon.Block):
    """Training targets of SSD, equal to GluonCV's ``gluoncv.model_zoo.ssd.target.SSDTargetGenerator``.

    Parameters
    ----------
    iou_thresh : float
        IoU at or above which an anchor is matched to its best ground truth. Default 0.5.
    neg_thresh : float
        With ``negative_mining_ratio > 0``: anchors whose largest IoU with a ground truth reaches this are
        never mined as negatives. Default 0.5.
    negative_mining_ratio : float
        Default 3, GluonCV's: hard negatives are mined here, ``ratio`` per positive, from the class
        predictions passed to the call (:func:`mine_hard_negatives`); the anchors not chosen get the class
        target -1 (ignored). A value <= 0 makes every unmatched anchor a negative (class target 0), the
        setting of GluonCV's train_ssd.py and of gluon_ssd's trainer, whose loss
        (:class:`gluon_ssd.train.SSDMultiBoxLoss`) mines the negatives.
    stds : 4 floats
        Box offsets are divided by these. Default :data:`gluon_ssd.specs.BOX_STDS` (0.1, 0.1, 0.2, 0.2).

    Notes
    -----
    Called as ``(anchors, cls_preds, gt_boxes, gt_ids) -> (cls_targets, box_targets, box_masks)``:

    - anchors : NDArray, (1, N, 4) or (N, 4), (cx, cy, w, h) in input pixels (the network's third
      output in training mode).
    - cls_preds : NDArray, (B, N, C+1) class logits (the network's first training output); used only with
      ``negative_mining_ratio > 0`` (None is accepted otherwise).
    - gt_boxes : NDArray, (B, M, 4) corner format in input pixels; rows of -1 are padding.
    - gt_ids : NDArray, (B, M, 1) class ids (0-based, background excluded); -1 for padding.
    - cls_targets : (B, N) float32, class id + 1 for matched anchors, 0 for negatives, and with mining -1
      for the anchors neither matched nor mined.
    - box_targets : (B, N, 4) float32, encoded offsets; 0 for the other anchors.
    - box_masks : (B, N, 4) float32, 1 for matched anchors.

    Difference from GluonCV: ground-truth rows whose best IoU with every anchor is 0 (padding, empty
    boxes) are never matched (see the module docstring), so padded batches give finite targets; on
    real rows the outputs are GluonCV's.
    """

    def __init__(self, iou_thresh=0.5, neg_thresh=0.5, negative_mining_ratio=3, stds=BOX_STDS,
                 **kwargs):
        super().__init__(**kwargs)
        if len(stds) != 4:
            raise ValueError(f"stds must have 4 values, got {stds!r}")
        self._iou_thresh = float(iou_thresh)
        self._neg_thresh = float(neg_thresh)
        self._negative_mining_ratio = float(negative_mining_ratio)
        self._stds = tuple(float(s) for s in stds)

    def forward(self, anchors, cls_preds, gt_boxes, gt_ids):
        if gt_boxes.ndim != 3 or gt_boxes.shape[-1] != 4:
            raise ValueError(f"gt_boxes must be (B, M, 4), got shape {gt_boxes.shape}")
        if gt_ids.shape[:2] != gt_boxes.shape[:2]:
            raise ValueError(f"gt_ids must be (B, M, 1) like gt_boxes {gt_boxes.shape}, got {gt_ids.shape}")
        mining = self._negative_mining_ratio > 0
        if not mining:
            cls_targets, box_targets, positive = _targets(anchors, gt_boxes, gt_ids, self._iou_thresh, self._stds)
            box_masks = nd.broadcast_to(positive.expand_dims(2), box_targets.shape)
            return cls_targets, box_targets, box_masks
        num_anchors = anchors.size // 4
        expected = (gt_boxes.shape[0], num_anchors)
        if cls_preds is None or cls_preds.ndim != 3 or tuple(cls_preds.shape[:2]) != expected:
            got = "None" if cls_preds is None else f"shape {cls_preds.shape}"
            raise ValueError(
                f"cls_preds: with negative_mining_ratio={self._negative_mining_ratio:g} the generator mines hard "
                f"negatives from the class predictions, (B, N, C+1) = ({expected[0]}, {expected[1]}, C+1) here; "
                f"got {got}. Pass the network's class predictions, or build it with negative_mining_ratio=-1 "
                "to make every unmatched anchor a negative")
        cls_targets, box_targets, positive, max_iou = _targets(anchors, gt_boxes, gt_ids, self._iou_thresh,
                                                               self._stds, with_max_iou=True)
        samples = mine_hard_negatives(positive, cls_preds, max_iou, self._negative_mining_ratio, self._neg_thresh)
        keep = samples > 0.5
        cls_targets = nd.where(keep, cls_targets, -nd.ones_like(cls_targets))
        cls_targets = nd.where(samples < -0.5, nd.zeros_like(cls_targets), cls_targets)
        box_masks = nd.broadcast_to(keep.expand_dims(2), box_targets.shape)
        box_targets = nd.where(box_masks, box_targets, nd.zeros_like(box_targets))
        return cls_targets, box_targets, box_masks


def batch_targets(anchors, labels, iou_thresh=0.5, stds=BOX_STDS):
    """Targets for a whole batch at once, on the device of ``anchors`` (the training device).

    This lets target generation leave the data-loading workers: they return padded labels, and the
    training loop calls this where the network runs. The result equals
    ``SSDTargetGenerator(negative_mining_ratio=-1)`` applied to each image alone (every unmatched anchor a
    negative: the loss mines the hard ones).

    Parameters
    ----------
    anchors : NDArray, (1, N, 4) or (N, 4) center format in input pixels.
    labels : NDArray or numpy array, (B, M, 5+) rows ``[x1, y1, x2, y2, class, ...]`` in input
        pixels, padded with rows of -1 (M may be 0). Copied to the anchors' device if elsewhere.
    iou_thresh, stds : as for :class:`SSDTargetGenerator`.

    Returns
    -------
    cls_targets : NDArray, (B, N) float32.
    box_targets : NDArray, (B, N, 4) float32.
    """
    ctx = anchors.context
    if isinstance(labels, nd.NDArray):
        labels = labels.as_in_context(ctx)
    else:
        labels = nd.array(labels, ctx=ctx)
    if labels.ndim != 3 or labels.shape[-1] < 5:
        raise ValueError(f"labels must be (B, M, 5+) [x1, y1, x2, y2, class, ...], got shape {labels.shape}")
    if len(stds) != 4:
        raise ValueError(f"stds must have 4 values, got {stds!r}")
    if labels.shape[1] == 0:  # MXNet treats a 0 dimension as unknown: no slicing
        num_anchors = anchors.size // 4
        return nd.zeros((labels.shape[0], num_anchors), ctx=ctx), nd.zeros((labels.shape[0], num_anchors, 4), ctx=ctx)
    labels = labels.astype("float32", copy=False)
    gt_boxes = nd.slice_axis(labels, axis=2, begin=0, end=4)
    gt_ids = nd.slice_axis(labels, axis=2, begin=4, end=5)
    cls_targets, box_targets, _ = _targets(anchors, gt_boxes, gt_ids, float(iou_thresh),
                                           tuple(float(s) for s in stds))
    return cls_targets, box_targets
