"""Box facts in torch, the twin of :mod:`gluon_ssd.boxes` (same names, same arithmetic in the same order):
corner <-> center, the SSD offset coder, IoU as MXNet's ``contrib.box_iou`` and as ``contrib.box_nms``.

Only torch and the numpy side (the stds and their check) are imported here, no MXNet; decode and the IoUs are
TorchScript-compatible, so that the detector's decode and NMS script and export. The conventions (why
``box_iou`` and ``nms_iou`` differ on empty boxes) are documented in :mod:`gluon_ssd.boxes`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from gluon_ssd import boxes as numpy_boxes  # numpy only: no mxnet needed

__all__ = ["BoxCoder", "box_iou", "center_planes", "center_to_corner", "decode", "encode", "nms_iou"]


def center_to_corner(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) center boxes -> (..., 4) corner boxes, ``cx -+ w * 0.5`` as GluonCV computes it in float32."""
    cx, cy, w, h = boxes.unbind(-1)
    half_w, half_h = w * 0.5, h * 0.5
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)


def center_planes(corners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Corner boxes (..., 4) -> cx, cy, w, h, each (...): ``w = x2 - x1``, ``cx = x1 + w * 0.5``
    (:func:`gluon_ssd.boxes.corner_to_center`, one plane per coordinate)."""
    x1, y1, x2, y2 = corners.unbind(-1)
    w = x2 - x1
    h = y2 - y1
    return x1 + w * 0.5, y1 + h * 0.5, w, h


def encode(boxes: torch.Tensor, anchors: torch.Tensor, stds: torch.Tensor,
           log: Callable[[torch.Tensor], torch.Tensor] = torch.log) -> torch.Tensor:
    """Offsets of corner ``boxes`` (..., N, 4) from corner ``anchors`` (N, 4) -> (..., N, 4), as
    :meth:`gluon_ssd.boxes.BoxCoder.encode` (GluonCV's ``NormalizedBoxCenterEncoder``).

    ``stds`` is a (4,) tensor on the boxes' device: CUDA turns a division by a Python scalar into a
    multiplication by its inverse, which rounds differently. ``log`` is the logarithm to use (the training
    targets pass the C library's ``logf``, the one MXNet calls).
    """
    gx, gy, gw, gh = center_planes(boxes)
    ax, ay, aw, ah = center_planes(anchors)
    return torch.stack([(gx - ax) / aw, (gy - ay) / ah, log(gw / aw), log(gh / ah)], dim=-1) / stds


def decode(codes: torch.Tensor, anchors: torch.Tensor, stds: list[float]) -> torch.Tensor:
    """Offsets (B, N, 4) and center ``anchors`` (1, N, 4) -> corner boxes (B, N, 4), MXNet's
    ``contrib.box_decode(format='center', clip=-1)`` in its order (:meth:`gluon_ssd.boxes.BoxCoder.decode`)."""
    ax, ay, aw, ah = anchors[..., 0], anchors[..., 1], anchors[..., 2], anchors[..., 3]
    ox = codes[..., 0] * stds[0] * aw + ax
    oy = codes[..., 1] * stds[1] * ah + ay
    ow = torch.exp(codes[..., 2] * stds[2]) * aw * 0.5
    oh = torch.exp(codes[..., 3] * stds[3]) * ah * 0.5
    return torch.stack([ox - ow, oy - oh, ox + ow, oy + oh], dim=-1)


class BoxCoder(numpy_boxes.BoxCoder):
    """:class:`gluon_ssd.boxes.BoxCoder` (the stds, checked there) on tensors: :func:`encode` / :func:`decode`."""

    def encode(self, boxes: torch.Tensor, anchors: torch.Tensor,
               log: Callable[[torch.Tensor], torch.Tensor] = torch.log) -> torch.Tensor:
        """:func:`encode` with these stds (float32, on the boxes' device)."""
        stds = torch.tensor(self.stds, dtype=torch.float32, device=boxes.device)
        return encode(boxes, anchors, stds, log)

    def decode(self, codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """:func:`decode` with these stds."""
        return decode(codes, anchors, list(self.stds))


def _area(x1: torch.Tensor, y1: torch.Tensor, x2: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """``w * h``, 0 for a box of negative width or height (MXNet's box area)."""
    w, h = x2 - x1, y2 - y1
    return torch.where((w < 0) | (h < 0), torch.zeros_like(w), w * h)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of corner boxes a (..., P, 4) with b (Q, 4) -> (..., P, Q), as MXNet's ``contrib.box_iou``: no +1, 0
    where the intersection is not positive. The two areas are only added, so swapping a and b transposes the
    result exactly."""
    ax1, ay1, ax2, ay2 = (c.unsqueeze(-1) for c in a.unbind(-1))  # (..., P, 1)
    bx1, by1, bx2, by2 = b.unbind(-1)  # (Q,)
    iw = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp_min(0)
    ih = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp_min(0)
    inter = iw * ih
    union = (_area(ax1, ay1, ax2, ay2) + _area(bx1, by1, bx2, by2)) - inter
    return torch.where(inter > 0, inter / union, torch.zeros_like(inter))


def nms_iou(boxes: torch.Tensor) -> torch.Tensor:
    """The overlap ``contrib.box_nms`` thresholds, of every pair of rows of corner ``boxes`` (B, K, 4) ->
    (B, K, K): :func:`box_iou`'s arithmetic without its guard, so two empty boxes give NaN (never above a
    threshold: they suppress nothing, as in MXNet). Written with ``where`` rather than ``clamp`` so that it
    exports to ONNX as it computes."""
    x1, y1, x2, y2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    area = _area(x1, y1, x2, y2)
    iw = torch.minimum(x2.unsqueeze(2), x2.unsqueeze(1)) - torch.maximum(x1.unsqueeze(2), x1.unsqueeze(1))
    ih = torch.minimum(y2.unsqueeze(2), y2.unsqueeze(1)) - torch.maximum(y1.unsqueeze(2), y1.unsqueeze(1))
    zeros = torch.zeros_like(iw)
    inter = torch.where(iw > 0, iw, zeros) * torch.where(ih > 0, ih, zeros)
    return inter / (area.unsqueeze(2) + area.unsqueeze(1) - inter)
