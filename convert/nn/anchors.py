"""SSD anchors (default boxes) in torch, computed for any feature-map size.

Anchors are (cx, cy, w, h) in input pixels, row-major (y, x, anchor), with centres at
(j + 0.5) * step: the formula of gluon_ssd.nn.anchors (GluonCV's ``SSDAnchorGenerator`` and, for the
'lite' kind, ``LiteAnchorGenerator``). GluonCV precomputes a grid and crops it, which caps the input
size; here the grid is computed from the feature map, so there is no cap.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gluon_ssd.specs import anchor_shapes


class AnchorGenerator(nn.Module):
    """Anchors of one SSD output layer: feature map (B, C, H, W) -> (1, H*W*A, 4) float32."""

    def __init__(self, index: int, sizes, ratios, step: float, kind: str = "ssd", offsets=(0.5, 0.5)):
        super().__init__()
        shapes = anchor_shapes(sizes, ratios, index, kind)
        self.num_anchors = int(shapes.shape[0])
        self.step = float(step)
        self.offset_y = float(offsets[0])
        self.offset_x = float(offsets[1])
        # Derived from the configuration, not learned and not saved: rebuilt for any input size.
        self.register_buffer("shapes", torch.from_numpy(shapes.astype(np.float32)), persistent=False)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        height, width = feature.shape[2], feature.shape[3]
        device = self.shapes.device
        # float32 arithmetic, as MXNet computes the grid: (arange + offset) * step.
        cy = (torch.arange(height, device=device, dtype=torch.float32) + self.offset_y) * self.step
        cx = (torch.arange(width, device=device, dtype=torch.float32) + self.offset_x) * self.step
        num = self.num_anchors
        cxs = cx.reshape(1, -1, 1, 1).expand(height, width, num, 1)
        cys = cy.reshape(-1, 1, 1, 1).expand(height, width, num, 1)
        wh = self.shapes.reshape(1, 1, num, 2).expand(height, width, num, 2)
        return torch.cat([cxs, cys, wh], dim=3).reshape(1, -1, 4)
