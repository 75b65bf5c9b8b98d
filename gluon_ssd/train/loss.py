"""SSD multibox loss: softmax cross-entropy with hard negative mining plus smooth L1 on positives."""
from __future__ import annotations

import logging

import numpy as np
from mxnet import gluon, nd

__all__ = ["SSDMultiBoxLoss"]

logger = logging.getLogger(__name__)


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


class SSDMultiBoxLoss(gluon.Block):
    """SSD loss over a batch split across devices, equal to GluonCV's ``SSDMultiBoxLoss``.

    For each image the classification loss is the cross-entropy (log-softmax over the C+1 classes)
    summed over its positive anchors and its hardest negatives: the ``negative_mining_ratio * P``
    negatives of highest cross-entropy (P = positives of that image; at least
    ``min_hard_negatives``). The box loss is the smooth L1 (``|d| - rho/2`` above ``rho``,
    ``d^2 / (2 rho)`` below) summed over the positive anchors. Both are divided by the number of
    positives of the whole batch over all devices (at least 1).

    Parameters
    ----------
    negative_mining_ratio : float, default 3
        Hard negatives per positive.
    rho : float, default 1.0
        Smooth L1 transition point.
    lambd : float, default 1.0
        Weight of the box loss in the sum.
    min_hard_negatives : int, default 0
        Hard negatives kept per image even without positives.

    Notes
    -----
    Called as ``(cls_preds, box_preds, cls_targets, box_targets, num_positives=None)`` with one array
    (or a list of arrays, one per device) each:

    - cls_preds : (B, N, C+1) raw class scores.
    - box_preds : (B, N, 4) box offsets.
    - cls_targets : (B, N) 0 for background, class + 1 for positives.
    - box_targets : (B, N, 4) encoded offsets.
    - num_positives : optional number, the positives of the whole global batch. By default they are
      counted over the given devices (which synchronises with them); distributed training passes
      the count summed over all workers.

    Returns three lists with one (B,) array per device: ``sum_losses = cls + lambd * box``,
    ``cls_losses``, ``box_losses``. Without any positive (and ``min_hard_negatives`` 0) all losses
    are zeros that still depend on the predictions, so backward works; GluonCV returns arrays of
    shape (1,) in that case.
    """

    def __init__(self, negative_mining_ratio=3, rho=1.0, lambd=1.0, min_hard_negatives=0, **kwargs):
        super().__init__(**kwargs)
        if rho <= 0:
            raise ValueError(f"rho must be positive, got {rho}")
        self._negative_mining_ratio = max(0.0, float(negative_mining_ratio))
        self._rho = float(rho)
        self._lambd = float(lambd)
        self._min_hard_negatives = max(0, int(min_hard_negatives))

    def __call__(self, cls_preds, box_preds, cls_targets, box_targets, num_positives=None):
        # gluon.Block.__call__ takes no keyword arguments; keep num_positives usable as one.
        return super().__call__(cls_preds, box_preds, cls_targets, box_targets, num_positives)

    def forward(self, cls_preds, box_preds, cls_targets, box_targets, num_positives=None):
        cls_preds, box_preds, cls_targets, box_targets = (
            _as_list(x) for x in (cls_preds, box_preds, cls_targets, box_targets))
        if not len(cls_preds) == len(box_preds) == len(cls_targets) == len(box_targets):
            raise ValueError(
                "cls_preds, box_preds, cls_targets and box_targets must hold one array per device each; "
                f"got {len(cls_preds)}, {len(box_preds)}, {len(cls_targets)}, {len(box_targets)}")
        if num_positives is None:
            counts = [nd.sum(ct > 0) for ct in cls_targets]
            num_positives = sum(float(c.asscalar()) for c in counts)
        num_positives = float(num_positives)
        if num_positives < 1 and self._min_hard_negatives < 1:
            cls_losses = [nd.sum(cp * 0, axis=0, exclude=True) for cp in cls_preds]
            box_losses = [nd.sum(bp * 0, axis=0, exclude=True) for bp in box_preds]
            return [c + b for c, b in zip(cls_losses, box_losses)], cls_losses, box_losses

        denominator = max(1.0, num_positives)
        sum_losses, cls_losses, box_losses = [], [], []
        for cp, bp, ct, bt in zip(cls_preds, box_preds, cls_targets, box_targets):
            # float32 targets meet a float64 network's outputs in float64 (never narrowed)
            ct = ct.astype(np.promote_types(cp.dtype, ct.dtype), copy=False)
            bt = bt.astype(np.promote_types(bp.dtype, bt.dtype), copy=False)
            positive = ct > 0
            cross_entropy = -nd.pick(nd.log_softmax(cp, axis=-1), ct, axis=-1)  # (B, N)
            selected = positive + self._hard_negatives(cross_entropy.detach(), positive)
            cls_loss = nd.where(selected > 0, cross_entropy, nd.zeros_like(cross_entropy))
            cls_losses.append(nd.sum(cls_loss, axis=1) / denominator)

            diff = nd.abs(bp.reshape_like(bt) - bt)
            smooth_l1 = nd.where(diff > self._rho, diff - 0.5 * self._rho,
                                 (0.5 / self._rho) * nd.square(diff))
            box_loss = nd.broadcast_mul(smooth_l1, positive.expand_dims(-1))
            box_losses.append(nd.sum(box_loss, axis=0, exclude=True) / denominator)
            sum_losses.append(cls_losses[-1] + self._lambd * box_losses[-1])
        return sum_losses, cls_losses, box_losses

    def _hard_negatives(self, cross_entropy, positive):
        """Mask (B, N) of the negatives with the highest cross-entropy, ``ratio * P`` per image.

        Anchors are ranked by ``-cross_entropy`` with positives at 0, through the same ``argsort`` as
        GluonCV so that equal losses are cut at the same place; positives that land inside the cut
        take places as they do in GluonCV.
        """
        batch, num_anchors = cross_entropy.shape
        ctx = cross_entropy.context
        order = nd.argsort(cross_entropy * (positive - 1), axis=1)  # (B, N) anchors, hardest first
        quota = nd.maximum(self._min_hard_negatives,
                           nd.sum(positive, axis=1, keepdims=True) * self._negative_mining_ratio)
        in_quota = nd.broadcast_lesser(nd.arange(num_anchors, ctx=ctx, dtype=quota.dtype).reshape((1, -1)), quota)
        # Scatter the per-rank flags back to the anchors they rank (inverse of the permutation).
        batch_index = nd.broadcast_like(nd.arange(batch, ctx=ctx).reshape((batch, 1)), order)
        return nd.scatter_nd(in_quota.reshape((-1,)), nd.stack(batch_index, order).reshape((2, -1)),
                             shape=(batch, num_anchors))
