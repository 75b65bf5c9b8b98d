"""Box facts in numpy, stated once: corner <-> center, the SSD offset coder, IoU by convention.

The MXNet graph (``gluon_ssd.nn``, ``gluon_ssd.train.target``) keeps its own operators where a graph needs
them, and the PyTorch twin has :mod:`convert.boxes`; all three follow the arithmetic written here, one float
operation at a time, so that float32 results agree to the bit with GluonCV's.

Formats: corner boxes are ``(x1, y1, x2, y2)``, center boxes ``(cx, cy, w, h)``, always in the last axis.

Three IoU conventions are in use, and each has its own function:

========================  =================================================================================
:func:`iou_voc`           VOC devkit / GluonCV's VOC metric: integer pixel corners, ``x2`` inclusive, so the
                          right edge is ``x2 + 1`` (areas and overlaps take the extra pixel).
:func:`box_iou`           MXNet's ``contrib.box_iou`` (training targets, crop constraints): no +1, a box of
                          negative width or height has area 0, and the IoU is 0 wherever the intersection is
                          not positive (so two empty boxes give 0).
:func:`nms_iou`           What MXNet's ``contrib.box_nms`` compares with its threshold: :func:`box_iou`'s
                          arithmetic without the guard, so two empty boxes give 0/0 = NaN, which is never
                          above a threshold (such a pair suppresses nothing, as in MXNet).
========================  =================================================================================
"""
from __future__ import annotations

import numpy as np

from .specs import BOX_STDS

__all__ = ["BoxCoder", "box_iou", "center_to_corner", "corner_to_center", "iou_voc", "iou_voc_aligned",
           "nms_iou"]


def center_to_corner(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) center boxes -> (..., 4) corner boxes, ``cx -+ w * 0.5`` (GluonCV's order), input dtype kept."""
    boxes = np.asarray(boxes)
    cx, cy, w, h = (boxes[..., i] for i in range(4))
    half_w, half_h = w * 0.5, h * 0.5
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def corner_to_center(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) corner boxes -> (..., 4) center boxes: ``w = x2 - x1``, then ``cx = x1 + w * 0.5`` (the order of
    GluonCV's ``BBoxCornerToCenter``, which its encoder uses)."""
    boxes = np.asarray(boxes)
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    w, h = x2 - x1, y2 - y1
    return np.stack([x1 + w * 0.5, y1 + h * 0.5, w, h], axis=-1)


class BoxCoder:
    """SSD box offsets against anchors, normalized by ``stds`` (GluonCV's ``NormalizedBoxCenterEncoder`` and
    ``NormalizedBoxCenterDecoder``, MXNet's ``contrib.box_decode(format='center')``).

    Parameters
    ----------
    stds : 4 floats dividing the (x, y, w, h) offsets; default :data:`gluon_ssd.specs.BOX_STDS`.
    """

    def __init__(self, stds=BOX_STDS):
        if len(stds) != 4:
            raise ValueError(f"stds must have 4 values, got {stds!r}")
        self.stds = tuple(float(s) for s in stds)

    def encode(self, boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """Offsets of corner ``boxes`` (..., N, 4) from corner ``anchors`` (N, 4) -> (..., N, 4).

        ``((gx - ax) / aw) / std0``, ``((gy - ay) / ah) / std1``, ``log(gw / aw) / std2``, ``log(gh / ah) / std3``,
        centres from :func:`corner_to_center`, in the inputs' dtype. (MXNet's ``log`` is the C library's
        ``logf``; numpy's float32 log may differ from it in the last bit.)
        """
        g = corner_to_center(boxes)
        a = corner_to_center(anchors)
        s = np.asarray(self.stds, dtype=g.dtype)
        return np.stack([(g[..., 0] - a[..., 0]) / a[..., 2] / s[0],
                         (g[..., 1] - a[..., 1]) / a[..., 3] / s[1],
                         np.log(g[..., 2] / a[..., 2]) / s[2],
                         np.log(g[..., 3] / a[..., 3]) / s[3]], axis=-1)

    def decode(self, codes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """Offsets (..., N, 4) and center ``anchors`` (N, 4) -> corner boxes (..., N, 4).

        ``ox = c0 * std0 * aw + ax``, ``ow = exp(c2 * std2) * aw * 0.5``, then ``ox -+ ow``:
        ``contrib.box_decode``'s order (GluonCV's ``/ 2`` is the same float operation as ``* 0.5``); numpy's float32
        ``exp`` may differ from the C library's ``expf`` that MXNet calls in the last bit.
        """
        codes = np.asarray(codes)
        anchors = np.asarray(anchors)
        s = np.asarray(self.stds, dtype=codes.dtype)
        ax, ay, aw, ah = (anchors[..., i] for i in range(4))
        ox = codes[..., 0] * s[0] * aw + ax
        oy = codes[..., 1] * s[1] * ah + ay
        ow = np.exp(codes[..., 2] * s[2]) * aw * 0.5
        oh = np.exp(codes[..., 3] * s[3]) * ah * 0.5
        return np.stack([ox - ow, oy - oh, ox + ow, oy + oh], axis=-1)


def iou_voc_aligned(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise VOC IoU (+1 pixel) of ``a[..., :4]`` and ``b[..., :4]`` (broadcasting) -> (...).

    In the dtype numpy promotes the inputs to: float32 boxes give float32 IoUs, as in GluonCV, so that
    comparisons with a threshold come out the same.
    """
    one = np.ones((), dtype=a.dtype)
    ax1, ay1, ax2, ay2 = a[..., 0], a[..., 1], a[..., 2] + one, a[..., 3] + one
    one = np.ones((), dtype=b.dtype)
    bx1, by1, bx2, by2 = b[..., 0], b[..., 1], b[..., 2] + one, b[..., 3] + one
    left, top = np.maximum(ax1, bx1), np.maximum(ay1, by1)
    right, bottom = np.minimum(ax2, bx2), np.minimum(ay2, by2)
    # GluonCV's bbox_iou operations in its order, so that the rounding is the same too.
    inter = (right - left) * (bottom - top) * ((left < right) & (top < bottom))
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area_a + area_b - inter)


def iou_voc(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """VOC IoU (+1 pixel) of every pair: (..., N, 4+) with (..., M, 4+) -> (..., N, M); leading dimensions
    broadcast. See :func:`iou_voc_aligned` for the dtype."""
    a = np.asarray(boxes_a)[..., :, None, :4]
    b = np.asarray(boxes_b)[..., None, :, :4]
    return iou_voc_aligned(a, b)


def _overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(intersection, union) of every pair of corner boxes a (..., N, 4+) and b (M, 4+), each (..., N, M)."""
    a = np.asarray(a)[..., :, None, :4]
    b = np.asarray(b)[..., :4]
    iw = np.maximum(np.minimum(a[..., 2], b[:, 2]) - np.maximum(a[..., 0], b[:, 0]), 0)
    ih = np.maximum(np.minimum(a[..., 3], b[:, 3]) - np.maximum(a[..., 1], b[:, 1]), 0)
    inter = iw * ih

    def area(box):
        w, h = box[..., 2] - box[..., 0], box[..., 3] - box[..., 1]
        return np.where((w < 0) | (h < 0), np.zeros_like(w), w * h)

    return inter, (area(a) + area(b)) - inter


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corner boxes a (..., N, 4+) with b (M, 4+) -> (..., N, M), as MXNet's ``contrib.box_iou``: no +1,
    0 where the intersection is not positive. The areas are only added, so swapping a and b transposes the
    result exactly."""
    inter, union = _overlaps(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, np.zeros_like(inter))


def nms_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The overlap ``contrib.box_nms`` thresholds, a (..., N, 4+) with b (M, 4+) -> (..., N, M): :func:`box_iou`
    without its guard, so that two empty boxes give NaN (never above a threshold) rather than 0."""
    inter, union = _overlaps(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union
