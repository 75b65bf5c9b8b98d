"""SSD training targets in torch: the twin of :func:`gluon_ssd.train.target.batch_targets`.

Anchors are matched to ground truths by the algorithm described in :mod:`gluon_ssd.train.target`
(GluonCV's bipartite + maximum-IoU matching, with the same tie rules and the same deliberate
difference: ground truths whose best IoU is zero, padding rows included, are never matched), then
classes and box offsets are encoded. On float32 inputs the matches, class targets and box codes equal the
MXNet version's to the last bit on the CPU (the size codes within 2 ulp on other devices), every float32 step
being computed in the same operation order:

- IoU as MXNet's ``contrib.box_iou``: clipped overlaps ``min(x2) - max(x1)``, their product, areas
  ``w * h`` (0 for a negative width or height), then ``inter / (area_a + area_b - inter)``, 0 where
  the intersection is not positive;
- box encoding as GluonCV's ``NormalizedBoxCenterEncoder``: ``(gx - ax) / aw / std`` and
  ``log(gw / aw) / std``, with centres ``x1 + w * 0.5`` of corners ``cx -+ w * 0.5``;
- the width and height codes take the C library's ``logf`` on the CPU, the function MXNet's log calls
  (:func:`convert._cpu.kernels.logf`); on a GPU, or where the kernels cannot be built, the correctly rounded
  float32 log, one ulp off glibc's logf for 0.2% of inputs (two after the division by the std).

No MXNet is needed (torch, the CPU's logf through ctypes, the stds of :mod:`gluon_ssd.specs`): everything runs
as batched tensor ops on the anchors' device, with a short loop over bipartite matching rounds and a few host
syncs per call.
"""
from __future__ import annotations

import torch

from gluon_ssd.specs import BOX_STDS  # numpy only: no mxnet needed

from .._cpu import kernels as cpu_kernels
from ..boxes import BoxCoder, box_iou, center_to_corner

__all__ = ["batch_targets", "box_iou", "center_to_corner", "match_anchors"]

# Pairs whose IoU is not above this are never matched by the bipartite step (GluonCV's default).
_MATCH_EPS = 1e-12


def _greedy_bipartite(ious: torch.Tensor, num_valid: torch.Tensor, max_valid: int) -> torch.Tensor:
    """Greedy one-to-one matching of anchors to ground truths, best IoU first.

    Parameters
    ----------
    ious : Tensor, (B, M, N) IoU of each ground truth with each anchor.
    num_valid : Tensor, (B,) int64 number of ground truths of each image with an IoU above the eps.
    max_valid : int, the largest of ``num_valid`` (> 0).

    Returns
    -------
    Tensor, (B, N) int64: the ground truth matched to each anchor, -1 where none.

    Notes
    -----
    A ground truth is matched after at most K - 1 others (K = ``num_valid`` of its image), so its
    anchor is among its K best (ties at the K-th value included): only these candidate anchors, in
    ascending index order, enter the rounds. Each round takes every free pair that is the first
    maximum of both its anchor's and its ground truth's free IoUs: no pair earlier in the sequential
    order (IoU descending, then anchor, then ground truth index) can claim either side, so the rounds
    give the sequential result.
    """
    batch, num_gt, num_anchors = ious.shape
    device = ious.device
    k = min(max_valid, num_anchors)
    top = torch.topk(ious, k, dim=2).values  # (B, M, k), descending
    kth_pos = (num_valid.clamp(1, k) - 1).view(batch, 1, 1).expand(batch, num_gt, 1)
    kth = top.gather(2, kth_pos)  # (B, M, 1) the K-th best IoU of each ground truth
    candidate = ((ious >= kth) & (ious > _MATCH_EPS)).any(dim=1)  # (B, N)
    count = candidate.sum(dim=1)
    num_rows = max(int(count.max()), 1)

    # Compact the candidates of each image to the front, keeping their order; others go to column R.
    slot = torch.where(candidate, candidate.cumsum(dim=1) - 1, num_rows)
    anchor_index = torch.arange(num_anchors, device=device).expand(batch, num_anchors)
    rows = torch.zeros((batch, num_rows + 1), dtype=torch.long, device=device)
    rows = rows.scatter(1, slot, anchor_index)[:, :num_rows]  # (B, R)
    is_row = torch.arange(num_rows, device=device) < count.unsqueeze(1)  # (B, R) False for filler

    scores = ious.gather(2, rows.unsqueeze(1).expand(batch, num_gt, num_rows))  # (B, M, R)
    scores = scores.masked_fill(~is_row.unsqueeze(1), -1.0)
    gt_index = torch.arange(num_gt, device=device).expand(batch, num_gt)
    row_match = torch.full((batch, num_rows + 1), -1, dtype=torch.long, device=device)  # column R: scratch
    gt_taken = torch.zeros((batch, num_gt), dtype=torch.bool, device=device)
    for _ in range(max_valid):
        # torch.max over a dim returns the first maximal index (documented): the smallest anchor for
        # a ground truth and the smallest ground truth for an anchor among equal IoUs.
        col_best, col_row = scores.max(dim=2)  # (B, M) best free candidate of each ground truth
        row_col = scores.argmax(dim=1)  # (B, R) best free ground truth of each candidate
        mutual = (row_col.gather(1, col_row) == gt_index) & (col_best > _MATCH_EPS)  # (B, M)
        if not bool(mutual.any()):
            break
        row_match.scatter_(1, torch.where(mutual, col_row, num_rows), gt_index)
        gt_taken |= mutual
        row_taken = row_match[:, :num_rows] >= 0
        scores = scores.masked_fill(row_taken.unsqueeze(1) | gt_taken.unsqueeze(2), -1.0)

    # Back to all anchors; filler rows write into a scratch column N.
    out = torch.full((batch, num_anchors + 1), -1, dtype=torch.long, device=device)
    out.scatter_(1, torch.where(is_row, rows, num_anchors), row_match[:, :num_rows])
    return out[:, :num_anchors]


def match_anchors(ious: torch.Tensor, iou_thresh: float = 0.5) -> torch.Tensor:
    """Match anchors to ground truths as :func:`gluon_ssd.train.target.match_anchors` does.

    Parameters
    ----------
    ious : Tensor, (B, M, N) float32 IoU of each of the M ground truths with each of the N anchors.
    iou_thresh : float, IoU at or above which an anchor is matched to its best ground truth.

    Returns
    -------
    Tensor, (B, N) int64: index of the matched ground truth, -1 for negatives.
    """
    best_iou, best_gt = ious.max(dim=1)  # (B, N), first maximum
    gt_best = ious.amax(dim=2)  # (B, M)
    valid = gt_best > _MATCH_EPS
    num_valid = valid.sum(dim=1)
    max_valid = int(num_valid.max())
    if max_valid == 0:
        return torch.full(best_gt.shape, -1, dtype=torch.long, device=ious.device)
    bipartite = _greedy_bipartite(ious, num_valid, max_valid)
    # Anchors tied with their ground truth's best anchor (ground truths that can match only), then
    # anchors at or above the threshold.
    tied = ((best_iou + _MATCH_EPS) >= gt_best.gather(1, best_gt)) & valid.gather(1, best_gt)
    second = torch.where(tied | (best_iou >= iou_thresh), best_gt, -1)
    return torch.where(bipartite >= 0, bipartite, second)


def _log_as_mxnet(x: torch.Tensor) -> torch.Tensor:
    """float32 ``log(x)`` as MXNet's CPU log computes it: the C library's ``logf`` on the CPU (bit-exact, through
    :mod:`convert._cpu.kernels`); elsewhere, or without the kernels, the float64 log rounded to float32 (correctly
    rounded, which glibc's logf is not on 0.2% of inputs, by one ulp; ``torch.log`` differs on 5%)."""
    exact = cpu_kernels.logf(x)
    return exact if exact is not None else torch.log(x.double()).float()


def batch_targets(anchors: torch.Tensor, labels, iou_thresh: float = 0.5,
                  stds=BOX_STDS) -> tuple[torch.Tensor, torch.Tensor]:
    """Classification and box targets of a padded label batch, on the anchors' device.

    Parameters
    ----------
    anchors : Tensor, (1, N, 4) or (N, 4) center format (cx, cy, w, h) in input pixels.
    labels : Tensor or numpy array, (B, M, 5+) rows ``[x1, y1, x2, y2, class, ...]`` in input pixels,
        padded with rows of -1 (M may be 0); any float dtype, moved to the anchors' device.
    iou_thresh : float
        IoU at or above which an anchor is matched to its best ground truth.
    stds : 4 floats
        Box offsets are divided by these (default :data:`gluon_ssd.specs.BOX_STDS`).

    Returns
    -------
    cls_targets : Tensor, (B, N) int64: 0 for background, class + 1 for positives.
    box_targets : Tensor, (B, N, 4) float32: encoded offsets, 0 for negatives.

    Raises
    ------
    ValueError
        For labels that are not (B, M, 5+), anchors that are not (1, N, 4) or (N, 4), or not 4 stds.
    """
    device = anchors.device
    labels = torch.as_tensor(labels).to(device=device, dtype=torch.float32)
    if labels.ndim != 3 or labels.shape[-1] < 5:
        raise ValueError(f"labels must be (B, M, 5+) [x1, y1, x2, y2, class, ...], got shape {tuple(labels.shape)}")
    coder = BoxCoder(stds)  # checks the stds
    if anchors.shape[-1] != 4 or anchors.ndim not in (2, 3) or (anchors.ndim == 3 and anchors.shape[0] != 1):
        raise ValueError(f"anchors must be (1, N, 4) or (N, 4), got shape {tuple(anchors.shape)}")
    corners = center_to_corner(anchors.reshape(-1, 4).float())  # (N, 4)
    batch, num_gt = labels.shape[:2]
    num_anchors = corners.shape[0]
    if num_gt == 0 or batch == 0:
        return (torch.zeros((batch, num_anchors), dtype=torch.long, device=device),
                torch.zeros((batch, num_anchors, 4), dtype=torch.float32, device=device))

    gt_boxes = labels[..., :4]
    matches = match_anchors(box_iou(gt_boxes, corners), float(iou_thresh))  # (B, N)
    positive = matches >= 0
    index = matches.clamp_min(0)

    # GluonCV's NormalizedBoxCenterEncoder, one float32 operation at a time, on each anchor's ground truth.
    matched = gt_boxes.gather(1, index.unsqueeze(-1).expand(batch, num_anchors, 4))  # (B, N, 4)
    codes = coder.encode(matched, corners, log=_log_as_mxnet)
    box_targets = torch.where(positive.unsqueeze(-1), codes, torch.zeros_like(codes))
    ids = labels[..., 4].gather(1, index)
    cls_targets = torch.where(positive, ids.long() + 1, 0)
    return cls_targets, box_targets
