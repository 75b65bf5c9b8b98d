"""SSD post-processing in torch, equal to gluon_ssd/GluonCV's: decode, softmax, per-class NMS.

``box_nms`` reproduces ``mx.nd.contrib.box_nms`` (mxnet 1.9.1, src/operator/contrib/bounding_box-inl.h)
as GluonCV calls it, in batched tensor operations:

* a row is a candidate when its score > ``valid_thresh``; the others never enter NMS;
* candidates are ordered by score, descending, ties in input order (MXNet's CPU and GPU sorts are
  stable), and only the first ``topk`` of all candidates (all classes together) enter NMS;
* greedy suppression in that order: a kept row removes every later row of the same class
  (``id_index``; all rows with ``force_suppress``) whose IoU with it is > ``overlap_thresh``. IoU is
  :func:`convert.boxes.nms_iou`: no +1, width = min(x2) - max(x1) clipped at 0, a box with negative width or
  height has area 0, 0/0 IoU is NaN, which suppresses nothing;
* output: the kept rows in that order, then rows of -1 in every field; as many rows as the input.

The greedy pass is computed as the fixed point of "a row is kept unless a kept, earlier, overlapping
row of its class exists": the rule for row j depends only on rows before j, so the fixed point is
unique (the greedy result) and iteration from "all candidates kept" reaches it, usually in a few
rounds (at most one per row). All functions are TorchScript-compatible.
"""
from __future__ import annotations

import functools

import torch

from gluon_ssd.specs import NMS_THRESH, NMS_TOPK, POST_NMS  # numpy only: no mxnet needed

from ..boxes import decode, nms_iou


def decode_boxes(box_preds: torch.Tensor, anchors: torch.Tensor, stds: list[float]) -> torch.Tensor:
    """Encoded offsets (B, N, 4) and anchors (1, N, 4) (cx, cy, w, h) -> corners (B, N, 4):
    :func:`convert.boxes.decode` (MXNet ``contrib.box_decode(format='center', clip=-1)``'s arithmetic)."""
    return decode(box_preds, anchors, stds)


def _rank_permutation(values: torch.Tensor) -> torch.Tensor:
    """Positions that sort each row of ``values`` (B, K) descending, ties by position (a stable sort,
    written with comparisons only so that it exports to ONNX exactly)."""
    k = values.shape[1]
    greater = values.unsqueeze(1) > values.unsqueeze(2)          # [b, j, i] = v_i > v_j
    equal = values.unsqueeze(1) == values.unsqueeze(2)
    pos = torch.arange(k, device=values.device)
    earlier = pos.unsqueeze(0) < pos.unsqueeze(1)                 # [j, i] = i < j
    rank = greater.sum(2) + (equal & earlier.unsqueeze(0)).sum(2)  # (B, K), a permutation of 0..K-1
    match = rank.unsqueeze(1) == pos.reshape(1, -1, 1)            # [b, p, j] = rank_j == p
    return match.to(torch.int32).argmax(2)


def stable_topk(keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest of each row of ``keys`` (B, M), descending, ties in index order: (values, indices).

    Exactly the first k of a stable descending sort, at the cost of a top-k (torch.topk alone does not
    define which of equal values it picks or in which order).
    """
    batch = keys.shape[0]
    kth = torch.topk(keys, k, dim=1).values[:, k - 1:k]
    above = keys > kth
    tie = keys == kth
    need = k - above.sum(1, keepdim=True)
    chosen = above | (tie & (torch.cumsum(tie.to(torch.int32), 1) <= need))
    index = torch.nonzero(chosen)[:, 1].reshape(batch, k)           # ascending per row
    values = keys.gather(1, index)
    order = _rank_permutation(values)
    return values.gather(1, order), index.gather(1, order)


def _suppression(boxes: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor, overlap_thresh: float,
                 force_suppress: bool) -> torch.Tensor:
    """[b, i, j]: row i, if kept, removes row j (i before j, IoU > threshold, same class unless forced)."""
    iou = nms_iou(boxes)
    k = boxes.shape[1]
    pos = torch.arange(k, device=boxes.device)
    later = (pos.unsqueeze(1) < pos.unsqueeze(0)).unsqueeze(0)
    sup = (iou > overlap_thresh) & later & valid.unsqueeze(2) & valid.unsqueeze(1)
    if not force_suppress:
        sup = sup & (ids.unsqueeze(2) == ids.unsqueeze(1))
    return sup


def greedy_keep(suppresses: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Greedy NMS decisions (B, K) bool from the suppression relation (B, K, K) of ordered rows.

    Iterates "kept = valid and not removed by a kept row" to its fixed point; each round settles at
    least one more leading row, so it ends after at most K + 1 rounds (a few in practice).
    """
    sup = suppresses.to(torch.float32)
    keep = valid
    changed = True
    while changed:
        hits = torch.matmul(keep.to(torch.float32).unsqueeze(1), sup)[:, 0, :]
        new_keep = valid & (hits < 0.5)
        changed = bool((new_keep != keep).any())
        keep = new_keep
    return keep


@functools.cache
def _scripted_greedy_keep():
    return torch.jit.script(greedy_keep)


def _keep(suppresses: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    if not torch.jit.is_scripting():
        if torch.jit.is_tracing():
            # A traced loop would be unrolled to the trace's round count; the scripted one stays a loop
            # (an ONNX Loop on export).
            return _scripted_greedy_keep()(suppresses, valid)
    return greedy_keep(suppresses, valid)


def _compact(rows: torch.Tensor, keep: torch.Tensor, length: int) -> torch.Tensor:
    """Kept rows (B, K, W) first, in order, then -1 rows; ``length`` rows."""
    batch, k, width = rows.shape[0], rows.shape[1], rows.shape[2]
    n = min(length, k)
    slot = torch.cumsum(keep.to(torch.int32), 1) - 1
    target = torch.arange(n, device=rows.device, dtype=torch.int32)
    match = keep.unsqueeze(1) & (slot.unsqueeze(1) == target.reshape(1, -1, 1))   # [b, p, j]
    source = match.to(torch.int32).argmax(2)
    picked = rows.gather(1, source.unsqueeze(2).expand(batch, n, width))
    out = torch.where(match.any(2).unsqueeze(2), picked, torch.full_like(picked, -1.0))
    if length > n:
        out = torch.cat([out, torch.full((batch, length - n, width), -1.0, dtype=rows.dtype,
                                         device=rows.device)], 1)
    return out


def box_nms(data: torch.Tensor, overlap_thresh: float = 0.5, valid_thresh: float = 0.0, topk: int = -1,
            coord_start: int = 2, score_index: int = 1, id_index: int = -1,
            force_suppress: bool = False) -> torch.Tensor:
    """``mx.nd.contrib.box_nms`` on (B, M, W) rows, corner boxes (in_format = out_format = 'corner')."""
    batch, num = data.shape[0], data.shape[1]
    k = num if topk < 0 else min(num, topk)
    if k < 1:
        return data.clone()
    scores = data[:, :, score_index]
    neg_inf = torch.full_like(scores, float("-inf"))
    keys = torch.where(scores > valid_thresh, scores, neg_inf)
    top_keys, order = stable_topk(keys, k)
    rows = data.gather(1, order.unsqueeze(2).expand(batch, k, data.shape[2]))
    valid = top_keys > float("-inf")
    ids = rows[:, :, id_index] if id_index >= 0 else torch.zeros_like(top_keys)
    sup = _suppression(rows[:, :, coord_start:coord_start + 4], ids, valid, overlap_thresh,
                       force_suppress or id_index < 0)
    return _compact(rows, _keep(sup, valid), num)


def detect(cls_preds: torch.Tensor, box_preds: torch.Tensor, anchors: torch.Tensor, stds: list[float],
           nms_thresh: float = NMS_THRESH, nms_topk: int = NMS_TOPK, post_nms: int = POST_NMS,
           score_thresh: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw SSD outputs -> (ids (B, K, 1), scores (B, K, 1), boxes (B, K, 4)), as gluon_ssd's SSD.

    Softmax over C+1 classes (0 = background), per-class candidates with score > ``score_thresh`` in
    class-major order, box_nms(nms_thresh, nms_topk, valid_thresh=0.01, per class), first ``post_nms``
    rows (K = post_nms; every row when post_nms <= 0). Rows without a detection are -1 in every field.
    With nms_thresh outside (0, 1) NMS and the cut are skipped: all C*N candidate rows are returned,
    the non-candidates with id -1 and score 0. Computed in float32 whatever the input dtype.
    """
    cls_preds = cls_preds.float()
    boxes = decode_boxes(box_preds.float(), anchors.float(), stds)
    scores = torch.softmax(cls_preds, dim=-1)[:, :, 1:]
    batch, num, classes = scores.shape[0], scores.shape[1], scores.shape[2]
    total = classes * num
    flat = scores.transpose(1, 2).reshape(batch, total)   # class-major candidate list
    is_candidate = flat > score_thresh
    if not (0.0 < nms_thresh < 1.0) or nms_topk == 0:
        # No NMS (or box_nms with topk 0, which returns its input): the whole candidate list.
        class_ids = torch.arange(classes, device=flat.device, dtype=flat.dtype).repeat_interleave(num)
        ids = torch.where(is_candidate, class_ids.unsqueeze(0).expand(batch, total), torch.full_like(flat, -1.0))
        kept = torch.where(is_candidate, flat, torch.zeros_like(flat))
        all_boxes = boxes.repeat(1, classes, 1)
        if 0.0 < nms_thresh < 1.0 and post_nms > 0:
            ids, kept, all_boxes = ids[:, :post_nms], kept[:, :post_nms], all_boxes[:, :post_nms]
        return ids.unsqueeze(2), kept.unsqueeze(2), all_boxes
    k = total if nms_topk < 0 else min(total, nms_topk)
    keys = torch.where(is_candidate, flat, torch.full_like(flat, float("-inf")))
    top_scores, order = stable_topk(keys, k)
    class_id = torch.div(order, num, rounding_mode="floor")
    anchor = order - class_id * num
    top_boxes = boxes.gather(1, anchor.unsqueeze(2).expand(batch, k, 4))
    valid = top_scores > float("-inf")
    ids = class_id.to(flat.dtype)
    sup = _suppression(top_boxes, ids, valid, nms_thresh, False)
    keep = _keep(sup, valid)
    rows = torch.cat([ids.unsqueeze(2), top_scores.unsqueeze(2), top_boxes], 2)
    length = total if post_nms <= 0 else min(post_nms, total)
    out = _compact(rows, keep, length)
    return out[:, :, 0:1], out[:, :, 1:2], out[:, :, 2:6]
