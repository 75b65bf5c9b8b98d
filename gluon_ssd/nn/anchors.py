"""SSD anchor (default box) generation.

Anchors are (cx, cy, w, h) in input pixels, ordered row-major as (y, x, anchor). GluonCV stores a
precomputed grid of them in the parameter file (a constant of shape (1, 1, H_alloc, W_alloc, 4A)) and
crops it to the feature map, which caps the input size. Here the grid is computed in the graph from the
feature map's shape, so any input size works; the stored constant is kept (same key and shape as GluonCV)
and used instead whenever a loaded file carries anchors that differ from the formula.
"""
from __future__ import annotations

import numpy as np
from mxnet import gluon

from ..specs import anchor_grid, anchor_shapes


class AnchorGenerator(gluon.HybridBlock):
    """Anchors of one SSD output layer.

    Parameters
    ----------
    index : layer index (names the stored constant as GluonCV does: ``anchor_{index}``).
    sizes : (s_k, s_k+1).
    ratios : aspect ratios, first one 1.
    step : distance between anchor centres in input pixels.
    alloc_size : (H, W) of the stored grid (GluonCV's allocation).
    kind : 'ssd' or 'lite'.

    Forward: ``x`` (B, C, H, W) feature map -> (1, H*W*A, 4) anchors.
    """

    def __init__(self, index, sizes, ratios, step, alloc_size=(128, 128), kind="ssd", offsets=(0.5, 0.5),
                 **kwargs):
        super().__init__(**kwargs)
        self._index = index
        self._step = float(step)
        self._offsets = tuple(float(o) for o in offsets)
        self._shapes = anchor_shapes(sizes, ratios, index, kind)
        self.use_stored = False
        grid = anchor_grid(self._shapes, step, alloc_size[0], alloc_size[1], offsets)
        self.anchors = self.params.get_constant(f"anchor_{index}", grid)

    @property
    def num_depth(self) -> int:
        """Anchors per feature-map location."""
        return len(self._shapes)

    def formula_grid(self, height, width) -> np.ndarray:
        """The anchors this layer computes for a (height, width) map, as numpy."""
        return anchor_grid(self._shapes, self._step, height, width, self._offsets)

    def hybrid_forward(self, F, x, anchors):
        if self.use_stored:
            return F.slice_like(anchors, x, axes=(2, 3)).reshape((1, -1, 4))
        # (H,) and (W,) centre coordinates; exact in float32 for integer steps, like the stored grid.
        cy = (F.contrib.arange_like(x, axis=2) + self._offsets[0]) * self._step
        cx = (F.contrib.arange_like(x, axis=3) + self._offsets[1]) * self._step
        plane = F.broadcast_add(cy.reshape((-1, 1, 1)), F.zeros_like(cx).reshape((1, -1, 1)))
        cxs = F.broadcast_like(cx.reshape((1, -1, 1)), plane)
        ones = F.ones_like(plane)
        per_anchor = []
        for w, h in self._shapes.astype(np.float32).tolist():
            per_anchor += [cxs, plane, ones * w, ones * h]
        return F.concat(*per_anchor, dim=2).reshape((1, -1, 4))

    def sync_with_stored(self) -> bool:
        """Use the stored grid when it differs from the formula (e.g. a file with edited anchors).

        Returns True when the stored grid is used.
        """
        stored = self.anchors.data().asnumpy()
        expected = self.formula_grid(stored.shape[2], stored.shape[3])
        self.use_stored = not np.array_equal(stored, expected)
        return self.use_stored
